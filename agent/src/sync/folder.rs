//! The notebooks folder through file descriptors. `vmctx sync` runs as root in a folder its
//! user controls, so no path below the folder is ever resolved by name from `/`: everything
//! is opened beneath the folder's descriptor with no symlink followed (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; one `O_NOFOLLOW` component at a time on kernels
//! without it), and created, renamed and removed with `mkdirat`, `renameat`, `unlinkat`
//! relative to a held directory. A folder swapped for a symlink mid-cycle fails the step,
//! never leads a read, write, chown or deletion outside.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

/// The folder, held open.
pub struct Folder {
    fd: OwnedFd,
    pub path: PathBuf,
}

/// A directory below the folder, held open, and the name of an entry in it.
pub struct At {
    pub dir: OwnedFd,
    pub name: String,
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY);

/// Opens `rel` (safe `/`-separated components) beneath `dir`, following no symlink.
pub fn open_beneath(dir: RawFd, rel: &str, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // open_how's mode must be 0 unless a file is created.
    let mode = if flags.contains(OFlag::O_CREAT) {
        mode
    } else {
        Mode::empty()
    };
    let how = OpenHow::new().flags(flags).mode(mode).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    match fcntl::openat2(dir, rel, how) {
        Ok(fd) => Ok(owned(fd)),
        // No openat2 (old kernel, or a seccomp filter): the same, one component at a time.
        Err(Errno::ENOSYS | Errno::EPERM) => open_by_components(dir, rel, flags, mode),
        Err(e) => Err(e.into()),
    }
}

/// [`open_beneath`] without `openat2`: each component opened `O_NOFOLLOW` from the last.
fn open_by_components(dir: RawFd, rel: &str, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(io::Error::other(format!(
            "{rel:?}: not a path below the folder"
        )));
    }
    let (last, dirs) = parts.split_last().unwrap_or((&"", &[]));
    let mut cur: Option<OwnedFd> = None;
    for p in dirs {
        let at = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
        let f = fcntl::openat(
            Some(at),
            *p,
            DIR_FLAGS | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        cur = Some(owned(f));
    }
    let at = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
    Ok(owned(fcntl::openat(Some(at), *last, flags, mode)?))
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub fn lstat_at(dir: &OwnedFd, name: &str) -> io::Result<Option<FileStat>> {
    match stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn is_dir(s: &FileStat) -> bool {
    SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

pub fn is_file(s: &FileStat) -> bool {
    SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Folder {
    /// Opens the folder itself. Its path may pass through symlinks only when root (or the
    /// user running this) owns them: one the folder's user made, such as the folder itself
    /// replaced by a link to `/etc`, is refused (`ELOOP`).
    pub fn open(path: &Path) -> io::Result<Folder> {
        let (parent, name) = open_parent(path)?;
        let fd = open_component(&parent, &name, true)?;
        Ok(Folder {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Creates a missing folder (its parent must exist) and opens it. It goes to the parent's
    /// owner: under a user's home it is that user's, never root's.
    pub fn create(path: &Path) -> io::Result<Folder> {
        let (parent, name) = open_parent(path)?;
        let owner = stat::fstat(parent.as_raw_fd())?;
        match stat::mkdirat(
            Some(parent.as_raw_fd()),
            name.as_str(),
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = open_component(&parent, &name, false)?;
        let now = stat::fstat(fd.as_raw_fd())?;
        if now.st_uid != owner.st_uid || now.st_gid != owner.st_gid {
            unistd::fchown(
                fd.as_raw_fd(),
                Some(Uid::from_raw(owner.st_uid)),
                Some(Gid::from_raw(owner.st_gid)),
            )?;
        }
        Ok(Folder {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn stat(&self) -> io::Result<FileStat> {
        Ok(stat::fstat(self.fd.as_raw_fd())?)
    }

    /// The directory holding `rel` (opened beneath the folder) and its last name.
    pub fn at(&self, rel: &str) -> io::Result<At> {
        let (dir, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (
                open_beneath(self.fd.as_raw_fd(), d, DIR_FLAGS, Mode::empty())?,
                n,
            ),
            None => (self.fd.try_clone()?, rel),
        };
        Ok(At {
            dir,
            name: name.to_string(),
        })
    }

    /// `lstat` of `rel`; `None` when it (or a folder on its way) does not exist.
    pub fn lstat(&self, rel: &str) -> io::Result<Option<FileStat>> {
        match self.at(rel) {
            Ok(at) => lstat_at(&at.dir, &at.name),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A regular file below the folder, opened for reading (never a link, FIFO or device).
    pub fn open_file(&self, rel: &str) -> io::Result<fs::File> {
        let fd = open_beneath(
            self.fd.as_raw_fd(),
            rel,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        if !is_file(&stat::fstat(fd.as_raw_fd())?) {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(fs::File::from(fd))
    }

    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        self.open_file(rel)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Creates the folders of `rel_dir` that are missing (given to `owner`) and opens the last.
    pub fn mkdirs(&self, rel_dir: &str, owner: (u32, u32)) -> io::Result<OwnedFd> {
        let mut cur = self.fd.try_clone()?;
        for c in rel_dir.split('/').filter(|c| !c.is_empty()) {
            let made =
                match stat::mkdirat(Some(cur.as_raw_fd()), c, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => true,
                    Err(Errno::EEXIST) => false,
                    Err(e) => return Err(e.into()),
                };
            let next = open_beneath(cur.as_raw_fd(), c, DIR_FLAGS, Mode::empty())?;
            if made {
                // As root, hand it to the folder's owner; as that owner this is a no-op.
                let _ = unistd::fchown(
                    next.as_raw_fd(),
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                );
            }
            cur = next;
        }
        Ok(cur)
    }

    /// Removes a file, then the folders it leaves empty (up to the folder).
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        let comps: Vec<&str> = rel.split('/').collect();
        let mut chain = vec![self.fd.try_clone()?];
        for c in &comps[..comps.len() - 1] {
            let last = chain.last().map_or(-1, |f| f.as_raw_fd());
            match open_beneath(last, c, DIR_FLAGS, Mode::empty()) {
                Ok(f) => chain.push(f),
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let name = comps[comps.len() - 1];
        let last = chain.last().map_or(-1, |f| f.as_raw_fd());
        match unistd::unlinkat(Some(last), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        for i in (1..chain.len()).rev() {
            let parent = chain[i - 1].as_raw_fd();
            if unistd::unlinkat(Some(parent), comps[i - 1], UnlinkatFlags::RemoveDir).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Calls `visit(dir, rel, stat)` for every entry below the folder (`rel` `/`-separated),
    /// descending into the folders for which it returns true. Names that are not UTF-8 are
    /// passed to `odd`.
    pub fn walk(
        &self,
        mut visit: impl FnMut(&OwnedFd, &str, &FileStat) -> bool,
        mut odd: impl FnMut(String),
    ) -> io::Result<()> {
        let mut todo = vec![(self.fd.try_clone()?, String::new())];
        while let Some((dir, rel)) = todo.pop() {
            let mut d = Dir::from(dir.try_clone()?)?;
            for e in d.iter() {
                let e = e?;
                let raw = e.file_name();
                if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
                    continue;
                }
                let Ok(name) = raw.to_str() else {
                    odd(format!("{rel}/{}", raw.to_string_lossy()));
                    continue;
                };
                let r = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                let Some(st) = lstat_at(&dir, name)? else {
                    continue;
                };
                if visit(&dir, &r, &st) && is_dir(&st) {
                    match open_beneath(dir.as_raw_fd(), name, DIR_FLAGS, Mode::empty()) {
                        Ok(sub) => todo.push((sub, r)),
                        // Swapped for a link or removed since: not ours to follow.
                        Err(_) => continue,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Creates `path` and whichever of its parents are missing, each given to `owner` (the
/// folders that exist are left as they are). Returns whether anything was created. Walked
/// from `/` by descriptor: a symlink on the way is followed only when root owns it.
pub fn create_all(path: &Path, owner: (u32, u32)) -> io::Result<bool> {
    let (mut cur, last) = open_parent_with(path, |dir, name| {
        let made = mkdir_owned(dir, name, owner)?;
        Ok((open_component(dir, name, !made)?, made))
    })?;
    let made = mkdir_owned(&cur.0, &last, owner)?;
    open_component(&cur.0, &last, !made)?;
    cur.1 |= made;
    Ok(cur.1)
}

/// `mkdirat` 0755 and `fchown` to `owner`; false when it already existed.
fn mkdir_owned(dir: &OwnedFd, name: &str, owner: (u32, u32)) -> io::Result<bool> {
    match stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let fd = open_component(dir, name, false)?;
    unistd::fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
    )?;
    Ok(true)
}

/// Opens `path`'s parent folder from `/` and returns it with the last name.
fn open_parent(path: &Path) -> io::Result<(OwnedFd, String)> {
    let ((fd, _), last) = open_parent_with(path, |dir, name| {
        Ok((open_component(dir, name, true)?, false))
    })?;
    Ok((fd, last))
}

/// Walks `path`'s parents from `/` with `step` (which opens one, perhaps creating it) and
/// returns the last folder, what the steps said (or-ed), and the last name.
fn open_parent_with(
    path: &Path,
    mut step: impl FnMut(&OwnedFd, &str) -> io::Result<(OwnedFd, bool)>,
) -> io::Result<((OwnedFd, bool), String)> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut names: Vec<String> = Vec::new();
    for c in abs.components() {
        match c {
            Component::Normal(n) => names.push(
                n.to_str()
                    .ok_or_else(|| io::Error::other("the folder's path is not UTF-8"))?
                    .to_string(),
            ),
            Component::ParentDir => {
                names.pop();
            }
            _ => {}
        }
    }
    let last = names
        .pop()
        .ok_or_else(|| io::Error::other("the folder cannot be /"))?;
    let mut cur = owned(fcntl::open(
        "/",
        DIR_FLAGS | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    let mut said = false;
    for n in names {
        let (next, t) = step(&cur, &n)?;
        cur = next;
        said |= t;
    }
    Ok(((cur, said), last))
}

/// One folder of the folder's own path: a symlink is followed only when root (or whoever
/// runs this) owns it, so the folder's user cannot redirect the path.
fn open_component(dir: &OwnedFd, name: &str, follow_trusted: bool) -> io::Result<OwnedFd> {
    let flags = DIR_FLAGS | OFlag::O_CLOEXEC;
    match fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(owned(fd)),
        Err(Errno::ELOOP | Errno::ENOTDIR) if follow_trusted => {
            let st =
                lstat_at(dir, name)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            let me = unistd::geteuid().as_raw();
            let link = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK;
            if !link || (st.st_uid != 0 && st.st_uid != me) {
                return Err(io::Error::other(format!(
                    "{name:?} is a symlink its user made, or not a folder: refused"
                )));
            }
            Ok(owned(fcntl::openat(
                Some(dir.as_raw_fd()),
                name,
                flags,
                Mode::empty(),
            )?))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_symlink_is_followed_below_the_folder() {
        let t = tempfile::tempdir().unwrap();
        let (nb, out) = (t.path().join("nb"), t.path().join("out"));
        std::fs::create_dir_all(nb.join("real")).unwrap();
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("secret"), "s").unwrap();
        std::fs::write(nb.join("real/f"), "f").unwrap();
        std::os::unix::fs::symlink(&out, nb.join("link")).unwrap();
        std::os::unix::fs::symlink(out.join("secret"), nb.join("real/s")).unwrap();
        let f = Folder::open(&nb).unwrap();
        let fd = f.fd.as_raw_fd();
        let ro = OFlag::O_RDONLY;
        for open in [open_beneath, open_by_components] {
            assert!(open(fd, "real/f", ro, Mode::empty()).is_ok());
            for bad in ["link/secret", "real/s", "link"] {
                assert!(open(fd, bad, ro, Mode::empty()).is_err(), "{bad}");
            }
        }
        assert!(f.mkdirs("link/x", (0, 0)).is_err());
        assert!(!out.join("x").exists());
        f.remove("link/secret").unwrap_err();
        assert!(out.join("secret").exists());
        assert_eq!(f.lstat("link/secret").ok().flatten().map(|_| ()), None);
        let mut seen = Vec::new();
        f.walk(
            |_, r, _| {
                seen.push(r.to_string());
                true
            },
            |_| {},
        )
        .unwrap();
        seen.sort();
        assert_eq!(seen, ["link", "real", "real/f", "real/s"]);
    }
}
