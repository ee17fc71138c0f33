//! Helpers for vmctx's integration tests: the built binary, real context ISOs (xorriso), and
//! the rule for tests that need a tool or root: skip with a message, but fail under CI.

pub mod cli_help;

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
        self.command(args).output().unwrap()
    }

    /// The command [`Guest::vmctx`] runs, to add to its environment first.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "nsenter"])
            .arg(format!("--uts={}", self.uts.display()))
            .arg(vmctx_bin())
            .args(args)
            .args(["--root", self.root_str()]);
        c
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

/// moto's S3 server for the notebook-sync tests: one per test binary, on a free loopback port,
/// stopped when the test process exits (a shell watchdog waits on our stdin). Each test uses
/// its own bucket. `None` (skipped) when moto is missing outside CI.
pub struct Moto {
    pub port: u16,
    pub log: PathBuf,
    _child: std::sync::Mutex<std::process::Child>,
}

/// `VMCTX_MOTO_SERVER`, else the path `.ci/install-sync-deps` recorded, else `moto_server`.
pub fn moto_server_bin() -> Option<String> {
    if let Ok(p) = std::env::var("VMCTX_MOTO_SERVER") {
        return Some(p);
    }
    let cache = std::env::var("VMCTX_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
                })
                .join("vmctx-ci")
        });
    let recorded = std::fs::read_to_string(cache.join("sync-env"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VMCTX_MOTO_SERVER=").map(str::to_string))
        });
    recorded
        .filter(|p| Path::new(p).exists())
        .or_else(|| have_tool("moto_server").then(|| "moto_server".to_string()))
}

pub fn moto() -> Option<&'static Moto> {
    static M: std::sync::OnceLock<Option<Moto>> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let bin = moto_server_bin();
        if !need("moto_server (run .ci/install-sync-deps)", bin.is_some()) {
            return None;
        }
        Some(Moto::start(&bin.unwrap(), &[]))
    })
    .as_ref()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts a moto server with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub fn start(bin: &str, env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("vmctx-moto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("moto.log");
        let child = Command::new("sh")
            .args([
                "-c",
                r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null & pid=$!; cat >/dev/null; kill $pid"#,
                bin,
                &port.to_string(),
                log.to_str().unwrap(),
            ])
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let m = Moto {
            port,
            log,
            _child: std::sync::Mutex::new(child),
        };
        let start = std::time::Instant::now();
        while m.try_request("GET", "/", b"", &[]).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(90),
                "moto did not start: {}",
                std::fs::read_to_string(&m.log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        m
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One unauthenticated HTTP/1.1 request: (status, body).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        let mut head = format!(
            // moto does not check signatures, but treats requests without one as anonymous,
            // and anonymous requests may not overwrite what a keyed client wrote.
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
        let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut rest = resp[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            rest = dechunk(&rest);
        }
        Ok((status, rest))
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.try_request(method, path, body, &[]).unwrap()
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (st, b) = self.request("PUT", &format!("/{bucket}"), b"");
        assert_eq!(st, 200, "create bucket: {}", String::from_utf8_lossy(&b));
    }

    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let (st, b) = self.request("PUT", &format!("/{bucket}/{}", s3_encode(key)), data);
        assert_eq!(st, 200, "put {key}: {}", String::from_utf8_lossy(&b));
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.request("GET", &format!("/{bucket}/{}", s3_encode(key)), b"") {
            (200, b) => Some(b),
            _ => None,
        }
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        self.request("DELETE", &format!("/{bucket}/{}", s3_encode(key)), b"");
    }

    /// Every key in the bucket, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (st, b) = self.request("GET", &format!("/{bucket}?list-type=2"), b"");
        assert_eq!(st, 200);
        let text = String::from_utf8_lossy(&b);
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(|k| {
                k.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&")
            })
            .collect();
        keys.sort();
        keys
    }

    /// The server's request log lines so far (one per request).
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\" ") && l.contains("HTTP/1.1"))
            .map(str::to_string)
            .collect()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// A key as a URL path: every byte but `A-Za-z0-9-._~/` percent-encoded.
pub fn s3_encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One notebook-sync scenario: its own bucket on the shared moto, a folder `nb/` and a state
/// folder in a temp dir, and `vmctx sync --once` with keys in the environment (so nothing else
/// is probed). Remote keys live under the prefix `nb/`.
pub struct SyncCase {
    pub moto: &'static Moto,
    pub bucket: String,
    pub tmp: tempfile::TempDir,
}

impl SyncCase {
    /// `None` (skipped) without moto outside CI.
    pub fn new(name: &str) -> Option<SyncCase> {
        let moto = moto()?;
        let bucket = format!("t-{}", name.replace('_', "-"));
        moto.create_bucket(&bucket);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("nb")).unwrap();
        Some(SyncCase { moto, bucket, tmp })
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("nb")
    }

    pub fn command(&self, extra: &[&str]) -> Command {
        let mut c = self.text_command(extra);
        c.arg("--json");
        c
    }

    /// [`SyncCase::command`] without `--json`: the readable output.
    pub fn text_command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(vmctx_bin());
        c.args(["sync", "--once", "--prefix", "nb/"])
            .arg("--dir")
            .arg(self.dir())
            .args(["--bucket", &self.bucket, "--endpoint", &self.moto.url()])
            .arg("--state-dir")
            .arg(self.tmp.path().join("state"))
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        c
    }

    pub fn sync(&self, extra: &[&str]) -> Output {
        self.command(extra).output().unwrap()
    }

    /// A sync that must succeed; its JSON report.
    pub fn ok(&self, extra: &[&str]) -> serde_json::Value {
        let o = self.sync(extra);
        assert!(
            o.status.success(),
            "sync failed: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        json(&o)
    }

    /// Writes a local file and stamps it with the current time to the nanosecond (a same-size
    /// edit must not hide inside a coarse timestamp tick).
    pub fn write(&self, rel: &str, body: &str) {
        let p = self.dir().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.dir().join(rel)).ok()
    }

    /// Local files (relative, sorted), temp files included.
    pub fn local(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![self.dir()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    todo.push(e.path());
                } else {
                    let rel = e
                        .path()
                        .strip_prefix(self.dir())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    pub fn rput(&self, rel: &str, body: &str) {
        self.moto
            .put(&self.bucket, &format!("nb/{rel}"), body.as_bytes());
    }

    pub fn rget(&self, rel: &str) -> Option<String> {
        self.moto
            .get(&self.bucket, &format!("nb/{rel}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn rdel(&self, rel: &str) {
        self.moto.delete(&self.bucket, &format!("nb/{rel}"));
    }

    /// Remote keys under `nb/`, prefix stripped, sorted.
    pub fn remote(&self) -> Vec<String> {
        self.moto
            .keys(&self.bucket)
            .into_iter()
            .filter_map(|k| k.strip_prefix("nb/").map(str::to_string))
            .collect()
    }

    /// Requests to this bucket in moto's log since line `from`. moto logs a request after
    /// answering it, so the log is read once it has stopped growing.
    pub fn requests_since(&self, from: usize) -> Vec<String> {
        let b = format!(" /{}", self.bucket);
        let mut lines = self.moto.log_lines();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let again = self.moto.log_lines();
            if again.len() == lines.len() {
                break;
            }
            lines = again;
        }
        lines[from..]
            .iter()
            .filter(|l| l.contains(&b))
            .cloned()
            .collect()
    }
}

/// The lines of one `=== NAME` section of a VM's serial log (the harness's report format).
pub fn serial_section<'a>(serial: &'a str, name: &str) -> Vec<&'a str> {
    serial
        .lines()
        .skip_while(|l| !l.starts_with(&format!("=== {name}")))
        .skip(1)
        .take_while(|l| !l.starts_with("===") && !l.starts_with("T_DONE"))
        .collect()
}

/// One request a [`FakeImds`] received.
#[derive(Debug, Clone)]
pub struct FakeReq {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body (as long as its Content-Length).
    pub body: Vec<u8>,
}

impl FakeReq {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a [`FakeImds`] answers: status, body, and a delay before answering.
pub struct FakeResp {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: std::time::Duration,
}

impl FakeResp {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> FakeResp {
        FakeResp {
            status,
            body: body.into(),
            delay: std::time::Duration::ZERO,
        }
    }
    pub fn after(mut self, d: std::time::Duration) -> FakeResp {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(&FakeReq, usize) -> FakeResp + Send + Sync;

/// A fault-injecting IMDS on loopback: every request goes to `handler` (with its number, from
/// 0), each connection in its own thread so a delayed answer holds up no other. Stops on drop.
pub struct FakeImds {
    pub addr: std::net::SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<FakeReq>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeImds {
    pub fn start(
        handler: impl Fn(&FakeReq, usize) -> FakeResp + Send + Sync + 'static,
    ) -> FakeImds {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<FakeReq>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (log, handler) = (log2.clone(), handler.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(conn, &log, &*handler);
                });
            }
        });
        FakeImds { addr, log, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `METHOD path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn serve_one(
    mut conn: std::net::TcpStream,
    log: &std::sync::Mutex<Vec<FakeReq>>,
    handler: &Handler,
) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(1 << 20)];
    std::io::Read::read_exact(&mut reader, &mut body)?;
    let req = FakeReq {
        method,
        path,
        headers,
        body,
    };
    let n = {
        let mut l = log.lock().unwrap();
        l.push(req.clone());
        l.len() - 1
    };
    let resp = handler(&req, n);
    std::thread::sleep(resp.delay);
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        resp.body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(&resp.body)
}

/// An IMDS tree as leaves under `/latest/` (`meta-data/instance-id` → value): the answer for
/// `path` (a leaf's value or a directory's listing), None for 404. `meta-data/public-keys/N/…`
/// is listed as `N=key-N`, as EC2 does.
pub fn tree_answer(leaves: &[(&str, &str)], path: &str) -> Option<String> {
    let rel = path.strip_prefix("/latest/")?;
    if let Some((_, v)) = leaves.iter().find(|(k, _)| *k == rel) {
        return Some(v.to_string());
    }
    let dir = if rel.is_empty() || rel.ends_with('/') {
        rel.to_string()
    } else {
        format!("{rel}/")
    };
    let mut out: Vec<String> = Vec::new();
    for (k, _) in leaves {
        let Some(rest) = k.strip_prefix(&dir) else {
            continue;
        };
        let entry = match rest.split_once('/') {
            Some((d, _)) if dir == "meta-data/public-keys/" => format!("{d}=key-{d}"),
            Some((d, _)) => format!("{d}/"),
            None => rest.to_string(),
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    (!out.is_empty()).then(|| out.join("\n"))
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
