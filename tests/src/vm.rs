//! qemu guests: the initramfs and packaged images, their tools, and the serial report.

use crate::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lines of one `=== NAME` section of a VM's serial log (the harness's report format).
pub fn serial_section<'a>(serial: &'a str, name: &str) -> Vec<&'a str> {
    serial
        .lines()
        .skip_while(|l| !l.starts_with(&format!("=== {name}")))
        .skip(1)
        .take_while(|l| !l.starts_with("===") && !l.starts_with("T_DONE"))
        .collect()
}

/// Whether a line of section `name` of the serial log contains `needle`.
pub fn section_has(serial: &str, name: &str, needle: &str) -> bool {
    serial_section(serial, name)
        .iter()
        .any(|l| l.contains(needle))
}

/// The `.deb` that `packaging/build` left in `target/packages`, or a skip (fail under CI).
pub fn packaged_deb() -> Option<PathBuf> {
    let dir = workspace().join("target/packages");
    let found = std::fs::read_dir(dir).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    });
    need("a .deb from packaging/build", found.is_some()).then(|| found.unwrap())
}

/// What a boot of the packaged Debian image needs (root, debootstrap, qemu, xorriso and
/// `extra` tools): the `.deb`, or a skip (fail under CI).
pub fn packaged_vm_ready(extra: &[&str]) -> Option<PathBuf> {
    let tools = need("root (debootstrap, chroot)", is_root())
        && need_tools(&script_tools("build-rootfs"))
        && need_tools(&["qemu-system-x86_64", "xorriso"])
        && need_tools(extra);
    if !tools {
        return None;
    }
    packaged_deb()
}

/// The tools a script of `vm-fixtures/` declares on its `# tools:` line (which
/// `tests/tests/ci_tools.rs` checks against `.ci/tools`).
pub fn script_tools(script: &str) -> Vec<&'static str> {
    let text = std::fs::read_to_string(workspace().join("vm-fixtures").join(script))
        .unwrap_or_else(|e| panic!("vm-fixtures/{script}: {e}"));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# tools:"))
        .unwrap_or_else(|| panic!("vm-fixtures/{script} has no `# tools:` line"));
    line.split_whitespace()
        .map(|t| &*Box::leak(t.to_string().into_boxed_str()))
        .collect()
}

/// The static release binary the packages also use (CI builds it once, before the tests).
pub fn release_bin() -> Option<PathBuf> {
    let p = workspace().join("target/x86_64-unknown-linux-gnu/release/vmctx");
    need(
        "the release binary (cargo build --release -p vmctx)",
        p.exists(),
    )
    .then_some(p)
}

fn have_vm_tools() -> bool {
    let kernel = std::fs::read_dir("/boot")
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("vmlinuz") && n.ends_with("-cloud-amd64")
            })
        })
        .unwrap_or(false);
    need_tools(&script_tools("boot"))
        && need_tools(&script_tools("build-initramfs"))
        && need("busybox-static", Path::new("/bin/busybox").exists())
        && need("the cloud kernel (linux-image-cloud-amd64)", kernel)
}

/// The busybox initramfs around the release binary (`vm-fixtures/build-initramfs`), built once
/// per test process; `None` (skipped) without the VM tools.
pub fn initramfs() -> Option<&'static Path> {
    static INITRD: std::sync::OnceLock<Option<(tempfile::TempDir, PathBuf)>> =
        std::sync::OnceLock::new();
    INITRD
        .get_or_init(|| {
            if !have_vm_tools() {
                return None;
            }
            let bin = release_bin()?;
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("initrd.cpio.gz");
            sh(&[
                workspace()
                    .join("vm-fixtures/build-initramfs")
                    .to_str()
                    .unwrap(),
                bin.to_str().unwrap(),
                out.to_str().unwrap(),
            ]);
            Some((dir, out))
        })
        .as_ref()
        .map(|(_, p)| p.as_path())
}

/// An OpenStack config drive from `dir` (holding `openstack/`) by `vm-fixtures/build-config-drive`
/// (`vfat`: a FAT image, else ISO9660); `None` (skipped) when its tools are missing outside CI.
pub fn build_config_drive(dir: &Path, out: &Path, vfat: bool) -> Option<PathBuf> {
    let tools: &[&str] = if vfat {
        &["mkfs.vfat", "mcopy"]
    } else {
        &["xorriso"]
    };
    if !need_tools(tools) {
        return None;
    }
    let mut cmd = Command::new(workspace().join("vm-fixtures/build-config-drive"));
    if vfat {
        cmd.arg("--vfat");
    }
    let o = cmd.arg(dir).arg(out).output().unwrap();
    assert!(o.status.success(), "build-config-drive: {}", stderr(&o));
    Some(out.to_path_buf())
}

/// A NoCloud seed from `dir` by `vm-fixtures/build-nocloud-seed` (`vfat`: a FAT image, else
/// ISO9660 as Proxmox writes it); `None` (skipped) when its tools are missing outside CI.
pub fn build_nocloud_seed(dir: &Path, out: &Path, vfat: bool) -> Option<PathBuf> {
    let tools: &[&str] = if vfat {
        &["mkfs.vfat", "mcopy"]
    } else {
        &["genisoimage"]
    };
    if !need_tools(tools) {
        return None;
    }
    let mut cmd = Command::new(workspace().join("vm-fixtures/build-nocloud-seed"));
    if vfat {
        cmd.arg("--vfat");
    }
    let o = cmd.arg(dir).arg(out).output().unwrap();
    assert!(o.status.success(), "build-nocloud-seed: {}", stderr(&o));
    Some(out.to_path_buf())
}

/// Runs `vm-fixtures/boot ARGS --log LOG` to its end: the serial log (CR stripped), after
/// asserting that qemu exited cleanly and the guest reached `T_DONE`.
pub fn boot_vm(args: &[&str], log: &Path) -> String {
    let o = Command::new(workspace().join("vm-fixtures/boot"))
        .args(args)
        .arg("--log")
        .arg(log)
        .output()
        .unwrap();
    let serial = std::fs::read_to_string(log)
        .unwrap_or_default()
        .replace('\r', "");
    assert!(o.status.success(), "qemu: {}\n{serial}", stderr(&o));
    assert!(
        serial.contains("T_DONE"),
        "the guest did not finish:\n{serial}"
    );
    serial
}

/// `vm-fixtures/build-rootfs DEB IMG ARGS…`: a disk of the packaged guest (the debootstrap tree
/// is cached outside the repository); fails with the builder's output.
pub fn build_rootfs(deb: &Path, img: &Path, args: &[&str]) {
    let o = Command::new(workspace().join("vm-fixtures/build-rootfs"))
        .arg(deb)
        .arg(img)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "build-rootfs: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// A fresh sparse copy in `dir` of the image `build_rootfs(deb, _, args)` makes once per test
/// process (`built` holds it).
pub fn fresh_image(
    built: &'static std::sync::OnceLock<(tempfile::TempDir, PathBuf)>,
    deb: &Path,
    args: &[&str],
    dir: &Path,
) -> PathBuf {
    let (_, base) = built.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("rootfs.img");
        build_rootfs(deb, &img, args);
        (t, img)
    });
    let img = dir.join("rootfs.img");
    sh(&[
        "cp",
        "--sparse=always",
        base.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    img
}
