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
    let map = two_vm_map();
    let s = ImdsServer::start(&["--host-map", map.path().to_str().unwrap()]);
    let p = "/latest/meta-data/instance-id";
    wait_served(
        &s.addr,
        "127.0.0.2",
        p,
        "i-0a1b2c3d4e5f60718",
        Duration::from_secs(5),
    );
    assert_eq!(
        body(&get_from("127.0.0.3", &s.addr, p)),
        "i-00000000000000003"
    );
    // Not a VM of this host: closed unanswered.
    assert_eq!(
        get_from("127.0.0.1", &s.addr, p),
        "",
        "not a VM of this host"
    );
    assert_eq!(get_from("127.0.0.4", &s.addr, p), "");
    std::fs::write(
        map.path().join("127.0.0.4.json"),
        r#"{"meta-data": {"instance-id": "i-00000000000000004"}}"#,
    )
    .unwrap();
    wait_served(
        &s.addr,
        "127.0.0.4",
        p,
        "i-00000000000000004",
        Duration::from_secs(10),
    );
    // A token is bound to the VM it was issued to.
    let token = body(&put_token_from("127.0.0.2", &s.addr)).to_string();
    assert!(!token.is_empty());
    let out = get_with_token_from("127.0.0.2", &s.addr, p, &token);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("bad_token=0"), "{log}");
}

/// A connection from `from` (every 127/8 address is this machine's) to `to`.
fn connect_from(from: &str, to: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let src: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&src.into()).unwrap();
    let dst: std::net::SocketAddr = to.parse().unwrap();
    sock.connect(&dst.into()).unwrap();
    sock.into()
}

/// One request from `from`: the whole answer, or "" when the connection was closed unanswered.
fn request_from(from: &str, to: &str, raw: &str) -> String {
    let mut s = connect_from(from, to);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(raw.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get_from(from: &str, to: &str, path: &str) -> String {
    request_from(
        from,
        to,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

fn get_with_token_from(from: &str, to: &str, path: &str, token: &str) -> String {
    request_from(
        from,
        to,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token: {token}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
}

fn put_token_from(from: &str, to: &str) -> String {
    request_from(
        from,
        to,
        "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n\
         X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n",
    )
}

/// Waits until `from` is served `want` at `path`; how long it took.
fn wait_served(to: &str, from: &str, path: &str, want: &str, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let out = get_from(from, to, path);
        if out.starts_with("HTTP/1.1 200") && body(&out) == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{from} not served {want} within {within:?}: {out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A map of two VMs: 127.0.0.2 (the imported AMI's context) and 127.0.0.3 (a tree file).
fn two_vm_map() -> tempfile::TempDir {
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
    map
}

/// Over a thousand half-sent requests from an address outside the map, and as many from a VM
/// of the map, once held every connection slot: every VM was refused. Now the stranger is closed
/// at accept and the VM is held to its own share; 127.0.0.2 is still answered at once.
#[test]
fn host_map_half_sent_floods_leave_the_other_vms_served() {
    let map = two_vm_map();
    let s = ImdsServer::start(&["--host-map", map.path().to_str().unwrap()]);
    let p = "/latest/meta-data/instance-id";
    wait_served(
        &s.addr,
        "127.0.0.2",
        p,
        "i-0a1b2c3d4e5f60718",
        Duration::from_secs(5),
    );
    let half_sent = |from: &str, n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|_| {
                let mut c = connect_from(from, &s.addr);
                let _ = c.write_all(b"GET /latest/meta-data/iam/ HTTP/1.1\r\nHo");
                c
            })
            .collect()
    };
    let stranger = half_sent("127.0.0.9", 1100);
    let vm3 = half_sent("127.0.0.3", 1100);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let t = Instant::now();
        let out = get_from("127.0.0.2", &s.addr, p);
        assert_eq!(body(&out), "i-0a1b2c3d4e5f60718", "{out}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    drop((stranger, vm3));
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
    let refused: u64 = log
        .rsplit("refused=")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // All of the stranger's, and all but its share of the VM's.
    assert!(refused >= 1100 + 1100 - 16, "{log}");
}

/// `context.sh` of a VM whose user-data is gzipped YAML nested `depth` deep: a few hundred
/// bytes that keep a YAML parser busy for minutes.
fn hostile_context(vmid: u32, depth: usize) -> String {
    use base64::Engine;
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"#cloud-config\nruncmd: ").unwrap();
    gz.write_all("[".repeat(depth).as_bytes()).unwrap();
    let ud = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    format!(
        "VMID='{vmid}'\nEC2_METADATA='YES'\nEC2_INSTANCE_ID='i-0000000000000000{vmid}'\n\
         USER_DATA_ENCODING='base64'\nUSER_DATA='{ud}'\n"
    )
}

fn write_context(map: &std::path::Path, addr: &str, text: &str) {
    let d = map.join(addr);
    std::fs::create_dir_all(&d).unwrap();
    // Written aside and renamed, as a cloud driver would: the server never reads half a file.
    std::fs::write(d.join(".context.sh.new"), text).unwrap();
    std::fs::rename(d.join(".context.sh.new"), d.join("context.sh")).unwrap();
}

/// One VM's context (gzipped, deeply nested YAML in its user-data) once kept every VM unserved
/// for minutes, at start and again on every change. Now the others are answered within a couple
/// of seconds of the start and all through a rebuild of a hostile one, and pick up their own
/// changes meanwhile; the hostile VM loses only its user-data (the time budget of a build is
/// tested with a build that never ends in `imds_serve`'s unit tests).
#[test]
fn host_map_a_hostile_context_holds_up_no_other_vm() {
    let map = tempfile::tempdir().unwrap();
    let ami = std::fs::read_to_string(fixture("imported-ami").join("context.sh")).unwrap();
    write_context(map.path(), "127.0.0.2", &ami);
    let hostile = hostile_context(4, 128 << 10);
    assert!(hostile.len() < 512, "{} bytes", hostile.len());
    write_context(map.path(), "127.0.0.4", &hostile);
    write_context(
        map.path(),
        "127.0.0.5",
        &ami.replace("i-0a1b2c3d4e5f60718", "i-00000000000000005"),
    );
    let p = "/latest/meta-data/instance-id";
    let started = Instant::now();
    let s = ImdsServer::start(&["--host-map", map.path().to_str().unwrap()]);
    wait_served(
        &s.addr,
        "127.0.0.2",
        p,
        "i-0a1b2c3d4e5f60718",
        Duration::from_secs(5),
    );
    wait_served(
        &s.addr,
        "127.0.0.5",
        p,
        "i-00000000000000005",
        Duration::from_secs(5),
    );
    // Generous bounds for shared CPUs: it takes well under a second, and took minutes before.
    eprintln!("both served {:?} after the start", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The hostile VM costs only what its bad value configures: its user-data is refused by the
    // nesting bound before any YAML parser sees it (or, were a build ever slow, the build is
    // stopped at its time budget), and it is answered with its own data, never another's.
    let t = Instant::now();
    loop {
        let out = get_from("127.0.0.4", &s.addr, p);
        if out.starts_with("HTTP/1.1 200") {
            assert_eq!(body(&out), "i-00000000000000004", "{out}");
            break;
        }
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 503"),
            "127.0.0.4: {out}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "127.0.0.4: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 127.0.0.5 turns hostile: while it is built again, 127.0.0.2 is answered at once.
    write_context(map.path(), "127.0.0.5", &hostile_context(5, 128 << 10));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        let q = Instant::now();
        let out = get_from("127.0.0.2", &s.addr, p);
        assert_eq!(body(&out), "i-0a1b2c3d4e5f60718", "{out}");
        assert!(q.elapsed() < Duration::from_secs(3), "{:?}", q.elapsed());
        let other = get_from("127.0.0.5", &s.addr, p);
        assert!(!other.contains("i-0a1b2c3d4e5f60718"), "{other}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A change of its own while 127.0.0.5 builds again is picked up within seconds.
    write_context(map.path(), "127.0.0.5", &hostile_context(5, 130 << 10));
    write_context(
        map.path(),
        "127.0.0.2",
        &ami.replace("i-0a1b2c3d4e5f60718", "i-00000000000000002"),
    );
    wait_served(
        &s.addr,
        "127.0.0.2",
        p,
        "i-00000000000000002",
        Duration::from_secs(10),
    );
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
}

/// Each VM's own `EC2_IMDS_TOKENS` holds in host mode, and a token minted by one VM is refused
/// from another, even one whose tree has the same instance id.
#[test]
fn host_map_keeps_each_vm_s_token_policy_and_binds_tokens_to_the_vm() {
    let map = tempfile::tempdir().unwrap();
    let ami = std::fs::read_to_string(fixture("imported-ami").join("context.sh")).unwrap();
    let required = format!("{ami}EC2_IMDS_TOKENS='required'\n");
    write_context(map.path(), "127.0.0.2", &required);
    write_context(map.path(), "127.0.0.3", &required);
    let s = ImdsServer::start(&["--host-map", map.path().to_str().unwrap()]);
    let p = "/latest/meta-data/instance-id";
    let t = Instant::now();
    let (a, b) = loop {
        let a = put_token_from("127.0.0.2", &s.addr);
        let b = put_token_from("127.0.0.3", &s.addr);
        if a.starts_with("HTTP/1.1 200") && b.starts_with("HTTP/1.1 200") {
            break (body(&a).to_string(), body(&b).to_string());
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{a}\n{b}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // A's context requires tokens: nothing without one.
    let out = get_from("127.0.0.2", &s.addr, p);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let out = get_with_token_from("127.0.0.2", &s.addr, p, &a);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(body(&out), "i-0a1b2c3d4e5f60718");
    // A's token from B's address, and B's from A's.
    let out = get_with_token_from("127.0.0.3", &s.addr, p, &a);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let out = get_with_token_from("127.0.0.2", &s.addr, p, &b);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let out = get_with_token_from("127.0.0.3", &s.addr, p, &b);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("127.0.0.2: tree ready"), "{log}");
    assert!(log.contains("tokens required"), "{log}");
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

/// `--guest` once answered the whole segment: a neighbour that routes 169.254.169.254 via the
/// guest's address is zero routed hops away, so it got a token (hop limit 1) and the role's
/// credentials. Now only the guest itself is served, from loopback or its own address.
#[test]
fn guest_mode_serves_the_guest_and_not_its_neighbour() {
    if !need("root", is_root()) || !need("ip", have_tool("ip")) || !need("curl", have_tool("curl"))
    {
        return;
    }
    let ami = std::fs::read_to_string(fixture("imported-ami").join("context.sh")).unwrap();
    let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYNEIGHBOUR";
    let ctx = context_dir(
        &format!(
            "{ami}EC2_IAM_ROLE='notebooks'\nEC2_IAM_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE'\n\
             EC2_IAM_SECRET_ACCESS_KEY='{secret}'\n"
        ),
        &[],
    );
    let t = tempfile::tempdir().unwrap();
    let o = Command::new("sh")
        .args(["-c", include_str!("imds_guest_neighbour.sh")])
        .env("VMCTX", vmctx_bin())
        .env("SRC", format!("dir:{}", ctx.path().display()))
        .env("T", t.path())
        .env("TAG", std::process::id().to_string())
        .env("ROLE", "notebooks")
        .env("SECRET", secret)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("neighbour put=000 get=000 v1=000 secret=no"),
        "{out}"
    );
    assert!(
        out.contains("guest put=200 get=200 v1=401 secret=yes"),
        "{out}"
    );
    assert!(
        out.contains("guest-own-address put=200 get=200 v1=401 secret=yes"),
        "{out}"
    );
    assert!(out.contains("bound to lo"), "{out}");
}
