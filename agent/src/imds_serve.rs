//! `vmctx imds serve`: the context (or a tree file) fed to the emulator crate, in three modes.
//!
//! - plain: serve one tree on `--listen`;
//! - `--guest`: inside an imported AMI, add 169.254.169.254/32 to `lo` over netlink, serve port
//!   80 there, and remove the address on exit (only if this process added it);
//! - `--host-map DIR`: on a cloud host, one tree per VM, chosen by the request's source address;
//!   DIR holds `<vm-address>/context.sh` folders or `<vm-address>.json` tree files, and is
//!   re-read when it changes.

use crate::source::{self, Source};
use crate::{context::Context, imds_tree};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vmctx_imds::server::{self, Limits, Reload};
use vmctx_imds::{Imds, Policy, Tree, Trees};

pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Largest tree file read.
const MAX_TREE_FILE: u64 = 4 << 20;
/// How often `--host-map` looks for changes, and how often trees are rebuilt from their
/// context (so served credential times stay current).
const HOST_MAP_POLL: Duration = Duration::from_secs(2);
const REBUILD_EVERY: Duration = Duration::from_secs(3600);

/// Where the (single) tree comes from.
#[derive(Debug, Clone)]
pub enum TreeFrom {
    Source(Source),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub enum Mode {
    Plain,
    Guest,
    HostMap(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tree: TreeFrom,
    /// `--root`, for finding the context volume.
    pub root: PathBuf,
    pub mode: Mode,
    /// Default: 169.254.169.254:80 with `--guest`; required otherwise.
    pub listen: Option<SocketAddr>,
    /// `--require-token`: overrides the context's `EC2_IMDS_TOKENS`.
    pub require_token: bool,
    /// `--hop-limit`: overrides the context's `EC2_IMDS_HOP_LIMIT`.
    pub hop_limit: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("{0}")]
    Tree(String),
    #[error("--listen is required without --guest")]
    NoListen,
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("adding {GUEST_ADDR}/32 to lo: {0}")]
    Netlink(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs until SIGTERM or SIGINT.
pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    server::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(serve_async(opts));
    // Connections were drained already; don't wait on idle runtime threads.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve_async(opts: ServeOptions) -> Result<(), ServeError> {
    let (trees, ctx_policy, reload) = initial_trees(&opts)?;
    let mut policy = ctx_policy.unwrap_or_default();
    policy.tokens_required |= opts.require_token;
    if let Some(h) = opts.hop_limit {
        policy.hop_limit = h;
    }
    let listen = match (&opts.mode, opts.listen) {
        (_, Some(a)) => a,
        (Mode::Guest, None) => SocketAddr::new(GUEST_ADDR.into(), 80),
        _ => return Err(ServeError::NoListen),
    };
    let guest = match opts.mode {
        Mode::Guest => Some(guest::add_address().await?),
        _ => None,
    };
    let result = serve_on(listen, trees, policy, reload, &opts.mode).await;
    if let Some(added) = guest {
        if let Err(e) = guest::remove_address(added).await {
            tracing::warn!("removing {GUEST_ADDR}/32 from lo: {e}");
        }
    }
    result
}

async fn serve_on(
    listen: SocketAddr,
    trees: Trees,
    policy: Policy,
    reload: Reload,
    mode: &Mode,
) -> Result<(), ServeError> {
    let listener = server::bind(listen).map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    let local = listener.local_addr()?;
    let imds = Arc::new(Imds::new(trees, policy).map_err(|e| ServeError::Tree(e.to_string()))?);
    let every = match mode {
        Mode::HostMap(_) => HOST_MAP_POLL,
        _ => REBUILD_EVERY,
    };
    let watcher = tokio::spawn(rebuild_loop(
        imds.clone(),
        reload.clone(),
        mode.clone(),
        every,
    ));
    tracing::info!(
        "imds: serving on {local} (tokens {}, hop limit {})",
        if policy.tokens_required {
            "required"
        } else {
            "optional"
        },
        policy.hop_limit
    );
    // One line on stdout says where: tests and scripts that pass port 0 read it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {local}");
    let _ = out.flush();
    server::run(listener, imds, Limits::default(), Some(reload)).await?;
    watcher.abort();
    Ok(())
}

/// Rebuilds periodically; in host-map mode only when the folder changed.
async fn rebuild_loop(imds: Arc<Imds>, reload: Reload, mode: Mode, every: Duration) {
    let mut seen = match &mode {
        Mode::HostMap(dir) => fingerprint(dir),
        _ => Vec::new(),
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Mode::HostMap(dir) = &mode {
            let now = fingerprint(dir);
            if now == seen {
                continue;
            }
            seen = now;
            tracing::info!("{}: changed", dir.display());
        }
        server::reload_now(&imds, &reload);
    }
}

/// The first trees, the policy the context asks for (none for a tree file or host map), and
/// how to build them again.
fn initial_trees(opts: &ServeOptions) -> Result<(Trees, Option<Policy>, Reload), ServeError> {
    let reload: Reload = match &opts.mode {
        Mode::HostMap(dir) => {
            let dir = dir.clone();
            Arc::new(move || Ok(Trees::ByAddr(load_host_map(&dir))))
        }
        _ => {
            let (from, root) = (opts.tree.clone(), opts.root.clone());
            Arc::new(move || {
                load_single(&from, &root)
                    .map(|(t, _)| Trees::Single(Arc::new(t)))
                    .map_err(|e| e.to_string())
            })
        }
    };
    match &opts.mode {
        Mode::HostMap(dir) => Ok((Trees::ByAddr(load_host_map(dir)), None, reload)),
        _ => {
            let (tree, policy) = load_single(&opts.tree, &opts.root)?;
            Ok((Trees::Single(Arc::new(tree)), policy, reload))
        }
    }
}

/// The single tree `--source`/`--tree` name (`vmctx imds tree`).
pub fn load_tree(from: &TreeFrom, root: &Path) -> Result<Tree, ServeError> {
    load_single(from, root).map(|(t, _)| t)
}

fn load_single(from: &TreeFrom, root: &Path) -> Result<(Tree, Option<Policy>), ServeError> {
    match from {
        TreeFrom::File(p) => Ok((tree_file(p)?, None)),
        TreeFrom::Source(s) => {
            let ctx = source::load(s, root)?;
            let (tree, policy) = from_context(&ctx)?;
            Ok((tree, Some(policy)))
        }
    }
}

/// The tree and the IMDSv2 policy a context asks for.
pub fn from_context(ctx: &Context) -> Result<(Tree, Policy), ServeError> {
    for e in &ctx.errors {
        tracing::warn!("context: {e}");
    }
    let tree =
        imds_tree::build(ctx, SystemTime::now()).map_err(|e| ServeError::Tree(e.to_string()))?;
    let policy = match &ctx.ec2 {
        Some(e) => Policy {
            tokens_required: e.tokens_required,
            hop_limit: e.hop_limit,
        },
        None => Policy::default(),
    };
    Ok((tree, policy))
}

/// A JSON tree file (`--tree`, `--host-map DIR/<addr>.json`).
pub fn tree_file(path: &Path) -> Result<Tree, ServeError> {
    let fail = |why: String| ServeError::Tree(format!("{}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_TREE_FILE {
        return Err(fail(format!("larger than {MAX_TREE_FILE} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
    Tree::from_json(&v, vmctx_imds::tree::DEFAULT_SIZE_LIMIT).map_err(|e| fail(e.to_string()))
}

/// `DIR/<address>/context.sh` or `DIR/<address>.json` for every VM; entries that do not parse
/// are left out with a warning, the others still served.
pub fn load_host_map(dir: &Path) -> HashMap<IpAddr, Arc<Tree>> {
    let mut map = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("{}: {e}", dir.display());
            return map;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let (addr, tree) = if let Some(a) = name.strip_suffix(".json") {
            (
                a.parse::<IpAddr>(),
                tree_file(&path).map_err(|e| e.to_string()),
            )
        } else if path.join("context.sh").is_file() {
            let t = source::load(&Source::Dir(path.clone()), Path::new("/"))
                .map_err(|e| e.to_string())
                .and_then(|c| from_context(&c).map_err(|e| e.to_string()))
                .map(|(t, _)| t);
            (name.parse::<IpAddr>(), t)
        } else {
            continue;
        };
        match (addr, tree) {
            (Ok(a), Ok(t)) => {
                map.insert(a.to_canonical(), Arc::new(t));
            }
            (Err(_), _) => tracing::warn!("{}: not named for an IP address", path.display()),
            (_, Err(e)) => tracing::warn!("{e}"),
        }
    }
    map
}

/// Names, sizes and times of DIR's entries and their context.sh: what a change shows in.
fn fingerprint(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        for q in [p.clone(), p.join("context.sh")] {
            if let Some((len, t)) = stat(&q) {
                out.push((q.to_string_lossy().into_owned(), len, t));
            }
        }
    }
    out.sort();
    out
}

mod guest {
    //! 169.254.169.254/32 on `lo`, over rtnetlink.
    use super::{ServeError, GUEST_ADDR};
    use futures::TryStreamExt;
    use rtnetlink::{Handle, LinkUnspec};
    use std::net::IpAddr;

    /// Whether this process added the address (then it removes it on exit).
    pub struct Added(bool);

    async fn handle() -> Result<(Handle, tokio::task::JoinHandle<()>), ServeError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| ServeError::Netlink(e.to_string()))?;
        Ok((handle, tokio::spawn(conn)))
    }

    async fn lo_index(h: &Handle) -> Result<u32, ServeError> {
        let mut links = h.link().get().match_name("lo").execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) => Err(ServeError::Netlink("no lo link".into())),
            Err(e) => Err(ServeError::Netlink(e.to_string())),
        }
    }

    pub async fn add_address() -> Result<Added, ServeError> {
        let (h, task) = handle().await?;
        let net = |e: rtnetlink::Error| ServeError::Netlink(e.to_string());
        let idx = lo_index(&h).await?;
        // A fresh network namespace has lo down; a guest's is up already.
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(net)?;
        let added = match h
            .address()
            .add(idx, IpAddr::V4(GUEST_ADDR), 32)
            .execute()
            .await
        {
            Ok(()) => true,
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -nix::libc::EEXIST => {
                tracing::info!("{GUEST_ADDR}/32 is on lo already; leaving it there on exit");
                false
            }
            Err(e) => return Err(net(e)),
        };
        task.abort();
        Ok(Added(added))
    }

    pub async fn remove_address(added: Added) -> Result<(), ServeError> {
        if !added.0 {
            return Ok(());
        }
        let (h, task) = handle().await?;
        let net = |e: rtnetlink::Error| ServeError::Netlink(e.to_string());
        let idx = lo_index(&h).await?;
        let mut addrs = h
            .address()
            .get()
            .set_link_index_filter(idx)
            .set_address_filter(IpAddr::V4(GUEST_ADDR))
            .execute();
        while let Some(msg) = addrs.try_next().await.map_err(net)? {
            h.address().del(msg).execute().await.map_err(net)?;
        }
        task.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_map_reads_folders_and_tree_files_by_address() {
        let d = tempfile::tempdir().unwrap();
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../vm-fixtures/contexts/imported-ami/context.sh"
        );
        std::fs::create_dir(d.path().join("192.0.2.6")).unwrap();
        std::fs::copy(fixture, d.path().join("192.0.2.6/context.sh")).unwrap();
        std::fs::write(
            d.path().join("192.0.2.7.json"),
            r#"{"meta-data": {"instance-id": "i-00000000000000007"}}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("not-an-ip.json"), "{}").unwrap();
        std::fs::write(d.path().join("192.0.2.8.json"), "[").unwrap();
        let before = fingerprint(d.path());
        let m = load_host_map(d.path());
        assert_eq!(m.len(), 2);
        let a: IpAddr = "192.0.2.6".parse().unwrap();
        assert_eq!(m[&a].instance_id(), "i-0a1b2c3d4e5f60718");
        let b: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(m[&b].instance_id(), "i-00000000000000007");
        std::fs::write(d.path().join("192.0.2.7.json"), "{}").unwrap();
        assert_ne!(fingerprint(d.path()), before);
    }

    #[test]
    fn context_policy_and_flags() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("context.sh"),
            "VMID='3'\nEC2_IMDS_TOKENS='required'\nEC2_IMDS_HOP_LIMIT='2'\n",
        )
        .unwrap();
        let from = TreeFrom::Source(Source::Dir(d.path().into()));
        let (tree, policy) = load_single(&from, Path::new("/")).unwrap();
        assert_eq!(tree.instance_id(), "i-00000000000000003");
        let p = policy.unwrap();
        assert!(p.tokens_required);
        assert_eq!(p.hop_limit, 2);
    }
}

/// Blanks the role credentials' secrets in a tree printed for an operator (`vmctx imds tree`):
/// the tree is served, never shown, with them.
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if matches!(k.as_str(), "SecretAccessKey" | "Token") {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        // Leaves may hold a credentials document as JSON text.
        serde_json::Value::String(text) if text.contains("SecretAccessKey") => {
            if let Ok(mut inner) = serde_json::from_str::<serde_json::Value>(text) {
                redact(&mut inner);
                *text = inner.to_string();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn secrets_are_blanked_in_objects_and_json_leaves() {
        let mut v = serde_json::json!({"iam": {"security-credentials": {
            "r": "{\"AccessKeyId\":\"AKIA\",\"SecretAccessKey\":\"s3cr3t\",\"Token\":\"tok\"}",
            "o": {"SecretAccessKey": "s3cr3t"}}}});
        super::redact(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok\\\""),
            "{text}"
        );
        assert!(text.contains("AKIA"));
    }
}
