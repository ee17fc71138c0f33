//! Folders opened by file descriptor, for writing where users have a say (`~/.ssh`, a
//! `write_files` target in a home, files under `--root`).
//!
//! A path is walked one component at a time with `O_NOFOLLOW|O_DIRECTORY`. A symlink on the
//! way is followed only when no one but root (or vmctx's own user) could have made or swapped
//! it: the link is theirs and so is its folder, which nobody else may write (or is sticky) —
//! `/var/run -> ../run` is followed, a user's `~/.ssh -> /etc` never is. Everything after the
//! walk happens on the descriptor (`openat`, `fchmod`, `fchown`, `renameat`), so a folder
//! swapped for a link between a check and a change cannot redirect the change.

use super::NewFile;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one walk before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// An open folder and the path it was opened by (for messages and the SELinux relabel).
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
    /// The walk made it: it was missing.
    pub created: bool,
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::other(format!("{}: {why}", path.display()))
}

fn dir_at(parent: &File, name: &OsStr) -> nix::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(Some(parent.as_raw_fd()), name, flags, Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens `name` in `parent` as a folder, making it with `mode` when missing and `mode` is
/// given. A symlink is `ELOOP` or `ENOTDIR`, for the caller to judge.
fn open_or_make(parent: &File, name: &OsStr, mode: Option<u32>) -> nix::Result<(File, bool)> {
    match (dir_at(parent, name), mode) {
        (Err(Errno::ENOENT), Some(mode)) => {
            let made = match mkdirat(
                Some(parent.as_raw_fd()),
                name,
                Mode::from_bits_truncate(mode),
            ) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(e),
            };
            // Opened again without following: a link may have taken the name meanwhile.
            let dir = dir_at(parent, name)?;
            if made {
                // mkdir's mode went through the umask.
                dir.set_permissions(Permissions::from_mode(mode))
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
            }
            Ok((dir, made))
        }
        (other, _) => other.map(|d| (d, false)),
    }
}

fn ours(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Can only root (or this process's user) add or swap entries in `dir`?
fn locked(dir: &File) -> io::Result<bool> {
    let m = dir.metadata()?;
    Ok(ours(m.uid()) && (m.mode() & 0o022 == 0 || m.mode() & 0o1000 != 0))
}

/// Could only root (or this process's user) have made the link `link` in `parent`?
fn trusted_link(parent: &File, link_uid: u32) -> io::Result<bool> {
    Ok(ours(link_uid) && locked(parent)?)
}

fn names(path: &Path) -> io::Result<VecDeque<OsString>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n.to_os_string())),
            Component::ParentDir => Some(Ok(OsString::from(".."))),
            Component::CurDir | Component::RootDir => None,
            Component::Prefix(_) => Some(Err(refused(path, "not a Unix path"))),
        })
        .collect()
}

impl Dir {
    /// Walks to the folder `path` as described above. With `create`, missing folders are
    /// made: the last with that mode, the ones before it 0755.
    pub fn open(path: &Path, create: Option<u32>) -> io::Result<Dir> {
        let start = if path.is_absolute() { "/" } else { "." };
        let mut stack = vec![File::open(start)?];
        let mut todo = names(path)?;
        let (mut links, mut created) = (0, false);
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let top = stack.last().expect("the start folder stays");
            let mode = if todo.is_empty() {
                create
            } else {
                create.map(|_| 0o755)
            };
            match open_or_make(top, &name, mode) {
                Ok((dir, made)) => {
                    created = made;
                    stack.push(dir);
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let st = fstatat(
                        Some(top.as_raw_fd()),
                        name.as_os_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )?;
                    let shown = Path::new(&name).display().to_string();
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                        return Err(refused(path, &format!("{shown} is not a folder")));
                    }
                    if !trusted_link(top, st.st_uid)? {
                        return Err(refused(
                            path,
                            &format!(
                                "{shown} is a symlink a user could swap; vmctx does not follow it"
                            ),
                        ));
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::ELOOP.into());
                    }
                    let target =
                        PathBuf::from(readlinkat(Some(top.as_raw_fd()), name.as_os_str())?);
                    if target.is_absolute() {
                        stack.truncate(1);
                    }
                    for n in names(&target)?.into_iter().rev() {
                        todo.push_front(n);
                    }
                }
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Ok(Dir {
            file: stack.pop().expect("at least the start folder"),
            path: path.to_path_buf(),
            created,
        })
    }

    /// The folder `name` right in this one, never through a link; made with `mode` if missing.
    pub fn child(&self, name: &str, create: Option<u32>) -> io::Result<Dir> {
        let path = self.path.join(name);
        let (file, created) =
            open_or_make(&self.file, OsStr::new(name), create).map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => {
                    refused(&path, "not a folder (a symlink?); not followed")
                }
                e => io::Error::from(e),
            })?;
        Ok(Dir {
            file,
            path,
            created,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// `fchmod` and `fchown` on the open folder.
    pub fn set_mode_owner(&self, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid))?;
        }
        self.file.set_permissions(Permissions::from_mode(mode))
    }

    /// The entry `name` itself (a link is not followed); None when missing.
    fn entry(&self, name: &OsStr) -> io::Result<Option<nix::sys::stat::FileStat>> {
        match fstatat(
            Some(self.file.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a regular file in this folder: never a link, never a FIFO to hang on.
    fn open_file(&self, name: &OsStr, flags: OFlag, mode: u32) -> io::Result<File> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let shown = self.path.join(name);
        let fd = openat(
            Some(self.file.as_raw_fd()),
            name,
            flags,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| match e {
            Errno::ELOOP => refused(&shown, "a symlink; vmctx does not write through links"),
            e => io::Error::from(e),
        })?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let f = unsafe { File::from_raw_fd(fd) };
        let m = f.metadata()?;
        if !m.is_file() {
            return Err(refused(&shown, "not a regular file"));
        }
        // A user's hard link to /etc/shadow would be read, and its lines kept in the copy.
        if m.nlink() > 1 && !locked(&self.file)? {
            return Err(refused(
                &shown,
                "has other hard links in a folder a user owns; not read",
            ));
        }
        Ok(f)
    }

    /// The content of `name`, None when missing.
    pub fn read(&self, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        match self.open_file(name, OFlag::O_RDONLY, 0) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                Ok(Some(buf))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `name` opened for appending (made with `mode` when missing; its mode set to `mode`).
    pub fn append(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let f = self.open_file(
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
            mode,
        )?;
        f.set_permissions(Permissions::from_mode(mode))?;
        Ok(f)
    }

    /// Would writing `content` to `name` change it (content, owner, or an exact mode)?
    pub fn differs(&self, name: &OsStr, content: &[u8], new: NewFile) -> io::Result<bool> {
        let Some(st) = self.entry(name)? else {
            return Ok(true);
        };
        let owner = new
            .owner
            .is_some_and(|(u, g)| (st.st_uid, st.st_gid) != (u, g));
        let mode = new.exact && st.st_mode & 0o7777 != new.mode;
        Ok(owner || mode || self.read(name)?.as_deref() != Some(content))
    }

    /// Writes `name` atomically: a temp file made here with `openat`, its content, owner and
    /// mode set on the descriptor, fsynced, renamed over `name`; then this folder is fsynced.
    /// An existing file keeps its mode and owner unless `new` says otherwise.
    pub fn write(&self, name: &OsStr, content: &[u8], new: NewFile) -> io::Result<bool> {
        if !self.differs(name, content, new)? {
            return Ok(false);
        }
        let existing = self.entry(name)?;
        let tmp = OsString::from(format!(
            ".{}.vmctx-{}",
            Path::new(name).display(),
            std::process::id()
        ));
        let dirfd = Some(self.file.as_raw_fd());
        let _ = unlinkat(dirfd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir); // a crashed run's
        let result = (|| {
            let mut f = self.open_file(
                &tmp,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                0o600, // widened below, once the content is in place
            )?;
            f.write_all(content)?;
            let kept = existing.as_ref().map(|st| (st.st_uid, st.st_gid));
            if let Some((uid, gid)) = new.owner.or(kept) {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            let mode = match &existing {
                Some(st) if !new.exact => st.st_mode & 0o7777,
                _ => new.mode,
            };
            f.set_permissions(Permissions::from_mode(mode))?;
            f.sync_all()?;
            renameat(dirfd, tmp.as_os_str(), dirfd, name)?;
            self.file.sync_all()
        })();
        if result.is_err() {
            let _ = unlinkat(dirfd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result.map(|()| true)
    }

    /// Removes the file (or link) `name`; whether it was there.
    pub fn remove(&self, name: &OsStr) -> io::Result<bool> {
        match unlinkat(
            Some(self.file.as_raw_fd()),
            name,
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A symlink `name -> target`, made at a temp name and renamed over the old entry.
    pub fn symlink(&self, name: &OsStr, target: &str) -> io::Result<()> {
        let tmp = OsString::from(format!(
            ".{}.vmctx-{}",
            Path::new(name).display(),
            std::process::id()
        ));
        let dirfd = Some(self.file.as_raw_fd());
        let _ = unlinkat(dirfd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        symlinkat(target, dirfd, tmp.as_os_str())?;
        if let Err(e) = renameat(dirfd, tmp.as_os_str(), dirfd, name) {
            let _ = unlinkat(dirfd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e.into());
        }
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn own_links_are_followed_and_folders_made() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("run")).unwrap();
        std::fs::create_dir(t.path().join("var")).unwrap();
        symlink("../run", t.path().join("var/run")).unwrap();
        let d = Dir::open(&t.path().join("var/run/vmctx/x"), Some(0o700)).unwrap();
        assert!(d.created);
        assert!(
            t.path().join("run/vmctx/x").is_dir(),
            "made through the link"
        );
        let mode = std::fs::metadata(t.path().join("run/vmctx/x"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(d
            .write(OsStr::new("f"), b"1", NewFile::mode(0o640))
            .unwrap());
        assert_eq!(std::fs::read(t.path().join("run/vmctx/x/f")).unwrap(), b"1");
    }

    #[test]
    fn links_in_a_folder_others_may_write_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::create_dir(t.path().join("target")).unwrap();
        symlink("../target", open.join("link")).unwrap();
        std::fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
        let e = Dir::open(&open.join("link"), Some(0o700)).unwrap_err();
        assert!(e.to_string().contains("a symlink a user could swap"), "{e}");
        std::fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
        assert!(
            Dir::open(&open.join("link"), None).is_ok(),
            "locked folder: followed"
        );
    }

    #[test]
    fn hard_links_in_a_users_folder_are_not_read() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("secret"), "root:$6$hash").unwrap();
        let home = t.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::hard_link(t.path().join("secret"), home.join("keys")).unwrap();
        let d = Dir::open(&home, None).unwrap();
        assert!(
            d.read(OsStr::new("keys")).unwrap().is_some(),
            "our own folder"
        );
        if !nix::unistd::geteuid().is_root() {
            return; // a folder owned by someone else needs root to make
        }
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
        let e = d.read(OsStr::new("keys")).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
    }

    #[test]
    fn exact_mode_is_set_on_an_existing_file() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path(), None).unwrap();
        let n = OsStr::new("f");
        d.write(n, b"a", NewFile::mode(0o644)).unwrap();
        assert!(
            !d.write(n, b"a", NewFile::mode(0o600)).unwrap(),
            "kept mode"
        );
        let exact = NewFile::mode(0o600).exact();
        assert!(d.differs(n, b"a", exact).unwrap());
        assert!(d.write(n, b"a", exact).unwrap());
        assert_eq!(
            std::fs::metadata(t.path().join("f")).unwrap().mode() & 0o777,
            0o600
        );
        std::os::unix::fs::symlink("f", t.path().join("l")).unwrap();
        assert!(d.read(OsStr::new("l")).is_err());
        assert!(d.append(OsStr::new("l"), 0o600).is_err());
    }
}
