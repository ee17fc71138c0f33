//! The S3 side of the notebook-sync tests: moto's server and one sync scenario per bucket.

use crate::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
