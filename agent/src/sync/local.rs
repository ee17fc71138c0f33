//! The notebooks folder's files: scanning it, excludes, temp files, and the safe download
//! write (temp name in the same folder, fsync, owner, rename, never over a file that changed),
//! every path resolved beneath the folder's descriptor ([`Folder`]).

use super::decide::Local;
use super::folder::{self, Folder};
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{self, UnlinkatFlags};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

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

pub fn stat(m: &FileStat) -> Local {
    Local {
        size: m.st_size as u64,
        mtime: i128::from(m.st_mtime) * 1_000_000_000 + i128::from(m.st_mtime_nsec),
    }
}

/// Every regular file below the folder by relative path (`/`-separated). Symlinks are
/// neither followed nor listed; names that are not UTF-8 are skipped with a warning.
pub fn scan(
    folder: &Folder,
    ex: &Excludes,
    warn: &mut Vec<String>,
) -> io::Result<BTreeMap<String, Local>> {
    let mut out = BTreeMap::new();
    folder.walk(
        |_, r, st| {
            if folder::is_dir(st) {
                !ex.excluded(&format!("{r}/x"))
            } else {
                if folder::is_file(st) && !ex.excluded(r) {
                    out.insert(r.to_string(), stat(st));
                }
                false
            }
        },
        |odd| warn.push(format!("{odd:?}: not UTF-8, skipped")),
    )?;
    Ok(out)
}

/// Removes downloads a killed run left behind; returns how many.
pub fn sweep(folder: &Folder) -> usize {
    let mut n = 0;
    let _ = folder.walk(
        |dir, r, st| {
            let name = r.rsplit('/').next().unwrap_or(r);
            if folder::is_file(st) && name.starts_with('.') && name.ends_with(PART) {
                n += usize::from(
                    unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
                        .is_ok(),
                );
            }
            folder::is_dir(st)
        },
        |_| {},
    );
    n
}

/// Text from the bucket or the folder (a key, a file name, a server's message) as report
/// lines show it: control and bidi characters escaped (`\n`, `\u{202e}`), so that no name
/// can start a line of its own or disguise one. Other text is shown as it is.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    let odd =
        |c: char| c.is_control() || matches!(c, '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(odd) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if odd(c) {
                c.escape_unicode().to_string().replace("\\u{a}", "\\n")
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// A relative key is safe to write under the folder: no `..`, no empty or `.` components.
pub fn safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A download in progress: `.<name>.vmctx-part` beside its final path, in a folder held open.
pub struct Part {
    dir: OwnedFd,
    tmp: String,
    dest: String,
    file: fs::File,
    pub written: u64,
}

impl Part {
    /// Creates parent folders (owned as the sync folder is) and the temp file.
    pub fn create(folder: &Folder, rel: &str, owner: (u32, u32)) -> io::Result<Part> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = folder.mkdirs(parent, owner)?;
        let tmp = format!(".{name}{PART}");
        let _ = unistd::unlinkat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
        let fd = folder::open_beneath(
            dir.as_raw_fd(),
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o600),
        )?;
        Ok(Part {
            dir,
            tmp,
            dest: name.to_string(),
            file: fs::File::from(fd),
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
            let now = folder::lstat_at(&self.dir, &self.dest)?;
            let mode = now
                .filter(folder::is_file)
                .map_or(0o644, |m| m.st_mode & 0o7777);
            // As root, hand the file to the folder's owner; as that owner this is a no-op.
            let _ = std::os::unix::fs::fchown(&self.file, Some(owner.0), Some(owner.1));
            self.file
                .set_permissions(fs::Permissions::from_mode(mode))?;
            self.file.sync_all()?;
            if now.as_ref().map(stat) != expect || now.is_some_and(|m| !folder::is_file(&m)) {
                return Err(PartError::ChangedMeanwhile);
            }
            let d = Some(self.dir.as_raw_fd());
            fcntl::renameat(d, self.tmp.as_str(), d, self.dest.as_str())
                .map_err(io::Error::from)?;
            unistd::fsync(self.dir.as_raw_fd()).map_err(io::Error::from)?;
            folder::lstat_at(&self.dir, &self.dest)?
                .map(|m| stat(&m))
                .ok_or_else(|| PartError::Io(io::ErrorKind::NotFound.into()))
        })();
        if done.is_err() {
            self.unlink_tmp();
        }
        done
    }

    fn unlink_tmp(&self) {
        let _ = unistd::unlinkat(
            Some(self.dir.as_raw_fd()),
            self.tmp.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }

    pub fn abandon(self) {
        self.unlink_tmp();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("changed locally during the sync; left for the next run")]
    ChangedMeanwhile,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// MD5 of an open file from its start: (hex, base64), read in 256 KiB blocks.
pub fn md5_file(f: &mut fs::File) -> io::Result<(String, String)> {
    use base64::Engine;
    use md5::{Digest, Md5};
    use std::io::{Read, Seek};
    f.rewind()?;
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
    fn names_cannot_forge_lines() {
        assert_eq!(shown("plain é 日本.ipynb"), "plain é 日本.ipynb");
        assert_eq!(shown("a\nuploaded: x"), "a\\nuploaded: x");
        assert_eq!(shown("b\r\u{1b}[2K\u{202e}"), "b\\u{d}\\u{1b}[2K\\u{202e}");
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
        let f = Folder::open(t.path()).unwrap();
        let mut p = Part::create(&f, "d/n.ipynb", me).unwrap();
        p.write(b"remote").unwrap();
        let st = p.finish(None, me).unwrap();
        assert_eq!(fs::read(t.path().join("d/n.ipynb")).unwrap(), b"remote");
        let mut p = Part::create(&f, "d/n.ipynb", me).unwrap();
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
        assert_eq!(sweep(&f), 0, "no temp file left");
    }
}
