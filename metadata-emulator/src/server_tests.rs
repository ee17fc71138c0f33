//! The server over real loopback sockets: raw requests and the bytes that come back.

use super::*;
use crate::tree::{Tree, DEFAULT_SIZE_LIMIT};
use crate::Policy;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    addr: SocketAddr,
    imds: Arc<Imds>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Running {
    let tree = Tree::from_json(
        &json!({"meta-data": {"instance-id": "i-0a1b2c3d4e5f60718",
                              "local-ipv4": "192.168.1.6"}}),
        DEFAULT_SIZE_LIMIT,
    )
    .unwrap();
    let imds = Arc::new(Imds::new(Trees::Single(Arc::new(tree)), Policy::default()).unwrap());
    run(imds, limits).await
}

/// Serves `imds` on a free loopback port until [`Running::stop`].
async fn run(imds: Arc<Imds>, limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve(listener, imds.clone(), limits, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        imds,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

/// Sends raw bytes and reads until the server closes (or 2 s pass).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn small() -> Limits {
    Limits {
        max_connections: 8,
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_http_1_1_with_keep_alive() {
    let r = start(small()).await;
    let out = exchange(
        r.addr,
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /latest//meta-data/local-ipv4/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let first = out.find("HTTP/1.1 200 OK").unwrap();
    let second = out[first + 1..].find("HTTP/1.1 200 OK").unwrap();
    assert!(out.contains("server: EC2ws"), "{out}");
    assert!(out.contains("content-type: text/plain"), "{out}");
    assert!(out.contains("\r\n\r\ni-0a1b2c3d4e5f60718HTTP/1.1"), "{out}");
    assert!(second > 0);
    // HEAD: the length of the leaf, no body.
    assert!(out.contains("content-length: 11"), "{out}");
    assert!(!out.contains("192.168.1.6"), "{out}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_put_over_the_wire_closes_the_connection() {
    let r = start(small()).await;
    let out = exchange(
        r.addr,
        b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n\
          X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(
        out.contains("x-aws-ec2-metadata-token-ttl-seconds: 60"),
        "{out}"
    );
    assert!(out.contains("connection: close"), "{out}");
    let out = exchange(r.addr, b"GET /latest/api/token HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.contains("allow: PUT"), "{out}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_input_get_4xx_or_a_close_and_the_server_stays_up() {
    let r = start(small()).await;
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET /latest/meta-data HTTP/9.9\r\n\r\n",
        b"GET latest HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /latest/../meta-data HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /latest/meta-data HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let out = exchange(r.addr, raw).await;
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 4"),
            "{raw:?}: {out}"
        );
    }
    let big = format!(
        "GET /latest/meta-data HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let out = exchange(r.addr, big.as_bytes()).await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = exchange(
        r.addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
    let out = exchange(
        r.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "still up: {out}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_limit_holds() {
    let limits = small();
    let r = start(limits).await;
    // Fill every slot with a silent connection; one more is closed at once.
    let mut idle = Vec::new();
    for _ in 0..limits.max_connections {
        idle.push(TcpStream::connect(r.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = TcpStream::connect(r.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(1), extra.read(&mut buf))
        .await
        .expect("the extra connection is closed, not left hanging");
    assert_eq!(n.unwrap_or(0), 0);
    // The idle ones are closed by the idle timeout…
    for s in &mut idle {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed by the idle timeout");
        assert_eq!(n.unwrap_or(0), 0);
    }
    drop(idle);
    // …which frees the slots, also after a keep-alive request went idle.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out))
        .await
        .expect("idle keep-alive connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert!(
        r.imds
            .counters
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_nothing_when_idle() {
    let r = start(Limits::default()).await;
    let _open = TcpStream::connect(r.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = std::time::Instant::now();
    r.stop().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// A host map of 127.0.0.2 and 127.0.0.3 served with `limits` on 127.0.0.1.
async fn start_host_map(limits: Limits) -> Running {
    use crate::service::{Served, Vm};
    let mut m = std::collections::HashMap::new();
    for (addr, id) in [
        ("127.0.0.2", "i-00000000000000002"),
        ("127.0.0.3", "i-00000000000000003"),
    ] {
        let ip: std::net::IpAddr = addr.parse().unwrap();
        let tree = Tree::from_json(
            &json!({"meta-data": {"instance-id": id}}),
            DEFAULT_SIZE_LIMIT,
        )
        .unwrap();
        m.insert(
            ip,
            Vm::Ready(Served::new(ip, Arc::new(tree), Policy::default())),
        );
    }
    let imds = Arc::new(Imds::new(Trees::ByAddr(m), Policy::default()).unwrap());
    run(imds, limits).await
}

/// A connection from `from` (any 127/8 address is this machine's).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// The answer to one request over a fresh connection from `from`, or "" when it was closed
/// unanswered; None when nothing came back within a second.
async fn get_from(from: &str, to: SocketAddr, path: &str) -> Option<String> {
    let mut s = connect_from(from, to).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

/// Half-sent requests from an address outside the map and from one VM hold no slot another VM
/// needs: the stranger is closed at accept, the VM is held to its own share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_floods_from_a_stranger_or_a_vm_leave_the_others_served() {
    let limits = Limits {
        max_connections: 8,
        max_per_peer: 3,
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let r = start_host_map(limits).await;
    let mut held = Vec::new();
    for from in ["127.0.0.9", "127.0.0.3"] {
        for _ in 0..40 {
            let mut s = connect_from(from, r.addr).await;
            let _ = s.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHo").await;
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    let out = get_from("127.0.0.2", r.addr, "/latest/meta-data/instance-id")
        .await
        .expect("127.0.0.2 answered");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("i-00000000000000002"), "{out}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // The stranger's connections were closed at once, the VM's beyond its share too.
    let mut closed = [0usize; 2];
    for (i, s) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) | Ok(Err(_)) =
            tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await
        {
            closed[i / 40] += 1;
        }
    }
    assert_eq!(closed, [40, 37], "stranger, VM 3");
    assert!(
        r.imds
            .counters
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 77
    );
    drop(held);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_map_gives_every_vm_its_share_above_the_connection_limit() {
    // Two VMs × 3 each is more than a limit of 4: both still get their 3.
    let limits = Limits {
        max_connections: 4,
        max_per_peer: 3,
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let r = start_host_map(limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.3", r.addr).await);
    }
    for _ in 0..2 {
        held.push(connect_from("127.0.0.2", r.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = get_from("127.0.0.2", r.addr, "/latest/meta-data/instance-id")
        .await
        .unwrap();
    assert!(out.ends_with("i-00000000000000002"), "{out}");
    drop(held);
    r.stop().await;
}

#[test]
fn local_addresses_are_loopback_and_the_interfaces_own() {
    let l = LocalAddrs::default();
    for a in ["127.0.0.1", "127.0.0.9", "::1", "::ffff:127.0.0.1"] {
        assert!(l.contains(a.parse().unwrap()), "{a}");
    }
    let own = interface_addrs().unwrap();
    for a in &own {
        assert!(l.contains(*a), "{a}");
    }
    // Documentation addresses no interface of a test machine holds.
    for a in ["198.51.100.254", "2001:db8::fe"] {
        let ip: std::net::IpAddr = a.parse().unwrap();
        if !own.contains(&ip) {
            assert!(!l.contains(ip), "{a}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_bound_to_lo_serves_loopback() {
    // Binding to a device needs CAP_NET_RAW on older kernels: skip where it is refused.
    let listener = match bind_to("127.0.0.1:0".parse().unwrap(), Some("lo")) {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("SKIPPED: SO_BINDTODEVICE refused: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let addr = listener.local_addr().unwrap();
    let tree = Tree::from_json(
        &json!({"meta-data": {"instance-id": "i-0a1b2c3d4e5f60718"}}),
        DEFAULT_SIZE_LIMIT,
    )
    .unwrap();
    let imds = Arc::new(Imds::new(Trees::Single(Arc::new(tree)), Policy::default()).unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, imds, Limits::guest(), async {
        let _ = rx.await;
    }));
    let out = get_from("127.0.0.5", addr, "/latest/meta-data/instance-id")
        .await
        .unwrap();
    assert!(out.ends_with("i-0a1b2c3d4e5f60718"), "{out}");
    tx.send(()).unwrap();
    task.await.unwrap();
}
