//! The three-way decision for one file: its local state, its remote state, and what both were
//! at the last successful sync (the base). Pure; the engine carries the steps out.
//!
//! A local change is a change of size or mtime against the base (whichever clock is ahead);
//! a remote change is a change of ETag. So a same-size edit counts on either side.

use crate::context::SyncMode;
use serde::{Deserialize, Serialize};

/// What a file was on both sides after the last sync that moved or checked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub etag: String,
    pub size: u64,
    /// Local size and mtime (ns) as they were then.
    pub lsize: u64,
    pub lmtime: i128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub size: u64,
    pub mtime: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remote → local (new remotely, or changed only there).
    Download,
    /// Local → remote: over the base version (`If-Match`) or as a new key (`If-None-Match: *`).
    Upload {
        if_match: Option<String>,
    },
    DeleteLocal,
    DeleteRemote,
    /// Both sides differ from the base (or there is no base): keep both, unless they turn out
    /// to be the same bytes.
    Conflict,
    /// Gone from both sides: drop the base.
    Forget,
}

impl Step {
    pub fn deletes(&self) -> bool {
        matches!(self, Step::DeleteLocal | Step::DeleteRemote)
    }
}

pub fn decide(
    l: Option<&Local>,
    r: Option<&Remote>,
    b: Option<&Base>,
    mode: SyncMode,
) -> Option<Step> {
    let local_changed = |l: &Local, b: &Base| l.size != b.lsize || l.mtime != b.lmtime;
    let remote_changed = |r: &Remote, b: &Base| r.etag != b.etag || r.size != b.size;
    let step = match (l, r, b) {
        (Some(l), Some(r), Some(b)) => match (local_changed(l, b), remote_changed(r, b)) {
            (false, false) => return None,
            (true, false) => Step::Upload {
                if_match: Some(b.etag.clone()),
            },
            (false, true) => Step::Download,
            (true, true) => Step::Conflict,
        },
        // The first run (or both created it): the same bytes are no conflict.
        (Some(_), Some(_), None) => Step::Conflict,
        (Some(_), None, None) => Step::Upload { if_match: None },
        // Deleted remotely: propagate unless it changed here since.
        (Some(l), None, Some(b)) if local_changed(l, b) => Step::Upload { if_match: None },
        (Some(_), None, Some(_)) => Step::DeleteLocal,
        (None, Some(_), None) => Step::Download,
        (None, Some(r), Some(b)) if remote_changed(r, b) => Step::Download,
        (None, Some(_), Some(_)) => Step::DeleteRemote,
        (None, None, Some(_)) => Step::Forget,
        (None, None, None) => return None,
    };
    Some(match (mode, step) {
        (SyncMode::Both, s) | (_, s @ (Step::Conflict | Step::Forget)) => s,
        // pull: the bucket is the truth; local edits stay but are never sent.
        (SyncMode::Pull, Step::Upload { .. }) => return None,
        (SyncMode::Pull, Step::DeleteRemote) => Step::Download,
        (SyncMode::Pull, s @ (Step::Download | Step::DeleteLocal)) => s,
        // push: the folder is the truth; remote edits stay but are never fetched.
        (SyncMode::Push, Step::Download) => return None,
        (SyncMode::Push, Step::DeleteLocal) => Step::Upload { if_match: None },
        (SyncMode::Push, s @ (Step::Upload { .. } | Step::DeleteRemote)) => s,
    })
}

/// `dir/name.ext` → `dir/name.conflict-<host>-<UTC time>.ext` (no extension: appended);
/// `n` > 1 tells apart two conflicts of one file in the same second (`…Z-2.ext`).
pub fn conflict_name(rel: &str, host: &str, secs: u64, n: u32) -> String {
    let (y, mo, d, h, mi, s) = super::sigv4::utc(secs);
    let mut tag = format!("conflict-{host}-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    if n > 1 {
        tag.push_str(&format!("-{n}"));
    }
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), rel),
    };
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}.{tag}.{ext}"),
        _ => format!("{dir}{name}.{tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SyncMode::*;

    const L: Local = Local {
        size: 10,
        mtime: 100,
    };

    fn base() -> Base {
        Base {
            etag: "e1".into(),
            size: 10,
            lsize: 10,
            lmtime: 100,
        }
    }
    fn remote(etag: &str) -> Remote {
        Remote {
            etag: etag.into(),
            size: 10,
        }
    }

    #[test]
    fn three_way_rules() {
        let b = base();
        let edited = Local {
            size: 10,
            mtime: 200,
        }; // same size, new mtime
        let up_over = Some(Step::Upload {
            if_match: Some("e1".into()),
        });
        let up_new = Some(Step::Upload { if_match: None });
        let r1 = remote("e1");
        let r2 = remote("e2");
        assert_eq!(decide(Some(&L), Some(&r1), Some(&b), Both), None);
        assert_eq!(decide(Some(&edited), Some(&r1), Some(&b), Both), up_over);
        assert_eq!(
            decide(Some(&L), Some(&r2), Some(&b), Both),
            Some(Step::Download)
        );
        assert_eq!(
            decide(Some(&edited), Some(&r2), Some(&b), Both),
            Some(Step::Conflict)
        );
        assert_eq!(
            decide(Some(&L), None, Some(&b), Both),
            Some(Step::DeleteLocal)
        );
        assert_eq!(decide(Some(&edited), None, Some(&b), Both), up_new);
        assert_eq!(
            decide(None, Some(&r1), Some(&b), Both),
            Some(Step::DeleteRemote)
        );
        assert_eq!(
            decide(None, Some(&r2), Some(&b), Both),
            Some(Step::Download)
        );
        assert_eq!(decide(None, None, Some(&b), Both), Some(Step::Forget));
        // first run: union, never a deletion
        assert_eq!(decide(Some(&L), None, None, Both), up_new);
        assert_eq!(decide(None, Some(&r1), None, Both), Some(Step::Download));
        assert_eq!(
            decide(Some(&L), Some(&r1), None, Both),
            Some(Step::Conflict)
        );
    }

    #[test]
    fn one_way_modes() {
        let b = base();
        let edited = Local {
            size: 11,
            mtime: 100,
        };
        let r1 = remote("e1");
        assert_eq!(decide(Some(&edited), Some(&r1), Some(&b), Pull), None);
        assert_eq!(
            decide(None, Some(&r1), Some(&b), Pull),
            Some(Step::Download)
        );
        assert_eq!(decide(Some(&L), Some(&remote("e2")), Some(&b), Push), None);
        assert_eq!(
            decide(Some(&L), None, Some(&b), Push),
            Some(Step::Upload { if_match: None })
        );
        assert_eq!(
            decide(None, Some(&r1), Some(&b), Push),
            Some(Step::DeleteRemote)
        );
    }

    #[test]
    fn conflict_names() {
        let t = 1_700_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(
            conflict_name("a/b c.ipynb", "jup", t, 1),
            "a/b c.conflict-jup-20231114T221320Z.ipynb"
        );
        assert_eq!(
            conflict_name("README", "h", t, 2),
            "README.conflict-h-20231114T221320Z-2"
        );
        assert_eq!(
            conflict_name(".env", "h", t, 1),
            ".env.conflict-h-20231114T221320Z"
        );
    }
}
