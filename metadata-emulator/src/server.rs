//! The service over hyper 1 on tokio: HTTP/1.1 with bounded headers, a connection limit, an
//! idle timeout, the hop limit on token responses, and the signals a daemon answers (SIGTERM and
//! SIGINT: drain and stop; SIGHUP: reload the trees; SIGUSR1: log the counters).

use crate::service::{After, Imds, Trees};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are accepted and closed at once (counted as refused).
    pub max_connections: usize,
    /// A connection that sends no complete request head for this long is closed; this also
    /// bounds idle keep-alive connections.
    pub idle_timeout: Duration,
    /// Bytes of request head read before the request is refused (431) or the connection closed.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// How long in-flight requests get after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
            max_head_bytes: 8192,
            max_headers: 32,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Pending connections the kernel queues before accept (std's default of 128 overflows under a
/// connection burst, and clients then wait a second for SYN retransmission).
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a deep accept queue. Must be called inside the runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// Builds new trees on SIGHUP (and wherever else the caller wants).
pub type Reload = Arc<dyn Fn() -> Result<Trees, String> + Send + Sync>;

/// Serves until `shutdown` resolves, then lets open requests finish within the grace time.
pub async fn serve(
    listener: TcpListener,
    imds: Arc<Imds>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or memory: wait a moment instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::policy::Counters::bump(&imds.counters.refused);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let v6 = matches!(stream.local_addr(), Ok(SocketAddr::V6(_)));
        let imds = imds.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let (resp, after) =
                imds.respond(peer.ip(), req.method(), req.uri().path(), req.headers());
            if let After::HopLimit(ttl) = after {
                // The socket outlives this call (hyper owns it until the connection ends), and
                // the response has not been written yet: it leaves with this TTL.
                set_ttl(fd, v6, ttl);
            }
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            // Errors here are the client's (garbage, timeouts, resets): nothing to report.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace time; closing them");
    }
}

/// Serves with the daemon's signals; returns after SIGTERM or SIGINT, having logged the
/// counters.
pub async fn run(
    listener: TcpListener,
    imds: Arc<Imds>,
    limits: Limits,
    reload: Option<Reload>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let watcher = {
        let imds = imds.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = usr1.recv() => tracing::info!("imds counters: {}", imds.counters),
                    _ = hup.recv() => match &reload {
                        Some(r) => reload_now(&imds, r),
                        None => tracing::info!("SIGHUP: nothing to reload"),
                    },
                }
            }
            let _ = stop_tx.send(true);
        })
    };
    serve(listener, imds.clone(), limits, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    })
    .await;
    watcher.abort();
    tracing::info!("imds stopped; counters: {}", imds.counters);
    Ok(())
}

/// Rebuilds the trees; on failure the old ones stay in service.
pub fn reload_now(imds: &Imds, reload: &Reload) {
    match reload() {
        Ok(t) => {
            imds.replace_trees(t);
            tracing::info!("imds trees reloaded");
        }
        Err(e) => tracing::warn!("reload failed, still serving the previous trees: {e}"),
    }
}

fn set_ttl(fd: i32, v6: bool, ttl: u8) {
    let v = libc::c_int::from(ttl);
    let set = |level, name| {
        // SAFETY: fd is a live socket owned by the connection, and the option value is a
        // c_int of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // On a v6 socket a v4-mapped peer still takes IP_TTL; setting both covers either peer.
    let rc = set(libc::IPPROTO_IP, libc::IP_TTL);
    if v6 {
        set(libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS);
    } else if rc != 0 {
        tracing::warn!("setting the hop limit: {}", std::io::Error::last_os_error());
    }
}

/// Raises the soft descriptor limit to the hard one, so the connection limit, not the
/// descriptor limit, is what refuses connections.
pub fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
