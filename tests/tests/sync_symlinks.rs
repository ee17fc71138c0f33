//! The notebook sync runs as root in a folder its user controls: a symlink the user puts in
//! the folder (or swaps in while a cycle runs) must never lead a download, an upload or a
//! deletion outside it. The "victim" is a root-owned temp folder standing for /etc.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vmctx_tests::{is_root, stderr, stdout, SyncCase};

/// A TCP proxy to moto that, once armed, runs `hook` once, just before it forwards a listing
/// request: the moment between the folder's scan and the transfers. (The state is kept per
/// endpoint: every run of a test goes through the proxy.)
fn proxy_hooked_on_list(
    upstream: u16,
    hook: impl Fn() + Send + Sync + 'static,
) -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hook = Arc::new(hook);
    let armed = Arc::new(AtomicBool::new(false));
    let fired = armed.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut up_in, mut c_out) = (up.try_clone().unwrap(), conn.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut up_in, &mut c_out));
            let (hook, fired) = (hook.clone(), fired.clone());
            let (mut c_in, mut up_out) = (conn, up);
            std::thread::spawn(move || {
                let mut buf = vec![0; 64 << 10];
                loop {
                    let n = match c_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let listing = buf[..n].windows(11).any(|w| w == b"list-type=2");
                    if listing && fired.swap(false, Ordering::SeqCst) {
                        hook();
                    }
                    if up_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = up_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, armed)
}

/// A root-owned (when we are root) folder outside the sync folder, 0700 like /root.
fn victim(c: &SyncCase) -> std::path::PathBuf {
    let v = c.tmp.path().join("victim");
    std::fs::create_dir(&v).unwrap();
    std::fs::set_permissions(&v, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    v
}

/// The folder's user: uid 4321 when we are root (as in a guest), else ourselves.
fn hand_to_user(dir: &Path) {
    if is_root() {
        std::os::unix::fs::chown(dir, Some(4321), Some(4321)).unwrap();
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Sets `path`'s mtime to `like`'s (the user can read any file's metadata and copy it).
fn same_mtime(path: &Path, like: &Path) {
    let m = std::fs::metadata(like).unwrap().modified().unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(m).unwrap();
}

#[test]
fn a_pull_never_writes_through_a_symlinked_folder() {
    let Some(c) = SyncCase::new("symlink-pull") else {
        return;
    };
    let v = victim(&c);
    hand_to_user(&c.dir());
    c.rput("cron.daily/evil", "#!/bin/sh\necho owned\n");
    c.rput("ok.ipynb", "fine");
    // The user needs no bucket access: a folder of theirs becomes a link to the victim.
    std::os::unix::fs::symlink(&v, c.dir().join("cron.daily")).unwrap();
    let o = c.sync(&["--mode", "pull"]);
    assert!(
        listing(&v).is_empty(),
        "written through the link: {:?}",
        listing(&v)
    );
    assert!(std::fs::symlink_metadata(c.dir().join("cron.daily"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        c.read("ok.ipynb").as_deref(),
        Some("fine"),
        "the rest synced"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let r = vmctx_tests::json(&o);
    assert!(
        r["failed"][0]
            .as_str()
            .unwrap()
            .starts_with("cron.daily/evil"),
        "{r}"
    );

    // The folder itself swapped for a link: refused, nothing written.
    let real = c.tmp.path().join("nb.real");
    std::fs::rename(c.dir(), &real).unwrap();
    std::os::unix::fs::symlink(&v, c.dir()).unwrap();
    c.rput("new.ipynb", "new");
    let o = c.sync(&["--mode", "pull"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing to sync"), "{}", stderr(&o));
    assert!(
        listing(&v).is_empty(),
        "written through the link: {:?}",
        listing(&v)
    );
}

#[test]
fn a_push_never_uploads_a_file_reached_through_a_swapped_folder() {
    let Some(c) = SyncCase::new("symlink-push") else {
        return;
    };
    let v = victim(&c);
    std::fs::write(v.join("shadow"), "root:SECRET-HASH:19000::::::\n").unwrap();
    hand_to_user(&c.dir());
    // The user's look-alike: same size and mtime as the root-only file.
    c.write("sub/shadow", "user:innocent-ln:19000::::::\n");
    same_mtime(&c.dir().join("sub/shadow"), &v.join("shadow"));
    let (dir, vv) = (c.dir(), v.clone());
    let (proxy, armed) = proxy_hooked_on_list(c.moto.port, move || {
        std::fs::rename(dir.join("sub"), dir.join("sub.old")).unwrap();
        std::os::unix::fs::symlink(&vv, dir.join("sub")).unwrap();
    });
    armed.store(true, Ordering::SeqCst);
    let o = c.sync(&[
        "--mode",
        "push",
        "--endpoint",
        &format!("http://127.0.0.1:{proxy}"),
    ]);
    assert!(
        std::fs::symlink_metadata(c.dir().join("sub"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the swap happened"
    );
    let up = c.rget("sub/shadow");
    assert!(
        !up.as_deref().unwrap_or_default().contains("SECRET"),
        "a root-only file was uploaded: {up:?}"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

#[test]
fn a_deletion_never_deletes_through_a_swapped_folder() {
    let Some(c) = SyncCase::new("symlink-delete") else {
        return;
    };
    let v = victim(&c);
    std::fs::write(v.join("precious"), "root's own file\n").unwrap();
    hand_to_user(&c.dir());
    c.write("sub/precious", "user's own file\n");
    same_mtime(&c.dir().join("sub/precious"), &v.join("precious"));
    c.write("keep1.ipynb", "1");
    c.write("keep2.ipynb", "2");
    let (dir, vv) = (c.dir(), v.clone());
    let (proxy, armed) = proxy_hooked_on_list(c.moto.port, move || {
        std::fs::rename(dir.join("sub"), dir.join("sub.old")).unwrap();
        std::os::unix::fs::symlink(&vv, dir.join("sub")).unwrap();
    });
    let endpoint = format!("http://127.0.0.1:{proxy}");
    c.ok(&["--endpoint", &endpoint]);
    c.rdel("sub/precious");
    armed.store(true, Ordering::SeqCst);
    let o = c.sync(&["--endpoint", &endpoint]);
    assert!(
        std::fs::symlink_metadata(c.dir().join("sub"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the swap happened"
    );
    assert_eq!(
        std::fs::read_to_string(v.join("precious")).ok().as_deref(),
        Some("root's own file\n"),
        "deleted through the link"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    if is_root() {
        assert_eq!(std::fs::metadata(&v).unwrap().uid(), 0);
    }
}
