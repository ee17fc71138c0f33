//! End to end on OpenStack: the release binary in the busybox initramfs (as in `vm_boot.rs`),
//! booted under qemu (TCG) with the GPU notebook's config drive attached the two ways Nova
//! attaches one — an ISO9660 `config-2` CD-ROM, or a FAT `CONFIG-2` disk — and a NIC with the
//! drive's MAC. vmctx runs with `--source auto` as on the OpenNebula boots (the local stage),
//! then the final stage (`vmctx.final`) for the user_data. The serial log is the oracle.

use vmctx_tests::*;

const MAC: &str = "fa:16:3e:5a:0b:14";
const INSTANCE: &str = "7d3c2a1b-5e4f-4a6b-9c8d-0e1f2a3b4c5d";
const KEY_ENDS: [&str; 2] = [
    "ForTheLabOnlyAAAAA researcher@lab",
    "ForTheGpuClusterOnlyAAAAA admins@lab",
];

/// Boots with the drive as `--cdrom` or `--drive` (a virtio disk) and one NIC; the serial log.
fn boot(media: &[&str]) -> String {
    let initrd = initramfs().expect("checked by the caller");
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("serial.log");
    let mut args = vec!["--initrd", initrd.to_str().unwrap()];
    args.extend(["--append", "vmctx.final", "--timeout", "240", "--nic", MAC]);
    args.extend(media);
    boot_vm(&args, &log)
}

fn marker_field(serial: &str, marker: &str, field: &str) -> String {
    let line = serial
        .lines()
        .find(|l| l.starts_with(marker))
        .unwrap_or_else(|| panic!("no {marker}:\n{serial}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{field}=")))
        .unwrap()
        .to_string()
}

fn uptime(serial: &str, marker: &str) -> f64 {
    marker_field(serial, marker, "uptime").parse().unwrap()
}

/// What both boots must show: detection picked `device`, the network, hostname and keys of the
/// local stage, and the user_data run by the final stage.
fn assert_configured(serial: &str, device: &str) {
    assert_eq!(marker_field(serial, "VMCTX_END", "rc"), "0", "{serial}");
    assert_eq!(marker_field(serial, "VMCTX_FINAL", "rc"), "0", "{serial}");
    assert!(
        serial
            .lines()
            .any(|l| l == format!("=== SOURCE configdrive:{device}")),
        "detection did not pick {device}:\n{serial}"
    );
    // `vmctx detect` on the booted guest: the same decision, and its evidence.
    let detect = serial_section(serial, "DETECT");
    assert_eq!(
        detect.first().copied(),
        Some(format!("configdrive:{device}").as_str()),
        "{serial}"
    );
    assert!(
        detect
            .iter()
            .any(|l| l.starts_with(&format!("  {device}: "))
                && l.to_ascii_lowercase().ends_with("\"config-2\"")),
        "{serial}"
    );
    assert!(
        serial
            .lines()
            .any(|l| l.starts_with("APPLY instance ") && l.contains(INSTANCE)),
        "{serial}"
    );
    // Nothing failed (growing the initramfs' rootfs is skipped, not failed).
    let failed: Vec<&str> = serial
        .lines()
        .filter(|l| l.starts_with("APPLY FAILED") || l.starts_with("FINAL FAILED"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}\n{serial}");

    assert!(
        section_has(serial, "ADDR", "eth0    inet 10.0.5.20/24 "),
        "{serial}"
    );
    assert!(
        serial_section(serial, "MTU")
            .iter()
            .any(|l| *l == format!("eth0 {MAC} 1450")),
        "{serial}"
    );
    let routes = serial_section(serial, "ROUTE");
    for want in [
        "default via 10.0.5.1 dev eth0",
        "10.10.0.0/16 via 10.0.5.254 dev eth0",
    ] {
        assert!(
            routes.iter().any(|l| l.starts_with(want)),
            "{want}:\n{serial}"
        );
    }
    assert!(
        serial.lines().any(|l| l == "=== HOSTNAME gpu-notebook-01"),
        "{serial}"
    );
    let keys = serial_section(serial, "KEYS");
    for k in KEY_ENDS {
        assert_eq!(
            keys.iter().filter(|l| l.ends_with(k)).count(),
            1,
            "{k}:\n{serial}"
        );
    }
    assert!(
        serial
            .lines()
            .any(|l| l.starts_with("FINAL changed")
                && l.contains("user-data-1-user-data: ran: exit 0")),
        "{serial}"
    );
    assert_eq!(
        serial_section(serial, "FIXTURE RUN"),
        [format!(
            "/run/vmctx-fixture/user_data.log:gpu-notebook user_data ran as root for {INSTANCE}"
        )],
        "{serial}"
    );
    eprintln!(
        "boot figure ({device}): vmctx apply --stage local took {:.2} s, --stage final {:.2} s \
         of guest uptime (TCG)",
        uptime(serial, "VMCTX_END") - uptime(serial, "VMCTX_START"),
        uptime(serial, "VMCTX_FINAL") - uptime(serial, "VMCTX_END"),
    );
}

#[test]
fn iso_config_drive_on_the_cdrom() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = build_config_drive(
        &workspace().join("vm-fixtures/configdrive/gpu-notebook"),
        &t.path().join("config-2.iso"),
        false,
    ) else {
        return;
    };
    let serial = boot(&["--cdrom", iso.to_str().unwrap()]);
    assert_configured(&serial, "/dev/sr0");
}

#[test]
fn vfat_config_drive_on_a_virtio_disk() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(img) = build_config_drive(
        &workspace().join("vm-fixtures/configdrive/gpu-notebook"),
        &t.path().join("config-2.img"),
        true,
    ) else {
        return;
    };
    let serial = boot(&["--drive", img.to_str().unwrap()]);
    assert_configured(&serial, "/dev/vda");
    // The CD-ROM drive (empty) is looked at first, then the disk.
    assert!(
        section_has(&serial, "DETECT", "  /dev/sr0: no medium"),
        "{serial}"
    );
}
