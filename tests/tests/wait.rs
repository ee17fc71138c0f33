//! `apply --wait`: the local stage waits a bounded time for the CONTEXT CD (udev can be slower
//! than the unit), and does not wait on a machine without a CD-ROM drive.

use std::time::{Duration, Instant};
use vmctx_tests::*;

fn fake_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    std::fs::create_dir_all(root.path().join("sys/class/block")).unwrap();
    root
}

#[test]
fn waits_for_the_cd_to_appear() {
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = build_iso(&fixture("hol02-jupyter"), &t.path().join("j.iso")) else {
        return;
    };
    let root = fake_root();
    let r = root.path().to_path_buf();
    // The drive is there at once; its medium shows up 1.5 s later.
    std::fs::create_dir_all(r.join("sys/class/block/sr0")).unwrap();
    let late = std::thread::spawn({
        let r = r.clone();
        move || {
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::copy(&iso, r.join("dev/.sr0")).unwrap();
            std::fs::rename(r.join("dev/.sr0"), r.join("dev/sr0")).unwrap();
        }
    });
    vmctx_bin(); // built (once) before the clock starts
    let started = Instant::now();
    let o = vmctx(&[
        "apply",
        "--stage",
        "local",
        "--dry-run",
        "--json",
        "--wait",
        "10",
        "--root",
        r.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    late.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&o)["instance_id"].as_str().unwrap().len(),
        "one-mac-".len() + 12
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn gives_up_after_the_bound() {
    let root = fake_root();
    std::fs::create_dir_all(root.path().join("sys/class/block/sr0")).unwrap();
    vmctx_bin(); // built (once) before the clock starts
    let started = Instant::now();
    let o = vmctx(&[
        "apply",
        "--stage",
        "local",
        "--wait",
        "2",
        "--root",
        root.path().to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert!(o.status.success(), "auto source, no context: nothing to do");
    assert!(
        stderr(&o).contains("no context found") && stderr(&o).contains("nothing to do"),
        "{}",
        stderr(&o)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn no_cdrom_drive_no_wait() {
    let root = fake_root();
    vmctx_bin(); // built (once) before the clock starts
    let started = Instant::now();
    let o = vmctx(&[
        "apply",
        "--stage",
        "local",
        "--wait",
        "30",
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_explicit_source_that_is_missing_fails() {
    let root = fake_root();
    let o = vmctx(&[
        "apply",
        "--source",
        "opennebula",
        "--wait",
        "1",
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
}
