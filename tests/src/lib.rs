//! Helpers for vmctx's integration tests: the built binary, real context ISOs (xorriso), and
//! the rule for tests that need a tool or root: skip with a message, but fail under CI.

pub mod cli_help;
mod guest;
mod imds;
mod s3;
mod vm;

pub use guest::*;
pub use imds::*;
pub use s3::*;
pub use vm::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `vmctx` binary of this build, built (once per test process) by a nested `cargo build`:
/// `cargo test` does not build a package's plain binary unless that package has its own
/// integration tests, and a stale binary must never be tested by mistake. Cargo's own lock
/// serializes the test processes that ask at once.
pub fn vmctx_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap(); // target/<triple>/<profile>/deps/x
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "vmctx", "--bin", "vmctx"])
            .current_dir(workspace());
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "building vmctx: {}", stderr(&o));
        profile_dir.join("vmctx")
    })
    .clone()
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

/// Whether a command is on PATH. Only tools listed in `.ci/tools` may be asked for (a test that
/// needs a new tool panics until the line that installs it under CI is added there).
pub fn have_tool(name: &str) -> bool {
    assert!(
        ci_tools().iter().any(|(cmd, _)| cmd == name),
        "the tests ask for `{name}`, which .ci/tools does not list: add `{name} PACKAGE` there"
    );
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every tool in `tools` is present: [`need`] for each (a skip, or a failure under CI).
pub fn need_tools(tools: &[&str]) -> bool {
    tools.iter().all(|t| need(t, have_tool(t)))
}

/// `.ci/tools`: (command, source) pairs, a Debian package or `@script` for each command.
pub fn ci_tools() -> &'static [(String, String)] {
    static TOOLS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    TOOLS.get_or_init(|| {
        std::fs::read_to_string(workspace().join(".ci/tools"))
            .expect(".ci/tools")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let mut w = l.split_whitespace();
                let cmd = w.next().unwrap_or_default().to_string();
                (cmd, w.next().unwrap_or_default().to_string())
            })
            .collect()
    })
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

/// Runs a command, panicking with its stderr when it fails; returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Handler = dyn Fn(&FakeReq, usize) -> FakeResp + Send + Sync;

/// Every file under a scratch root with its content, sorted: what a test compares before and
/// after. Left out: `run/vmctx` (the status and lock every apply keeps, even a refused one)
/// and a [`Guest`]'s `.uts` handle.
pub fn root_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("run/vmctx") {
                stack.push(p);
            } else if !p.is_dir() && !p.ends_with(".uts") {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}
