//! Notebook sync: keeps a folder and an S3 prefix in step, two-way, without losing a file.
//!
//! One cycle: lock, read the base state, sweep temp files, scan the folder, list the bucket
//! (ListObjectsV2 only: a no-op costs one request per 1000 keys), decide per file
//! ([`decide`]), refuse mass deletions, transfer in parallel, then record the state of
//! exactly the transfers that succeeded. Auth and network errors stop the cycle before
//! anything changes.

pub mod command;
pub mod config;
pub mod creds;
pub mod decide;
pub mod folder;
pub mod http;
pub mod local;
pub mod progress;
pub mod s3;
pub mod sigv4;
pub mod state;
mod transfer;
pub mod xml;

use config::Options;
use creds::Env;
use decide::Remote;
use folder::Folder;
use futures::StreamExt;
use progress::Progress;
use s3::{S3Error, S3};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transfer::Cx;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] http::TlsError),
    #[error(transparent)]
    Creds(#[from] creds::CredsError),
    #[error("{0}")]
    S3(#[from] S3Error),
    #[error("state: {0}")]
    State(String),
    #[error("refusing to sync, nothing was changed: {0}")]
    Refused(String),
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Requests {
    pub list: u64,
    pub get: u64,
    pub put: u64,
    pub delete: u64,
}

/// What one cycle did. `failed` empty = the two sides are in step.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub downloaded: usize,
    pub uploaded: usize,
    pub deleted_local: usize,
    pub deleted_remote: usize,
    pub unchanged: usize,
    pub conflicts: Vec<String>,
    pub failed: Vec<String>,
    /// Temp files of an interrupted earlier run, removed.
    pub swept: usize,
    pub requests: Requests,
    pub credentials_from: String,
    pub warnings: Vec<String>,
    /// One line per transfer or deletion.
    pub log: Vec<String>,
    /// Bytes moved (down and up); not in the JSON, which stays as it was.
    #[serde(skip)]
    pub bytes: u64,
    #[serde(skip)]
    pub duration: Duration,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut o = String::new();
        for l in self.log.iter().chain(&self.warnings) {
            o.push_str(l);
            o.push('\n');
        }
        for f in &self.failed {
            o.push_str(&format!("FAILED {f}\n"));
        }
        let r = &self.requests;
        o.push_str(&format!(
            "sync: {} downloaded, {} uploaded, {} deleted here, {} deleted in the bucket, {} conflicts, {} unchanged, {} failed; {} in {} ({} list, {} get, {} put, {} delete requests)\n",
            self.downloaded, self.uploaded, self.deleted_local, self.deleted_remote,
            self.conflicts.len(), self.unchanged, self.failed.len(),
            progress::bytes(self.bytes), progress::duration(self.duration),
            r.list, r.get, r.put, r.delete
        ));
        o
    }
}

/// One cycle, on a runtime of its own; on a terminal, its progress on stderr's status line
/// (cleared before this returns).
pub fn once(opts: &Options, env: &Env) -> Result<Report, SyncError> {
    let start = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SyncError::Config(format!("runtime: {e}")))?;
    let progress = Progress::new();
    let line = progress::StatusLine::start(&progress);
    let result = rt.block_on(cycle(opts, env, &progress));
    drop(line);
    result.map(|mut r| {
        r.bytes = progress.bytes_done();
        r.duration = start.elapsed();
        r
    })
}

/// Cycles forever, every `interval` plus up to 10% jitter (so a fleet does not list at once).
pub fn forever(opts: &Options, env: &Env, mut report: impl FnMut(Result<Report, SyncError>)) {
    loop {
        report(once(opts, env));
        let mut b = [0u8; 2];
        let _ = getrandom::fill(&mut b);
        let jitter = opts.interval_secs * 100 * u64::from(u16::from_le_bytes(b)) / 65535;
        std::thread::sleep(Duration::from_millis(opts.interval_secs * 1000 + jitter));
    }
}

async fn cycle(o: &Options, env: &Env, progress: &Arc<Progress>) -> Result<Report, SyncError> {
    let endpoint = o.endpoint.clone().unwrap_or_default();
    let state_file = state::path(&o.state_dir, &endpoint, &o.bucket, &o.prefix, &o.dir);
    let _lock = state::lock(&state_file).map_err(SyncError::State)?;
    let mut st = state::load(&state_file).map_err(SyncError::State)?;
    let mut report = Report::default();

    let (folder, scanned) = scan_folder(o, &st, &state_file, &mut report)?;

    let http = http::client(o.ca_file.as_deref())?;
    let creds = creds::resolve(env, o.credentials.as_ref(), &http).await?;
    report.credentials_from = creds.from.clone();
    let target = s3::Target::new(o.endpoint.as_deref(), &o.bucket, &o.region)?;
    let s3 = S3 {
        http,
        target,
        bucket: o.bucket.clone(),
        region: o.region.clone(),
        creds,
        counters: Default::default(),
    };
    let listing = s3.list(&o.prefix).await;
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            report.requests = requests(&s3);
            return Err(e.into());
        }
    };
    let folder = match folder {
        Some(f) => f,
        None => Folder::create(&o.dir)
            .map_err(|e| SyncError::Config(format!("creating {}: {e}", o.dir.display())))?,
    };
    let (listing, skipped) = listing;
    report.warnings.extend(skipped);
    let remote = remote_files(listing, o, &mut report.warnings);

    let steps = steps(o, &scanned, &remote, &st.files, &mut report)?;

    let owner = folder
        .stat()
        .map(|m| (m.st_uid, m.st_gid))
        .map_err(|e| SyncError::Config(format!("{}: {e}", o.dir.display())))?;
    let cx = Cx {
        s3,
        folder: &folder,
        prefix: &o.prefix,
        owner,
        mode: o.mode,
        host: host_name(),
        now: sigv4::now_secs(),
        local: scanned,
        remote,
        base: &st.files,
        progress: progress.clone(),
    };
    let done: Vec<transfer::Done> = futures::stream::iter(transfer::metered(&cx, steps))
        .map(|(rel, step, m)| transfer::run_step(&cx, rel, step, m))
        .buffer_unordered(o.jobs)
        .collect()
        .await;
    report.requests = requests(&cx.s3);
    drop(cx);

    let changed = merge(&mut report, &mut st, done);
    report.log.sort();
    if changed || st.bucket.is_empty() {
        st.endpoint = endpoint;
        st.bucket = o.bucket.clone();
        st.prefix = o.prefix.clone();
        st.dir = o.dir.display().to_string();
        state::save(&state_file, &st).map_err(SyncError::State)?;
    }
    Ok(report)
}

/// What each file needs (files in step are counted as unchanged); refused when more than
/// `--max-delete` percent of the known files would be deleted.
fn steps(
    o: &Options,
    local: &BTreeMap<String, decide::Local>,
    remote: &BTreeMap<String, Remote>,
    base: &BTreeMap<String, decide::Base>,
    report: &mut Report,
) -> Result<Vec<(String, decide::Step)>, SyncError> {
    let all: BTreeSet<&String> = local
        .keys()
        .chain(remote.keys())
        .chain(base.keys())
        .collect();
    let mut steps = Vec::new();
    for rel in all {
        match decide::decide(local.get(rel), remote.get(rel), base.get(rel), o.mode) {
            Some(step) => steps.push((rel.clone(), step)),
            None => report.unchanged += 1,
        }
    }
    let deletions = steps.iter().filter(|(_, s)| s.deletes()).count();
    let known = base.len().max(1);
    if deletions > 0 && deletions * 100 > usize::from(o.max_delete_pct) * known {
        return Err(SyncError::Refused(format!(
            "{deletions} of {known} files would be deleted, more than {}% (--max-delete 100 allows it)",
            o.max_delete_pct
        )));
    }
    Ok(steps)
}

/// The folder, held open, and its files (none when it is to be created: `None`, made only
/// once the bucket answered). An unmounted or wiped folder must not read as "the user deleted
/// everything": a missing or empty folder the last sync left files in is refused, and so is a
/// folder its user replaced by a symlink.
fn scan_folder(
    o: &Options,
    st: &state::SyncState,
    state_file: &std::path::Path,
    report: &mut Report,
) -> Result<(Option<Folder>, BTreeMap<String, decide::Local>), SyncError> {
    let folder = match Folder::open(&o.dir) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(SyncError::Refused(format!(
                "the folder {}: {e}",
                o.dir.display()
            )))
        }
    };
    let Some(f) = folder else {
        if !st.files.is_empty() {
            return Err(SyncError::Refused(format!(
                "the folder {} is missing, but the last sync left {} files in it",
                o.dir.display(),
                st.files.len()
            )));
        }
        return Ok((None, BTreeMap::new()));
    };
    report.swept = local::sweep(&f);
    let scanned = local::scan(&f, &o.excludes, &mut report.warnings)
        .map_err(|e| SyncError::Config(format!("reading {}: {e}", o.dir.display())))?;
    if scanned.is_empty() && !st.files.is_empty() {
        return Err(SyncError::Refused(format!(
            "the folder {} is empty, but the last sync left {} files in it (remove {} to start over)",
            o.dir.display(),
            st.files.len(),
            state_file.display()
        )));
    }
    Ok((Some(f), scanned))
}

/// The listing's files under the prefix, by their name in the folder: folder markers,
/// excluded names and names unsafe here left out (the last with a warning).
fn remote_files(
    listing: Vec<s3::Object>,
    o: &Options,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, Remote> {
    let mut remote = BTreeMap::new();
    for obj in listing {
        let Some(rel) = obj.key.strip_prefix(&o.prefix) else {
            continue;
        };
        // Folder markers (`dir/`, the prefix itself) are not files.
        if rel.is_empty() || rel.ends_with('/') || o.excludes.excluded(rel) {
            continue;
        }
        if !local::safe_rel(rel) {
            warnings.push(format!(
                "key {:?}: not a safe file name here, skipped",
                obj.key
            ));
            continue;
        }
        remote.insert(
            rel.to_string(),
            Remote {
                etag: obj.etag,
                size: obj.size,
            },
        );
    }
    remote
}

/// The steps' outcomes into the report and the state; whether the state changed.
fn merge(report: &mut Report, st: &mut state::SyncState, done: Vec<transfer::Done>) -> bool {
    let mut changed = false;
    for d in done {
        report.downloaded += d.downloaded;
        report.uploaded += d.uploaded;
        report.deleted_local += d.deleted_local;
        report.deleted_remote += d.deleted_remote;
        // Names come from the bucket and the folder: no control character reaches a line.
        let shown = |l: String| local::shown(&l).into_owned();
        report.log.extend(d.log.map(shown));
        report.conflicts.extend(d.conflict.map(shown));
        report.failed.extend(d.failed.map(shown));
        for (rel, base) in d.updates {
            changed = true;
            match base {
                Some(b) => st.files.insert(rel, b),
                None => st.files.remove(&rel),
            };
        }
    }
    changed
}

fn requests(s3: &S3) -> Requests {
    let c = &s3.counters;
    Requests {
        list: c.list.load(Ordering::Relaxed),
        get: c.get.load(Ordering::Relaxed),
        put: c.put.load(Ordering::Relaxed),
        delete: c.delete.load(Ordering::Relaxed),
    }
}

fn host_name() -> String {
    let h = nix::unistd::gethostname()
        .ok()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default();
    let h: String = h
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if h.is_empty() {
        "host".into()
    } else {
        h
    }
}
