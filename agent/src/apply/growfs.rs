//! `GROW_ROOTFS` / `GROW_FS`: grow a mounted filesystem's partition, then the filesystem, to
//! the size of its disk, with the distribution's tools (`growpart`, `resize2fs`, `xfs_growfs`,
//! `btrfs filesystem resize max`; LVM: `growpart` on the PV's partition, `pvresize`, `lvextend
//! -r -l +100%FREE`).
//!
//! The device behind a mount point comes from `/proc/self/mountinfo`, its partition number and
//! disk from `/sys/class/block/<dev>/partition` and the parent folder (all under `--root`). Once
//! per instance and disk size: a marker records the disk sizes it grew to, so a later boot does
//! nothing until the disk is resized. A missing tool is reported (`skipped`), never fatal.

use super::Apply;
use crate::context::System;
use crate::state::State;
use std::path::Path;
use std::process::Command;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo (proc(5)): `id parent maj:min root mount-point options [optional…] - fstype
/// source super-options`; octal escapes (`\040`) in paths undone. Bad lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            let sep = f.iter().skip(6).position(|x| *x == "-")? + 6;
            Some(Mount {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: unescape(f.get(4)?),
                fstype: f.get(sep + 1)?.to_string(),
                source: unescape(f.get(sep + 2)?),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) if b[i] == b'\\' => {
                let v = o.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a block device is, as far as growing it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Partition `number` of `disk` (e.g. `vda1`: `vda`, 1).
    Partition {
        dev: String,
        disk: String,
        number: u32,
    },
    /// A disk (or loop device) without a partition table under the filesystem.
    Disk { dev: String },
    /// An LVM logical volume (`dm-N`, `/dev/mapper/<name>`) on these physical volumes.
    Lvm {
        dev: String,
        name: String,
        pvs: Vec<Layout>,
    },
    /// Anything else (dm-crypt, md, …): only the filesystem is grown.
    Other { dev: String },
}

impl Layout {
    pub fn dev(&self) -> &str {
        match self {
            Layout::Partition { dev, .. }
            | Layout::Disk { dev }
            | Layout::Lvm { dev, .. }
            | Layout::Other { dev } => dev,
        }
    }

    /// The whole disks whose size decides how far this device can grow.
    fn disks(&self) -> Vec<String> {
        match self {
            Layout::Partition { disk, .. } => vec![disk.clone()],
            Layout::Disk { dev } | Layout::Other { dev } => vec![dev.clone()],
            Layout::Lvm { pvs, .. } => pvs.iter().flat_map(Layout::disks).collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Layout::Partition { disk, number, .. } => format!("partition {number} of /dev/{disk}"),
            Layout::Disk { dev } => format!("/dev/{dev} (no partition table)"),
            Layout::Lvm { name, pvs, .. } => {
                let pvs: Vec<String> = pvs.iter().map(|p| format!("/dev/{}", p.dev())).collect();
                format!("LVM volume {name} on {}", pvs.join(" "))
            }
            Layout::Other { dev } => format!("/dev/{dev}"),
        }
    }
}

/// The layout of block device `dev` from a sysfs `class/block` folder.
pub fn layout(class_block: &Path, dev: &str) -> Layout {
    let real = std::fs::canonicalize(class_block.join(dev)).unwrap_or(class_block.join(dev));
    if let Ok(n) = std::fs::read_to_string(real.join("partition")) {
        let disk = real
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned());
        if let (Ok(number), Some(disk)) = (n.trim().parse(), disk) {
            return Layout::Partition {
                dev: dev.to_string(),
                disk,
                number,
            };
        }
    }
    let uuid = std::fs::read_to_string(real.join("dm/uuid")).unwrap_or_default();
    if uuid.starts_with("LVM-") {
        let name = std::fs::read_to_string(real.join("dm/name"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut slaves: Vec<String> = std::fs::read_dir(real.join("slaves"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        slaves.sort();
        let pvs = slaves.iter().map(|s| layout(class_block, s)).collect();
        return Layout::Lvm {
            dev: dev.to_string(),
            name,
            pvs,
        };
    }
    if real.join("dm").exists()
        || real.join("md").exists()
        || real
            .join("slaves")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    {
        return Layout::Other {
            dev: dev.to_string(),
        };
    }
    Layout::Disk {
        dev: dev.to_string(),
    }
}

/// The block device (its name in `/sys/class/block`) a mount lives on: by its device number,
/// or (btrfs shows an anonymous one) by the mount's source device.
pub fn device_of(sys: &Path, dev: &Path, m: &Mount) -> Option<String> {
    let by_number = sys.join(format!("dev/block/{}:{}", m.major, m.minor));
    if let Ok(real) = std::fs::canonicalize(by_number) {
        return real.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    let rel = m.source.strip_prefix("/dev/")?;
    let real = std::fs::canonicalize(dev.join(rel)).ok()?;
    let name = real.file_name()?.to_string_lossy().into_owned();
    sys.join("class/block").join(&name).exists().then_some(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fs {
    Ext,
    Xfs,
    Btrfs,
}

impl Fs {
    fn of(fstype: &str) -> Option<Fs> {
        match fstype {
            "ext2" | "ext3" | "ext4" => Some(Fs::Ext),
            "xfs" => Some(Fs::Xfs),
            "btrfs" => Some(Fs::Btrfs),
            _ => None,
        }
    }
    fn tool(self) -> (&'static str, &'static str) {
        match self {
            Fs::Ext => ("resize2fs", "e2fsprogs"),
            Fs::Xfs => ("xfs_growfs", "xfsprogs"),
            Fs::Btrfs => ("btrfs", "btrfs-progs"),
        }
    }
}

/// Grows `/` (unless `GROW_ROOTFS=NO`) and every `GROW_FS` mount point.
pub fn apply(ap: &mut Apply, sys: &System, state: &State, id: &str) {
    let mut points: Vec<&str> = Vec::new();
    if sys.grow_rootfs {
        points.push("/");
    }
    for m in &sys.grow_fs {
        if !points.contains(&m.as_str()) {
            points.push(m);
        }
    }
    if points.is_empty() {
        return;
    }
    let info = ap.root.path("/proc/self/mountinfo");
    let mounts = match std::fs::read_to_string(&info) {
        Ok(t) => parse_mountinfo(&t),
        // A --root tree without /proc is an image being prepared: nothing is mounted in it.
        Err(_) if !ap.root.is_real() && !info.exists() => {
            return ap.unchanged("growfs", "/", "no /proc under --root: nothing to grow")
        }
        Err(e) => return ap.skipped("growfs", "/proc/self/mountinfo", e.to_string()),
    };
    for m in points {
        grow(ap, &mounts, m, state, id);
    }
}

fn grow(ap: &mut Apply, mounts: &[Mount], point: &str, state: &State, id: &str) {
    // The mount point as this process sees it (`--root` prefixed, links resolved).
    let Ok(seen) = std::fs::canonicalize(ap.root.path(point)) else {
        return ap.skipped("growfs", point, "no such directory");
    };
    let seen = seen.to_string_lossy().into_owned();
    let Some(m) = mounts.iter().rev().find(|m| m.mount_point == seen) else {
        if point == "/" && !ap.root.is_real() {
            return ap.unchanged(
                "growfs",
                point,
                "--root is not a mount point: nothing to grow",
            );
        }
        return ap.skipped("growfs", point, "not a mount point");
    };
    let Some(fs) = Fs::of(&m.fstype) else {
        return ap.skipped(
            "growfs",
            point,
            format!("cannot grow a {} filesystem", m.fstype),
        );
    };
    let sysfs = ap.root.path("/sys");
    let devdir = ap.root.path("/dev");
    let Some(dev) = device_of(&sysfs, &devdir, m) else {
        return ap.skipped(
            "growfs",
            point,
            format!("no block device found for {} ({})", m.source, m.fstype),
        );
    };
    let class = sysfs.join("class/block");
    let lay = layout(&class, &dev);
    let sizes: Vec<String> = lay
        .disks()
        .iter()
        .map(|d| {
            let s = std::fs::read_to_string(class.join(d).join("size")).unwrap_or_default();
            format!("{d}={}", s.trim())
        })
        .collect();
    let key = format!("{} {} {}", lay.dev(), m.fstype, sizes.join(" "));
    let what = marker(point);
    let marker_path = state.instance_dir(id).join(format!("{what}.done"));
    if std::fs::read_to_string(&marker_path).is_ok_and(|t| t.trim() == key) {
        return ap.unchanged(
            "growfs",
            point,
            "grown for this instance; the disk size has not changed",
        );
    }
    let plan = format!("{}, then the {} filesystem", lay.describe(), m.fstype);
    let missing = missing_tools(&lay, fs);
    if !missing.is_empty() {
        return ap.skipped(
            "growfs",
            point,
            format!("not grown ({plan}): {} not installed", missing.join(", ")),
        );
    }
    if ap.dry_run {
        return ap.changed("growfs", point, format!("would grow {plan}"));
    }
    let before = fs_size(&seen);
    let result = grow_device(ap, &lay).and_then(|grew| {
        grow_fs(ap, fs, &dev, &seen)?;
        Ok(grew)
    });
    let after = fs_size(&seen);
    match result {
        Err(e) => ap.failed("growfs", point, e),
        Ok(grew) => {
            if let Err(e) = state.mark_done(id, &what, &key) {
                ap.failed("state", &what, e);
            }
            let grown_fs = after > before;
            if grew.is_empty() && !grown_fs {
                ap.unchanged("growfs", point, format!("{plan}: already full size"));
            } else {
                let mut d = grew;
                if grown_fs {
                    d.push(format!(
                        "{} filesystem {} → {} MiB",
                        m.fstype,
                        before >> 20,
                        after >> 20
                    ));
                }
                ap.changed("growfs", point, d.join("; "));
            }
        }
    }
}

/// The marker name for a mount point: `growfs-root`, `growfs-srv_data`.
fn marker(point: &str) -> String {
    let p = point.trim_matches('/');
    if p.is_empty() {
        "growfs-root".into()
    } else {
        format!("growfs-{}", p.replace('/', "_"))
    }
}

/// The tools a layout needs that are not installed, with their Debian package.
fn missing_tools(lay: &Layout, fs: Fs) -> Vec<String> {
    let mut need: Vec<(&str, &str)> = Vec::new();
    let partitions = match lay {
        Layout::Partition { .. } => true,
        Layout::Lvm { pvs, .. } => {
            need.push(("pvresize", "lvm2"));
            need.push(("lvextend", "lvm2"));
            pvs.iter().any(|p| matches!(p, Layout::Partition { .. }))
        }
        _ => false,
    };
    if partitions {
        need.push(("growpart", "cloud-guest-utils"));
        need.push(("sfdisk", "fdisk"));
    }
    need.push(fs.tool());
    need.into_iter()
        .filter(|(t, _)| crate::os::which(t).is_none())
        .map(|(t, p)| format!("{t} ({p})"))
        .collect()
}

/// Grows the partitions (and LVM) under the filesystem; returns what it changed.
fn grow_device(ap: &Apply, lay: &Layout) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    match lay {
        Layout::Partition { disk, number, .. } => {
            if growpart(ap, disk, *number)? {
                done.push(format!("partition {number} of /dev/{disk} grown"));
            }
        }
        Layout::Lvm { name, pvs, .. } => {
            for pv in pvs {
                if let Layout::Partition { disk, number, .. } = pv {
                    if growpart(ap, disk, *number)? {
                        done.push(format!("partition {number} of /dev/{disk} grown"));
                    }
                }
                let dev = ap.root.path(format!("/dev/{}", pv.dev()));
                run(Command::new("pvresize").arg(&dev))?;
            }
            let lv = ap.root.path(format!("/dev/mapper/{name}"));
            let free = run(Command::new("lvs")
                .args(["--noheadings", "-o", "vg_free_count"])
                .arg(&lv))?;
            if free.trim().parse::<u64>().unwrap_or(0) > 0 {
                run(Command::new("lvextend")
                    .args(["-r", "-l", "+100%FREE"])
                    .arg(&lv))?;
                done.push(format!("LVM volume {name} extended"));
            }
        }
        Layout::Disk { .. } | Layout::Other { .. } => {}
    }
    Ok(done)
}

/// `growpart DISK N`: true when it grew the partition; `NOCHANGE` (exit 1) is not an error.
fn growpart(ap: &Apply, disk: &str, number: u32) -> Result<bool, String> {
    let dev = ap.root.path(format!("/dev/{disk}"));
    let o = Command::new("growpart")
        .arg(&dev)
        .arg(number.to_string())
        .output()
        .map_err(|e| format!("growpart: {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout);
    match o.status.code() {
        Some(0) => Ok(true),
        Some(1) if out.contains("NOCHANGE") => Ok(false),
        _ => Err(format!(
            "growpart {} {number}: {}{}",
            dev.display(),
            out.trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

fn grow_fs(ap: &Apply, fs: Fs, dev: &str, mount_point: &str) -> Result<String, String> {
    match fs {
        Fs::Ext => run(Command::new("resize2fs").arg(ap.root.path(format!("/dev/{dev}")))),
        Fs::Xfs => run(Command::new("xfs_growfs").arg(mount_point)),
        Fs::Btrfs => run(Command::new("btrfs").args(["filesystem", "resize", "max", mount_point])),
    }
}

/// Runs a tool; its stdout, or an error naming it with what it printed.
fn run(cmd: &mut Command) -> Result<String, String> {
    let name = format!("{:?}", cmd.get_program());
    let o = cmd.output().map_err(|e| format!("{name}: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Err(format!(
            "{} {} failed ({}): {}",
            cmd.get_program().to_string_lossy(),
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The filesystem's size in bytes (0 when it cannot be read).
fn fs_size(mount_point: &str) -> u64 {
    nix::sys::statvfs::statvfs(mount_point)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "growfs_tests.rs"]
mod tests;
