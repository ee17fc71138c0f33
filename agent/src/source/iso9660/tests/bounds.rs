//! Work bounded on hostile images: many files in one folder, records sharing one extent.

use std::cell::Cell;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;
use std::time::Instant;

use super::builder::*;
use super::{IsoError, IsoImage};

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A root folder of `count` files of `size` bytes, all pointing at one extent at `data`.
fn shared_extent_image(count: usize, size: u32, data: u32) -> Vec<u8> {
    let mut iso = Iso::new();
    let records: Vec<Vec<u8>> = (0..count)
        .map(|i| file(data, size, format!("F{i:05}.TXT;1").as_bytes(), &[]))
        .collect();
    let root_len = iso.dir(20, 20, &[], &records);
    assert!(
        20 + root_len / 2048 < data,
        "the data follows the root folder"
    );
    let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    iso.put(data, 0, &content);
    iso.pvd("CONTEXT", 20, root_len);
    iso.terminator(17);
    iso.bytes
}

/// 20,000 files: reading each by path re-read the root folder per file (75 s on a release
/// build, quadratic); one listing and a read per extent take well under a second.
#[test]
fn many_files_are_read_with_one_listing() {
    let image = shared_extent_image(20_000, 4, 600);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("context.iso");
    std::fs::write(&path, &image).unwrap();
    let started = Instant::now();
    let files = crate::source::opennebula::read_cd_files(&path, 1 << 20).unwrap();
    let took = started.elapsed();
    // Under 2 s on an idle machine, minutes before the fix; generous for shared CI cores.
    assert!(took.as_secs() < 15, "took {took:?}");
    assert_eq!(files.len(), 20_000);
    assert_eq!(files[0], ("F00000.TXT".to_string(), vec![0, 1, 2, 3]));
    assert_eq!(files[19_999].0, "F19999.TXT");
}

/// 64 records naming one 8 MiB extent: 512 MiB of "files" in an 8 MiB image. Refused from
/// the sizes in the listing, before any file is read.
#[test]
fn records_sharing_an_extent_are_refused_before_reading() {
    let image = shared_extent_image(64, 8 << 20, 40);
    let image_len = image.len() as u64;
    let read = Rc::new(Cell::new(0));
    let reader = Counting {
        inner: Cursor::new(image),
        read: read.clone(),
    };
    let mut iso = IsoImage::new(reader).unwrap();
    let err = iso.read_dir_files("/", 64 << 20, 256 << 20).unwrap_err();
    assert!(
        matches!(&err, IsoError::FilesTooLarge { size, limit, .. }
            if *size == 64 * (8 << 20) && *limit == image_len),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("the files in / add up to 536870912 bytes"),
        "{err}"
    );
    assert!(read.get() < 1 << 20, "{} bytes read", read.get());

    // The fixed bound holds when the image is large enough; each file's own limit first.
    let mut iso = IsoImage::new(Cursor::new(shared_extent_image(2, 3000, 40))).unwrap();
    assert!(matches!(
        iso.read_dir_files("/", 1 << 20, 5000),
        Err(IsoError::FilesTooLarge { limit: 5000, .. })
    ));
    match iso.read_dir_files("/", 2000, 1 << 20) {
        Err(IsoError::TooLarge { path, .. }) => assert_eq!(path, "/F00000.TXT"),
        other => panic!("{other:?}"),
    }
    let files = iso.read_dir_files("", 3000, 6000).unwrap();
    assert_eq!(files.len(), 2);
}
