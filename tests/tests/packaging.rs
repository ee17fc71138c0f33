//! The packages built by `packaging/build` from the release binary: contents, metadata, the
//! maintainer scripts, and `systemd-analyze verify` on every unit.

use std::path::{Path, PathBuf};
use std::process::Command;
use vmctx_tests::*;

const UNITS: [&str; 10] = [
    "vmctx-local.service",
    "vmctx-hostkeys.service",
    "vmctx-reconfigure.service",
    "vmctx.service",
    "vmctx-imds.service",
    "vmctx-imds-host.service",
    "vmctx-sync.service",
    "vmctx-sync.timer",
    "vmctx-update.service",
    "vmctx-update.timer",
];

fn package(ext: &str) -> Option<PathBuf> {
    let dir = workspace().join("target/packages");
    let found = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
    });
    need(&format!("a .{ext} from packaging/build"), found.is_some()).then(|| found.unwrap())
}

#[test]
fn deb_contents_and_metadata() {
    let Some(deb) = package("deb") else { return };
    if !need("dpkg-deb", have_tool("dpkg-deb")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    sh(&[
        "dpkg-deb",
        "-x",
        deb.to_str().unwrap(),
        t.path().to_str().unwrap(),
    ]);
    let bin = t.path().join("usr/bin/vmctx");
    let file = sh(&["file", bin.to_str().unwrap()]);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(
        size <= 8 << 20,
        "release binary is {size} bytes, over 8 MiB"
    );
    eprintln!("release binary: {size} bytes");
    for u in UNITS {
        assert!(
            t.path().join("lib/systemd/system").join(u).exists(),
            "{u} missing"
        );
    }
    assert!(t.path().join("etc/default/vmctx").exists());
    // networkd's wait-online reads the links vmctx configured (`plan::online`).
    let dropin = t
        .path()
        .join("lib/systemd/system/systemd-networkd-wait-online.service.d/vmctx.conf");
    let dropin = std::fs::read_to_string(&dropin).expect("the wait-online drop-in");
    assert!(dropin.contains("EnvironmentFile=-/run/vmctx/networkd-wait-online"));
    assert!(t.path().join("lib/udev/rules.d/90-vmctx.rules").exists());
    let info = sh(&[
        "dpkg-deb",
        "-f",
        deb.to_str().unwrap(),
        "Package",
        "Conflicts",
        "Depends",
    ]);
    assert!(
        info.contains("Package: vmctx") && info.contains("Conflicts: one-context"),
        "{info}"
    );
    let ctl = tempfile::tempdir().unwrap();
    sh(&[
        "dpkg-deb",
        "-e",
        deb.to_str().unwrap(),
        ctl.path().to_str().unwrap(),
    ]);
    let postinst = std::fs::read_to_string(ctl.path().join("postinst")).unwrap();
    assert!(postinst.contains("vmctx-local.service"));
    // The host's metadata sidecar ships but is not enabled (it belongs on a cloud host).
    assert!(!postinst.contains("vmctx-imds-host"), "{postinst}");
    let conffiles = std::fs::read_to_string(ctl.path().join("conffiles")).unwrap();
    assert!(conffiles.contains("/etc/default/vmctx"));
    // The binary from the package runs.
    let o = Command::new(&bin).arg("--version").output().unwrap();
    assert!(o.status.success() && stdout(&o).starts_with("vmctx "));
}

#[test]
fn rpm_contents() {
    let Some(rpm) = package("rpm") else { return };
    if !need("rpm", have_tool("rpm")) {
        return;
    }
    let list = sh(&["rpm", "-qpl", rpm.to_str().unwrap()]);
    for f in [
        "/usr/bin/vmctx",
        "/usr/lib/systemd/system/vmctx-local.service",
        "/usr/lib/systemd/system/vmctx-reconfigure.service",
        "/usr/lib/udev/rules.d/90-vmctx.rules",
        "/etc/sysconfig/vmctx",
    ] {
        assert!(list.lines().any(|l| l == f), "{f} not in {list}");
    }
    let conflicts = sh(&["rpm", "-qp", "--conflicts", rpm.to_str().unwrap()]);
    assert!(conflicts.contains("one-context"), "{conflicts}");
    let scripts = sh(&["rpm", "-qp", "--scripts", rpm.to_str().unwrap()]);
    assert!(
        scripts.contains("systemctl enable vmctx-local.service"),
        "{scripts}"
    );
    assert!(
        scripts
            .lines()
            .filter(|l| l.contains("systemctl enable"))
            .all(|l| !l.contains("vmctx-imds-host")),
        "{scripts}"
    );
}

/// The man pages (one per subcommand, from `vmctx help`, gzipped) and the completions each
/// package installs; zsh's folder differs between Debian and Fedora.
fn man_and_completions(zsh_dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::iter::once(Vec::new())
        .chain(vmctx_tests::cli_help::command_paths())
        .map(|p| {
            let page = vmctx_tests::cli_help::page_name(&p);
            format!("/usr/share/man/man1/{page}.1.gz")
        })
        .collect();
    assert!(files.iter().any(|f| f.ends_with("/vmctx-imds-serve.1.gz")));
    files.extend([
        "/usr/share/bash-completion/completions/vmctx".to_string(),
        format!("{zsh_dir}/_vmctx"),
        "/usr/share/fish/vendor_completions.d/vmctx.fish".to_string(),
    ]);
    files
}

#[test]
fn deb_installs_man_pages_and_completions() {
    let Some(deb) = package("deb") else { return };
    if !need_tools(&["dpkg"]) {
        return;
    }
    let list = sh(&["dpkg", "-c", deb.to_str().unwrap()]);
    // Lines end in the path: `-rw-r--r-- root/root 1234 2026-01-01 00:00 ./usr/share/...`.
    for f in man_and_completions("/usr/share/zsh/vendor-completions") {
        assert!(
            list.lines().any(|l| l.ends_with(&format!(" .{f}"))),
            "{f} not in dpkg -c:\n{list}"
        );
    }
}

#[test]
fn rpm_installs_man_pages_and_completions() {
    let Some(rpm) = package("rpm") else { return };
    if !need_tools(&["rpm"]) {
        return;
    }
    let list = sh(&["rpm", "-qlp", rpm.to_str().unwrap()]);
    for f in man_and_completions("/usr/share/zsh/site-functions") {
        assert!(list.lines().any(|l| l == f), "{f} not in rpm -qlp:\n{list}");
    }
}

/// `systemd-analyze verify` in a scratch root holding the system's own units (for the targets
/// ours name), the shell and kill, and the packaged binary.
#[test]
fn units_verify() {
    if !need("systemd-analyze", have_tool("systemd-analyze")) {
        return;
    }
    let Some(bin) = release_or_debug() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
    sh(&[
        "cp",
        "-a",
        "/usr/lib/systemd/system",
        r.join("usr/lib/systemd/").to_str().unwrap(),
    ]);
    for (from, to) in [
        (bin.as_path(), "vmctx"),
        (Path::new("/bin/sh"), "sh"),
        (Path::new("/bin/kill"), "kill"),
        (Path::new("/bin/udevadm"), "udevadm"),
    ] {
        std::fs::copy(
            std::fs::canonicalize(from).unwrap(),
            r.join("usr/bin").join(to),
        )
        .unwrap();
    }
    let mut args = vec![
        "verify".to_string(),
        "--man=no".into(),
        format!("--root={}", r.display()),
    ];
    for u in UNITS {
        std::fs::copy(
            workspace().join("packaging/systemd").join(u),
            r.join("usr/lib/systemd/system").join(u),
        )
        .unwrap();
        args.push(format!("/usr/lib/systemd/system/{u}"));
    }
    let o = Command::new("systemd-analyze")
        .args(&args)
        .current_dir(r)
        .output()
        .unwrap();
    let out = stdout(&o) + &stderr(&o);
    assert!(
        o.status.success() && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
}

fn release_or_debug() -> Option<PathBuf> {
    let t = workspace().join("target/x86_64-unknown-linux-gnu");
    [t.join("release/vmctx"), t.join("debug/vmctx")]
        .into_iter()
        .find(|p| p.exists())
        .or_else(|| Some(vmctx_bin()))
}
