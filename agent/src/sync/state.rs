//! The sync's memory, outside the notebooks folder (default `/var/lib/vmctx/sync/`): one JSON
//! file per (endpoint, bucket, prefix, folder) with each file's base, and a lock beside it.

use super::decide::Base;
use crate::files::{self, NewFile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SyncState {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub dir: String,
    pub files: BTreeMap<String, Base>,
}

/// The state file for one pairing: its name hashes what it pairs, so a changed bucket or folder
/// starts from a fresh (union, never deleting) first run.
pub fn path(state_dir: &Path, endpoint: &str, bucket: &str, prefix: &str, dir: &Path) -> PathBuf {
    let id =
        Sha256::digest(format!("{endpoint}\n{bucket}\n{prefix}\n{}", dir.display()).as_bytes());
    state_dir.join(format!("{}.json", super::sigv4::hex(&id[..8])))
}

/// A missing file is a first run; a corrupt one is an error (starting over could delete).
pub fn load(p: &Path) -> Result<SyncState, String> {
    match fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            format!(
                "{}: {e}; move it away to start over (the next run then merges both sides)",
                p.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SyncState::default()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

pub fn save(p: &Path, s: &SyncState) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?;
    files::write_atomic(p, &json, NewFile::mode(0o600))
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// An exclusive flock on `<state file>.lock`, held while the value lives. The kernel drops it
/// when its holder dies, so a stale lock file from a killed run never blocks the next.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

pub fn lock(state_file: &Path) -> Result<Lock, String> {
    let p = state_file.with_extension("lock");
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    use nix::fcntl::{Flock, FlockArg};
    let mut f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut f, _)) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(format!(
                "another vmctx sync is running (pid {}; lock {})",
                holder.trim(),
                p.display()
            ));
        }
    };
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{}", std::process::id());
    Ok(Lock(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_stale_files_are_fine() {
        let t = tempfile::tempdir().unwrap();
        let sf = t.path().join("s/x.json");
        let held = lock(&sf).unwrap();
        let e = lock(&sf).err().unwrap();
        assert!(e.contains("another vmctx sync is running"), "{e}");
        drop(held);
        // The lock file stays (as after a kill); it does not block.
        assert!(sf.with_extension("lock").exists());
        lock(&sf).unwrap();
    }

    #[test]
    fn state_round_trip_and_corruption() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.json");
        assert!(load(&p).unwrap().files.is_empty());
        let mut s = SyncState::default();
        s.files.insert(
            "a b.ipynb".into(),
            Base {
                etag: "e".into(),
                size: 1,
                lsize: 1,
                lmtime: 5,
            },
        );
        save(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap().files.len(), 1);
        fs::write(&p, "{oops").unwrap();
        assert!(load(&p).is_err());
    }
}
