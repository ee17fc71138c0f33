//! The `vmctx imds serve` process under bad input and load, its signals, and `--host-map`.
//! Everything talks to loopback only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use vmctx_tests::*;

fn ami_source() -> String {
    format!("dir:{}", fixture("imported-ami").display())
}

/// Status line and body of one request over a fresh connection.
fn request(addr: &str, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn get(addr: &str, path: &str) -> String {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn bad_input_and_idle_floods_leave_it_up_with_bounded_memory() {
    let s = ImdsServer::start(&["--source", &ami_source()]);
    let a = s.addr.clone();
    for raw in [
        "GARBAGE\r\n\r\n".to_string(),
        "GET /latest/../meta-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET /latest/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            .to_string(),
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100_000)),
        "PUT /latest/api/token HTTP/1.1\r\nContent-Length: 10000000\r\n\r\nxxxx".to_string(),
    ] {
        let out = request(&a, &raw);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out}");
    }
    let before = rss_kib(s.child.id());
    // Thousands of silent connections (more than the connection limit).
    let idle: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(&a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let during = rss_kib(s.child.id());
    assert!(
        during < 48 * 1024,
        "RSS {during} KiB with 2000 idle connections"
    );
    drop(idle);
    // Slots free again at once when clients go away.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = get(&a, "/latest/meta-data/instance-id");
        if body(&out) == "i-0a1b2c3d4e5f60718" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving after the flood: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A bounded burst of keep-alive requests: every one answered.
    let mut c = TcpStream::connect(&a).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = 2000;
    let mut req = String::new();
    for _ in 0..n {
        req.push_str("GET /latest/meta-data/local-ipv4 HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    req.push_str("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), n + 1);
    let after = rss_kib(s.child.id());
    eprintln!("RSS KiB: start {before}, 2000 idle {during}, after {after}");
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("refused="), "{log}");
}

#[test]
fn sighup_reloads_the_context_and_sigusr1_logs_counters() {
    let ctx = std::fs::read_to_string(fixture("imported-ami").join("context.sh")).unwrap();
    let dir = context_dir(&ctx, &[]);
    let s = ImdsServer::start(&["--source", &format!("dir:{}", dir.path().display())]);
    let p = "/latest/meta-data/instance-id";
    assert_eq!(body(&get(&s.addr, p)), "i-0a1b2c3d4e5f60718");
    std::fs::write(
        dir.path().join("context.sh"),
        ctx.replace("i-0a1b2c3d4e5f60718", "i-0fffffffffffffff1"),
    )
    .unwrap();
    s.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while body(&get(&s.addr, p)) != "i-0fffffffffffffff1" {
        assert!(Instant::now() < deadline, "not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.signal("USR1");
    std::thread::sleep(Duration::from_millis(100));
    let (st, log) = s.stop();
    assert!(st.success());
    assert!(log.contains("imds counters: requests="), "{log}");
    assert!(log.contains("imds trees reloaded"), "{log}");
    assert!(log.contains("imds stopped; counters:"), "{log}");
}

/// One process serving two VMs, each by its source address; a third added while it runs.
#[test]
fn host_map_serves_each_vm_its_own_tree() {
    if !need("curl", have_tool("curl")) {
        return;
    }
    let map = tempfile::tempdir().unwrap();
    let vm2 = map.path().join("127.0.0.2");
    std::fs::create_dir(&vm2).unwrap();
    std::fs::copy(
        fixture("imported-ami").join("context.sh"),
        vm2.join("context.sh"),
    )
    .unwrap();
    std::fs::write(
        map.path().join("127.0.0.3.json"),
        r#"{"meta-data": {"instance-id": "i-00000000000000003"}}"#,
    )
    .unwrap();
    let s = ImdsServer::start(&["--host-map", map.path().to_str().unwrap()]);
    let curl = |from: &str, path: &str| {
        let o = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--interface", from])
            .arg(format!("{}{path}", s.url()))
            .output()
            .unwrap();
        stdout(&o)
    };
    let p = "/latest/meta-data/instance-id";
    assert_eq!(curl("127.0.0.2", p), "i-0a1b2c3d4e5f60718\n200");
    assert_eq!(curl("127.0.0.3", p), "i-00000000000000003\n200");
    assert!(
        curl("127.0.0.1", p).ends_with("\n404"),
        "not a VM of this host"
    );
    assert!(curl("127.0.0.4", p).ends_with("\n404"));
    std::fs::write(
        map.path().join("127.0.0.4.json"),
        r#"{"meta-data": {"instance-id": "i-00000000000000004"}}"#,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl("127.0.0.4", p) != "i-00000000000000004\n200" {
        assert!(Instant::now() < deadline, "the new VM was not picked up");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A token is bound to the VM it was issued to.
    let o = Command::new("curl")
        .args(["-s", "-X", "PUT", "--interface", "127.0.0.2"])
        .args(["-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"])
        .arg(format!("{}/latest/api/token", s.url()))
        .output()
        .unwrap();
    let token = stdout(&o);
    assert!(!token.is_empty());
    let with = |from: &str| {
        let o = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                from,
            ])
            .args(["-H", &format!("X-aws-ec2-metadata-token: {token}")])
            .arg(format!("{}{p}", s.url()))
            .output()
            .unwrap();
        stdout(&o)
    };
    assert_eq!(with("127.0.0.2"), "200");
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("bad_token=0"), "{log}");
}

/// The token response leaves with the hop limit as IP TTL: through one router (a namespace
/// forwarding between two others) a hop limit of 1 loses the token, 2 delivers it.
#[test]
fn hop_limit_stops_tokens_one_hop_away() {
    if !need("root", is_root()) || !need("ip", have_tool("ip")) || !need("curl", have_tool("curl"))
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tag = std::process::id();
    let sh = include_str!("imds_hop_limit.sh");
    let o = Command::new("sh")
        .args(["-c", sh])
        .env("VMCTX", vmctx_bin())
        .env("SRC", ami_source())
        .env("T", t.path())
        .env("TAG", tag.to_string())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("hop1 get=200 put=000"), "{out}");
    assert!(out.contains("hop2 get=200 put=200"), "{out}");
}
