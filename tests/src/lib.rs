//! Helpers for vmctx's integration tests: the built binary, real context ISOs (xorriso), and
//! the rule for tests that need a tool or root: skip with a message, but fail under CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `vmctx` binary of this build (cargo builds the workspace's binaries before running
/// tests); built on demand if a lone `cargo test -p vmctx-tests` did not.
pub fn vmctx_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps/x
    let bin = profile_dir.join("vmctx");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "vmctx", "--bin", "vmctx"])
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(status.success(), "building vmctx failed");
    }
    bin
}

pub fn vmctx(args: &[&str]) -> Output {
    Command::new(vmctx_bin()).args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether a requirement of a test is met. Unmet: skip with a message, or fail when `CI` is set.
pub fn need(what: &str, met: bool) -> bool {
    if met {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required under CI");
    }
    eprintln!("SKIPPED: {what} is not available here");
    false
}

pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn is_root() -> bool {
    // /proc/self/status "Uid:" real effective ...
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Builds a context ISO from `dir` with the project's own builder script (xorriso, as
/// OpenNebula does). `None` when xorriso is missing outside CI.
pub fn build_iso(dir: &Path, out: &Path) -> Option<PathBuf> {
    if !need("xorriso", have_tool("xorriso")) {
        return None;
    }
    let o = Command::new(workspace().join("vm-fixtures/build-context-iso"))
        .arg(dir)
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "build-context-iso: {}", stderr(&o));
    Some(out.to_path_buf())
}

/// A folder holding `context.sh` with this text (and other files).
pub fn context_dir(context_sh: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("context.sh"), context_sh).unwrap();
    for (name, body) in files {
        std::fs::write(t.path().join(name), body).unwrap();
    }
    t
}

pub fn fixture(name: &str) -> PathBuf {
    workspace().join("vm-fixtures/contexts").join(name)
}

pub fn links_file(name: &str) -> PathBuf {
    workspace()
        .join("vm-fixtures/links")
        .join(format!("{name}.links"))
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}
