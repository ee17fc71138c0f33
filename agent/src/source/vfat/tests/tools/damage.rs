//! Built images, then damaged: cluster chains, directories, sizes, truncation, random bytes.

use std::io::Cursor;

use super::*;

/// The FAT16 config drive and its bytes.
fn fat16() -> Option<(Built, Vec<u8>)> {
    let b = build(65536, &["-n", "CONFIG-2"], false)?;
    let bytes = b.bytes();
    Some((b, bytes))
}

fn first_cluster(bytes: &[u8], path: &str) -> (u32, u64) {
    let mut img = FatImage::new(Cursor::new(bytes)).unwrap();
    let (node, _) = img.resolve(path).unwrap();
    (node.cluster, img.geo.fat_offset)
}

fn set_fat16(bytes: &mut [u8], fat: u64, cluster: u32, value: u16) {
    let at = (fat + u64::from(cluster) * 2) as usize;
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn read_err(bytes: &[u8], path: &str) -> FatError {
    let mut img = FatImage::new(Cursor::new(bytes)).unwrap();
    match img.read_file(path, 1 << 20) {
        Err(e) => e,
        Ok(v) => panic!("{path}: read {} bytes", v.len()),
    }
}

#[test]
fn broken_file_chains() {
    let Some((_b, orig)) = fat16() else {
        return;
    };
    let big = "/openstack/latest/big.bin";
    let (first, fat) = first_cluster(&orig, big);
    let cases: [(u16, &str); 5] = [
        (first as u16, "its cluster chain loops"),
        (0xFFFF, "its cluster chain ends after 2 clusters"),
        (0, "followed by a free cluster"),
        (0xFFF7, "marked bad"),
        (0xFFF0, "beyond the last one"),
    ];
    for (value, want) in cases {
        let mut bytes = orig.clone();
        set_fat16(&mut bytes, fat, first + 1, value);
        let err = read_err(&bytes, big);
        assert!(err.to_string().contains(want), "{value:#x}: {err}");
        assert!(
            matches!(err, FatError::Malformed(_) | FatError::Truncated(_)),
            "{err:?}"
        );
        if value == 0xFFFF {
            assert!(matches!(err, FatError::Truncated(_)), "{err:?}");
        }
        // The rest is still readable.
        let mut img = FatImage::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(
            img.read_file("/openstack/latest/user_data", 100).unwrap(),
            USER
        );
    }
}

#[test]
fn directory_loops() {
    let Some((_b, orig)) = fat16() else {
        return;
    };
    // A directory whose chain points back to itself.
    let (latest, fat) = first_cluster(&orig, "/openstack/latest");
    let mut bytes = orig.clone();
    set_fat16(&mut bytes, fat, latest, latest as u16);
    let mut img = FatImage::new(Cursor::new(&bytes)).unwrap();
    let err = img.list("/openstack/latest").unwrap_err();
    assert!(
        matches!(&err, FatError::Malformed(m) if m.contains("loops")),
        "{err}"
    );
    // A subdirectory entry pointing at its parent.
    let (parent, _) = first_cluster(&orig, "/openstack");
    let mut bytes = orig.clone();
    let at = find_entries(&bytes, b"LATEST     ");
    assert_eq!(at.len(), 1);
    bytes[at[0] + 26..at[0] + 28].copy_from_slice(&(parent as u16).to_le_bytes());
    let mut img = FatImage::new(Cursor::new(&bytes)).unwrap();
    let err = img
        .read_file("/openstack/latest/latest/x", 100)
        .unwrap_err();
    assert!(
        matches!(&err, FatError::Malformed(m) if m.contains("loops back")),
        "{err}"
    );
    // And one pointing at the (fixed) root via cluster 0.
    bytes[at[0] + 26..at[0] + 28].copy_from_slice(&[0, 0]);
    let mut img = FatImage::new(Cursor::new(&bytes)).unwrap();
    assert!(matches!(
        img.list("/openstack/latest"),
        Err(FatError::Malformed(_))
    ));
}

#[test]
fn file_size_over_its_chain() {
    let Some((_b, mut bytes)) = fat16() else {
        return;
    };
    let at = find_entries(&bytes, b"USER_D~1   ");
    assert_eq!(at.len(), 1);
    bytes[at[0] + 28..at[0] + 32].copy_from_slice(&100_000u32.to_le_bytes());
    let err = read_err(&bytes, "/openstack/latest/user_data");
    assert!(matches!(err, FatError::Truncated(_)), "{err:?}");
    // Bigger than the whole data area: refused before following anything.
    bytes[at[0] + 28..at[0] + 32].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut img = FatImage::new(Cursor::new(&bytes)).unwrap();
    let err = img
        .read_file("/openstack/latest/user_data", u64::MAX)
        .unwrap_err();
    assert!(
        err.to_string().contains("more than the whole data area"),
        "{err}"
    );
}

#[test]
fn truncated_images() {
    let Some((_b, orig)) = fat16() else {
        return;
    };
    let (big, _) = first_cluster(&orig, "/openstack/latest/big.bin");
    let img = FatImage::new(Cursor::new(&orig)).unwrap();
    let big_at = img.geo.cluster_offset(big) as usize;
    let root_end = img.geo.data_offset as usize;
    for len in [
        0,
        511,
        512,
        1024,
        4096,
        100_000,
        root_end - 1,
        root_end,
        big_at + 5000,
    ] {
        let bytes = &orig[..len];
        match FatImage::new(Cursor::new(bytes)) {
            Err(FatError::NotFat) => assert!(len < 512, "{len}"),
            Err(FatError::Truncated(m)) => assert!(len < root_end, "{len}: {m}"),
            Err(e) => panic!("{len}: {e:?}"),
            Ok(mut img) => {
                let (_, errors) = walk(&mut img);
                assert!(!errors.is_empty(), "{len}");
                for e in errors {
                    assert!(matches!(e, FatError::Truncated(_)), "{len}: {e:?}");
                }
            }
        }
        let opened = FatImage::new(Cursor::new(bytes)).map(|_| ());
        let label = read_label(Cursor::new(bytes));
        assert_eq!(
            label.is_ok(),
            !matches!(opened, Err(FatError::Truncated(_))),
            "{len}"
        );
    }
}

/// Random damage (a fixed xorshift sequence) must never panic.
#[test]
fn random_damage_does_not_panic() {
    let Some(b) = build(1440, &["-F", "12", "-n", "config-2"], false) else {
        return;
    };
    let mut bytes = b.bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Metadata (boot sector, FATs, root) is in the first 32 KiB; directories follow.
    for round in 0..400 {
        let saved = bytes.clone();
        for _ in 0..1 + rand() % 8 {
            let span = if round % 2 == 0 { 32 * 1024 } else { 64 * 1024 };
            let at = (rand() % span) as usize;
            bytes[at] = rand() as u8;
        }
        if let Ok(mut img) = FatImage::new(Cursor::new(&bytes)) {
            let _ = walk(&mut img);
        }
        let _ = read_label(Cursor::new(&bytes));
        bytes = saved;
    }
}
