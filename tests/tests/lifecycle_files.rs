//! What makes a copied image this instance's own, applied under `--root`: SSH host keys made
//! anew once per instance, `TIMEZONE`, `/etc/hosts` following a hostname change, and
//! `GROW_FS` growing real partitions and filesystems on loop devices.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use vmctx_tests::*;

fn apply(g: &Guest, context_sh: &str) -> std::process::Output {
    apply_with(g, context_sh, &[])
}

/// `apply --stage local --json` of this context, kept at one place (`<root>/.ctx`) so that the
/// source, and what vmctx derives from it, stays the same from one apply to the next.
fn apply_with(g: &Guest, context_sh: &str, extra: &[&str]) -> std::process::Output {
    let dir = g.root.path().join(".ctx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("context.sh"), context_sh).unwrap();
    let src = format!("dir:{}", dir.display());
    let mut args = vec!["apply", "--stage", "local", "--json", "--source", &src];
    args.extend_from_slice(extra);
    g.vmctx(&args)
}

fn ok_json(o: &std::process::Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    json(o)
}

/// The report's action of this kind (and target, when given).
fn action<'a>(r: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// Every host key file in `etc/ssh` with its content.
fn host_keys(root: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(root.join("etc/ssh"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ssh_host_"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn fingerprint(pub_key: &Path) -> String {
    let out = sh(&["ssh-keygen", "-l", "-f", pub_key.to_str().unwrap()]);
    out.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn host_keys_new_once_per_instance() {
    let Some(g) = Guest::new("hostkeys") else {
        return;
    };
    if !need("ssh-keygen", have_tool("ssh-keygen")) {
        return;
    }
    let r = g.root.path();
    // The image: an OpenSSH server with the keys it was built with, and an old DSA key.
    std::fs::create_dir_all(r.join("etc/ssh")).unwrap();
    std::fs::write(r.join("etc/ssh/sshd_config"), "# image\n").unwrap();
    sh(&["ssh-keygen", "-A", "-f", g.root_str()]);
    std::fs::write(r.join("etc/ssh/ssh_host_dsa_key"), "old").unwrap();
    std::fs::write(r.join("etc/ssh/ssh_host_dsa_key.pub"), "ssh-dss old").unwrap();
    let image = host_keys(r);
    assert!(image.contains_key("ssh_host_ed25519_key.pub"), "{image:?}");

    let o = apply(&g, "VMID='21'\n");
    let report = ok_json(&o);
    let a = action(&report, "ssh_host_keys");
    assert_eq!(a.len(), 1, "{report:#}");
    assert_eq!(a[0]["result"], "changed", "{report:#}");
    // SSH first: the local stage made the fast keys and left RSA for after sshd started.
    let fast = host_keys(r);
    let names: Vec<&str> = fast.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "ssh_host_ecdsa_key",
            "ssh_host_ecdsa_key.pub",
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
        ],
        "the image's keys (RSA and DSA too) replaced by the fast ones"
    );
    assert!(r.join("run/vmctx/hostkeys").exists());
    assert!(!stderr(&o).contains("-----BEGIN SSH HOST KEY FINGERPRINTS-----"));
    // vmctx-hostkeys.service, after sshd: the RSA key, and the console block of all keys.
    let o = g.vmctx(&["hostkeys"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(!r.join("run/vmctx/hostkeys").exists());
    let first = host_keys(r);
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "ssh_host_ecdsa_key",
            "ssh_host_ecdsa_key.pub",
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
            "ssh_host_rsa_key",
            "ssh_host_rsa_key.pub"
        ],
    );
    for (name, body) in &first {
        assert_ne!(image.get(name), Some(body), "{name} is still the image's");
    }
    assert!(stdout(&g.vmctx(&["hostkeys"])).contains("0 changed"));
    let mode = std::fs::metadata(r.join("etc/ssh/ssh_host_ed25519_key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !r.join("etc/ssh/.vmctx-hostkeys").exists(),
        "scratch folder left behind"
    );
    // The console block, with the new key's fingerprint, on stderr (the log).
    let err = stderr(&o);
    let fp = fingerprint(&r.join("etc/ssh/ssh_host_ed25519_key.pub"));
    let begin = err
        .find("-----BEGIN SSH HOST KEY FINGERPRINTS-----")
        .unwrap_or_else(|| panic!("no fingerprint block: {err}"));
    let end = err.find("-----END SSH HOST KEY FINGERPRINTS-----").unwrap();
    assert!(err[begin..end].contains(&fp), "{err}");
    assert!(err[begin..end].contains("(ED25519)"), "{err}");
    assert!(err[begin..end].contains("(RSA)"), "{err}");
    assert!(err.contains("-----BEGIN SSH HOST KEY KEYS-----"), "{err}");

    // The same instance again: the keys stay, nothing changes.
    let report = ok_json(&apply(&g, "VMID='21'\n"));
    assert_eq!(report["changed"], 0, "{report:#}");
    assert_eq!(host_keys(r), first);

    // A new instance (the disk copied to another VM): new keys again.
    let report = ok_json(&apply(&g, "VMID='22'\n"));
    assert_eq!(
        action(&report, "ssh_host_keys")[0]["result"],
        "changed",
        "{report:#}"
    );
    assert!(g.vmctx(&["hostkeys"]).status.success());
    let second = host_keys(r);
    assert_eq!(second.len(), 6);
    for (name, body) in &second {
        assert_ne!(first.get(name), Some(body), "{name} kept across instances");
    }

    // SSH_HOST_KEYS=KEEP: a new instance keeps them; only a missing key is made.
    let report = ok_json(&apply(&g, "VMID='23'\nSSH_HOST_KEYS='KEEP'\n"));
    assert_eq!(
        action(&report, "ssh_host_keys")[0]["result"],
        "unchanged",
        "{report:#}"
    );
    assert_eq!(host_keys(r), second);
    std::fs::remove_file(r.join("etc/ssh/ssh_host_ecdsa_key")).unwrap();
    std::fs::remove_file(r.join("etc/ssh/ssh_host_ecdsa_key.pub")).unwrap();
    let report = ok_json(&apply(&g, "VMID='23'\nSSH_HOST_KEYS='KEEP'\n"));
    assert_eq!(
        action(&report, "ssh_host_keys")[0]["result"],
        "changed",
        "{report:#}"
    );
    let third = host_keys(r);
    assert!(third.contains_key("ssh_host_ecdsa_key"));
    assert_eq!(
        third["ssh_host_ed25519_key"], second["ssh_host_ed25519_key"],
        "present keys kept"
    );
}

#[test]
fn no_sshd_no_host_keys() {
    let Some(g) = Guest::new("nosshd") else {
        return;
    };
    let report = ok_json(&apply(&g, "VMID='24'\n"));
    let a = action(&report, "ssh_host_keys");
    assert_eq!(a[0]["result"], "unchanged", "{report:#}");
    assert!(a[0]["detail"]
        .as_str()
        .unwrap()
        .contains("no OpenSSH server"));
    assert!(!g.root.path().join("etc/ssh").exists());
}

#[test]
fn timezone_link_and_debian_name() {
    let Some(g) = Guest::new("tz") else { return };
    let r = g.root.path();
    let zi = r.join("usr/share/zoneinfo");
    std::fs::create_dir_all(zi.join("Europe")).unwrap();
    std::fs::create_dir_all(zi.join("Etc")).unwrap();
    std::fs::write(zi.join("Europe/Prague"), b"TZif2 Prague").unwrap();
    std::fs::write(zi.join("Etc/UTC"), b"TZif2 UTC").unwrap();
    std::fs::write(zi.join("zone.tab"), b"CZ\t+5005+01426\tEurope/Prague\n").unwrap();
    std::fs::write(r.join("etc/debian_version"), "12.8\n").unwrap();
    std::fs::write(r.join("etc/timezone"), "Etc/UTC\n").unwrap();
    std::os::unix::fs::symlink("/usr/share/zoneinfo/Etc/UTC", r.join("etc/localtime")).unwrap();

    let report = ok_json(&apply(&g, "VMID='31'\nTIMEZONE='Europe/Prague'\n"));
    let tz = action(&report, "timezone");
    assert_eq!(tz.len(), 2, "{report:#}");
    assert!(tz.iter().all(|a| a["result"] == "changed"), "{report:#}");
    assert_eq!(
        std::fs::read_link(r.join("etc/localtime")).unwrap(),
        Path::new("../usr/share/zoneinfo/Europe/Prague")
    );
    assert_eq!(
        std::fs::read(r.join("etc/localtime")).unwrap(),
        b"TZif2 Prague"
    );
    assert_eq!(g.file("/etc/timezone"), "Europe/Prague\n");
    let leftovers: Vec<_> = std::fs::read_dir(r.join("etc"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("vmctx"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let report = ok_json(&apply(&g, "VMID='31'\nTIMEZONE='Europe/Prague'\n"));
    assert_eq!(report["changed"], 0, "{report:#}");

    // A zone this system does not have, or a path: only the zone is left out (named, exit 1);
    // the rest of the context is applied.
    for (i, bad) in [
        "Europe/Atlantis",
        "zone.tab",
        "../../../etc/passwd",
        "/etc/passwd",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("changed{i}");
        let o = apply(
            &g,
            &format!("VMID='32'\nSET_HOSTNAME='{name}'\nTIMEZONE='{bad}'\n"),
        );
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{bad}: {all}");
        assert!(all.contains("TIMEZONE: "), "{bad}: {all}");
        assert_eq!(
            std::fs::read_link(r.join("etc/localtime")).unwrap(),
            Path::new("../usr/share/zoneinfo/Europe/Prague"),
            "{bad}: the zone was left as it was"
        );
        assert_eq!(g.file("/etc/hostname"), format!("{name}\n"), "{bad}");
    }
}

#[test]
fn hosts_follow_a_hostname_change() {
    let Some(g) = Guest::new("hosts") else { return };
    let r = g.root.path();
    std::fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let b = "# BEGIN vmctx managed block: changes inside are overwritten\n";
    let e = "# END vmctx managed block\n";

    ok_json(&apply(&g, "VMID='41'\nSET_HOSTNAME='alpha'\n"));
    assert_eq!(
        g.file("/etc/hosts"),
        format!("127.0.0.1 localhost\n{b}127.0.1.1 alpha\n{e}")
    );
    // Renamed (an FQDN now): the old name leaves, the 127.0.1.1 line names the new one.
    let report = ok_json(&apply(&g, "VMID='41'\nSET_HOSTNAME='beta.lab.example'\n"));
    assert_eq!(
        g.file("/etc/hosts"),
        format!("127.0.0.1 localhost\n{b}127.0.1.1 beta.lab.example beta\n{e}")
    );
    assert_eq!(g.file("/etc/hostname"), "beta\n");
    assert_eq!(g.hostname(), "beta");
    assert!(
        action(&report, "hosts")
            .iter()
            .any(|a| a["result"] == "changed"),
        "{report:#}"
    );
    // A static address takes the line; renamed again without it, back to 127.0.1.1.
    ok_json(&apply(
        &g,
        "VMID='41'\nSET_HOSTNAME='gamma'\nETH0_MAC='02:00:0a:00:00:07'\nETH0_IP='10.0.0.7'\n",
    ));
    assert_eq!(
        g.file("/etc/hosts"),
        format!("127.0.0.1 localhost\n{b}10.0.0.7 gamma\n{e}")
    );
    ok_json(&apply(&g, "VMID='41'\nSET_HOSTNAME='delta'\n"));
    let hosts = g.file("/etc/hosts");
    assert_eq!(
        hosts,
        format!("127.0.0.1 localhost\n{b}127.0.1.1 delta\n{e}")
    );
    for old in ["alpha", "beta", "gamma", "10.0.0.7"] {
        assert!(!hosts.contains(old), "{old} left in {hosts}");
    }
    let report = ok_json(&apply(&g, "VMID='41'\nSET_HOSTNAME='delta'\n"));
    assert_eq!(report["changed"], 0, "{report:#}");
}

/// A 1 GiB sparse file with an MBR partition on a loop device, the filesystem mounted at
/// `<root>/data`; detached and unmounted on drop.
struct LoopDisk {
    file: PathBuf,
    dev: String,
    part: String,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDisk {
    fn new(fs: &str, root: &Path) -> LoopDisk {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        sh(&["truncate", "-s", "1G", file.to_str().unwrap()]);
        let o = Command::new("sh")
            .args([
                "-c",
                "printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk -q \"$0\"",
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "sfdisk: {}", stderr(&o));
        let dev = sh(&["losetup", "-f", "--show", "-P", file.to_str().unwrap()])
            .trim()
            .to_string();
        let part = format!("{dev}p1");
        if !Path::new(&part).exists() {
            // Without partition scanning: tell the kernel about the partition (BLKPG).
            let _ = Command::new("partx").args(["-a", &dev]).output();
        }
        let mnt = root.join("data");
        let disk = LoopDisk {
            file,
            dev,
            part,
            mnt,
            _dir: dir,
        };
        assert!(Path::new(&disk.part).exists(), "no {} node", disk.part);
        let mkfs = format!("mkfs.{fs}");
        let force = if fs == "ext4" { "-F" } else { "-f" };
        sh(&[&mkfs, "-q", force, &disk.part]);
        std::fs::create_dir_all(&disk.mnt).unwrap();
        sh(&["mount", &disk.part, disk.mnt.to_str().unwrap()]);
        disk
    }

    fn fs_bytes(&self) -> u64 {
        let out = sh(&["df", "-B1", "--output=size", self.mnt.to_str().unwrap()]);
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    fn part_bytes(&self) -> u64 {
        let name = Path::new(&self.part).file_name().unwrap().to_str().unwrap();
        let s = std::fs::read_to_string(format!("/sys/class/block/{name}/size")).unwrap();
        s.trim().parse::<u64>().unwrap() * 512
    }

    /// The disk grows to 2 GiB (as a resized VM disk).
    fn enlarge(&self) {
        sh(&["truncate", "-s", "2G", self.file.to_str().unwrap()]);
        sh(&["losetup", "-c", &self.dev]);
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// Whether this process may grow a mounted ext4 (`CAP_SYS_RESOURCE`, capability 24).
fn online_ext4_resize() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

#[test]
fn grow_fs_on_loop_devices() {
    let Some(g) = Guest::new("growfs") else {
        return;
    };
    if !need_tools(&[
        "losetup",
        "sfdisk",
        "growpart",
        "partx",
        "mkfs.ext4",
        "resize2fs",
        "mkfs.xfs",
        "xfs_growfs",
        "mkfs.btrfs",
        "btrfs",
    ]) {
        return;
    }
    let loop_ok = Command::new("losetup")
        .arg("-f")
        .output()
        .is_ok_and(|o| o.status.success());
    if !need("a free loop device (losetup -f)", loop_ok) {
        return;
    }
    let r = g.root.path();
    // The root's /proc, /sys and /dev are the machine's: the mount is found in mountinfo, its
    // partition in sysfs, and the tools act on the real loop device.
    for d in ["proc", "sys", "dev"] {
        std::os::unix::fs::symlink(format!("/{d}"), r.join(d)).unwrap();
    }
    let mut vmid = 50;
    for fs in ["ext4", "xfs", "btrfs"] {
        let disk = LoopDisk::new(fs, r);
        let (part0, fs0) = (disk.part_bytes(), disk.fs_bytes());
        assert!(part0 < (1 << 30) && fs0 < (1 << 30), "{fs}: {part0} {fs0}");
        disk.enlarge();
        vmid += 1;
        let ctx = format!("VMID='{vmid}'\nGROW_ROOTFS='NO'\nGROW_FS='/data'\n");

        // Dry run: says what it would do, changes nothing.
        let o = apply_with(&g, &ctx, &["--dry-run"]);
        let report = ok_json(&o);
        let a = action(&report, "growfs");
        assert_eq!(a[0]["result"], "changed", "{fs}: {report:#}");
        assert!(
            a[0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("would grow partition 1 of /dev/loop"),
            "{fs}: {report:#}"
        );
        assert_eq!(disk.part_bytes(), part0, "{fs}: dry run grew the partition");

        if fs == "ext4" && !online_ext4_resize() {
            // Online ext4 growth needs CAP_SYS_RESOURCE (this sandbox lacks it; the VM test
            // grows ext4 for real): the partition grows, the failure is reported, and no
            // marker keeps the next apply from trying again.
            eprintln!("SKIPPED: online ext4 resize (no CAP_SYS_RESOURCE); checking the report");
            for _ in 0..2 {
                let o = apply(&g, &ctx);
                assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
                let report = json(&o);
                let a = action(&report, "growfs");
                assert_eq!(a[0]["result"], "failed", "{report:#}");
                assert!(
                    a[0]["detail"].as_str().unwrap().contains("resize2fs"),
                    "{report:#}"
                );
                assert!(
                    disk.part_bytes() > (2 << 30) - (2 << 20),
                    "{}",
                    disk.part_bytes()
                );
            }
            continue;
        }
        let report = ok_json(&apply(&g, &ctx));
        let a = action(&report, "growfs");
        assert_eq!(
            (a.len(), &a[0]["result"]),
            (1, &serde_json::json!("changed")),
            "{fs}: {report:#}"
        );
        let detail = a[0]["detail"].as_str().unwrap();
        assert!(
            detail.contains("partition 1 of /dev/loop"),
            "{fs}: {detail}"
        );
        assert!(
            detail.contains(&format!("{fs} filesystem")),
            "{fs}: {detail}"
        );
        let (part1, fs1) = (disk.part_bytes(), disk.fs_bytes());
        // growpart leaves the last sectors free (room for a GPT's backup header).
        assert!(
            part1 > (2 << 30) - (2 << 20) && part1 <= (2 << 30) - (1 << 20),
            "{fs}: the partition fills the 2 GiB disk: {part1}"
        );
        assert!(fs1 > fs0 + (900 << 20), "{fs}: filesystem {fs0} -> {fs1}");

        // Again: the marker says it is done for this disk size.
        let report = ok_json(&apply(&g, &ctx));
        assert_eq!(report["changed"], 0, "{fs}: {report:#}");
        // A new instance on the same full-size disk: growpart's NOCHANGE is no error.
        vmid += 1;
        let report = ok_json(&apply(
            &g,
            &format!("VMID='{vmid}'\nGROW_ROOTFS='NO'\nGROW_FS='/data'\n"),
        ));
        let a = action(&report, "growfs");
        assert_eq!(a[0]["result"], "unchanged", "{fs}: {report:#}");
        assert!(
            a[0]["detail"]
                .as_str()
                .unwrap()
                .contains("already full size"),
            "{fs}: {report:#}"
        );
        assert_eq!(disk.fs_bytes(), fs1);
    }
    // A mount point that is not mounted: reported, not a failure.
    let report = ok_json(&apply(&g, "VMID='60'\nGROW_ROOTFS='NO'\nGROW_FS='/data'\n"));
    let a = action(&report, "growfs");
    assert_eq!(a[0]["result"], "skipped", "{report:#}");
    assert_eq!(report["failed"], 0);
}
