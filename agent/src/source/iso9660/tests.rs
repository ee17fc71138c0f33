//! Unit tests: small images built byte by byte, plus images built by xorriso.

mod bounds;
mod builder;
mod names;
mod xorriso;

use std::io::Cursor;

use builder::*;

use super::*;

/// Lists the whole hierarchy (bounded), as (path, entry); errors are collected too.
pub(super) fn walk<R: Read + Seek>(
    iso: &mut IsoImage<R>,
) -> (Vec<(String, DirEntry)>, Vec<String>) {
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        if found.len() > 1000 {
            break;
        }
        match iso.list(&dir) {
            Ok(entries) => {
                for e in entries {
                    let path = format!("{dir}/{}", e.name);
                    if e.is_dir {
                        todo.push(path.clone());
                    }
                    found.push((path, e));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    (found, errors)
}

fn names(entries: &[DirEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn one_line(err: IsoError) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg:?}");
    msg
}

const BIG: usize = 5000;

fn big_data() -> Vec<u8> {
    (0..BIG).map(|i| (i * 7 % 251) as u8).collect()
}

/// 16 PVD, 17 terminator, 20 root, 21 SUB, 22 CONTEXT.SH, 23 SUB/DATA.TXT, 24-26 BIG.BIN.
fn plain_image() -> Vec<u8> {
    let mut iso = Iso::new();
    let root_len = iso.dir(
        20,
        20,
        &[],
        &[
            file(22, 6, b"CONTEXT.SH;1", &[]),
            file(0, 0, b"README.;1", &[]),
            dir(21, 2048, b"SUB", &[]),
            file(24, BIG as u32, b"BIG.BIN;1", &[]),
        ],
    );
    iso.dir(21, 20, &[], &[file(23, 4, b"DATA.TXT;1", &[])]);
    iso.put(22, 0, b"hello\n");
    iso.put(23, 0, b"data");
    iso.put(24, 0, &big_data());
    iso.pvd("CONTEXT", 20, root_len);
    iso.terminator(17);
    iso.bytes
}

#[test]
fn plain_names_and_volume_id() {
    let bytes = plain_image();
    assert_eq!(
        read_volume_id(Cursor::new(&bytes)).unwrap().as_deref(),
        Some("CONTEXT")
    );
    let mut iso = IsoImage::new(Cursor::new(bytes)).unwrap();
    assert_eq!(iso.volume_id(), "CONTEXT");
    assert_eq!(iso.name_source(), NameSource::Iso9660);
    let root = iso.list("/").unwrap();
    assert_eq!(names(&root), ["BIG.BIN", "CONTEXT.SH", "README", "SUB"]);
    assert_eq!(root, iso.list("").unwrap());
    assert_eq!(
        root[3],
        DirEntry {
            name: "SUB".into(),
            is_dir: true,
            size: 2048,
            mode: None,
            link: None,
        }
    );
    assert_eq!(iso.read_file("/CONTEXT.SH", 100).unwrap(), b"hello\n");
    // No Rock Ridge or Joliet: case-insensitive fallback.
    assert_eq!(iso.read_file("context.sh", 100).unwrap(), b"hello\n");
    assert_eq!(iso.read_file("/sub/data.txt", 100).unwrap(), b"data");
    assert_eq!(iso.read_file("/README", 100).unwrap(), b"");
    assert_eq!(iso.stat("/SUB/DATA.TXT").unwrap().size, 4);
    assert!(iso.stat("/").unwrap().is_dir);
    for (path, want) in [
        ("/nope", "no such file on the image: /nope"),
        ("/SUB", "no such file on the image: /SUB (is a directory)"),
        (
            "/SUB/DATA.TXT/x",
            "no such file on the image: /SUB/DATA.TXT/x (/SUB/DATA.TXT is not a directory)",
        ),
    ] {
        assert_eq!(one_line(iso.read_file(path, 100).unwrap_err()), want);
    }
    assert!(matches!(
        iso.list("/CONTEXT.SH"),
        Err(IsoError::NotFound(_))
    ));
}

#[test]
fn file_spanning_sectors_and_too_large() {
    let mut iso = IsoImage::new(Cursor::new(plain_image())).unwrap();
    assert_eq!(iso.read_file("/BIG.BIN", BIG as u64).unwrap(), big_data());
    let err = iso.read_file("/big.bin", BIG as u64 - 1).unwrap_err();
    assert!(
        matches!(&err, IsoError::TooLarge { path, size: 5000, limit: 4999 } if path == "/big.bin"),
        "{err:?}"
    );
    assert_eq!(
        one_line(err),
        "/big.bin is 5000 bytes, over the 4999-byte limit"
    );
}

#[test]
fn directory_spanning_sectors() {
    let mut iso = Iso::new();
    let recs: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            file(
                30 + i,
                1,
                format!("FILE_WITH_A_LONG_NAME_{i:04}.TXT;1").as_bytes(),
                &[],
            )
        })
        .collect();
    let len = iso.dir(20, 20, &[], &recs);
    assert_eq!(len, 4 * 2048, "records spread over several sectors");
    for i in 0..100 {
        iso.put(30 + i, 0, &[i as u8]);
    }
    iso.pvd("X", 20, len);
    iso.terminator(17);
    let mut iso = IsoImage::new(Cursor::new(iso.bytes)).unwrap();
    let list = iso.list("/").unwrap();
    assert_eq!(list.len(), 100);
    assert_eq!(list[99].name, "FILE_WITH_A_LONG_NAME_0099.TXT");
    assert_eq!(
        iso.read_file("/FILE_WITH_A_LONG_NAME_0099.TXT", 1).unwrap(),
        [99]
    );
}

#[test]
fn nested_dirs_and_path_forms() {
    let mut iso = Iso::new();
    let root = iso.dir(20, 20, &[], &[dir(21, 2048, b"A", &[])]);
    iso.dir(21, 20, &[], &[dir(22, 2048, b"B", &[])]);
    iso.dir(22, 21, &[], &[dir(23, 2048, b"C", &[])]);
    iso.dir(23, 22, &[], &[file(24, 3, b"D.TXT;1", &[])]);
    iso.put(24, 0, b"abc");
    iso.pvd("NESTED", 20, root);
    iso.terminator(17);
    let mut iso = IsoImage::new(Cursor::new(iso.bytes)).unwrap();
    assert_eq!(names(&iso.list("/A/B").unwrap()), ["C"]);
    for path in ["/A/B/C/D.TXT", "a/b/c/d.txt", "//A/./B//C/D.TXT"] {
        assert_eq!(iso.read_file(path, 3).unwrap(), b"abc", "{path}");
    }
    let (all, errors) = walk(&mut iso);
    assert!(errors.is_empty(), "{errors:?}");
    let paths: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/A", "/A/B", "/A/B/C", "/A/B/C/D.TXT"]);
    let deep = "/A".repeat(MAX_DEPTH + 1);
    assert!(one_line(iso.list(&deep).unwrap_err()).contains("deeper than 32 levels"));
}

#[test]
fn truncated_images() {
    let bytes = plain_image();
    let mut iso = IsoImage::new(Cursor::new(bytes[..23 * 2048].to_vec())).unwrap();
    assert_eq!(
        one_line(iso.read_file("/BIG.BIN", 10_000).unwrap_err()),
        "truncated image: file /BIG.BIN at sector 24 beyond end of image (23 sectors)"
    );
    assert_eq!(iso.read_file("/CONTEXT.SH", 10).unwrap(), b"hello\n");
    // Partially present: the last sector is cut in the middle.
    let cut = IsoImage::new(Cursor::new(bytes[..26 * 2048 + 100].to_vec()));
    assert!(matches!(
        cut.unwrap().read_file("/BIG.BIN", 10_000),
        Err(IsoError::Truncated(_))
    ));
    let err = IsoImage::new(Cursor::new(bytes[..20 * 2048].to_vec()))
        .err()
        .unwrap();
    assert_eq!(
        one_line(err),
        "truncated image: root directory at sector 20 beyond end of image (20 sectors)"
    );
    let err = IsoImage::new(Cursor::new(bytes[..17 * 2048 + 10].to_vec()))
        .err()
        .unwrap();
    assert!(matches!(err, IsoError::Truncated(_)), "{err}");
    let short = &bytes[..16 * 2048 + 100];
    assert!(matches!(
        IsoImage::new(Cursor::new(short)),
        Err(IsoError::NotIso9660)
    ));
    assert!(matches!(
        read_volume_id(Cursor::new(short)),
        Err(IsoError::Truncated(_))
    ));
}

#[test]
fn not_iso9660() {
    let junk: Vec<u8> = (0..40_000u32).map(|i| (i * 31 % 256) as u8).collect();
    assert!(matches!(
        IsoImage::new(Cursor::new(&junk)),
        Err(IsoError::NotIso9660)
    ));
    assert_eq!(read_volume_id(Cursor::new(&junk)).unwrap(), None);
    assert!(matches!(
        IsoImage::new(Cursor::new(b"")),
        Err(IsoError::NotIso9660)
    ));
    assert!(read_volume_id(Cursor::new(b"")).is_err());
    // A supplementary descriptor at sector 16 is not enough.
    let mut bytes = plain_image();
    bytes[16 * 2048] = 2;
    assert_eq!(read_volume_id(Cursor::new(&bytes)).unwrap(), None);
    assert_eq!(
        one_line(IsoImage::new(Cursor::new(bytes)).err().unwrap()),
        "not an ISO9660 image (no primary volume descriptor at sector 16)"
    );
    let mut bytes = plain_image();
    bytes[16 * 2048 + 128..16 * 2048 + 132].copy_from_slice(&both16(512));
    assert!(matches!(
        IsoImage::new(Cursor::new(bytes)),
        Err(IsoError::Malformed(_))
    ));
}

#[test]
fn self_referencing_directories() {
    let mut iso = Iso::new();
    let root = iso.dir(
        20,
        20,
        &[],
        &[dir(20, 2048, b"LOOP", &[]), dir(21, 2048, b"SUB", &[])],
    );
    iso.dir(
        21,
        20,
        &[],
        &[dir(21, 2048, b"SELF", &[]), dir(20, 2048, b"UP", &[])],
    );
    iso.pvd("LOOPS", 20, root);
    iso.terminator(17);
    let mut iso = IsoImage::new(Cursor::new(iso.bytes)).unwrap();
    assert_eq!(names(&iso.list("/").unwrap()), ["LOOP", "SUB"]);
    assert_eq!(names(&iso.list("/SUB").unwrap()), ["SELF", "UP"]);
    for path in ["/LOOP", "/SUB/SELF", "/SUB/UP", "/SUB/UP/SUB"] {
        let err = one_line(iso.list(path).unwrap_err());
        assert!(err.contains("loops back to an ancestor"), "{path}: {err}");
    }
    let (all, errors) = walk(&mut iso);
    assert_eq!(all.len(), 4);
    assert_eq!(errors.len(), 3);
}

#[test]
fn unsupported_layouts() {
    let mut iso = Iso::new();
    let mut interleaved = file(21, 4, b"INTER.BIN;1", &[]);
    interleaved[26] = 1;
    let mut interleaved_dir = dir(21, 2048, b"IDIR", &[]);
    interleaved_dir[26] = 1;
    let mut part = file(21, 4, b"HUGE.BIN;1", &[]);
    part[25] = FLAG_MULTI_EXTENT;
    let root = iso.dir(
        20,
        20,
        &[],
        &[
            interleaved,
            interleaved_dir,
            part.clone(),
            part,
            file(22, 2, b"HUGE.BIN;1", &[]),
        ],
    );
    iso.pvd("ODD", 20, root);
    iso.terminator(17);
    iso.put(22, 0, b"xx");
    let mut iso = IsoImage::new(Cursor::new(iso.bytes)).unwrap();
    let list = iso.list("/").unwrap();
    assert_eq!(names(&list), ["HUGE.BIN", "IDIR", "INTER.BIN"]);
    assert_eq!(list[0].size, 10);
    for path in ["/HUGE.BIN", "/INTER.BIN"] {
        assert!(
            matches!(iso.read_file(path, 100), Err(IsoError::Malformed(_))),
            "{path}"
        );
    }
    assert!(one_line(iso.list("/IDIR").unwrap_err()).contains("interleaved"));

    let mut part = file(21, 4, b"A;1", &[]);
    part[25] = FLAG_MULTI_EXTENT;
    for recs in [vec![part.clone()], vec![part, file(21, 4, b"B;1", &[])]] {
        let mut iso = Iso::new();
        let root = iso.dir(20, 20, &[], &recs);
        iso.pvd("ODD", 20, root);
        iso.terminator(17);
        let err = IsoImage::new(Cursor::new(iso.bytes))
            .unwrap()
            .list("/")
            .unwrap_err();
        assert!(one_line(err).contains("multi-extent file \"A\" has no final extent"));
    }
}

#[test]
fn bad_directory_records() {
    let mut record_too_short = file(21, 4, b"A;1", &[]);
    record_too_short[0] = 20;
    let mut ident_too_long = file(21, 4, b"A;1", &[]);
    ident_too_long[32] = 200;
    for (rec, want) in [
        (record_too_short, "bad record at byte 68"),
        (ident_too_long, "bad record at byte 68"),
        (file(21, 4, b"", &[]), "bad record at byte 68"),
        (file(21, 4, b"A/B", &[]), "invalid file name \"A/B\""),
        (file(21, 4, b";1", &[]), "invalid file name \"\""),
    ] {
        let mut iso = Iso::new();
        let root = iso.dir(20, 20, &[], &[rec]);
        iso.pvd("BAD", 20, root);
        iso.terminator(17);
        let err = IsoImage::new(Cursor::new(iso.bytes))
            .unwrap()
            .list("/")
            .unwrap_err();
        assert!(one_line(err).contains(want), "{want}");
    }
    // A record running over the end of its sector, or of the directory: 52 records of
    // 38 bytes fill the first sector up to byte 2044, the 53rd goes to the next one.
    for (count, want) in [
        (53, "crosses a sector boundary"),
        (52, "runs past the end of the directory"),
    ] {
        let mut iso = Iso::new();
        let root = iso.dir(20, 20, &[], &vec![file(21, 4, b"ABCD", &[]); count]);
        iso.pvd("BAD", 20, root);
        iso.terminator(17);
        iso.put(20, 2044, &[40]);
        let err = IsoImage::new(Cursor::new(iso.bytes))
            .unwrap()
            .list("/")
            .unwrap_err();
        assert_eq!(
            one_line(err),
            format!("malformed image: directory /: record at byte 2044 {want}")
        );
    }
}

#[test]
fn too_many_entries() {
    let mut iso = Iso::new();
    let recs = vec![file(0, 0, b"A", &[]); MAX_DIR_ENTRIES + 1];
    let root = iso.dir(20, 20, &[], &recs);
    iso.pvd("MANY", 20, root);
    iso.terminator(17);
    let err = IsoImage::new(Cursor::new(iso.bytes))
        .unwrap()
        .list("/")
        .unwrap_err();
    assert!(one_line(err).contains("more than 100000 entries"));
}

/// Random corruption and truncation must give errors, never panics or hangs.
#[test]
fn corrupted_images_do_not_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for original in [
        plain_image(),
        names::rock_ridge_image(0),
        names::rock_ridge_image(3),
    ] {
        for cut in (0..original.len()).step_by(1024) {
            if let Ok(mut iso) = IsoImage::new(Cursor::new(&original[..cut])) {
                walk(&mut iso);
            }
        }
        for _ in 0..3000 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 8 {
                // Mostly the metadata sectors (16-27).
                let at = (16 * 2048 + next() % (12 * 2048)) as usize % bytes.len();
                bytes[at] = next() as u8;
            }
            if let Ok(mut iso) = IsoImage::new(Cursor::new(bytes)) {
                let (all, _) = walk(&mut iso);
                for (path, _) in all.iter().filter(|(_, e)| !e.is_dir) {
                    let _ = iso.read_file(path, 1 << 20);
                }
            }
        }
    }
}
