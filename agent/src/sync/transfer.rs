//! The steps of a cycle, run in parallel: downloads and uploads through temp files and
//! conditional PUTs, deletions, and conflicts that keep both versions. Each step counts its
//! bytes into the cycle's [`Progress`] as they stream.

use super::decide::{self, Base, Local, Remote, Step};
use super::folder::Folder;
use super::progress::{Meter, Progress};
use super::s3::{self, Condition, S3Error, S3};
use super::{http, local};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Shared by the transfers of one cycle.
pub(super) struct Cx<'a> {
    pub(super) s3: S3,
    pub(super) folder: &'a Folder,
    pub(super) prefix: &'a str,
    pub(super) owner: (u32, u32),
    pub(super) mode: crate::context::SyncMode,
    pub(super) host: String,
    pub(super) now: u64,
    pub(super) local: BTreeMap<String, Local>,
    pub(super) remote: BTreeMap<String, Remote>,
    pub(super) base: &'a BTreeMap<String, Base>,
    pub(super) progress: Arc<Progress>,
}

/// What one step did; merged into the report and the state.
#[derive(Default)]
pub(super) struct Done {
    pub(super) updates: Vec<(String, Option<Base>)>,
    pub(super) log: Option<String>,
    pub(super) conflict: Option<String>,
    pub(super) failed: Option<String>,
    pub(super) downloaded: usize,
    pub(super) uploaded: usize,
    pub(super) deleted_local: usize,
    pub(super) deleted_remote: usize,
}

/// The bytes a step is expected to move (the listing's and the scan's sizes); what it really
/// moved replaces this when it ends.
fn estimate(cx: &Cx<'_>, rel: &str, step: &Step) -> u64 {
    let l = cx.local.get(rel).map_or(0, |l| l.size);
    let r = cx.remote.get(rel).map_or(0, |r| r.size);
    match step {
        Step::Download => r,
        Step::Upload { .. } => l,
        Step::Conflict => match cx.mode {
            crate::context::SyncMode::Pull => r,
            crate::context::SyncMode::Push => l,
            // The bucket's version down, then both up.
            crate::context::SyncMode::Both => r + l + r,
        },
        Step::DeleteLocal | Step::DeleteRemote | Step::Forget => 0,
    }
}

/// Each step with its meter, made before any runs so the totals are whole from the start.
/// Forgetting a file both sides deleted is bookkeeping, not a file of the progress.
pub(super) fn metered(cx: &Cx<'_>, steps: Vec<(String, Step)>) -> Vec<(String, Step, Meter)> {
    steps
        .into_iter()
        .map(|(rel, step)| {
            let m = match step {
                Step::Forget => Meter::none(),
                _ => cx.progress.meter(estimate(cx, &rel, &step)),
            };
            (rel, step, m)
        })
        .collect()
}

pub(super) async fn run_step(cx: &Cx<'_>, rel: String, step: Step, m: Meter) -> Done {
    let mut d = Done::default();
    let r = match step {
        Step::Download => download_step(cx, &rel, &m, &mut d).await,
        Step::Upload { if_match } => upload_step(cx, &rel, if_match.as_deref(), &m, &mut d).await,
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
        Step::Conflict => conflict(cx, &rel, &m, &mut d).await,
        Step::Forget => {
            d.updates.push((rel.clone(), None));
            Ok(())
        }
    };
    m.finish(r.is_ok());
    if let Err(e) = r {
        d.failed = Some(format!("{rel}: {e}"));
    }
    d
}

async fn download_step(cx: &Cx<'_>, rel: &str, m: &Meter, d: &mut Done) -> Result<(), String> {
    let expect = cx.local.get(rel).copied();
    let (etag, size, l) = fetch(cx, rel, rel, expect, m).await?;
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
    m: &Meter,
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
    let mut part = local::Part::create(cx.folder, dest_rel, cx.owner).map_err(|e| e.to_string())?;
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
                    m.add(data.len() as u64);
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
    m: &Meter,
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
        m,
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
    m: &Meter,
) -> Result<(String, Option<u64>), String> {
    // One open file, beneath the folder, for the hash, the check and every try of the PUT.
    let mut file = cx.folder.open_file(rel).map_err(|e| e.to_string())?;
    let (md5_hex, md5_b64) = local::md5_file(&mut file).map_err(|e| e.to_string())?;
    let now =
        nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&file)).map_err(|e| e.to_string())?;
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
    // A retried PUT reads the file again: its bytes count once.
    let sent = m.transfer();
    let open = || {
        sent.restart();
        let mut file = file.try_clone()?;
        std::io::Seek::rewind(&mut file)?;
        Ok(http::UploadBody::File {
            file,
            left: l.size,
            sent: Some(sent.clone()),
        })
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
    let now = cx.folder.lstat(rel).ok().flatten().map(|m| local::stat(&m));
    if now != cx.local.get(rel).copied() {
        return Err("changed here during the sync; left for the next run".into());
    }
    cx.folder.remove(rel).map_err(|e| e.to_string())?;
    d.deleted_local = 1;
    d.log = Some(format!("deleted here: {rel} (deleted in the bucket)"));
    d.updates.push((rel.into(), None));
    Ok(())
}

/// Both sides changed. Same bytes: record. Otherwise the local file keeps its name, the
/// bucket's version is saved beside it, and (two-way) both go up, so nothing is lost.
async fn conflict(cx: &Cx<'_>, rel: &str, m: &Meter, d: &mut Done) -> Result<(), String> {
    let l = cx.local[rel];
    let r = &cx.remote[rel];
    if !r.etag.contains('-') {
        let mut f = cx.folder.open_file(rel).map_err(|e| e.to_string())?;
        let (md5_hex, _) = local::md5_file(&mut f).map_err(|e| e.to_string())?;
        if md5_hex == r.etag {
            d.updates
                .push((rel.into(), Some(base(r.etag.clone(), r.size, l))));
            return Ok(());
        }
    }
    let taken = |n: &str| !matches!(cx.folder.lstat(n), Ok(None)) || cx.remote.contains_key(n);
    let mut n = 1;
    let mut cname = decide::conflict_name(rel, &cx.host, cx.now, n);
    while taken(&cname) {
        n += 1;
        cname = decide::conflict_name(rel, &cx.host, cx.now, n);
    }
    if cx.mode == crate::context::SyncMode::Push {
        // The bucket's version stays; the local one goes up beside it.
        let (_, _) = put(cx, rel, &cname, l, Condition::Create, m).await?;
        let old = cx.base.get(rel).map_or(String::new(), |b| b.etag.clone());
        d.updates.push((rel.into(), Some(base(old, r.size, l))));
        d.uploaded = 1;
        d.conflict = Some(format!(
            "{rel}: changed on both sides; this version uploaded as {cname}"
        ));
        d.log = d.conflict.clone().map(|c| format!("conflict: {c}"));
        return Ok(());
    }
    let (etag, size, cl) = fetch(cx, rel, &cname, None, m).await?;
    if cx.folder.read(&cname).ok() == cx.folder.read(rel).ok() {
        let _ = cx.folder.remove(&cname);
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
    let (e1, _) = put(cx, rel, rel, l, Condition::Match(&etag), m).await?;
    d.updates.push((rel.into(), Some(base(e1, l.size, l))));
    let (e2, _) = put(cx, &cname, &cname, cl, Condition::Create, m).await?;
    d.updates.push((cname.clone(), Some(base(e2, size, cl))));
    d.uploaded = 2;
    Ok(())
}
