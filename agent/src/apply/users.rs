//! The managed user: created with the distro's `useradd` when missing, sudo through a validated
//! `/etc/sudoers.d` file, the password in `/etc/shadow`, and SSH keys in a managed block of
//! `authorized_keys`. passwd and shadow are read here, never through libc's NSS (the release
//! binary is static glibc). No password or key material is logged.

use super::Apply;
use crate::context::{Password, User};
use crate::files::{self, Dir, NewFile};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const SUDOERS: &str = "/etc/sudoers.d/90-vmctx";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks `name` up in a passwd file.
pub fn lookup(passwd: &str, name: &str) -> Option<Account> {
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[0] == name).then(|| Account {
                uid: f[2].parse().unwrap_or(u32::MAX),
                gid: f[3].parse().unwrap_or(u32::MAX),
                home: PathBuf::from(f[5]),
            })
        })
        .filter(|a| a.uid != u32::MAX && a.gid != u32::MAX)
}

pub fn apply(ap: &mut Apply, user: &User, keys: &[String]) {
    let account = ensure_account(ap, user);
    sudo(ap, user);
    if let Some(acct) = &account {
        password(ap, user);
        authorized_keys(ap, &user.name, acct, keys);
    }
}

fn read_account(ap: &Apply, name: &str) -> Option<Account> {
    let passwd = std::fs::read_to_string(ap.root.path("/etc/passwd")).unwrap_or_default();
    lookup(&passwd, name)
}

fn ensure_account(ap: &mut Apply, user: &User) -> Option<Account> {
    if let Some(a) = read_account(ap, &user.name) {
        ap.unchanged("user", &user.name, "exists");
        return Some(a);
    }
    if ap.dry_run {
        ap.changed(
            "user",
            &user.name,
            format!("create (useradd, shell {})", user.shell),
        );
        return None;
    }
    let mut cmd = Command::new("useradd");
    if !ap.root.is_real() {
        cmd.arg("--prefix").arg(ap.root.dir());
    }
    // No password until one is set below: '*' matches nothing, as one-context does.
    cmd.args([
        "--create-home",
        "--password",
        "*",
        "--shell",
        &user.shell,
        &user.name,
    ]);
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            ap.failed("user", &user.name, format!("useradd: {}", err.trim()));
            return None;
        }
        Err(e) => {
            ap.failed("user", &user.name, format!("useradd: {e}"));
            return None;
        }
    }
    match read_account(ap, &user.name) {
        Some(a) => {
            ap.changed(
                "user",
                &user.name,
                format!("created (shell {})", user.shell),
            );
            Some(a)
        }
        None => {
            ap.failed(
                "user",
                &user.name,
                "useradd succeeded but the user is not in passwd",
            );
            None
        }
    }
}

/// The rule `USERNAME_SUDO` grants; `sudo: true` of a cloud-config user is the same.
pub(super) const SUDO_ALL: &str = "ALL=(ALL) NOPASSWD:ALL";

fn sudo(ap: &mut Apply, user: &User) {
    let path = ap.root.path(SUDOERS);
    if !user.sudo {
        ap.remove("sudo", &path);
        return;
    }
    let text = format!(
        "# Written by vmctx: USERNAME_SUDO for the context's user.\n{} {SUDO_ALL}\n",
        user.name
    );
    sudoers_file(ap, &path, &text, &[&user.name], false);
}

/// Writes a sudoers.d drop-in; a broken one locks out sudo. vmctx's fixed rule has one
/// variable part, the user names, which the context checked already (checked again here,
/// cheaply); free-form rules (`free_form`) go through `visudo -cf`, and only when the file
/// would change: an unchanged file was checked when it was written, and visudo costs
/// seconds of an emulated boot.
pub(super) fn sudoers_file(
    ap: &mut Apply,
    path: &Path,
    text: &str,
    names: &[&str],
    free_form: bool,
) {
    let target = path.display().to_string();
    if let Some(bad) = names.iter().find(|n| !crate::context::valid_username(n)) {
        return ap.failed("sudo", &target, format!("{bad:?} is not a user name"));
    }
    let new = NewFile::mode(0o440);
    if free_form && files::differs(path, text.as_bytes(), new).unwrap_or(true) {
        if let Err(e) = validate_sudoers(path, text) {
            return ap.failed("sudo", &target, e);
        }
    }
    ap.file("sudo", path, text.as_bytes(), new);
}

/// `visudo -cf` on a copy, when visudo is installed (a broken sudoers.d file locks out sudo).
fn validate_sudoers(path: &Path, text: &str) -> Result<(), String> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    // Beside the target, not in /tmp: at early boot systemd-tmpfiles may be emptying /tmp.
    // sudo skips files whose names contain a dot, so the copy is never read as a rule.
    let check = dir.join(format!(".vmctx-check.{}", std::process::id()));
    // No sudoers.d: sudo is not installed, there is no visudo to ask.
    if !dir.is_dir() || std::fs::write(&check, text).is_err() {
        return Ok(());
    }
    let out = Command::new("visudo").arg("-cf").arg(&check).output();
    let _ = std::fs::remove_file(&check);
    match out {
        Ok(o) if !o.status.success() => {
            let said = String::from_utf8_lossy(&o.stderr).to_string()
                + &String::from_utf8_lossy(&o.stdout);
            Err(format!("visudo refused the file: {}", said.trim()))
        }
        _ => Ok(()), // valid, or no visudo to ask
    }
}

fn password(ap: &mut Apply, user: &User) {
    let path = ap.root.path("/etc/shadow");
    let Some(shadow) = std::fs::read_to_string(&path).ok() else {
        if user.password.is_some() || user.lock_password {
            ap.failed("password", &user.name, "no /etc/shadow");
        }
        return;
    };
    let Some(line) = shadow
        .lines()
        .find(|l| l.split(':').next() == Some(user.name.as_str()))
    else {
        if user.password.is_some() || user.lock_password {
            ap.failed("password", &user.name, "no line in /etc/shadow");
        }
        return;
    };
    let current = line.split(':').nth(1).unwrap_or("");
    let (new_hash, how) = match (&user.password, user.lock_password) {
        (Some(Password::Crypted(h)), _) => (h.expose().to_string(), "crypted, as given"),
        (Some(Password::Plain(p)), _) => {
            if sha_crypt::sha512_check(p.expose(), current).is_ok() {
                return ap.unchanged("password", &user.name, "set");
            }
            match sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
                .map_err(|e| format!("{e:?}"))
                .and_then(|params| {
                    sha_crypt::sha512_simple(p.expose(), &params).map_err(|e| format!("{e:?}"))
                }) {
                Ok(h) => (h, "hashed with SHA-512 crypt"),
                Err(e) => return ap.failed("password", &user.name, format!("hashing: {e}")),
            }
        }
        (None, true) => {
            if current.starts_with(['*', '!']) {
                return ap.unchanged("password", &user.name, "locked");
            }
            ("*".to_string(), "locked")
        }
        (None, false) => return,
    };
    if new_hash == current {
        return ap.unchanged("password", &user.name, "set");
    }
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let text: String = shadow
        .split_inclusive('\n')
        .map(|l| {
            let mut f: Vec<String> = l
                .trim_end_matches('\n')
                .split(':')
                .map(str::to_string)
                .collect();
            if f.first().map(String::as_str) == Some(user.name.as_str()) && f.len() >= 3 {
                f[1] = new_hash.clone();
                f[2] = days.to_string();
                let nl = if l.ends_with('\n') { "\n" } else { "" };
                return f.join(":") + nl;
            }
            l.to_string()
        })
        .collect();
    if ap.dry_run {
        return ap.changed("password", &user.name, how);
    }
    match ap.write(&path, text.as_bytes(), NewFile::mode(0o640)) {
        Ok(_) => ap.changed("password", &user.name, how),
        Err(e) => ap.failed("password", &user.name, format!("/etc/shadow: {e}")),
    }
}

/// vmctx's block in `~/.ssh/authorized_keys`; lines others wrote stay. The user owns the
/// folder and may swap it for a link at any moment: it is opened once without following
/// links, and fixed and written through that descriptor only.
pub(super) fn authorized_keys(ap: &mut Apply, name: &str, acct: &Account, keys: &[String]) {
    let ssh = ap.root.path(&acct.home).join(".ssh");
    let path = ssh.join("authorized_keys");
    let target = path.display().to_string();
    let keys: Vec<&String> = keys.iter().filter(|k| key_line(k)).collect();
    if keys.is_empty() && matches!(files::read_optional(&path), Ok(None)) {
        return;
    }
    let before = ap.actions.len();
    // A dry run makes nothing: a missing folder is only reported.
    let dir = match Dir::open(&ssh, (!ap.dry_run).then_some(0o700)) {
        Ok(d) => Some(d),
        Err(e) if ap.dry_run && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return ap.failed("ssh_keys", &target, format!("~/.ssh: {e}")),
    };
    let detail = format!(
        "{} key{} for {name}",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" }
    );
    let Some(dir) = dir else {
        ap.changed("ssh_dir", &ssh.display().to_string(), "created 0700");
        return ap.changed("ssh_keys", &target, detail);
    };
    if let Err(e) = ssh_dir(ap, &dir, (acct.uid, acct.gid)) {
        return ap.failed("ssh_keys", &target, format!("~/.ssh: {e}"));
    }
    let existing = match dir.read("authorized_keys".as_ref()) {
        Ok(t) => String::from_utf8_lossy(&t.unwrap_or_default()).into_owned(),
        Err(e) => return ap.failed("ssh_keys", &target, e),
    };
    let body: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let text = files::with_block(&existing, &body, false);
    let new = NewFile::owned(0o600, Some((acct.uid, acct.gid)));
    ap.file_at(
        "ssh_keys",
        (&dir, "authorized_keys"),
        text.as_bytes(),
        new,
        &detail,
    );
    // sshd reads only ssh_home_t: the folder and all in it, when anything here changed.
    if ap.changed_since(before) {
        ap.wrote_tree(&ssh);
    }
}

/// `~/.ssh` made or fixed to 0700 and the user's, on its descriptor.
fn ssh_dir(ap: &mut Apply, dir: &Dir, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    let shown = dir.path().display().to_string();
    if dir.created {
        dir.set_mode_owner(0o700, Some((uid, gid)))?;
        ap.changed("ssh_dir", &shown, "created 0700");
        return Ok(());
    }
    let m = dir.metadata()?;
    if m.permissions().mode() & 0o077 != 0 || (m.uid(), m.gid()) != (uid, gid) {
        if !ap.dry_run {
            dir.set_mode_owner(0o700, Some((uid, gid)))?;
        }
        ap.changed("ssh_dir", &shown, "0700, owned by the user");
    }
    Ok(())
}

/// The last guard before a key reaches `authorized_keys` (every source checked it already,
/// [`crate::ssh_keys`]): one line, no control characters.
fn key_line(k: &str) -> bool {
    !k.is_empty() && !k.contains(|c: char| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\nbad:x:zz:1::/:/bin/sh\n";
        assert_eq!(
            lookup(p, "ubuntu"),
            Some(Account {
                uid: 1000,
                gid: 1000,
                home: "/home/ubuntu".into()
            })
        );
        assert_eq!(lookup(p, "root").unwrap().home, PathBuf::from("/root"));
        assert_eq!(lookup(p, "ubunt"), None);
        assert_eq!(lookup(p, "bad"), None);
    }
}
