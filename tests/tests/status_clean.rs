//! `vmctx status` (stages recorded by apply in /run/vmctx/status.json, `--wait`, exit codes)
//! and `vmctx clean` (what it removes under `--root`, and nothing else).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use vmctx_tests::*;

fn run(root: &Path, args: &[&str]) -> Output {
    Command::new(vmctx_bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// Every path under `root` (relative), sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn status_before_any_run_and_when_disabled() {
    let root = tempfile::tempdir().unwrap();
    let o = run(root.path(), &["status"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).starts_with("status: not run"), "{}", stdout(&o));
    let started = Instant::now();
    let o = run(
        root.path(),
        &["status", "--wait", "--timeout", "1", "--json"],
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(json(&o)["status"], "not run");
    put(root.path(), "etc/vmctx/disabled", "");
    let o = run(root.path(), &["status", "--wait"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("status: disabled"));
}

#[test]
fn status_after_an_apply_and_a_failed_stage() {
    let root = tempfile::tempdir().unwrap();
    let ctx = context_dir("VMID='5'\n", &[]);
    let src = format!("dir:{}", ctx.path().display());
    let o = run(
        root.path(),
        &["apply", "--stage", "final", "--source", &src],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(root.path(), &["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["status"], "done");
    let fin = &v["stages"]["final"];
    assert_eq!(fin["result"], "done", "{v}");
    assert_eq!(fin["instance_id"], "one-5");
    assert_eq!(fin["source"], src.as_str());
    assert!(fin["duration_secs"].as_f64().unwrap() >= 0.0);
    assert!(fin["started"].as_str().unwrap().ends_with('Z'));
    assert!(fin["finished"].is_string());
    // The file itself, as written by apply.
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join("run/vmctx/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(file["stages"]["final"]["result"], "done");

    // A local stage that cannot read its context: recorded as failed, with why; status 1.
    let o = run(
        root.path(),
        &[
            "apply",
            "--stage",
            "local",
            "--source",
            "dir:/nonexistent/ctx",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let o = run(root.path(), &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.starts_with("status: error"), "{text}");
    assert!(
        text.contains("local") && text.contains("/nonexistent/ctx"),
        "{text}"
    );
}

#[test]
fn status_wait_returns_when_the_final_stage_ends() {
    let root = tempfile::tempdir().unwrap();
    let mut waiter = Command::new(vmctx_bin())
        .args(["status", "--wait", "--timeout", "60", "--root"])
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "returned before any stage ran"
    );
    // Another process runs the final stage (its script takes a second).
    let ctx = context_dir("VMID='6'\nSTART_SCRIPT='sleep 1'\n", &[]);
    let src = format!("dir:{}", ctx.path().display());
    let mut apply = Command::new(vmctx_bin())
        .args(["apply", "--stage", "final", "--source", &src, "--root"])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile the stage shows as running.
    let o = run(root.path(), &["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("final        running"),
        "{}",
        stdout(&o)
    );
    assert!(waiter.try_wait().unwrap().is_none());
    assert!(apply.wait().unwrap().success());
    let applied_at = Instant::now();
    let out = waiter.wait_with_output().unwrap();
    assert!(applied_at.elapsed() < Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("status: done"), "{}", stdout(&out));
}

fn image_tree(root: &Path) {
    for (rel, body) in [
        ("var/lib/vmctx/instance-id", "one-1\n"),
        ("var/lib/vmctx/network.json", "{}"),
        ("var/lib/vmctx/instances/one-1/plan.json", "{}"),
        (
            "var/lib/vmctx/instances/one-1/script-start_script.done",
            "ok",
        ),
        ("var/lib/vmctx/instances/one-1/start_script.log", "ran"),
        ("var/lib/vmctx/files/token.txt", "tok"),
        ("var/lib/vmctx/sync/state.json", "{}"),
        ("run/vmctx/context", "opennebula"),
        ("run/vmctx/status.json", "{}"),
        ("var/log/vmctx-start.log", "x"),
        ("var/log/syslog", "keep"),
        ("etc/ssh/ssh_host_ed25519_key", "k"),
        ("etc/ssh/ssh_host_ed25519_key.pub", "k"),
        ("etc/ssh/ssh_host_rsa_key-cert.pub", "k"),
        ("etc/ssh/sshd_config", "keep"),
        ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        (
            "var/lib/dbus/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        ),
        ("etc/hostname", "keep"),
    ] {
        put(root, rel, body);
    }
}

#[test]
fn clean_removes_the_state_and_on_request_logs_keys_machine_id() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    image_tree(r);
    let before = tree(r);

    // A dry run says what, and removes nothing.
    let o = run(
        r,
        &[
            "clean",
            "--logs",
            "--host-keys",
            "--machine-id",
            "--dry-run",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("would be removed"), "{}", stdout(&o));
    assert_eq!(tree(r), before);

    // Without options: the state only; the scripts' logs stay.
    let o = run(r, &["clean", "--json"]);
    assert!(o.status.success());
    let v = json(&o);
    let cleaned: Vec<&str> = v["cleaned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        cleaned.contains(&"/var/lib/vmctx/instance-id"),
        "{cleaned:?}"
    );
    assert!(cleaned.contains(&"/var/lib/vmctx/files/token.txt"));
    assert!(cleaned.contains(&"/run/vmctx/status.json"));
    let after: Vec<String> = tree(r);
    let gone: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(
        gone,
        [
            "run/vmctx/context",
            "run/vmctx/status.json",
            "var/lib/vmctx/files",
            "var/lib/vmctx/files/token.txt",
            "var/lib/vmctx/instance-id",
            "var/lib/vmctx/instances/one-1/plan.json",
            "var/lib/vmctx/instances/one-1/script-start_script.done",
            "var/lib/vmctx/network.json",
            "var/lib/vmctx/sync",
            "var/lib/vmctx/sync/state.json",
        ]
    );

    // Everything asked for.
    let o = run(r, &["clean", "--logs", "--host-keys", "--machine-id"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for p in [
        "removed          /var/lib/vmctx/instances/one-1/start_script.log",
        "removed          /var/log/vmctx-start.log",
        "removed          /etc/ssh/ssh_host_ed25519_key",
        "removed          /etc/ssh/ssh_host_ed25519_key.pub",
        "removed          /etc/ssh/ssh_host_rsa_key-cert.pub",
        "emptied          /etc/machine-id",
        "removed          /var/lib/dbus/machine-id",
    ] {
        assert!(text.contains(p), "{p} not in:\n{text}");
    }
    let left = tree(r);
    let expect = [
        "etc",
        "etc/hostname",
        "etc/machine-id",
        "etc/ssh",
        "etc/ssh/sshd_config",
        "etc/vmctx",
        "run",
        "run/vmctx",
        "var",
        "var/lib",
        "var/lib/dbus",
        "var/lib/vmctx",
        "var/log",
        "var/log/syslog",
    ];
    let left: Vec<&str> = left
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "run/vmctx/lock")
        .collect();
    // etc/vmctx is not made by clean: drop it from the expectation when absent.
    let expect: Vec<&str> = expect
        .into_iter()
        .filter(|p| *p != "etc/vmctx" || left.contains(p))
        .collect();
    assert_eq!(left, expect);
    assert_eq!(std::fs::read(r.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(std::fs::read(r.join("etc/hostname")).unwrap(), b"keep");

    // Cleaning a clean image: nothing to do.
    let o = run(r, &["clean", "--logs", "--host-keys", "--machine-id"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "nothing to clean\n");
}

#[test]
fn clean_keeps_a_dbus_machine_id_symlink() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    put(r, "etc/machine-id", "0123\n");
    std::fs::create_dir_all(r.join("var/lib/dbus")).unwrap();
    std::os::unix::fs::symlink("/etc/machine-id", r.join("var/lib/dbus/machine-id")).unwrap();
    let o = run(r, &["clean", "--machine-id"]);
    assert!(o.status.success());
    assert!(r
        .join("var/lib/dbus/machine-id")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(stdout(&o), "emptied          /etc/machine-id\n");
}
