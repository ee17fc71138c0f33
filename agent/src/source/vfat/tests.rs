//! Unit tests: directory entries and boot sectors built byte by byte, plus images built
//! by mkfs.vfat and mtools (in `tools`).

mod tools;

use std::io::Cursor;

use super::dir::{checksum, Parser, ENTRY};
use super::*;

type Raw = [u8; ENTRY];

fn short(name: &[u8; 11], attr: u8, nt: u8, cluster: u32, size: u32) -> Raw {
    let mut e = [0u8; ENTRY];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    e[12] = nt;
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// The long-name entries for `name`, in on-disk order (last part first).
fn long(name: &str, short_name: &[u8; 11]) -> Vec<Raw> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if units.len() % 13 != 0 {
        units.push(0);
    }
    while units.len() % 13 != 0 {
        units.push(0xFFFF);
    }
    let parts = units.len() / 13;
    let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
    (1..=parts)
        .rev()
        .map(|seq| {
            let mut e = [0u8; ENTRY];
            e[0] = seq as u8 | if seq == parts { 0x40 } else { 0 };
            e[11] = 0x0F;
            e[13] = checksum(short_name);
            for (i, off) in offsets.iter().enumerate() {
                let u = units[(seq - 1) * 13 + i];
                e[*off..*off + 2].copy_from_slice(&u.to_le_bytes());
            }
            e
        })
        .collect()
}

fn parse(fat32: bool, entries: &[Raw]) -> Parser {
    let mut p = Parser::new(fat32);
    p.feed_all(&entries.concat());
    p
}

fn names(p: &Parser) -> Vec<&str> {
    p.nodes.iter().map(|n| n.entry.name.as_str()).collect()
}

#[test]
fn checksum_matches_mkfs() {
    // Byte 13 of the long entry mtools wrote in front of OPENST~1.
    assert_eq!(checksum(b"OPENST~1   "), 0x02);
}

#[test]
fn long_names_and_fallbacks() {
    let sn = *b"NETWOR~1JSO";
    let mut all = Vec::new();
    all.push(short(b"CONFIG-2   ", 0x08, 0, 0, 0));
    all.push(short(b".          ", 0x10, 0, 5, 0));
    all.push(short(b"..         ", 0x10, 0, 0, 0));
    // Good: two parts.
    all.extend(long("network_data.json", &sn));
    all.push(short(&sn, 0x20, 0, 7, 1234));
    // Bad checksum: the short name is used.
    let mut bad = long("vendor_data2.json", b"XXXXXX~1JSO");
    all.append(&mut bad);
    all.push(short(b"VENDOR~1JSO", 0x20, 0, 8, 1));
    // A missing middle part (orphan): short name.
    let mut parts = long("a_rather_long_name_with_three_parts.txt", b"ARATHE~1TXT");
    parts.remove(1);
    all.append(&mut parts);
    all.push(short(b"ARATHE~1TXT", 0x20, 0, 9, 1));
    // A deleted entry between the long name and its short entry: short name.
    all.extend(long("user_data", b"USER_D~1   "));
    all.push(short(b"\xE5OLD    TXT", 0x20, 0, 10, 1));
    all.push(short(b"USER_D~1   ", 0x20, 0, 11, 1));
    // A long name with '/' is not usable: short name.
    all.extend(long("a/b", b"AB         "));
    all.push(short(b"AB         ", 0x20, 0, 12, 1));
    // 0x05 stands for a leading 0xE5; NT lower-case flags.
    all.push(short(b"\x05BC     TXT", 0x20, 0, 13, 1));
    all.push(short(b"LOWER   TXT", 0x20, 0x18, 14, 1));
    all.push(short(b"HALF    TXT", 0x20, 0x08, 15, 1));
    all.push(short(b"SUBDIR     ", 0x10, 0, 16, 99));
    // The end marker: nothing after it is read.
    all.push([0; ENTRY]);
    all.push(short(b"HIDDEN  TXT", 0x20, 0, 17, 1));
    let p = parse(false, &all);
    assert_eq!(p.label.as_deref(), Some("CONFIG-2"));
    assert!(p.done);
    assert_eq!(
        names(&p),
        [
            "network_data.json",
            "VENDOR~1.JSO",
            "ARATHE~1.TXT",
            "USER_D~1",
            "AB",
            "\u{e5}BC.TXT",
            "lower.txt",
            "half.TXT",
            "SUBDIR",
        ]
    );
    let net = &p.nodes[0];
    assert_eq!((net.short.as_str(), net.cluster), ("NETWOR~1.JSO", 7));
    assert_eq!(net.entry.size, 1234);
    let sub = &p.nodes[8];
    assert!(sub.entry.is_dir);
    assert_eq!(sub.entry.size, 0);
}

#[test]
fn long_name_of_exactly_13_chars_and_max_parts() {
    let sn = *b"THIRTE~1   ";
    let mut all = long("thirteen_char", &sn);
    assert_eq!(all.len(), 1);
    all.push(short(&sn, 0x20, 0, 3, 1));
    let name255 = "n".repeat(255);
    all.extend(long(&name255, b"NNNNNN~1   "));
    all.push(short(b"NNNNNN~1   ", 0x20, 0, 4, 1));
    let p = parse(false, &all);
    assert_eq!(names(&p), ["thirteen_char", name255.as_str()]);
}

#[test]
fn high_cluster_word_only_on_fat32() {
    let e = [short(b"FILE    BIN", 0x20, 0, 0x0003_0004, 1)];
    assert_eq!(parse(true, &e).nodes[0].cluster, 0x0003_0004);
    assert_eq!(parse(false, &e).nodes[0].cluster, 4);
}

#[test]
fn hostile_long_entries_do_not_panic() {
    let mut all = Vec::new();
    for ord in [0x80u8, 0x40, 0x55, 0x7F, 0xFF, 0x41, 0x01, 0x02] {
        let mut e = [0xFFu8; ENTRY];
        e[0] = ord;
        e[11] = 0x0F;
        e[12] = 0;
        all.push(e);
    }
    all.push(short(b"PLAIN      ", 0x20, 0, 2, 1));
    // A short entry with an all-space name is skipped.
    all.push(short(b"           ", 0x20, 0, 2, 1));
    let p = parse(false, &all);
    assert_eq!(names(&p), ["PLAIN"]);
}

/// A FAT16 boot sector like mkfs.vfat's for 64 MiB (4 sectors per cluster, 2 FATs of 128).
fn boot16() -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = 4;
    b[14..16].copy_from_slice(&4u16.to_le_bytes());
    b[16] = 2;
    b[17..19].copy_from_slice(&512u16.to_le_bytes());
    b[21] = 0xF8;
    b[22..24].copy_from_slice(&128u16.to_le_bytes());
    b[32..36].copy_from_slice(&131072u32.to_le_bytes());
    b[38] = 0x29;
    b[43..54].copy_from_slice(b"CONFIG-2   ");
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

fn parse_boot(b: &[u8]) -> Result<Option<Geometry>, FatError> {
    Geometry::parse(b)
}

#[test]
fn boot_sector_geometry() {
    let g = parse_boot(&boot16()).unwrap().unwrap();
    assert_eq!(g.fat_type, FatType::Fat16);
    assert_eq!(g.cluster_size, 2048);
    assert_eq!(g.fat_offset, 4 * 512);
    assert_eq!(
        g.root,
        Dir::Fixed {
            offset: 260 * 512,
            bytes: 512 * 32
        }
    );
    assert_eq!(g.data_offset, 292 * 512);
    assert_eq!(g.clusters, (131072 - 292) / 4);
    assert_eq!(g.boot_label.as_deref(), Some("CONFIG-2"));
    // No extended boot signature: no boot-sector label.
    let mut b = boot16();
    b[38] = 0;
    assert_eq!(parse_boot(&b).unwrap().unwrap().boot_label, None);
}

#[test]
fn not_fat_boot_sectors() {
    let patches: &[(usize, &[u8])] = &[
        (510, &[0, 0]),               // no signature
        (0, &[0x00]),                 // no jump
        (11, &1000u16.to_le_bytes()), // bytes per sector
        (11, &256u16.to_le_bytes()),
        (11, &8192u16.to_le_bytes()),
        (13, &[3]), // sectors per cluster
        (13, &[0]),
        (14, &[0, 0]),       // no reserved sector
        (16, &[0]),          // no FAT
        (21, &[0x12]),       // media
        (32, &[0, 0, 0, 0]), // no sectors
    ];
    for (at, bytes) in patches {
        let mut b = boot16();
        b[*at..*at + bytes.len()].copy_from_slice(bytes);
        assert!(matches!(parse_boot(&b), Ok(None)), "patch at {at}");
    }
    assert!(matches!(parse_boot(&[0; 512]), Ok(None)));
    // No FAT size at all (neither 16- nor 32-bit).
    let mut b = boot16();
    b[22..24].fill(0);
    b[36..40].fill(0);
    assert!(matches!(parse_boot(&b), Ok(None)));
    for data in [Vec::new(), vec![0xEB; 100], vec![0; 4096]] {
        assert_eq!(read_label(Cursor::new(&data)).unwrap(), None);
        assert!(matches!(
            FatImage::new(Cursor::new(data)),
            Err(FatError::NotFat)
        ));
    }
}

#[test]
fn malformed_boot_sectors() {
    type Patches<'a> = &'a [(usize, &'a [u8])];
    let cases: &[(Patches, &str)] = &[
        (&[(32, &100u32.to_le_bytes())], "fewer than the 292"),
        (&[(22, &[0, 0]), (36, &[128, 0, 0, 0])], "FAT32 layout"),
        (&[(17, &[0, 0])], "without root directory entries"),
        (&[(32, &100_000_000u32.to_le_bytes())], "FAT12/16 layout"),
    ];
    for (patches, want) in cases {
        let mut b = boot16();
        for (at, bytes) in *patches {
            b[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        match parse_boot(&b) {
            Err(FatError::Malformed(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{want}: {:?}", other.map(|g| g.map(|g| g.fat_type))),
        }
    }
}

#[test]
fn fat32_boot_sector_checks() {
    // A FAT32 layout: 200000 one-sector clusters, root at cluster 2.
    let mut b = boot16();
    b[13] = 1;
    b[14..16].copy_from_slice(&32u16.to_le_bytes());
    b[17..19].copy_from_slice(&0u16.to_le_bytes());
    b[22..24].copy_from_slice(&0u16.to_le_bytes());
    b[32..36].copy_from_slice(&204_800u32.to_le_bytes());
    b[36..40].copy_from_slice(&1600u32.to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes());
    b[38] = 0;
    b[66] = 0x29;
    b[71..82].copy_from_slice(b"CONFIG-2   ");
    let g = parse_boot(&b).unwrap().unwrap();
    assert_eq!(g.fat_type, FatType::Fat32);
    assert_eq!(g.root, Dir::Chain(2));
    assert_eq!(g.boot_label.as_deref(), Some("CONFIG-2"));
    // Mirroring off: the active FAT is used, and must exist.
    b[40] = 0x81;
    let g = parse_boot(&b).unwrap().unwrap();
    assert_eq!(g.fat_offset, (32 + 1600) * 512);
    b[40] = 0x85;
    assert!(matches!(parse_boot(&b), Err(FatError::Malformed(_))));
    b[40] = 0;
    for root in [0u32, 1, 0x0FFF_FFFF] {
        b[44..48].copy_from_slice(&root.to_le_bytes());
        assert!(
            matches!(parse_boot(&b), Err(FatError::Malformed(m)) if m.contains("root directory")),
            "{root}"
        );
    }
}

#[test]
fn error_messages() {
    assert_eq!(
        FatError::NotFat.to_string(),
        "not a FAT file system (no valid FAT boot sector)"
    );
    let e = FatError::TooLarge {
        path: "/a".into(),
        size: 10,
        limit: 5,
    };
    assert_eq!(e.to_string(), "/a is 10 bytes, over the 5-byte limit");
}
