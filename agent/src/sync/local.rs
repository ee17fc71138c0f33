//! The notebooks folder: scanning it, excludes, temp files, and the safe download write
//! (temp name in the same folder, fsync, owner, rename, never over a file that changed).

use super::decide::Local;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Suffix of in-flight downloads: `.<name>.vmctx-part`. Swept at start, never uploaded.
pub const PART: &str = ".vmctx-part";
pub const DEFAULT_EXCLUDES: [&str; 2] = [".ipynb_checkpoints/", ".Trash-*/"];

/// Glob excludes: `name/` skips directories so named, a pattern with `/` matches the whole
/// relative path, any other the file name. `*` and `?` are wildcards.
#[derive(Debug, Clone, Default)]
pub struct Excludes(pub Vec<String>);

impl Excludes {
    pub fn excluded(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name.starts_with('.') && name.ends_with(PART) {
            return true;
        }
        let dirs: Vec<&str> = rel.split('/').collect();
        let dirs = &dirs[..dirs.len() - 1];
        self.0.iter().any(|p| match p.strip_suffix('/') {
            Some(d) => dirs.iter().any(|c| glob(d, c)),
            None if p.contains('/') => glob(p, rel),
            None => glob(p, name),
        })
    }
}

fn glob(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    // iterative wildcard match with one backtrack point
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(st) = star {
            i = st + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

pub fn stat(m: &fs::Metadata) -> Local {
    Local {
        size: m.len(),
        mtime: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

/// Every regular file under `dir` by relative path (`/`-separated). Symlinks are not
/// followed; names that are not UTF-8 are skipped with a warning.
pub fn scan(
    dir: &Path,
    ex: &Excludes,
    warn: &mut Vec<String>,
) -> io::Result<BTreeMap<String, Local>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = todo.pop() {
        for e in fs::read_dir(&path)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                warn.push(format!("{}: not UTF-8, skipped", e.path().display()));
                continue;
            };
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = e.file_type()?;
            if ft.is_dir() {
                if !ex.excluded(&format!("{r}/x")) {
                    todo.push((e.path(), r));
                }
            } else if ft.is_file() && !ex.excluded(&r) {
                out.insert(r, stat(&e.metadata()?));
            }
        }
    }
    Ok(out)
}

/// Removes downloads a killed run left behind; returns how many.
pub fn sweep(dir: &Path) -> usize {
    let mut n = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() && name.starts_with('.') && name.ends_with(PART) => {
                    n += usize::from(fs::remove_file(e.path()).is_ok());
                }
                _ => {}
            }
        }
    }
    n
}

/// A relative key is safe to write under the folder: no `..`, no empty or `.` components.
pub fn safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A download in progress: `.<name>.vmctx-part` beside its final path.
pub struct Part {
    pub tmp: PathBuf,
    pub dest: PathBuf,
    file: fs::File,
    pub written: u64,
}

impl Part {
    /// Creates parent folders (owned as the sync folder is) and the temp file.
    pub fn create(root: &Path, rel: &str, owner: (u32, u32)) -> io::Result<Part> {
        let dest = root.join(rel);
        let parent = dest.parent().unwrap_or(root).to_path_buf();
        mkdirs(root, &parent, owner)?;
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let tmp = parent.join(format!(".{name}{PART}"));
        let _ = fs::remove_file(&tmp);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&tmp)?;
        Ok(Part {
            tmp,
            dest,
            file,
            written: 0,
        })
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.written += data.len() as u64;
        self.file.write_all(data)
    }

    /// fsync, owner and mode, then rename over the final path — only if that path is still
    /// what the scan saw (`expect`: None = absent). Otherwise the temp file goes and the local
    /// edit made meanwhile stays. Returns the final file's stat.
    pub fn finish(self, expect: Option<Local>, owner: (u32, u32)) -> Result<Local, PartError> {
        let done = (|| {
            let mode = fs::symlink_metadata(&self.dest)
                .ok()
                .filter(|m| m.is_file())
                .map_or(0o644, |m| m.permissions().mode() & 0o7777);
            // As root, hand the file to the folder's owner; as that owner this is a no-op.
            let _ = std::os::unix::fs::fchown(&self.file, Some(owner.0), Some(owner.1));
            self.file
                .set_permissions(fs::Permissions::from_mode(mode))?;
            self.file.sync_all()?;
            let now = fs::symlink_metadata(&self.dest).ok();
            if now.as_ref().map(stat) != expect || now.is_some_and(|m| !m.is_file()) {
                return Err(PartError::ChangedMeanwhile);
            }
            fs::rename(&self.tmp, &self.dest)?;
            if let Some(dir) = self.dest.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(stat(&fs::symlink_metadata(&self.dest)?))
        })();
        if done.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        done
    }

    pub fn abandon(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("changed locally during the sync; left for the next run")]
    ChangedMeanwhile,
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn mkdirs(root: &Path, dir: &Path, owner: (u32, u32)) -> io::Result<()> {
    if dir.is_dir() || dir == root {
        return Ok(());
    }
    if let Some(p) = dir.parent() {
        mkdirs(root, p, owner)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            let _ = std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1));
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// MD5 of a file: (hex, base64), read in 256 KiB blocks.
pub fn md5_file(path: &Path) -> io::Result<(String, String)> {
    use base64::Engine;
    use md5::{Digest, Md5};
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let d = h.finalize();
    Ok((
        super::sigv4::hex(&d),
        base64::engine::general_purpose::STANDARD.encode(d),
    ))
}

/// Removes a file and the folders it leaves empty (up to the root).
pub fn remove(root: &Path, rel: &str) -> io::Result<()> {
    match fs::remove_file(root.join(rel)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut dir = root.join(rel);
    while dir.pop() && dir != root && fs::remove_dir(&dir).is_ok() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes() {
        let ex = Excludes(
            DEFAULT_EXCLUDES
                .iter()
                .map(|s| s.to_string())
                .chain(["*.tmp".to_string(), "build/*.o".to_string()])
                .collect(),
        );
        assert!(ex.excluded(".ipynb_checkpoints/a-checkpoint.ipynb"));
        assert!(ex.excluded("x/.ipynb_checkpoints/a.ipynb"));
        assert!(ex.excluded("x/.a.ipynb.vmctx-part"));
        assert!(ex.excluded("a.tmp"));
        assert!(ex.excluded("build/x.o"));
        assert!(!ex.excluded("src/x.o"));
        assert!(!ex.excluded("a.ipynb"));
        assert!(!ex.excluded("ipynb_checkpoints.txt"));
    }

    #[test]
    fn safe_paths() {
        assert!(safe_rel("a/b c.ipynb"));
        for bad in ["", "../x", "a//b", "./a", "a/..", "/abs"] {
            assert!(!safe_rel(bad), "{bad}");
        }
    }

    #[test]
    fn part_never_replaces_a_changed_file() {
        let t = tempfile::tempdir().unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let mut p = Part::create(t.path(), "d/n.ipynb", me).unwrap();
        p.write(b"remote").unwrap();
        let st = p.finish(None, me).unwrap();
        assert_eq!(fs::read(t.path().join("d/n.ipynb")).unwrap(), b"remote");
        let mut p = Part::create(t.path(), "d/n.ipynb", me).unwrap();
        p.write(b"newer").unwrap();
        fs::write(t.path().join("d/n.ipynb"), b"local edit").unwrap();
        let old = Local {
            size: st.size,
            mtime: st.mtime - 1,
        };
        assert!(matches!(
            p.finish(Some(old), me),
            Err(PartError::ChangedMeanwhile)
        ));
        assert_eq!(fs::read(t.path().join("d/n.ipynb")).unwrap(), b"local edit");
        assert_eq!(sweep(t.path()), 0, "no temp file left");
    }
}
