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

/// A guest for apply tests: its own network namespace (veth pairs with given MACs) and its own
/// UTS namespace (so `sethostname` never touches the test machine), plus a scratch root tree
/// with the files `useradd --prefix` needs. Everything is removed on drop.
pub struct Guest {
    pub netns: String,
    uts: PathBuf,
    pub root: tempfile::TempDir,
}

impl Guest {
    /// `None` (skipped) without root, outside CI.
    pub fn new(tag: &str) -> Option<Guest> {
        if !need("root (network and UTS namespaces)", is_root())
            || !need("iproute2", have_tool("ip"))
        {
            return None;
        }
        let netns = format!("vmctx-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &netns]);
        let root = tempfile::tempdir().unwrap();
        let uts = root.path().join(".uts");
        std::fs::write(&uts, "").unwrap();
        sh(&["unshare", &format!("--uts={}", uts.display()), "true"]);
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        std::fs::write(etc.join("gshadow"), "root:*::\n").unwrap();
        if let Ok(defs) = std::fs::read("/etc/login.defs") {
            std::fs::write(etc.join("login.defs"), defs).unwrap();
        }
        std::fs::create_dir_all(root.path().join("root")).unwrap();
        Some(Guest { netns, uts, root })
    }

    /// A veth pair inside the namespace, both ends with the given MACs.
    pub fn veth(&self, a: (&str, &str), b: (&str, &str)) {
        self.ip(&[
            "link", "add", a.0, "address", a.1, "type", "veth", "peer", "name", b.0, "address", b.1,
        ]);
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", self.netns.as_str()];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn root_str(&self) -> &str {
        self.root.path().to_str().unwrap()
    }

    /// Runs vmctx inside the guest's namespaces with `--root` set to its scratch tree.
    pub fn vmctx(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "nsenter"])
            .arg(format!("--uts={}", self.uts.display()))
            .arg(vmctx_bin())
            .args(args)
            .args(["--root", self.root_str()])
            .output()
            .unwrap()
    }

    pub fn hostname(&self) -> String {
        let o = Command::new("nsenter")
            .arg(format!("--uts={}", self.uts.display()))
            .arg("hostname")
            .output()
            .unwrap();
        stdout(&o).trim().to_string()
    }

    pub fn file(&self, abs: &str) -> String {
        std::fs::read_to_string(self.root.path().join(abs.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{abs}: {e}"))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("umount").arg(&self.uts).status();
    }
}

/// Runs a command, panicking with its stderr when it fails; returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// The cache folder `.ci/install-imds-clients` fills (see that script).
pub fn imds_clients_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("VMCTX_CI_CACHE") {
        return c.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    base.join("vmctx-ci")
}

/// A python with botocore and cloud-init's EC2 helper importable (`VMCTX_IMDS_PYTHON`, else
/// the installer's venv).
pub fn imds_python() -> Option<PathBuf> {
    std::env::var_os("VMCTX_IMDS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(imds_clients_cache().join("venv/bin/python")))
        .filter(|p| p.exists())
}

/// amazon-ec2-utils' `ec2-metadata` (`VMCTX_EC2_METADATA`, else the installer's copy).
pub fn ec2_metadata_script() -> Option<PathBuf> {
    std::env::var_os("VMCTX_EC2_METADATA")
        .map(PathBuf::from)
        .or_else(|| Some(imds_clients_cache().join("amazon-ec2-utils/usr/bin/ec2-metadata")))
        .filter(|p| p.exists())
}

/// A running `vmctx imds serve … --listen 127.0.0.1:0`; stopped with SIGTERM when dropped.
pub struct ImdsServer {
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl ImdsServer {
    pub fn start(args: &[&str]) -> ImdsServer {
        use std::io::BufRead;
        let mut child = Command::new(vmctx_bin())
            .args(["imds", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_string)
        else {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("imds serve did not start: {line:?} {}", stderr(&o));
        };
        ImdsServer { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM, then the exit status and what it logged.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let mut err = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let st = self.child.wait().unwrap();
        (st, err)
    }
}

impl Drop for ImdsServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
