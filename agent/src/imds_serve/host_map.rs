//! `--host-map DIR`: the listener serves from the first moment; a manager task watches DIR
//! and builds each VM's tree in a process of its own, a few at once, each killed at
//! [`BUILD_BUDGET`], and publishes the map as each one is ready.
//!
//! A VM is known by its files (`DIR/<addr>/`, `DIR/<addr>.json`, or an OpenNebula VM folder);
//! its addresses come from its name, or from its context once built. An address two VMs
//! claim is served to neither.

use super::build::{build_in_child, Built};
use super::host_status::{Status, VmRow};
use super::opennebula_datastore::Datastore;
use super::*;
use std::collections::HashSet;
use tokio::sync::{mpsc, Semaphore};
use vmctx_imds::VmStats;

pub async fn serve(
    listen: SocketAddr,
    from: HostMap,
    flags: Flags,
    extra: HostOptions,
) -> Result<(), ServeError> {
    let listener =
        server::bind_to(listen, extra.device.as_deref()).map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr()?;
    let imds = Arc::new(
        Imds::new(Trees::ByAddr(HashMap::new()), flags.over(None))
            .map_err(|e| ServeError::Tree(e.to_string()))?,
    );
    let status = Status::default();
    let status_task = match &extra.status_socket {
        Some(p) => Some(host_status::listen(p, status.clone(), imds.clone())?),
        None => None,
    };
    let usr1 = host_status::on_usr1(status.clone())?;
    let (hup_tx, hup_rx) = mpsc::unbounded_channel();
    let manager = Manager::new(from.clone(), flags, imds.clone()).reporting(status);
    let manager = tokio::spawn(manager.run(hup_rx));
    tracing::info!(
        "imds: serving the VMs of {from} on {local}{} (host flags: tokens {}, hop limit {})",
        extra
            .device
            .as_deref()
            .map_or(String::new(), |d| format!(" (bound to {d})")),
        if flags.require_token {
            "required"
        } else {
            "as each VM asks"
        },
        flags
            .hop_limit
            .map_or("as each VM asks".to_string(), |h| format!("at most {h}"))
    );
    say_listening(local);
    let on_hup: OnHup = Arc::new(move || {
        let _ = hup_tx.send(());
    });
    server::run(listener, imds, Limits::host_map(), Some(on_hup)).await?;
    manager.abort();
    usr1.abort();
    if let Some(t) = status_task {
        t.abort();
    }
    Ok(())
}

/// Builds at once: the machine's CPUs, at least 4 (a build that runs out of time holds
/// its place for the budget, so a few hostile VMs must not fill every place).
fn builds_at_once() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().max(4))
}

/// Builds one VM's tree: [`build_in_child`], or a stand-in in tests. The future is dropped
/// at the time budget.
pub type Builder = Arc<
    dyn Fn(VmSource) -> futures::future::BoxFuture<'static, Result<Built, String>> + Send + Sync,
>;

struct Entry {
    src: VmSource,
    /// Of the files the current (or last) build read.
    stamp: Stamp,
    /// Where it is served: its name's address, or its context's once built.
    addrs: Vec<IpAddr>,
    /// Its address is its name: after a change it is not served until built again (another
    /// VM may hold the address now). A VM folder keeps its tree until the new one is ready.
    named: bool,
    served: Option<Served>,
    /// Its counters, across its trees.
    stats: Arc<VmStats>,
    built_at: Option<Instant>,
    /// Its build for `stamp` failed or ran out of time: not built again until its files
    /// change (or SIGHUP); a VM folder keeps its previous tree meanwhile.
    failed: bool,
    /// A build is queued or running.
    building: bool,
    /// Build again when the running build ends (its files changed meanwhile, or SIGHUP).
    again: bool,
    /// The current build's number (unique in this process), so a result is matched to
    /// the build that is current, even after the VM left DIR and came back.
    generation: u64,
}

impl Entry {
    fn new(src: VmSource, stamp: Stamp, addr: Option<IpAddr>) -> Entry {
        Entry {
            src,
            stamp,
            addrs: addr.into_iter().collect(),
            named: addr.is_some(),
            served: None,
            stats: Arc::default(),
            built_at: None,
            failed: false,
            building: false,
            again: false,
            generation: 0,
        }
    }

    /// What the server answers for it: its tree, 503 while the first is built, nothing once
    /// its build failed with no tree to fall back on.
    fn vm(&self) -> Option<Vm> {
        match (&self.served, self.failed) {
            (Some(s), _) => Some(Vm::Ready(s.clone())),
            (None, false) => Some(Vm::Building),
            (None, true) => None,
        }
    }
}

struct Done {
    key: PathBuf,
    generation: u64,
    result: Result<Built, String>,
    took: Duration,
}

/// How often the map is published at most while builds finish.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// The VMs of the host map, by the path of their files.
type Found = HashMap<PathBuf, (VmSource, Stamp, Option<IpAddr>)>;

pub struct Manager {
    from: HostMap,
    flags: Flags,
    imds: Arc<Imds>,
    vms: HashMap<PathBuf, Entry>,
    datastore: Datastore,
    permits: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: Option<mpsc::UnboundedReceiver<Done>>,
    warned: HashSet<String>,
    /// The host-map folder could not be read last time (warned once until it can).
    unreadable: bool,
    /// Addresses claimed by more than one VM, as last logged.
    duplicates: HashMap<IpAddr, Vec<PathBuf>>,
    status: Status,
    /// Builds finished since the map was last published.
    dirty: bool,
    budget: Duration,
    build: Builder,
    builds: u64,
}

impl Manager {
    pub fn new(from: HostMap, flags: Flags, imds: Arc<Imds>) -> Manager {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Manager {
            from,
            flags,
            imds,
            vms: HashMap::new(),
            datastore: Datastore::default(),
            permits: Arc::new(Semaphore::new(builds_at_once())),
            done_tx,
            done_rx: Some(done_rx),
            warned: HashSet::new(),
            unreadable: false,
            duplicates: HashMap::new(),
            status: Status::default(),
            dirty: false,
            budget: BUILD_BUDGET,
            build: Arc::new(build_in_child),
            builds: 0,
        }
    }

    /// Keeps `status` (host-status, SIGUSR1) up to date.
    pub fn reporting(mut self, status: Status) -> Manager {
        self.status = status;
        self
    }

    pub async fn run(mut self, mut hup: mpsc::UnboundedReceiver<()>) {
        let mut done = self.done_rx.take().expect("run once");
        let mut last = Instant::now();
        let mut tick = tokio::time::interval(HOST_MAP_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.scan(false).await,
                Some(()) = hup.recv() => {
                    tracing::info!("SIGHUP: building every VM's tree again");
                    self.scan(true).await;
                }
                Some(d) = done.recv() => {
                    // Builds pour in at start: the map (every VM) is published once for all
                    // those done by now, and at most every PUBLISH_EVERY.
                    self.finished(d);
                    while let Ok(d) = done.try_recv() {
                        self.finished(d);
                    }
                    if last.elapsed() >= PUBLISH_EVERY {
                        self.publish();
                        last = Instant::now();
                    }
                }
                _ = tokio::time::sleep(PUBLISH_EVERY), if self.dirty => {
                    self.publish();
                    last = Instant::now();
                }
            }
        }
    }

    /// Reads DIR (names and metadata, and the labels of new VM folders' disks) on a blocking
    /// thread.
    async fn list(&mut self) -> Option<Found> {
        let from = self.from.clone();
        let mut store = std::mem::take(&mut self.datastore);
        let listed = tokio::task::spawn_blocking(move || {
            let r = match &from {
                HostMap::Dir(dir) => list_host_map(dir).map(|(m, unnamed)| {
                    let found = m
                        .into_iter()
                        .map(|(a, (src, stamp))| (src.path().to_path_buf(), (src, stamp, Some(a))))
                        .collect();
                    (found, unnamed)
                }),
                HostMap::OpenNebula(dir) => store.list(dir).map(|m| {
                    let found = m
                        .into_iter()
                        .map(|(k, (src, stamp))| (k, (src, stamp, None)))
                        .collect();
                    (found, Vec::new())
                }),
            };
            (r, store)
        })
        .await;
        let (listed, store) = listed.ok()?;
        self.datastore = store;
        let (found, unnamed) = match listed {
            Ok(l) => {
                self.unreadable = false;
                l
            }
            Err(e) => {
                if !std::mem::replace(&mut self.unreadable, true) {
                    tracing::warn!("{}: {e}; serving no VM until it can be read", self.from);
                }
                (HashMap::new(), Vec::new())
            }
        };
        for name in unnamed {
            if self.warned.insert(name.clone()) {
                tracing::warn!("{}/{name}: not named for an IP address", self.from);
            }
        }
        Some(found)
    }

    /// Starts a build for every VM that is new or changed (all of them when `force`), or
    /// whose tree is an hour old; forgets those that left.
    async fn scan(&mut self, force: bool) {
        let Some(found) = self.list().await else {
            return;
        };
        let before = self.vms.len();
        self.vms.retain(|key, e| {
            let keep = found.contains_key(key);
            if !keep && !e.named {
                tracing::info!("{}: gone", key.display());
            }
            keep
        });
        let mut changed = self.vms.len() != before;
        for (key, (src, stamp, addr)) in found {
            let start = match self.vms.get_mut(&key) {
                None => {
                    self.vms.insert(key.clone(), Entry::new(src, stamp, addr));
                    changed = true;
                    true
                }
                Some(e) if e.src != src || e.stamp != stamp => {
                    tracing::info!("{}: changed", key.display());
                    e.src = src;
                    e.stamp = stamp;
                    if e.named {
                        e.served = None;
                    }
                    e.failed = false;
                    changed = true;
                    true
                }
                Some(e) if force => {
                    if std::mem::take(&mut e.failed) && e.served.is_none() {
                        changed = true; // 503 while it is tried again
                    }
                    true
                }
                Some(e) => !e.failed && e.built_at.is_some_and(|t| t.elapsed() >= REBUILD_EVERY),
            };
            if start {
                self.start(key);
            }
        }
        if changed {
            self.publish();
        }
    }

    fn start(&mut self, key: PathBuf) {
        let Some(e) = self.vms.get_mut(&key) else {
            return;
        };
        if e.building {
            e.again = true;
            return;
        }
        e.building = true;
        e.again = false;
        self.builds += 1;
        e.generation = self.builds;
        let generation = e.generation;
        let src = e.src.clone();
        let (permits, tx, budget) = (self.permits.clone(), self.done_tx.clone(), self.budget);
        let build = self.build.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let started = Instant::now();
            let result = match tokio::time::timeout(budget, build(src)).await {
                Ok(r) => r,
                // The build (its process) is dropped: killed.
                Err(_) => Err(format!(
                    "building its tree took longer than {} s: stopped; not built again \
                     until its files change",
                    budget.as_secs_f32()
                )),
            };
            let _ = tx.send(Done {
                key,
                generation,
                result,
                took: started.elapsed(),
            });
        });
    }

    fn finished(&mut self, done: Done) {
        let Done {
            key,
            generation,
            result,
            took,
        } = done;
        let Some(e) = self.vms.get_mut(&key) else {
            return; // removed from DIR meanwhile
        };
        if e.generation != generation {
            return;
        }
        e.building = false;
        if e.again {
            // Built from files that have changed since (or before a SIGHUP): again.
            self.start(key);
            return;
        }
        let name = e.addrs.first().filter(|_| e.named).copied();
        let shown = name.map_or_else(|| key.display().to_string(), |a| a.to_string());
        match result {
            Ok(built) => {
                let policy = self.flags.for_vm(built.policy);
                let tree = Arc::new(built.tree);
                let served = match name {
                    Some(addr) => Served::new(addr, tree, policy),
                    None => {
                        e.addrs = built.addrs;
                        Served::for_vm(&key.to_string_lossy(), tree, policy)
                    }
                };
                tracing::info!(
                    "{shown}: tree ready in {} ms (tokens {}, hop limit {}){}",
                    took.as_millis(),
                    if policy.tokens_required {
                        "required"
                    } else {
                        "optional"
                    },
                    policy.hop_limit,
                    if name.is_some() {
                        String::new()
                    } else {
                        format!(", {} at {}", served.tree.instance_id(), list(&e.addrs))
                    }
                );
                e.served = Some(served.counting(e.stats.clone()));
                e.built_at = Some(Instant::now());
                e.failed = false;
            }
            Err(why) if e.served.is_some() && !e.named => {
                tracing::warn!("{shown}: not built: {why}; its previous tree is served");
                e.failed = true;
            }
            Err(why) => {
                tracing::warn!("{shown}: not served: {why}");
                e.served = None;
                e.failed = true;
            }
        }
        self.dirty = true;
    }

    /// The map the server answers from: each VM at each of its addresses (503 while its
    /// first tree is built, none once its build failed), except the addresses more than one
    /// VM claims; and the rows of `host-status`.
    fn publish(&mut self) {
        self.dirty = false;
        let mut claims: HashMap<IpAddr, Vec<(&PathBuf, Vm)>> = HashMap::new();
        for (key, e) in &self.vms {
            if let Some(vm) = e.vm() {
                for a in &e.addrs {
                    claims.entry(*a).or_default().push((key, vm.clone()));
                }
            }
        }
        let mut duplicates = HashMap::new();
        let mut map = HashMap::with_capacity(claims.len());
        for (addr, mut vms) in claims {
            if vms.len() == 1 {
                map.insert(addr, vms.remove(0).1);
            } else {
                let mut keys: Vec<PathBuf> = vms.into_iter().map(|(k, _)| k.clone()).collect();
                keys.sort();
                duplicates.insert(addr, keys);
            }
        }
        for (addr, keys) in &duplicates {
            if self.duplicates.get(addr) != Some(keys) {
                let keys: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
                tracing::warn!(
                    "{addr}: claimed by {}: served to none of them",
                    keys.join(" and ")
                );
            }
        }
        self.duplicates = duplicates;
        self.imds.replace_trees(Trees::ByAddr(map));
        self.report();
    }

    fn report(&self) {
        let mut rows: Vec<VmRow> = self
            .vms
            .iter()
            .map(|(key, e)| VmRow {
                source: key.display().to_string(),
                instance: e.served.as_ref().map(|s| s.tree.instance_id().to_string()),
                addrs: e.addrs.clone(),
                duplicate: e
                    .addrs
                    .iter()
                    .filter(|a| self.duplicates.contains_key(a))
                    .copied()
                    .collect(),
                state: match (&e.served, e.failed) {
                    (Some(_), false) => "ready",
                    (Some(_), true) => "stale",
                    (None, false) => "building",
                    (None, true) => "failed",
                },
                built: e.served.as_ref().map(|s| s.built),
                stats: e.stats.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.source.cmp(&b.source));
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = rows;
    }
}

fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "no address".into();
    }
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
impl Manager {
    pub fn with(mut self, budget: Duration, build: Builder) -> Manager {
        self.budget = budget;
        self.build = build;
        self
    }
}

/// Where one VM's tree comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmSource {
    /// `DIR/<addr>/` holding `context.sh`.
    Context(PathBuf),
    /// `DIR/<addr>.json`.
    TreeFile(PathBuf),
    /// An OpenNebula VM folder's context CD (`disk.N`).
    ContextIso(PathBuf),
}

impl VmSource {
    pub fn path(&self) -> &Path {
        match self {
            VmSource::Context(p) | VmSource::TreeFile(p) | VmSource::ContextIso(p) => p,
        }
    }
}

/// DIR's VMs by address, with their stamps, and the entries not named for an address.
pub type Listing = (HashMap<IpAddr, (VmSource, Stamp)>, Vec<String>);

/// What a change to a VM's files shows in: device, inode, size, modification and change times
/// of the entry itself and of its `context.sh`.
pub type Stamp = Vec<(u64, u64, u64, i64, i64, i64, i64)>;

pub(super) fn stamp_of(paths: &[PathBuf]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| {
            (
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        })
        .collect()
}

/// DIR's VMs: `<address>/context.sh` or `<address>.json` (a folder wins over a tree file for
/// the same address), each with its stamp; entries whose name is not an address are returned
/// apart. Reads names and metadata only, never a file's contents.
pub fn list_host_map(dir: &Path) -> std::io::Result<Listing> {
    let mut map: HashMap<IpAddr, (VmSource, Stamp)> = HashMap::new();
    let mut unnamed = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let (addr, src, stamp) = if let Some(a) = name.strip_suffix(".json") {
            let stamp = stamp_of(std::slice::from_ref(&path));
            (a, VmSource::TreeFile(path), stamp)
        } else if path.join("context.sh").is_file() {
            let stamp = stamp_of(&[path.clone(), path.join("context.sh")]);
            (name.as_str(), VmSource::Context(path), stamp)
        } else {
            continue;
        };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            unnamed.push(name);
            continue;
        };
        let ip = ip.to_canonical();
        match (map.get(&ip), &src) {
            (Some((VmSource::Context(_), _)), VmSource::TreeFile(_)) => {}
            _ => {
                map.insert(ip, (src, stamp));
            }
        }
    }
    unnamed.sort();
    Ok((map, unnamed))
}

#[cfg(test)]
#[path = "host_map_tests.rs"]
mod tests;
