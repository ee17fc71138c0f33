//! End to end with the package: a Debian bookworm guest (debootstrap, cached outside the
//! repository) with the `.deb` installed, booted under qemu with systemd. Its units must run at
//! boot in the right order and configure network, hostname, user and keys; the start script
//! runs once; a second boot of the same disk does not run it again.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use vmctx_tests::*;

/// A fresh disk for one test: a copy of the image built once per test process from the cached
/// rootfs with the package installed.
fn image(deb: &Path, dir: &Path) -> PathBuf {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    fresh_image(&BUILT, deb, &[], dir)
}

fn boot_disk(img: &Path, cdrom: &Path, nic: &str, append: &str) -> String {
    let log = img.with_extension("log");
    boot_vm(
        &[
            "--disk",
            img.to_str().unwrap(),
            "--cdrom",
            cdrom.to_str().unwrap(),
            "--nic",
            nic,
            "--append",
            append,
            "--timeout",
            "400",
        ],
        &log,
    )
}

/// `(ActiveState, Result, ExecMainStartTimestampMonotonic)` of a unit from the report.
fn unit<'a>(serial: &'a str, name: &str) -> (&'a str, &'a str, u64) {
    let line = serial_section(serial, "UNITS")
        .into_iter()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name}:\n{serial}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[1],
        f.get(2).copied().unwrap_or(""),
        f.get(3).and_then(|v| v.parse().ok()).unwrap_or(0),
    )
}

#[test]
fn packaged_units_configure_the_guest_once() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = image(&deb, t.path());
    // hol02-jupyter's context with a start script that leaves a marker in the guest.
    let mut ctx = std::fs::read_to_string(fixture("hol02-jupyter").join("context.sh")).unwrap();
    ctx.push_str("START_SCRIPT='#!/bin/sh\necho \"start script ran\" >> /var/log/vmctx-test-start.log'\nVMID='77'\n");
    let dir = context_dir(&ctx, &[]);
    let iso = build_iso(dir.path(), &t.path().join("ctx.iso")).unwrap();

    let serial = boot_disk(&img, &iso, "02:00:0a:00:03:28", "cloud-init=disabled");
    let (state, result, local_start) = unit(&serial, "vmctx-local.service");
    assert_eq!((state, result), ("active", "success"), "{serial}");
    assert_eq!(unit(&serial, "vmctx.service").0, "active", "{serial}");
    let pre: u64 = serial
        .lines()
        .find_map(|l| l.strip_prefix("network-pre.target "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        local_start > 0 && local_start < pre,
        "vmctx-local must start before network-pre.target ({local_start} vs {pre})"
    );
    assert!(
        local_start < unit(&serial, "vmctx.service").2,
        "local before final"
    );
    assert!(
        section_has(&serial, "ADDR", "inet 10.0.3.40/24"),
        "{serial}"
    );
    assert!(
        serial_section(&serial, "ROUTE")
            .iter()
            .any(|l| l.starts_with("default via 10.0.3.1")),
        "{serial}"
    );
    assert!(serial.contains("=== HOSTNAME hol02-jupyter"), "{serial}");
    assert!(
        serial_section(&serial, "USERS")
            .iter()
            .any(|l| l.starts_with("ec2-user /home/ec2-user /bin/bash")),
        "{serial}"
    );
    let keys = serial_section(&serial, "KEYS");
    assert!(
        keys.iter()
            .any(|l| l.contains("/home/ec2-user/.ssh/authorized_keys 600 ec2-user")),
        "{serial}"
    );
    assert!(
        keys.iter()
            .any(|l| l.contains("/home/ec2-user/.ssh 700 ec2-user")),
        "{serial}"
    );
    assert!(
        keys.iter().any(|l| l
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHol02ResearchTeamKeyForJupyter")),
        "{serial}"
    );
    assert_eq!(
        serial_section(&serial, "MARKERS"),
        ["start script ran"],
        "{serial}"
    );
    assert!(serial.contains("=== REAPPLY   \"changed\": 0,"), "{serial}");
    if let Some(blame) = serial_section(&serial, "BLAME")
        .iter()
        .find(|l| l.contains("vmctx-local.service"))
    {
        eprintln!("boot figure (systemd-analyze blame, TCG): {}", blame.trim());
    }

    // Second boot of the same disk: the script does not run again.
    let serial = boot_disk(&img, &iso, "02:00:0a:00:03:28", "cloud-init=disabled");
    assert_eq!(unit(&serial, "vmctx-local.service").0, "active", "{serial}");
    assert_eq!(
        serial_section(&serial, "MARKERS"),
        ["start script ran"],
        "{serial}"
    );
    assert!(
        section_has(&serial, "ADDR", "inet 10.0.3.40/24"),
        "{serial}"
    );
    assert!(serial.contains("=== REAPPLY   \"changed\": 0,"), "{serial}");
}

#[test]
fn cloud_init_reads_the_emulated_metadata() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = image(&deb, t.path());
    let iso = build_iso(&fixture("imported-ami"), &t.path().join("ami.iso")).unwrap();
    let serial = boot_disk(&img, &iso, "02:00:c0:a8:01:06", "");
    assert_eq!(unit(&serial, "vmctx-imds.service").0, "active", "{serial}");
    assert!(
        section_has(&serial, "ADDR", "inet 192.168.1.6/24"),
        "{serial}"
    );
    assert!(serial.contains("=== HOSTNAME ami-import-0"), "{serial}");
    // cloud-init found the Ec2 datasource (vmctx's emulator) and put the key in place.
    let result = serial_section(&serial, "CLOUD-INIT").join("\n");
    assert!(
        result.contains("\"datasource\": \"DataSourceEc2\""),
        "{serial}"
    );
    assert!(result.contains("\"errors\": []"), "{serial}");
    assert!(section_has(&serial, "KEYS", "gsg-keypair"), "{serial}");
}
