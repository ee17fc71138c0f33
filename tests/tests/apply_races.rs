//! A user who owns a folder vmctx writes into keeps swapping it for a symlink to a root-owned
//! folder while vmctx applies, over and over: the root-owned folder must keep its owner and
//! mode, and nothing may be written through the link.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use vmctx_tests::*;

const APPLIES: usize = 200;
const UID: u32 = 1000;
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRaceTestKeyRaceTestKeyAAAA race@test";

/// The scratch root with user alice (uid 1000) and her home, and a root-owned folder 0755.
fn alice(g: &Guest) -> PathBuf {
    let r = g.root.path();
    let passwd =
        format!("root:x:0:0:root:/root:/bin/bash\nalice:x:{UID}:{UID}::/home/alice:/bin/sh\n");
    std::fs::write(r.join("etc/passwd"), passwd).unwrap();
    std::fs::write(r.join("etc/group"), format!("root:x:0:\nalice:x:{UID}:\n")).unwrap();
    let home = r.join("home/alice");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(UID), Some(UID)).unwrap();
    let secure = r.join("srv/secure");
    std::fs::create_dir_all(&secure).unwrap();
    std::fs::set_permissions(&secure, PermissionsExt::from_mode(0o755)).unwrap();
    secure
}

/// Swaps `real` (a folder) and a symlink to `target` owned by the user, with
/// renameat2(RENAME_EXCHANGE), until stopped; keeps the folder 0755 so that vmctx wants to
/// fix it. Returns the number of swaps.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
    real: PathBuf,
    link: PathBuf,
}

impl Swapper {
    fn start(real: &Path, target: &Path) -> Swapper {
        std::fs::create_dir_all(real).unwrap();
        std::os::unix::fs::chown(real, Some(UID), Some(UID)).unwrap();
        let link = real.with_extension("swap");
        std::os::unix::fs::symlink(target, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(UID), Some(UID)).unwrap();
        let (stop, swaps) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (a, b) = (cstr(real), cstr(&link));
        let folder = std::fs::File::open(real).unwrap();
        let (s, n) = (stop.clone(), swaps.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = folder.set_permissions(PermissionsExt::from_mode(0o755));
                // SAFETY: two valid C strings; renameat2 only renames.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
            real: real.to_path_buf(),
            link,
        }
    }

    /// Stops, and puts the folder back at its name; the number of swaps.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        if std::fs::symlink_metadata(&self.real)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            std::fs::remove_file(&self.real).unwrap();
            std::fs::rename(&self.link, &self.real).unwrap();
        } else {
            std::fs::remove_file(&self.link).unwrap();
        }
        self.swaps.load(Ordering::Relaxed)
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The folder's owner and mode are as made, and it is still empty.
fn untouched(secure: &Path) {
    let m = std::fs::metadata(secure).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (0, 0, 0o755),
        "the root-owned folder was changed through the link"
    );
    let inside: Vec<_> = std::fs::read_dir(secure)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(inside.is_empty(), "written through the link: {inside:?}");
}

#[test]
fn swapped_ssh_folder_is_never_followed() {
    let Some(g) = Guest::new("race-ssh") else {
        return;
    };
    let secure = alice(&g);
    let ssh = g.root.path().join("home/alice/.ssh");
    let ctx = context_dir(
        &format!("VMID='71'\nUSERNAME='alice'\nUSERNAME_SUDO='NO'\nSSH_PUBLIC_KEY='{KEY}'\n"),
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    let swapper = Swapper::start(&ssh, &secure);
    let mut refused = 0;
    for _ in 0..APPLIES {
        let o = g.vmctx(&["apply", "--stage", "local", "--json", "--source", &src]);
        refused += usize::from(o.status.code() == Some(1));
    }
    let swaps = swapper.finish();
    eprintln!("{APPLIES} applies, {swaps} swaps, {refused} refused a link");
    untouched(&secure);
    // Once the user stops, the keys land in the real folder, fixed to 0700 and theirs.
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let m = std::fs::metadata(&ssh).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (UID, 0o700));
    assert!(g.file("/home/alice/.ssh/authorized_keys").contains(KEY));
}

#[test]
fn swapped_write_files_folder_is_never_followed() {
    let Some(g) = Guest::new("race-wf") else {
        return;
    };
    let secure = alice(&g);
    let app = g.root.path().join("home/alice/app");
    let swapper = Swapper::start(&app, &secure);
    let mut refused = 0;
    for i in 0..APPLIES {
        // A new instance each time: write_files runs once per instance.
        let ctx = context_dir(
            &format!("VMID='{}'\nUSER_DATA='#cloud-config\nwrite_files:\n  - path: /home/alice/app/settings\n    content: hello\n    owner: alice:alice\n    permissions: \"0640\"\n'\n", 1000 + i),
            &[],
        );
        let src = format!("dir:{}", ctx.path().display());
        let o = g.vmctx(&["apply", "--stage", "final", "--json", "--source", &src]);
        refused += usize::from(o.status.code() == Some(1));
    }
    let swaps = swapper.finish();
    eprintln!("{APPLIES} applies, {swaps} swaps, {refused} refused a link");
    untouched(&secure);
    let m = std::fs::metadata(app.join("settings")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (UID, 0o640));
}
