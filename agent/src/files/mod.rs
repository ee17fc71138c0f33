//! Atomic file writes and managed blocks: the only way vmctx changes a file (apply, state,
//! status, sync, instance data).
//!
//! A write goes to a temp file in the same directory, is fsynced, takes the old file's mode
//! and owner, and is renamed over the target; then the directory is fsynced. A crash leaves
//! either the old or the new file, never half of one. Symlinks are never followed: a user's
//! `authorized_keys -> /etc/shadow` must not make root write through it, nor a `~/.ssh`
//! swapped for a link to `/etc` (every path is walked by [`Dir::open`], and the write happens
//! on the folder's descriptor).

mod dir_fd;

pub use dir_fd::Dir;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

pub const BEGIN: &str = "# BEGIN vmctx managed block: changes inside are overwritten";
pub const END: &str = "# END vmctx managed block";

/// Every path vmctx touches, taken under `--root`.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root(dir.into())
    }

    /// `/etc/hosts` → `<root>/etc/hosts`.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    pub fn is_real(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// How a new file is created (an existing file keeps its own mode and owner, unless `exact`).
#[derive(Debug, Clone, Copy)]
pub struct NewFile {
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    /// The mode is set even on an existing file (write_files says what it must be).
    pub exact: bool,
}

impl NewFile {
    pub const fn mode(mode: u32) -> Self {
        NewFile {
            mode,
            owner: None,
            exact: false,
        }
    }

    pub const fn owned(mode: u32, owner: Option<(u32, u32)>) -> Self {
        NewFile {
            mode,
            owner,
            exact: false,
        }
    }

    pub const fn exact(self) -> Self {
        NewFile {
            exact: true,
            ..self
        }
    }
}

/// A file's folder and name.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::other(format!(
            "{}: not a file path",
            path.display()
        ))),
    }
}

/// The folder of `path` when it exists (None when it does not), walked as [`Dir::open`] does.
fn existing_dir(path: &Path) -> io::Result<Option<(Dir, &OsStr)>> {
    let (dir, name) = split(path)?;
    match Dir::open(dir, None) {
        Ok(d) => Ok(Some((d, name))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads a file that may be missing (None). A symlink is an error.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    let Some((dir, name)) = existing_dir(path)? else {
        return Ok(None);
    };
    dir.read(name)?
        .map(|b| String::from_utf8(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)))
        .transpose()
}

/// Would writing `content` change `path`? (Content, or the mode/owner a new file would get.)
pub fn differs(path: &Path, content: &[u8], new: NewFile) -> io::Result<bool> {
    match existing_dir(path)? {
        Some((dir, name)) => dir.differs(name, content, new),
        None => Ok(true),
    }
}

/// Writes `content` atomically ([`Dir::write`]); returns whether anything changed. Parent
/// directories are created (0755) when missing.
pub fn write_atomic(path: &Path, content: &[u8], new: NewFile) -> io::Result<bool> {
    let (dir, name) = split(path)?;
    Dir::open(dir, Some(0o755))?.write(name, content, new)
}

/// A symlink made at a temporary name in the same folder and renamed over `link`: the old
/// link (or file) is replaced in one step.
pub fn replace_symlink(link: &Path, target: &str) -> io::Result<()> {
    let (dir, name) = split(link)?;
    Dir::open(dir, Some(0o755))?.symlink(name, target)
}

/// The paths a stage created or replaced, for the SELinux relabel at its end: a file made by
/// a rename gets its folder's default label, not the one the policy gives its path.
#[derive(Debug, Default)]
pub struct Written {
    files: std::collections::BTreeSet<PathBuf>,
    /// Folders relabelled with everything in them (`~/.ssh`).
    trees: std::collections::BTreeSet<PathBuf>,
}

impl Written {
    pub fn file(&mut self, path: &Path) {
        self.files.insert(path.to_path_buf());
    }

    pub fn tree(&mut self, dir: &Path) {
        self.trees.insert(dir.to_path_buf());
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.trees.is_empty()
    }

    /// Empties the record: the files outside the trees, and the trees.
    pub fn take(&mut self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let trees = std::mem::take(&mut self.trees);
        let files = std::mem::take(&mut self.files)
            .into_iter()
            .filter(|f| !trees.iter().any(|t| f.starts_with(t)))
            .collect();
        (files, trees.into_iter().collect())
    }
}

/// Removes a file vmctx wrote; returns whether it was there.
pub fn remove(path: &Path) -> io::Result<bool> {
    match existing_dir(path)? {
        Some((dir, name)) => dir.remove(name),
        None => Ok(false),
    }
}

/// `existing` with vmctx's block set to `body` (removed when `body` is empty). Lines outside
/// the block are kept exactly; a new block goes at the end, or the top when `top`.
pub fn with_block(existing: &str, body: &str, top: bool) -> String {
    let mut out = String::new();
    let mut lines = existing.split_inclusive('\n');
    let mut placed = false;
    let block = if body.is_empty() {
        String::new()
    } else {
        let mut b = format!("{BEGIN}\n{body}");
        if !b.ends_with('\n') {
            b.push('\n');
        }
        b.push_str(END);
        b.push('\n');
        b
    };
    while let Some(line) = lines.next() {
        if line.trim_end() == BEGIN && !placed {
            // Skip the old block through its END line (or to the end if it was cut short).
            for l in lines.by_ref() {
                if l.trim_end() == END {
                    break;
                }
            }
            out.push_str(&block);
            placed = true;
        } else {
            out.push_str(line);
        }
    }
    if !placed && !block.is_empty() && top {
        return block + &out;
    }
    if !placed && !block.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&block);
    }
    out
}

/// The body of vmctx's block in `existing`, if it has one.
pub fn block_of(existing: &str) -> Option<String> {
    let start = existing.lines().position(|l| l.trim_end() == BEGIN)?;
    let body: Vec<&str> = existing
        .lines()
        .skip(start + 1)
        .take_while(|l| l.trim_end() != END)
        .collect();
    Some(body.iter().map(|l| format!("{l}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn block_appended_replaced_removed() {
        let base = "127.0.0.1 localhost\n# mine\n";
        let once = with_block(base, "10.0.0.1 web\n", false);
        assert_eq!(once, format!("{base}{BEGIN}\n10.0.0.1 web\n{END}\n"));
        let twice = with_block(&once, "10.0.0.2 web\n", true);
        assert_eq!(
            twice,
            format!("{base}{BEGIN}\n10.0.0.2 web\n{END}\n"),
            "an existing block stays where it is"
        );
        assert_eq!(with_block(&twice, "", false), base);
        assert_eq!(
            with_block("no newline", "x", false),
            format!("no newline\n{BEGIN}\nx\n{END}\n")
        );
        assert_eq!(
            with_block("nameserver 1.1.1.1\n", "nameserver 10.0.0.1\n", true),
            format!("{BEGIN}\nnameserver 10.0.0.1\n{END}\nnameserver 1.1.1.1\n")
        );
        assert_eq!(block_of(&twice).as_deref(), Some("10.0.0.2 web\n"));
    }

    #[test]
    fn block_in_the_middle_stays_in_place() {
        let text = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        assert_eq!(
            with_block(&text, "new", false),
            format!("a\n{BEGIN}\nnew\n{END}\nb\n")
        );
    }

    #[test]
    fn atomic_write_keeps_mode_and_reports_change() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/f");
        assert!(write_atomic(&p, b"one", NewFile::mode(0o640)).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(
            !write_atomic(&p, b"one", NewFile::mode(0o600)).unwrap(),
            "same content: unchanged"
        );
        assert!(write_atomic(&p, b"two", NewFile::mode(0o600)).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o604,
            "mode kept"
        );
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left");
    }

    #[test]
    fn symlinks_are_not_written_through() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        fs::write(&target, "secret").unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_atomic(&link, b"x", NewFile::mode(0o600)).is_err());
        assert!(read_optional(&link).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "secret");
    }

    #[test]
    fn symlink_replaced_atomically() {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("localtime");
        fs::write(&link, b"a copied file").unwrap();
        replace_symlink(&link, "../usr/share/zoneinfo/Europe/Prague").unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../usr/share/zoneinfo/Europe/Prague")
        );
        replace_symlink(&link, "../usr/share/zoneinfo/UTC").unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../usr/share/zoneinfo/UTC")
        );
        let names: Vec<_> = fs::read_dir(t.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary link left");
    }

    #[test]
    fn written_files_inside_trees_go_with_the_tree() {
        let mut w = Written::default();
        assert!(w.is_empty());
        w.file(Path::new("/r/etc/hostname"));
        w.file(Path::new("/r/home/u/.ssh/authorized_keys"));
        w.tree(Path::new("/r/home/u/.ssh"));
        w.file(Path::new("/r/etc/hostname"));
        let (files, trees) = w.take();
        assert_eq!(files, [PathBuf::from("/r/etc/hostname")]);
        assert_eq!(trees, [PathBuf::from("/r/home/u/.ssh")]);
        assert!(w.is_empty(), "taken");
    }

    #[test]
    fn root_paths() {
        let r = Root::new("/tmp/r");
        assert_eq!(r.path("/etc/hosts"), PathBuf::from("/tmp/r/etc/hosts"));
        assert!(Root::new("/").is_real());
    }
}
