//! EC2 metadata helpers: the real clients' locations, vmctx's emulator on loopback, and a
//! fault-injecting fake IMDS.

use crate::*;
use std::path::PathBuf;
use std::process::Command;

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

/// The address in the first line `vmctx imds serve` prints on stdout (`listening on ADDR`);
/// the line itself when it says something else.
pub fn listening_addr(child: &mut std::process::Child) -> Result<String, String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("listening on ") {
        Some(addr) => Ok(addr.to_string()),
        None => Err(line),
    }
}

impl ImdsServer {
    pub fn start(args: &[&str]) -> ImdsServer {
        let mut child = Command::new(vmctx_bin())
            .args(["imds", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let Ok(addr) = listening_addr(&mut child) else {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("imds serve did not start: {}", stderr(&o));
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
