//! The service over hyper 1 on tokio: HTTP/1.1 with bounded headers, connection limits (in all
//! and per source address), a header timeout, admission at accept (a host map's unknown
//! addresses, a guest's non-local peers), the hop limit on token responses, and the signals a
//! daemon answers (SIGTERM and SIGINT: drain and stop; SIGHUP: the caller's reload; SIGUSR1:
//! log the counters).

use crate::service::{After, Imds, Trees};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Who may connect at all; checked at accept, before a connection slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Whoever reaches the socket (a host map still takes only its VMs' addresses).
    Any,
    /// Only this machine's own addresses (loopback, and any address of any interface): the
    /// guest's own processes, never a neighbour.
    Local,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are accepted and closed at once (counted as refused).
    /// A host map raises it to `max_per_peer` for each of its VMs (as far as the descriptor
    /// limit allows), so every VM has its share whatever the others do.
    pub max_connections: usize,
    /// Connections one source address may hold at once; more from it are closed at once.
    pub max_per_peer: usize,
    /// A connection that sends no complete request head for this long is closed: it bounds the
    /// wait for the first byte, a head sent slowly, and idle keep-alive connections.
    pub idle_timeout: Duration,
    /// Bytes of request head read before the request is refused (431) or the connection closed.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// How long in-flight requests get after SIGTERM.
    pub shutdown_grace: Duration,
    pub peers: Peers,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_per_peer: 1024,
            idle_timeout: Duration::from_secs(10),
            max_head_bytes: 8192,
            max_headers: 32,
            shutdown_grace: Duration::from_secs(5),
            peers: Peers::Any,
        }
    }
}

impl Limits {
    /// A host serving its VMs: at most 16 connections per VM address (clients use a handful;
    /// vmctx's own crawl 8), and 2 s to send a request head.
    pub fn host_map() -> Limits {
        Limits {
            max_per_peer: 16,
            idle_timeout: Duration::from_secs(2),
            ..Limits::default()
        }
    }

    /// Inside a guest: its own processes only.
    pub fn guest() -> Limits {
        Limits {
            peers: Peers::Local,
            ..Limits::default()
        }
    }
}

/// Pending connections the kernel queues before accept (std's default of 128 overflows under a
/// connection burst, and clients then wait a second for SYN retransmission).
pub const BACKLOG: u32 = 4096;

/// Descriptors kept for everything but connections (listener, netlink, logs, builds).
const FD_RESERVE: usize = 64;

/// A listener on `addr` with a deep accept queue. Must be called inside the runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_to(addr, None)
}

/// A listener on `addr` that, with `device`, takes only packets that arrive on that interface
/// (`SO_BINDTODEVICE`): bound to `lo`, it answers the machine's own processes and nobody who
/// routes packets for one of its addresses to it from outside.
pub fn bind_to(addr: SocketAddr, device: Option<&str>) -> std::io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(dev) = device {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// Connections held, in all and per source address.
struct Slots {
    per_peer: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One connection's slot, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Slots {
    fn new(per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots {
            per_peer: per_peer.max(1),
            state: Mutex::default(),
        })
    }

    fn take(self: &Arc<Self>, peer: IpAddr, cap: usize) -> Option<Slot> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.total >= cap {
            return None;
        }
        let n = s.by_peer.entry(peer).or_insert(0);
        if *n >= self.per_peer {
            return None;
        }
        *n += 1;
        s.total += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total -= 1;
        if let Some(n) = s.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                s.by_peer.remove(&self.peer);
            }
        }
    }
}

/// This machine's addresses, for [`Peers::Local`]. Re-read (at most every 250 ms) when a peer
/// is not among them, so an address added since counts.
pub struct LocalAddrs {
    state: Mutex<(HashSet<IpAddr>, Option<Instant>)>,
}

impl Default for LocalAddrs {
    fn default() -> Self {
        LocalAddrs {
            state: Mutex::new((HashSet::new(), None)),
        }
    }
}

impl LocalAddrs {
    const REREAD_AFTER: Duration = Duration::from_millis(250);

    /// Whether `ip` is one of this machine's: loopback (all of 127/8 and ::1) or an address
    /// of one of its interfaces.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return true;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.contains(&ip) {
            return true;
        }
        if s.1.is_some_and(|t| t.elapsed() < Self::REREAD_AFTER) {
            return false;
        }
        match interface_addrs() {
            Ok(a) => s.0 = a,
            Err(e) => tracing::warn!("reading this machine's addresses: {e}"),
        }
        s.1 = Some(Instant::now());
        s.0.contains(&ip)
    }
}

/// Every address of every interface (getifaddrs).
pub fn interface_addrs() -> std::io::Result<HashSet<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that freeifaddrs releases below; each node
    // and its address are read only while the list is alive, by the family's own layout.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = HashSet::new();
        let mut p = head;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.insert(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.insert(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(head);
        Ok(out)
    }
}

/// The soft descriptor limit (after [`raise_fd_limit`], the hard one).
fn fd_limit() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit on a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

/// Whether `peer` may connect at all, before it takes a slot: a host map's VMs only, and with
/// [`Peers::Local`] this machine's own addresses only.
fn admitted(trees: &Trees, peer: IpAddr, peers: Peers, local: &LocalAddrs) -> bool {
    trees.knows(peer) && (peers == Peers::Any || local.contains(peer))
}

/// Connections served at once: a host map gives each VM its per-address share (bounded by the
/// descriptors there are), never less than `max_connections`.
fn capacity(trees: &Trees, limits: &Limits, fd_budget: usize) -> usize {
    match trees {
        Trees::Single(_) => limits.max_connections,
        Trees::ByAddr(m) => limits
            .max_connections
            .max(limits.max_per_peer.saturating_mul(m.len()).min(fd_budget)),
    }
}

/// Builds new trees (SIGHUP, a timer); it may block, so it runs off the async workers.
pub type Reload = Arc<dyn Fn() -> Result<Trees, String> + Send + Sync>;

/// Serves until `shutdown` resolves, then lets open requests finish within the grace time.
pub async fn serve(
    listener: TcpListener,
    imds: Arc<Imds>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(limits.max_per_peer);
    let local = LocalAddrs::default();
    let fd_budget = fd_limit().saturating_sub(FD_RESERVE);
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
        let ip = peer.ip().to_canonical();
        let slot = {
            let trees = imds.trees();
            if admitted(&trees, ip, limits.peers, &local) {
                slots.take(ip, capacity(&trees, &limits, fd_budget))
            } else {
                None
            }
        };
        let Some(slot) = slot else {
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

/// What SIGHUP does; called on the signal task, so it must not block (hand work to a thread).
pub type OnHup = Arc<dyn Fn() + Send + Sync>;

/// Serves with the daemon's signals; returns after SIGTERM or SIGINT, having logged the
/// counters.
pub async fn run(
    listener: TcpListener,
    imds: Arc<Imds>,
    limits: Limits,
    on_hup: Option<OnHup>,
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
                    _ = hup.recv() => match &on_hup {
                        Some(f) => f(),
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
