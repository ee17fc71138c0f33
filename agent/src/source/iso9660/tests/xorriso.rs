//! Images built by xorriso (skipped when it is not installed).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::*;
use super::{big_data, names, walk};

const CONTEXT: &[u8] = b"ETH0_IP='192.0.2.10'\nHOSTNAME='vm1'\n";
const INIT: &[u8] = b"#!/bin/sh\necho init\n";
const LONG: &str = "Init-Script.With.Long_Name.sh";

/// Builds an image of a fresh tree with `xorriso -as mkisofs -V CONTEXT <flags>`.
/// (xorriso writes Rock Ridge unless told `--norock`, unlike genisoimage without `-R`.)
fn build(flags: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("subdir")).unwrap();
    fs::write(tree.join("context.sh"), CONTEXT).unwrap();
    fs::write(tree.join(LONG), INIT).unwrap();
    fs::set_permissions(tree.join(LONG), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(tree.join("subdir/nested.txt"), b"nested\n").unwrap();
    fs::write(tree.join("big.bin"), big_data()).unwrap();
    let iso = tmp.path().join("x.iso");
    let status = Command::new("xorriso")
        .args(["-as", "mkisofs", "-V", "CONTEXT"])
        .args(flags)
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Some((tmp, iso)),
        Ok(s) => panic!("xorriso {flags:?} failed: {s}"),
        Err(e) => {
            eprintln!("skipping: xorriso not runnable ({e})");
            None
        }
    }
}

fn common_checks(path: &Path, iso: &mut IsoImage<fs::File>) {
    assert_eq!(iso.volume_id(), "CONTEXT");
    assert_eq!(
        read_volume_id(fs::File::open(path).unwrap())
            .unwrap()
            .as_deref(),
        Some("CONTEXT")
    );
    assert_eq!(iso.read_file("/big.bin", 1 << 20).unwrap(), big_data());
    assert!(matches!(
        iso.read_file("/big.bin", 4999),
        Err(IsoError::TooLarge { size: 5000, .. })
    ));
    let (all, errors) = walk(iso);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(all.len(), 5, "{all:?}");
}

#[test]
fn xorriso_rock_ridge_and_joliet() {
    let Some((_tmp, path)) = build(&["-J", "-R"]) else {
        return;
    };
    let mut iso = IsoImage::open(&path).unwrap();
    assert_eq!(iso.name_source(), NameSource::RockRidge);
    let root = iso.list("/").unwrap();
    assert_eq!(names(&root), [LONG, "big.bin", "context.sh", "subdir"]);
    assert_eq!(root[0].mode.map(|m| m & 0o170777), Some(0o100755));
    assert_eq!(root[3].mode.map(|m| m & 0o170000), Some(0o040000));
    assert_eq!(iso.read_file("/context.sh", 100).unwrap(), CONTEXT);
    assert_eq!(iso.read_file(&format!("/{LONG}"), 100).unwrap(), INIT);
    assert_eq!(
        iso.read_file("/subdir/nested.txt", 100).unwrap(),
        b"nested\n"
    );
    assert!(matches!(
        iso.read_file("/CONTEXT.SH", 100),
        Err(IsoError::NotFound(_))
    ));
    common_checks(&path, &mut iso);
}

#[test]
fn xorriso_joliet_only() {
    let Some((_tmp, path)) = build(&["--norock", "-J"]) else {
        return;
    };
    let mut iso = IsoImage::open(&path).unwrap();
    assert_eq!(iso.name_source(), NameSource::Joliet);
    let root = iso.list("/").unwrap();
    assert_eq!(names(&root), [LONG, "big.bin", "context.sh", "subdir"]);
    assert_eq!(root[0].mode, None);
    assert_eq!(iso.read_file("/context.sh", 100).unwrap(), CONTEXT);
    assert_eq!(iso.read_file(&format!("/{LONG}"), 100).unwrap(), INIT);
    assert_eq!(
        iso.read_file("/subdir/nested.txt", 100).unwrap(),
        b"nested\n"
    );
    common_checks(&path, &mut iso);
}

#[test]
fn xorriso_plain_iso9660() {
    let Some((_tmp, path)) = build(&["--norock"]) else {
        return;
    };
    let mut iso = IsoImage::open(&path).unwrap();
    assert_eq!(iso.name_source(), NameSource::Iso9660);
    let root = iso.list("/").unwrap();
    let root_names = names(&root);
    for name in ["BIG.BIN", "CONTEXT.SH", "SUBDIR"] {
        assert!(root_names.contains(&name), "{root_names:?}");
    }
    assert_eq!(root.len(), 4);
    // Case-insensitive fallback for plain ISO names.
    assert_eq!(iso.read_file("/context.sh", 100).unwrap(), CONTEXT);
    assert_eq!(
        iso.read_file("/subdir/nested.txt", 100).unwrap(),
        b"nested\n"
    );
    common_checks(&path, &mut iso);
}
