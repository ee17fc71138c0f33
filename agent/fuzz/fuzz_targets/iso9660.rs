//! Any byte string as an ISO9660 image: parse, list everything, read every file.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use vmctx::source::iso9660::{read_volume_id, IsoImage};

/// Bounds the walk: a directory tree with shared subdirectories can be exponential.
const MAX_LISTS: usize = 256;
const MAX_DEPTH: usize = 40;
const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let volume_id = read_volume_id(Cursor::new(data));
    let Ok(mut iso) = IsoImage::new(Cursor::new(data)) else {
        return;
    };
    // Both read the same primary volume descriptor.
    assert_eq!(volume_id.ok().flatten().as_deref(), Some(iso.volume_id()));
    let _ = iso.name_source();
    let _ = iso.stat("/");
    let mut todo = vec![(String::new(), 0)];
    let mut lists = 0;
    while let Some((dir, depth)) = todo.pop() {
        lists += 1;
        if lists > MAX_LISTS {
            break;
        }
        let Ok(entries) = iso.list(&dir) else {
            continue;
        };
        for entry in entries {
            let path = format!("{dir}/{}", entry.name);
            if entry.is_dir {
                if depth < MAX_DEPTH {
                    todo.push((path, depth + 1));
                }
            } else if let Ok(content) = iso.read_file(&path, LIMIT) {
                assert_eq!(content.len() as u64, entry.size);
            }
        }
    }
});
