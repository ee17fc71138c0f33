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
pub mod http;
pub mod local;
pub mod s3;
pub mod sigv4;
pub mod state;
mod xml;

use config::Options;
use creds::Env;
use decide::{Base, Local, Remote, Step};
use futures::StreamExt;
use s3::{Condition, S3Error, S3};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

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
            "sync: {} downloaded, {} uploaded, {} deleted here, {} deleted in the bucket, {} conflicts, {} unchanged, {} failed ({} list, {} get, {} put, {} delete requests)\n",
            self.downloaded, self.uploaded, self.deleted_local, self.deleted_remote,
            self.conflicts.len(), self.unchanged, self.failed.len(), r.list, r.get, r.put, r.delete
        ));
        o
    }
}

/// One cycle, on a runtime of its own.
pub fn once(opts: &Options, env: &Env) -> Result<Report, SyncError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SyncError::Config(format!("runtime: {e}")))?;
    rt.block_on(cycle(opts, env))
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

/// Shared by the transfers of one cycle.
struct Cx<'a> {
    s3: S3,
    dir: &'a Path,
    prefix: &'a str,
    owner: (u32, u32),
    mode: crate::context::SyncMode,
    host: String,
    now: u64,
    local: BTreeMap<String, Local>,
    remote: BTreeMap<String, Remote>,
    base: &'a BTreeMap<String, Base>,
}

/// What one step did; merged into the report and the state.
#[derive(Default)]
struct Done {
    updates: Vec<(String, Option<Base>)>,
    log: Option<String>,
    conflict: Option<String>,
    failed: Option<String>,
    downloaded: usize,
    uploaded: usize,
    deleted_local: usize,
    deleted_remote: usize,
}

async fn cycle(o: &Options, env: &Env) -> Result<Report, SyncError> {
    let endpoint = o.endpoint.clone().unwrap_or_default();
    let state_file = state::path(&o.state_dir, &endpoint, &o.bucket, &o.prefix, &o.dir);
    let _lock = state::lock(&state_file).map_err(SyncError::State)?;
    let mut st = state::load(&state_file).map_err(SyncError::State)?;
    let mut report = Report::default();

    // An unmounted or wiped folder must not read as "the user deleted everything".
    // A first run may create the folder, but only once the bucket answered.
    let create = !o.dir.is_dir();
    if create && !st.files.is_empty() {
        return Err(SyncError::Refused(format!(
            "the folder {} is missing, but the last sync left {} files in it",
            o.dir.display(),
            st.files.len()
        )));
    }
    report.swept = local::sweep(&o.dir);
    let scanned = if create {
        BTreeMap::new()
    } else {
        local::scan(&o.dir, &o.excludes, &mut report.warnings)
            .map_err(|e| SyncError::Config(format!("reading {}: {e}", o.dir.display())))?
    };
    if scanned.is_empty() && !st.files.is_empty() {
        return Err(SyncError::Refused(format!(
            "the folder {} is empty, but the last sync left {} files in it (remove {} to start over)",
            o.dir.display(),
            st.files.len(),
            state_file.display()
        )));
    }

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
    if create {
        std::fs::create_dir_all(&o.dir)
            .map_err(|e| SyncError::Config(format!("{}: {e}", o.dir.display())))?;
    }
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
            report.warnings.push(format!(
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

    let all: BTreeSet<&String> = scanned
        .keys()
        .chain(remote.keys())
        .chain(st.files.keys())
        .collect();
    let mut steps = Vec::new();
    for rel in all {
        match decide::decide(scanned.get(rel), remote.get(rel), st.files.get(rel), o.mode) {
            Some(step) => steps.push((rel.clone(), step)),
            None => report.unchanged += 1,
        }
    }
    let deletions = steps.iter().filter(|(_, s)| s.deletes()).count();
    let known = st.files.len().max(1);
    if deletions > 0 && deletions * 100 > usize::from(o.max_delete_pct) * known {
        return Err(SyncError::Refused(format!(
            "{deletions} of {known} files would be deleted, more than {}% (--max-delete 100 allows it)",
            o.max_delete_pct
        )));
    }

    let owner = std::fs::metadata(&o.dir)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })
        .map_err(|e| SyncError::Config(format!("{}: {e}", o.dir.display())))?;
    let cx = Cx {
        s3,
        dir: &o.dir,
        prefix: &o.prefix,
        owner,
        mode: o.mode,
        host: host_name(),
        now: sigv4::now_secs(),
        local: scanned,
        remote,
        base: &st.files,
    };
    let done: Vec<Done> = futures::stream::iter(steps)
        .map(|(rel, step)| run_step(&cx, rel, step))
        .buffer_unordered(o.jobs)
        .collect()
        .await;
    report.requests = requests(&cx.s3);
    drop(cx);

    let mut changed = false;
    for d in done {
        report.downloaded += d.downloaded;
        report.uploaded += d.uploaded;
        report.deleted_local += d.deleted_local;
        report.deleted_remote += d.deleted_remote;
        report.log.extend(d.log);
        report.conflicts.extend(d.conflict);
        report.failed.extend(d.failed);
        for (rel, base) in d.updates {
            changed = true;
            match base {
                Some(b) => st.files.insert(rel, b),
                None => st.files.remove(&rel),
            };
        }
    }
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

async fn run_step(cx: &Cx<'_>, rel: String, step: Step) -> Done {
    let mut d = Done::default();
    let r = match step {
        Step::Download => download_step(cx, &rel, &mut d).await,
        Step::Upload { if_match } => upload_step(cx, &rel, if_match.as_deref(), &mut d).await,
        Step::DeleteLocal => delete_local(cx, &rel, &mut d),
        Step::DeleteRemote => {
            let r = cx.s3.delete(&format!("{}{rel}", cx.prefix)).await;
            r.map(|()| {
                d.deleted_remote = 1;
                d.log = Some(format!("deleted in the bucket: {rel} (deleted here)"));
                d.updates.push((rel.clone(), None));
            })
            .map_err(|e| e.to_string())
        }
        Step::Conflict => conflict(cx, &rel, &mut d).await,
        Step::Forget => {
            d.updates.push((rel.clone(), None));
            Ok(())
        }
    };
    if let Err(e) = r {
        d.failed = Some(format!("{rel}: {e}"));
    }
    d
}

async fn download_step(cx: &Cx<'_>, rel: &str, d: &mut Done) -> Result<(), String> {
    let expect = cx.local.get(rel).copied();
    let (etag, size, l) = fetch(cx, rel, rel, expect).await?;
    d.downloaded = 1;
    d.log = Some(format!("downloaded: {rel}"));
    d.updates.push((rel.into(), Some(base(etag, size, l))));
    Ok(())
}

fn base(etag: String, size: u64, l: Local) -> Base {
    Base {
        etag,
        size,
        lsize: l.size,
        lmtime: l.mtime,
    }
}

/// GETs the key of `rel` into `dest_rel` through a temp file; returns (ETag, size, local stat).
async fn fetch(
    cx: &Cx<'_>,
    rel: &str,
    dest_rel: &str,
    expect: Option<Local>,
) -> Result<(String, u64, Local), String> {
    use http_body_util::BodyExt;
    let resp = cx
        .s3
        .get(&format!("{}{rel}", cx.prefix))
        .await
        .map_err(|e| e.to_string())?;
    // The ETag of what was actually fetched: it may be newer than the listing's.
    let etag = s3::etag_of(&resp).unwrap_or_default();
    let len: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut part = local::Part::create(cx.dir, dest_rel, cx.owner).map_err(|e| e.to_string())?;
    let mut body = resp.into_body();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), body.frame()).await {
            Err(_) => {
                part.abandon();
                return Err("download stalled for 60 s".into());
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                part.abandon();
                return Err(format!("download: {}", s3::error_chain(&e)));
            }
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = part.write(data) {
                        part.abandon();
                        return Err(e.to_string());
                    }
                }
            }
        }
    }
    let size = part.written;
    if len.is_some_and(|l| l != size) {
        part.abandon();
        return Err(format!(
            "download cut short ({size} of {} bytes)",
            len.unwrap_or(0)
        ));
    }
    let l = part.finish(expect, cx.owner).map_err(|e| e.to_string())?;
    Ok((etag, size, l))
}

async fn upload_step(
    cx: &Cx<'_>,
    rel: &str,
    if_match: Option<&str>,
    d: &mut Done,
) -> Result<(), String> {
    let Some(l) = cx.local.get(rel).copied() else {
        return Err("no longer here".into());
    };
    let (etag, size) = put(
        cx,
        rel,
        rel,
        l,
        if_match.map_or(Condition::Create, Condition::Match),
    )
    .await?;
    if size.is_some() {
        d.uploaded = 1;
        d.log = Some(format!("uploaded: {rel}"));
    }
    d.updates.push((rel.into(), Some(base(etag, l.size, l))));
    Ok(())
}

/// PUTs local `rel` as the key of `key_rel`. Returns the ETag and, if a PUT was made, the
/// size (a file only touched — same bytes as the base — needs none).
async fn put(
    cx: &Cx<'_>,
    rel: &str,
    key_rel: &str,
    l: Local,
    cond: Condition<'_>,
) -> Result<(String, Option<u64>), String> {
    let path: PathBuf = cx.dir.join(rel);
    let (md5_hex, md5_b64) = local::md5_file(&path).map_err(|e| e.to_string())?;
    let now = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
    if local::stat(&now) != l {
        return Err("being written; left for the next run".into());
    }
    if matches!(cond, Condition::Match(e) if e == md5_hex) {
        return Ok((md5_hex, None));
    }
    if l.size > 5 << 30 {
        return Err(
            "larger than 5 GiB: needs a multipart upload, which this version does not make".into(),
        );
    }
    let key = format!("{}{key_rel}", cx.prefix);
    let open = || {
        let file = std::fs::File::open(&path)?;
        Ok(http::UploadBody::File { file, left: l.size })
    };
    match cx.s3.put(&key, cond, &md5_b64, l.size, open).await {
        Ok(etag) => Ok((if etag.is_empty() { md5_hex } else { etag }, Some(l.size))),
        Err(S3Error::Precondition) => Err(
            "changed in the bucket during the sync (conditional PUT refused); resolved next run"
                .into(),
        ),
        Err(e) => Err(e.to_string()),
    }
}

fn delete_local(cx: &Cx<'_>, rel: &str, d: &mut Done) -> Result<(), String> {
    let now = std::fs::symlink_metadata(cx.dir.join(rel))
        .ok()
        .map(|m| local::stat(&m));
    if now != cx.local.get(rel).copied() {
        return Err("changed here during the sync; left for the next run".into());
    }
    local::remove(cx.dir, rel).map_err(|e| e.to_string())?;
    d.deleted_local = 1;
    d.log = Some(format!("deleted here: {rel} (deleted in the bucket)"));
    d.updates.push((rel.into(), None));
    Ok(())
}

/// Both sides changed. Same bytes: record. Otherwise the local file keeps its name, the
/// bucket's version is saved beside it, and (two-way) both go up, so nothing is lost.
async fn conflict(cx: &Cx<'_>, rel: &str, d: &mut Done) -> Result<(), String> {
    let l = cx.local[rel];
    let r = &cx.remote[rel];
    if !r.etag.contains('-') {
        let (md5_hex, _) = local::md5_file(&cx.dir.join(rel)).map_err(|e| e.to_string())?;
        if md5_hex == r.etag {
            d.updates
                .push((rel.into(), Some(base(r.etag.clone(), r.size, l))));
            return Ok(());
        }
    }
    let taken = |n: &str| cx.dir.join(n).exists() || cx.remote.contains_key(n);
    let mut n = 1;
    let mut cname = decide::conflict_name(rel, &cx.host, cx.now, n);
    while taken(&cname) {
        n += 1;
        cname = decide::conflict_name(rel, &cx.host, cx.now, n);
    }
    if cx.mode == crate::context::SyncMode::Push {
        // The bucket's version stays; the local one goes up beside it.
        let (_, _) = put(cx, rel, &cname, l, Condition::Create).await?;
        let old = cx.base.get(rel).map_or(String::new(), |b| b.etag.clone());
        d.updates.push((rel.into(), Some(base(old, r.size, l))));
        d.uploaded = 1;
        d.conflict = Some(format!(
            "{rel}: changed on both sides; this version uploaded as {cname}"
        ));
        d.log = d.conflict.clone().map(|c| format!("conflict: {c}"));
        return Ok(());
    }
    let (etag, size, cl) = fetch(cx, rel, &cname, None).await?;
    if std::fs::read(cx.dir.join(&cname)).ok() == std::fs::read(cx.dir.join(rel)).ok() {
        let _ = std::fs::remove_file(cx.dir.join(&cname));
        d.updates.push((rel.into(), Some(base(etag, size, l))));
        return Ok(());
    }
    d.downloaded = 1;
    d.conflict = Some(format!(
        "{rel}: changed on both sides; the bucket's version saved as {cname}"
    ));
    d.log = d.conflict.clone().map(|c| format!("conflict: {c}"));
    if cx.mode == crate::context::SyncMode::Pull {
        // The local edit must still count as an edit: keep the old local stat in the base.
        let keep = cx.base.get(rel).map_or(
            Local {
                size: u64::MAX,
                mtime: -1,
            },
            |b| Local {
                size: b.lsize,
                mtime: b.lmtime,
            },
        );
        d.updates.push((rel.into(), Some(base(etag, size, keep))));
        return Ok(());
    }
    let (e1, _) = put(cx, rel, rel, l, Condition::Match(&etag)).await?;
    d.updates.push((rel.into(), Some(base(e1, l.size, l))));
    let (e2, _) = put(cx, &cname, &cname, cl, Condition::Create).await?;
    d.updates.push((cname.clone(), Some(base(e2, size, cl))));
    d.uploaded = 2;
    Ok(())
}
