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
