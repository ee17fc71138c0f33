//! What a host map serves, for its operator: each VM's addresses, state, tree age and
//! request/401/404 counts, logged on SIGUSR1 and sent as JSON to whoever connects to the
//! status socket (`vmctx imds host-status`). Addresses and instance ids only: no tree, no
//! token, no secret.

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmctx_imds::{Imds, VmStats};

/// Where the unit's sidecar answers (its `RuntimeDirectory`).
pub const DEFAULT_SOCKET: &str = "/run/vmctx-imds-host/status.sock";
/// Largest answer a client reads.
const MAX_ANSWER: u64 = 64 << 20;

/// One VM as the manager last published it; its counters are read when shown.
#[derive(Debug, Clone)]
pub struct VmRow {
    /// Its files: `DIR/<addr>`, `DIR/<addr>.json` or an OpenNebula VM folder.
    pub source: String,
    pub instance: Option<String>,
    pub addrs: Vec<IpAddr>,
    /// Those of its addresses another VM claims too (served to neither).
    pub duplicate: Vec<IpAddr>,
    /// `ready`, `building`, `failed`, or `stale` (its last build failed; its previous tree is
    /// served).
    pub state: &'static str,
    pub built: Option<Instant>,
    pub stats: Arc<VmStats>,
}

pub type Status = Arc<Mutex<Vec<VmRow>>>;

fn rows(status: &Status) -> Vec<VmRow> {
    status.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The status document: every VM, and the server's own counters.
pub fn to_json(status: &Status, imds: &Imds) -> serde_json::Value {
    serde_json::json!({"vms": vms_json(&rows(status)), "counters": imds.counters.to_string()})
}

fn vms_json(rows: &[VmRow]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| {
            let (requests, unauthorized, not_found) = r.stats.get();
            serde_json::json!({
                "source": r.source,
                "instance_id": r.instance,
                "addresses": r.addrs,
                "duplicate_addresses": r.duplicate,
                "state": r.state,
                "tree_age_secs": r.built.map(|b| b.elapsed().as_secs()),
                "requests": requests,
                "unauthorized": unauthorized,
                "not_found": not_found,
            })
        })
        .collect()
}

/// One line per VM, as SIGUSR1 logs them and `host-status` prints them.
pub fn lines(doc: &serde_json::Value) -> Vec<String> {
    let empty = Vec::new();
    let vms = doc["vms"].as_array().unwrap_or(&empty);
    vms.iter()
        .map(|v| {
            let addrs: Vec<&str> = v["addresses"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            let dups = v["duplicate_addresses"].as_array().map_or(0, Vec::len);
            format!(
                "{} {} [{}] {}{} requests={} 401={} 404={} tree_age={}",
                v["source"].as_str().unwrap_or("?"),
                v["instance_id"].as_str().unwrap_or("-"),
                addrs.join(" "),
                v["state"].as_str().unwrap_or("?"),
                if dups > 0 {
                    format!(" ({dups} address(es) claimed by another VM: not served)")
                } else {
                    String::new()
                },
                v["requests"],
                v["unauthorized"],
                v["not_found"],
                v["tree_age_secs"]
                    .as_u64()
                    .map_or("-".to_string(), |s| format!("{s}s")),
            )
        })
        .collect()
}

/// Logs every VM's line on SIGUSR1 (the server logs its own counters then too).
pub fn on_usr1(status: Status) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            let all = rows(&status);
            tracing::info!("imds: {} VMs", all.len());
            let doc = serde_json::json!({ "vms": vms_json(&all) });
            for line in lines(&doc) {
                tracing::info!("imds vm {line}");
            }
        }
    }))
}

/// Answers each connection to `path` with the status document, then closes it. A socket
/// left by an earlier run is replaced; any other file there is an error.
pub fn listen(
    path: &Path,
    status: Status,
    imds: Arc<Imds>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncWriteExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(std::io::Error::other(format!(
                "{}: exists and is not a socket",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    // Its owner (the service's user) and root only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let doc = to_json(&status, &imds).to_string();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let _ = conn.write_all(doc.as_bytes()).await;
                    let _ = conn.shutdown().await;
                })
                .await;
            });
        }
    }))
}

/// `vmctx imds host-status`: the sidecar's status document.
pub fn ask(path: &Path) -> Result<serde_json::Value, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let conn = std::os::unix::net::UnixStream::connect(path).map_err(fail)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    let mut body = Vec::new();
    conn.take(MAX_ANSWER).read_to_end(&mut body).map_err(fail)?;
    serde_json::from_slice(&body).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmctx_imds::{Policy, Trees};

    #[test]
    fn rows_show_addresses_state_counts_and_age() {
        let stats = Arc::new(VmStats::default());
        let status = Status::default();
        status.lock().unwrap().push(VmRow {
            source: "/ds/0/5".into(),
            instance: Some("i-00000000000000005".into()),
            addrs: vec!["10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()],
            duplicate: vec!["10.0.0.5".parse().unwrap()],
            state: "ready",
            built: Some(Instant::now()),
            stats: stats.clone(),
        });
        let imds = Imds::new(Trees::ByAddr(Default::default()), Policy::default()).unwrap();
        let doc = to_json(&status, &imds);
        assert_eq!(doc["vms"][0]["addresses"][1], "2001:db8::5");
        let l = lines(&doc);
        assert_eq!(
            l,
            [
                "/ds/0/5 i-00000000000000005 [10.0.0.5 2001:db8::5] ready (1 address(es) \
              claimed by another VM: not served) requests=0 401=0 404=0 tree_age=0s"
            ]
        );
    }
}
