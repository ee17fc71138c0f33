//! SELinux labels under `--root`: with selinuxfs and a policy in the tree, a real apply hands
//! what it wrote to the labelling tool (a recording stand-in first on PATH) in one call at the
//! end of the stage (two under systemd: before readiness and after the users); with SELinux off
//! nothing is called; a missing tool is a warning.

use std::path::{Path, PathBuf};
use vmctx_tests::*;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyForTheSelinuxTestAAAAAAAAAAAAA se@test";
const CONTEXT: &str = "VMID='41'\nSET_HOSTNAME='labelled'\nUSERNAME='alice'\nUSERNAME_SUDO='YES'\nTIMEZONE='Europe/Prague'\n";

/// A tree with selinuxfs, the targeted policy's file contexts and tzdata.
fn selinux_tree(g: &Guest) {
    let r = g.root.path();
    let files: [(&str, &[u8]); 5] = [
        ("sys/fs/selinux/enforce", b"1"),
        (
            "etc/selinux/config",
            b"SELINUX=enforcing\nSELINUXTYPE=targeted\n",
        ),
        (
            "etc/selinux/targeted/contexts/files/file_contexts",
            b"/home/[^/]+/\\.ssh(/.*)?\tsystem_u:object_r:ssh_home_t:s0\n",
        ),
        ("usr/share/zoneinfo/Europe/Prague", b"TZif2 Prague"),
        ("etc/sudoers.d/README", b"#includedir\n"),
    ];
    for (f, body) in files {
        let p = r.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

/// `restorecon` and `setfiles` that append their name and arguments to `calls`.
fn recording_tools(dir: &Path, calls: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\n{{ printf '%s' \"${{0##*/}}\"; for a; do printf ' %s' \"$a\"; done; echo; }} >>'{}'\n",
        calls.display()
    );
    for name in ["restorecon", "setfiles"] {
        let p = bin.join(name);
        std::fs::write(&p, &script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// A guest whose tree has SELinux on, and a PATH whose labelling tools record their calls in
/// the returned log (in the returned folder).
fn labelled_guest(name: &str) -> Option<(Guest, tempfile::TempDir, PathBuf, std::ffi::OsString)> {
    let g = Guest::new(name)?;
    if !need_tools(&["useradd"]) {
        return None;
    }
    selinux_tree(&g);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("calls");
    let bin = recording_tools(tmp.path(), &log);
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    Some((g, tmp, log, path))
}

/// `vmctx apply` of a context folder with this PATH; its JSON report.
fn apply(g: &Guest, ctx: &Path, path: &std::ffi::OsStr) -> serde_json::Value {
    let src = format!("dir:{}", ctx.display());
    let o = g
        .command(&["apply", "--stage", "local", "--json", "--source", &src])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    json(&o)
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn selinux_actions(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "selinux")
        .cloned()
        .collect()
}

#[test]
fn written_paths_are_relabelled_once_per_stage() {
    let Some((g, _tmp, log, path)) = labelled_guest("selinux") else {
        return;
    };
    let ctx = context_dir(&format!("{CONTEXT}SSH_PUBLIC_KEY='{KEY}'\n"), &[]);

    let report = apply(&g, ctx.path(), &path);
    let calls_made = calls(&log);
    assert_eq!(
        calls_made.len(),
        1,
        "one call for the stage: {calls_made:?}"
    );
    let args: Vec<&str> = calls_made[0].split(' ').collect();
    let root = g.root_str();
    let at = |rel: &str| format!("{root}{rel}");
    // Under --root: the tree's own policy, with the root stripped before matching.
    assert_eq!(
        args[..6],
        [
            "setfiles",
            "-F",
            "-v",
            "-r",
            root,
            &at("/etc/selinux/targeted/contexts/files/file_contexts")
        ]
    );
    let paths = &args[args.iter().position(|a| *a == "--").unwrap() + 1..];
    for want in [
        "/home/alice/.ssh",
        "/etc/sudoers.d/90-vmctx",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/localtime",
    ] {
        assert!(
            paths.contains(&at(want).as_str()),
            "{want} not relabelled: {paths:?}"
        );
    }
    assert!(
        !paths
            .iter()
            .any(|p| *p == at("/etc") || *p == at("/home/alice")),
        "only vmctx's files and ~/.ssh: {paths:?}"
    );
    // setfiles descends into ~/.ssh: authorized_keys is in it, and was written.
    assert!(g.file("/home/alice/.ssh/authorized_keys").contains(KEY));
    let acts = selinux_actions(&report);
    assert_eq!(acts.len(), 1, "{report:#}");
    assert_eq!(acts[0]["target"], "setfiles");
    assert_ne!(acts[0]["result"], "failed", "{report:#}");

    // Nothing written: nothing to relabel.
    let report = apply(&g, ctx.path(), &path);
    assert_eq!(report["changed"], 0, "{report:#}");
    assert_eq!(calls(&log).len(), 1, "{:?}", calls(&log));

    // SELinux off (no selinuxfs): files change, no tool is called.
    std::fs::remove_file(g.root.path().join("sys/fs/selinux/enforce")).unwrap();
    let off = CONTEXT.replace("labelled", "unlabelled");
    let off = context_dir(&format!("{off}SSH_PUBLIC_KEY='{KEY}'\n"), &[]);
    let report = apply(&g, off.path(), &path);
    assert_eq!(g.file("/etc/hostname"), "unlabelled\n");
    assert!(selinux_actions(&report).is_empty(), "{report:#}");
    assert_eq!(
        calls(&log).len(),
        1,
        "called with SELinux off: {:?}",
        calls(&log)
    );
}

#[test]
fn missing_tool_is_a_warning() {
    let Some(g) = Guest::new("selinux-notool") else {
        return;
    };
    selinux_tree(&g);
    // PATH without setfiles: only the system folders vmctx also looks in.
    let system = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    if system
        .iter()
        .any(|d| Path::new(d).join("setfiles").exists())
    {
        eprintln!("SKIPPED: setfiles is installed here; its absence cannot be tested");
        return;
    }
    let path = std::env::join_paths(system).unwrap();
    let ctx = context_dir("VMID='42'\nSET_HOSTNAME='notool'\n", &[]);
    let report = apply(&g, ctx.path(), &path);
    let acts = selinux_actions(&report);
    assert_eq!(acts.len(), 1, "{report:#}");
    assert_eq!(acts[0]["result"], "skipped", "{report:#}");
    assert!(acts[0]["detail"]
        .as_str()
        .unwrap()
        .contains("not installed"));
    assert_eq!(report["failed"], 0, "{report:#}");
}

#[test]
fn plan_says_labels_are_restored() {
    let t = tempfile::tempdir().unwrap();
    let enforce = t.path().join("sys/fs/selinux/enforce");
    std::fs::create_dir_all(enforce.parent().unwrap()).unwrap();
    std::fs::write(&enforce, "1").unwrap();
    std::fs::create_dir_all(t.path().join("etc/selinux")).unwrap();
    std::fs::write(t.path().join("etc/selinux/config"), "SELINUX=permissive\n").unwrap();
    let links = t.path().join("links");
    std::fs::write(&links, "").unwrap();
    let c = context_dir("VMID='43'\nSET_HOSTNAME='planned'\n", &[]);
    let plan = |root: &Path| {
        let o = vmctx(&[
            "plan",
            "--root",
            root.to_str().unwrap(),
            "--links-file",
            links.to_str().unwrap(),
            "--source",
            &format!("dir:{}", c.path().display()),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert!(plan(t.path()).contains("selinux   enabled: labels restored"));
    std::fs::write(t.path().join("etc/selinux/config"), "SELINUX=disabled\n").unwrap();
    assert!(!plan(t.path()).contains("selinux"));
}

/// Under systemd (`Type=notify`): what the units after vmctx-local read when they start is
/// labelled, then `READY=1` is sent; the users come after it, labelled in a second call, and the
/// stage's end says so again.
#[test]
fn ready_is_sent_once_what_starting_units_read_is_labelled() {
    let Some((g, tmp, log, path)) = labelled_guest("selinux-ready") else {
        return;
    };
    let socket = tmp.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let ctx = context_dir(&format!("{CONTEXT}SSH_PUBLIC_KEY='{KEY}'\n"), &[]);
    let src = format!("dir:{}", ctx.path().display());
    let o = g
        .command(&["apply", "--stage", "local", "--source", &src])
        .env("PATH", &path)
        .env("NOTIFY_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = listener.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        said,
        [
            "READY=1\nSTATUS=links, hostname and host keys applied; users next\n",
            "READY=1\nSTATUS=local stage done\n"
        ]
    );
    let calls_made = calls(&log);
    assert_eq!(calls_made.len(), 2, "{calls_made:?}");
    let at = |rel: &str| format!(" {}{rel}", g.root_str());
    for before in ["/etc/hostname", "/etc/hosts", "/etc/localtime"] {
        assert!(calls_made[0].contains(&at(before)), "{calls_made:?}");
    }
    for after in ["/etc/sudoers.d/90-vmctx", "/home/alice/.ssh"] {
        assert!(
            !calls_made[0].contains(&at(after)) && calls_made[1].contains(&at(after)),
            "{calls_made:?}"
        );
    }
}
