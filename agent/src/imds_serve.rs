//! `vmctx imds serve`: the context (or a tree file) fed to the emulator crate, in three modes.
//!
//! - plain: serve one tree on `--listen`, to whoever reaches it;
//! - `--guest`: inside an imported AMI, add 169.254.169.254/32 to `lo` over netlink, serve port
//!   80 there to this machine's own processes only (the socket is bound to `lo`, and a peer that
//!   is not one of the machine's addresses is refused), and remove the address on exit (only if
//!   this process added it);
//! - `--host-map DIR`: on a cloud host, one tree per VM, chosen by the request's source address;
//!   DIR holds `<vm-address>/context.sh` folders or `<vm-address>.json` tree files, or, with
//!   `opennebula:DIR`, OpenNebula's datastores (`opennebula_datastore`); other addresses are
//!   refused at accept. Each VM's tree is built in a confined process of its own
//!   (`build`), killed at a time budget, so one VM's context never holds up another's answers
//!   nor takes the host's memory; the folder is watched and only what changed is built again
//!   (`host_map`). Each VM keeps its own token policy, and its tokens are valid for it alone.
//!
//! SECURITY.md says what each mode exposes to whom.

use crate::source::{self, Source};
use crate::{context::Context, imds_tree};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vmctx_imds::policy::MAX_HOP_LIMIT;
use vmctx_imds::server::{self, Limits, OnHup, Reload};
use vmctx_imds::{Imds, Policy, Served, Tree, Trees, Vm};

mod build;
mod host_map;
pub mod host_rules;
pub mod host_status;
mod opennebula_datastore;

pub use build::{build_in_child, build_vm, build_vm_child, Built, BUILD_MEMORY, BUILD_VM_COMMAND};
pub use host_map::{list_host_map, Listing, Stamp, VmSource};

pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Largest tree file read.
const MAX_TREE_FILE: u64 = 4 << 20;
/// Largest `context.sh` a host map reads for one VM.
pub const MAX_HOST_CONTEXT: u64 = 4 << 20;
/// How long one VM's tree may take to build in host-map mode (its build process is killed
/// then); a context that takes longer is not served, nor built again until it changes.
pub const BUILD_BUDGET: Duration = Duration::from_secs(3);
/// How often `--host-map` looks for changes, and how often trees are rebuilt from their
/// context (so served credential times stay current).
const HOST_MAP_POLL: Duration = Duration::from_secs(1);
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
    HostMap(HostMap),
}

/// Where a host map's VMs are found (`--host-map`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMap {
    /// `DIR`: `DIR/<addr>/context.sh` and `DIR/<addr>.json`.
    Dir(PathBuf),
    /// `opennebula:DIR`: OpenNebula's datastores, each VM by its context CD.
    OpenNebula(PathBuf),
}

impl std::str::FromStr for HostMap {
    type Err = String;
    fn from_str(s: &str) -> Result<HostMap, String> {
        let (kind, path) = match s.split_once(':') {
            Some((k @ ("opennebula" | "dir"), p)) => (k, p),
            _ => ("dir", s),
        };
        if path.is_empty() {
            return Err("a folder is needed".into());
        }
        Ok(match kind {
            "opennebula" => HostMap::OpenNebula(path.into()),
            _ => HostMap::Dir(path.into()),
        })
    }
}

impl std::fmt::Display for HostMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMap::Dir(p) => write!(f, "{}", p.display()),
            HostMap::OpenNebula(p) => write!(f, "opennebula:{}", p.display()),
        }
    }
}

/// What only a host map takes.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// `--device`: take connections arriving on this interface only (`SO_BINDTODEVICE`);
    /// replies then leave by it even where the host has no route to the guests.
    pub device: Option<String>,
    /// `--status-socket`: where `vmctx imds host-status` asks.
    pub status_socket: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tree: TreeFrom,
    /// `--root`, for finding the context volume.
    pub root: PathBuf,
    pub mode: Mode,
    /// Default: 169.254.169.254:80 with `--guest`; required otherwise.
    pub listen: Option<SocketAddr>,
    /// `--require-token`: one tree: added to the context's `EC2_IMDS_TOKENS`; host map: every
    /// VM requires tokens, whatever its context says.
    pub require_token: bool,
    /// `--hop-limit`: one tree: overrides the context's `EC2_IMDS_HOP_LIMIT`; host map: a VM's
    /// context may ask for less, never more.
    pub hop_limit: Option<u8>,
    /// Where and how patiently a metadata-service source is read.
    pub imds: crate::settings::Imds,
    pub host: HostOptions,
}

impl ServeOptions {
    fn flags(&self) -> Flags {
        Flags {
            require_token: self.require_token,
            hop_limit: self.hop_limit,
        }
    }
}

/// The policy flags of the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub require_token: bool,
    pub hop_limit: Option<u8>,
}

impl Flags {
    /// One tree (plain, guest): the machine's own operator sets both, so the flags add tokens
    /// and override the hop limit.
    pub fn over(self, ctx: Option<Policy>) -> Policy {
        let mut p = ctx.unwrap_or_default();
        p.tokens_required |= self.require_token;
        if let Some(h) = self.hop_limit {
            p.hop_limit = h;
        }
        p
    }

    /// One VM of a host map: the stricter of the host's flags and the VM's own context, so
    /// neither the host operator nor the VM's owner can loosen what the other asks for. A tree
    /// file has no policy of its own: the flags alone.
    pub fn for_vm(self, ctx: Option<Policy>) -> Policy {
        match ctx {
            None => self.over(None),
            Some(vm) => vm.stricter(Policy {
                tokens_required: self.require_token,
                hop_limit: self.hop_limit.unwrap_or(MAX_HOP_LIMIT),
            }),
        }
    }
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
    // Connections were drained already; don't wait on idle runtime threads (nor on a host
    // map's build that ran out of time: it ends with the process).
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve_async(opts: ServeOptions) -> Result<(), ServeError> {
    let listen = match (&opts.mode, opts.listen) {
        (_, Some(a)) => a,
        (Mode::Guest, None) => SocketAddr::new(GUEST_ADDR.into(), 80),
        _ => return Err(ServeError::NoListen),
    };
    match &opts.mode {
        Mode::HostMap(from) => {
            host_map::serve(listen, from.clone(), opts.flags(), opts.host.clone()).await
        }
        Mode::Plain => serve_single(&opts, listen, None).await,
        Mode::Guest => {
            let added = guest::add_address().await?;
            let result = serve_single(&opts, listen, Some("lo")).await;
            if let Err(e) = guest::remove_address(added).await {
                tracing::warn!("removing {GUEST_ADDR}/32 from lo: {e}");
            }
            result
        }
    }
}

/// Plain and guest mode: one tree; `device` binds the listener to that interface (`lo`), and
/// then only this machine's own addresses are served.
async fn serve_single(
    opts: &ServeOptions,
    listen: SocketAddr,
    device: Option<&str>,
) -> Result<(), ServeError> {
    let (tree, ctx_policy) = load_single(&opts.tree, &opts.root, &opts.imds)?;
    let policy = opts.flags().over(ctx_policy);
    let listener = server::bind_to(listen, device).map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    let local = listener.local_addr()?;
    let imds = Arc::new(
        Imds::new(Trees::Single(Arc::new(tree)), policy)
            .map_err(|e| ServeError::Tree(e.to_string()))?,
    );
    let reload: Reload = {
        let (from, root, md) = (opts.tree.clone(), opts.root.clone(), opts.imds.clone());
        Arc::new(move || {
            load_single(&from, &root, &md)
                .map(|(t, _)| Trees::Single(Arc::new(t)))
                .map_err(|e| e.to_string())
        })
    };
    // Rebuilt hourly (served credential times) and on SIGHUP, on a blocking thread.
    let rebuild = {
        let (imds, reload) = (imds.clone(), reload.clone());
        move || {
            let (imds, reload) = (imds.clone(), reload.clone());
            tokio::task::spawn_blocking(move || server::reload_now(&imds, &reload));
        }
    };
    let timer = {
        let rebuild = rebuild.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REBUILD_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                rebuild();
            }
        })
    };
    let limits = match device {
        Some(_) => Limits::guest(),
        None => Limits::default(),
    };
    tracing::info!(
        "imds: serving on {local}{} (tokens {}, hop limit {})",
        device.map_or(String::new(), |d| format!(
            " to this machine only (bound to {d})"
        )),
        if policy.tokens_required {
            "required"
        } else {
            "optional"
        },
        policy.hop_limit
    );
    say_listening(local);
    let on_hup: OnHup = Arc::new(rebuild);
    server::run(listener, imds, limits, Some(on_hup)).await?;
    timer.abort();
    Ok(())
}

/// One line on stdout says where: tests and scripts that pass port 0 read it.
fn say_listening(local: SocketAddr) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {local}");
    let _ = out.flush();
}

/// The single tree `--source`/`--tree` name (`vmctx imds tree`).
pub fn load_tree(
    from: &TreeFrom,
    root: &Path,
    imds: &crate::settings::Imds,
) -> Result<Tree, ServeError> {
    load_single(from, root, imds).map(|(t, _)| t)
}

/// The tree, and the policy the context asks for (none for a tree file).
fn load_single(
    from: &TreeFrom,
    root: &Path,
    imds: &crate::settings::Imds,
) -> Result<(Tree, Option<Policy>), ServeError> {
    match from {
        TreeFrom::File(p) => Ok((tree_file(p)?, None)),
        TreeFrom::Source(s) => {
            let ctx = source::load(s, root, imds)?;
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

mod guest {
    //! 169.254.169.254/32 on `lo`, over vmctx's one rtnetlink layer.
    use super::{ServeError, GUEST_ADDR};
    use crate::context::Cidr;
    use crate::netlink::Netlink;

    /// Whether this process added the address (then it removes it on exit).
    pub struct Added(bool);

    const ADDR: Cidr = Cidr {
        addr: std::net::IpAddr::V4(GUEST_ADDR),
        prefix: 32,
    };

    fn net(e: crate::netlink::Error) -> ServeError {
        ServeError::Netlink(e.to_string())
    }

    pub async fn add_address() -> Result<Added, ServeError> {
        let nl = Netlink::connect().map_err(net)?;
        let idx = nl.link_index("lo").await.map_err(net)?;
        // A fresh network namespace has lo down; a guest's is up already.
        nl.set_link(idx, None, true).await.map_err(net)?;
        match nl.add_address(idx, ADDR).await {
            Ok(()) => Ok(Added(true)),
            Err(e) if e.exists() => {
                tracing::info!("{GUEST_ADDR}/32 is on lo already; leaving it there on exit");
                Ok(Added(false))
            }
            Err(e) => Err(net(e)),
        }
    }

    pub async fn remove_address(added: Added) -> Result<(), ServeError> {
        if !added.0 {
            return Ok(());
        }
        let nl = Netlink::connect().map_err(net)?;
        let idx = nl.link_index("lo").await.map_err(net)?;
        for (a, msg) in nl.addresses(idx).await.map_err(net)? {
            if a == ADDR {
                nl.del_address(msg).await.map_err(net)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_policy_and_flags() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("context.sh"),
            "VMID='3'\nEC2_IMDS_TOKENS='required'\nEC2_IMDS_HOP_LIMIT='2'\n",
        )
        .unwrap();
        let from = TreeFrom::Source(Source::Dir(d.path().into()));
        let (tree, policy) = load_single(&from, Path::new("/"), &Default::default()).unwrap();
        assert_eq!(tree.instance_id(), "i-00000000000000003");
        let p = policy.unwrap();
        assert!(p.tokens_required);
        assert_eq!(p.hop_limit, 2);
    }

    #[test]
    fn flags_override_one_tree_and_are_combined_strictly_for_a_vm() {
        let vm = |tokens_required, hop_limit| Policy {
            tokens_required,
            hop_limit,
        };
        let none = Flags::default();
        let hop3 = Flags {
            require_token: false,
            hop_limit: Some(3),
        };
        let tokens = Flags {
            require_token: true,
            hop_limit: None,
        };
        // One tree: the flag overrides the context's hop limit, adds tokens.
        assert_eq!(hop3.over(Some(vm(true, 1))), vm(true, 3));
        assert_eq!(tokens.over(None), vm(true, 1));
        // A VM of a host map: its context counts whatever the flags say…
        assert_eq!(none.for_vm(Some(vm(true, 2))), vm(true, 2));
        assert_eq!(hop3.for_vm(Some(vm(true, 5))), vm(true, 3));
        assert_eq!(hop3.for_vm(Some(vm(false, 1))), vm(false, 1));
        assert_eq!(tokens.for_vm(Some(vm(false, 4))), vm(true, 4));
        // …and a tree file, which has no policy, gets the flags.
        assert_eq!(hop3.for_vm(None), vm(false, 3));
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
