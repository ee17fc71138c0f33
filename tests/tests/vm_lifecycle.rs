//! End to end with the package on a partitioned disk: a 1 GiB Debian bookworm image (MBR, ext4
//! on /dev/vda1) grown to 2 GiB before its first boot; vmctx's local stage grows partition and
//! filesystem (`GROW_ROOTFS` default) and gives each instance its own SSH host keys. Three TCG
//! boots: instance 81, a reboot of 81, instance 82 on the same disk.

use std::path::{Path, PathBuf};
use vmctx_tests::*;

fn boot(img: &Path, cdrom: &Path, log: &Path) -> (String, f64) {
    let start = std::time::Instant::now();
    let serial = boot_vm(
        &[
            "--disk",
            img.to_str().unwrap(),
            "--root-dev",
            "/dev/vda1",
            "--cdrom",
            cdrom.to_str().unwrap(),
            "--nic",
            "02:00:0a:00:03:28",
            "--append",
            "cloud-init=disabled",
            "--timeout",
            "400",
        ],
        log,
    );
    (serial, start.elapsed().as_secs_f64())
}

/// `/`'s size in bytes (df) from the report.
fn df(serial: &str) -> u64 {
    serial
        .lines()
        .find_map(|l| l.strip_prefix("=== DF "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no DF line:\n{serial}"))
}

/// The host keys' fingerprints (`SHA256:…`) from the report, sorted.
fn host_keys(serial: &str) -> Vec<String> {
    let mut fps: Vec<String> = serial_section(serial, "HOSTKEYS")
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|f| f.starts_with("SHA256:"))
        .map(str::to_string)
        .collect();
    fps.sort();
    assert_eq!(fps.len(), 3, "rsa, ecdsa, ed25519:\n{serial}");
    fps
}

fn iso(t: &Path, vmid: u32) -> PathBuf {
    let mut ctx = std::fs::read_to_string(fixture("hol02-jupyter").join("context.sh")).unwrap();
    ctx.push_str(&format!("VMID='{vmid}'\n"));
    let dir = context_dir(&ctx, &[]);
    build_iso(dir.path(), &t.join(format!("ctx-{vmid}.iso"))).unwrap()
}

#[test]
fn grown_root_and_host_keys_per_instance() {
    let Some(deb) = packaged_vm_ready(&["sfdisk"]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("disk.img");
    build_rootfs(&deb, &img, &["--partitioned"]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 30);
    // The VM's disk was made bigger than the image.
    sh(&["truncate", "-s", "2G", img.to_str().unwrap()]);
    let (iso81, iso82) = (iso(t.path(), 81), iso(t.path(), 82));

    let (serial, secs) = boot(&img, &iso81, &t.path().join("boot1.log"));
    eprintln!("boot 1 (instance 81, grow + new host keys): {secs:.1} s");
    let size = df(&serial);
    assert!(
        size > 1900 << 20 && size < 2 << 30,
        "/ is {size} bytes, not ~2 GiB:\n{serial}"
    );
    assert!(serial.contains("=== HOSTNAME hol02-jupyter"), "{serial}");
    let first = host_keys(&serial);
    // The fingerprints went to the console, in cloud-init's block.
    let begin = serial
        .find("-----BEGIN SSH HOST KEY FINGERPRINTS-----")
        .unwrap_or_else(|| panic!("no fingerprint block on the console:\n{serial}"));
    let end = serial[begin..]
        .find("-----END SSH HOST KEY FINGERPRINTS-----")
        .unwrap()
        + begin;
    for fp in &first {
        assert!(serial[begin..end].contains(fp.as_str()), "{fp}:\n{serial}");
    }
    assert!(serial.contains("=== REAPPLY   \"changed\": 0,"), "{serial}");
    if let Some(blame) = serial_section(&serial, "BLAME")
        .iter()
        .find(|l| l.contains("vmctx-local.service"))
    {
        eprintln!(
            "vmctx-local with growth and key generation (TCG): {}",
            blame.trim()
        );
    }

    // A reboot of the same instance keeps the keys and the size, and prints no new block.
    let (serial, secs) = boot(&img, &iso81, &t.path().join("boot2.log"));
    eprintln!("boot 2 (instance 81 again): {secs:.1} s");
    assert_eq!(host_keys(&serial), first, "{serial}");
    assert_eq!(df(&serial), size, "{serial}");
    assert!(
        !serial.contains("-----BEGIN SSH HOST KEY FINGERPRINTS-----"),
        "{serial}"
    );

    // The same disk as another instance: other keys.
    let (serial, secs) = boot(&img, &iso82, &t.path().join("boot3.log"));
    eprintln!("boot 3 (instance 82): {secs:.1} s");
    let second = host_keys(&serial);
    for fp in &second {
        assert!(
            !first.contains(fp),
            "{fp} shared by two instances:\n{serial}"
        );
    }
    assert!(
        serial.contains("-----BEGIN SSH HOST KEY FINGERPRINTS-----"),
        "{serial}"
    );
    assert_eq!(df(&serial), size, "{serial}");
}
