//! `users` of a `#cloud-config`: each created with `useradd` when missing (shell, groups,
//! password locked or unset), its sudo rules in `/etc/sudoers.d/90-vmctx-<name>` (checked by
//! visudo), and its own keys in vmctx's block of its `authorized_keys`.

use super::users::{authorized_keys, lookup, validate_sudoers};
use super::Apply;
use crate::context::{CloudConfig, CloudUser};
use crate::files::NewFile;
use std::process::Command;

pub fn apply(ap: &mut Apply, cc: Option<&CloudConfig>) {
    let Some(cc) = cc else { return };
    for u in &cc.users {
        let passwd = std::fs::read_to_string(ap.root.path("/etc/passwd")).unwrap_or_default();
        let acct = match lookup(&passwd, &u.name) {
            Some(a) => {
                ap.unchanged("user", &u.name, "exists");
                Some(a)
            }
            None => create(ap, u),
        };
        sudo(ap, u);
        if let Some(acct) = acct {
            authorized_keys(ap, &u.name, &acct, &u.ssh_authorized_keys);
        }
    }
}

fn create(ap: &mut Apply, u: &CloudUser) -> Option<super::users::Account> {
    let shell = u.shell.as_deref().unwrap_or("/bin/bash");
    let groups = u.groups.join(",");
    if ap.dry_run {
        ap.changed("user", &u.name, format!("create (useradd, shell {shell})"));
        return None;
    }
    let mut cmd = Command::new("useradd");
    if !ap.root.is_real() {
        cmd.arg("--prefix").arg(ap.root.dir());
    }
    // '!' locks the password (lock_passwd, cloud-init's default); '*' only sets none.
    let password = if u.lock_passwd { "!" } else { "*" };
    cmd.args(["--create-home", "--password", password, "--shell", shell]);
    if !groups.is_empty() {
        cmd.args(["--groups", &groups]);
    }
    cmd.arg(&u.name);
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            ap.failed("user", &u.name, format!("useradd: {}", err.trim()));
            return None;
        }
        Err(e) => {
            ap.failed("user", &u.name, format!("useradd: {e}"));
            return None;
        }
    }
    let passwd = std::fs::read_to_string(ap.root.path("/etc/passwd")).unwrap_or_default();
    let acct = lookup(&passwd, &u.name);
    match &acct {
        Some(_) => {
            let g = if groups.is_empty() {
                String::new()
            } else {
                format!(", groups {groups}")
            };
            ap.changed("user", &u.name, format!("created (shell {shell}{g})"))
        }
        None => ap.failed(
            "user",
            &u.name,
            "useradd succeeded but the user is not in passwd",
        ),
    }
    acct
}

fn sudo(ap: &mut Apply, u: &CloudUser) {
    let path = ap.root.path(format!("/etc/sudoers.d/90-vmctx-{}", u.name));
    let Some(rules) = &u.sudo else {
        ap.remove("sudo", &path);
        return;
    };
    let mut text = format!("# Written by vmctx: sudo of user-data's user {}.\n", u.name);
    for rule in rules.lines().map(str::trim).filter(|r| !r.is_empty()) {
        text.push_str(&format!("{} {rule}\n", u.name));
    }
    if let Err(e) = validate_sudoers(&path, &text) {
        return ap.failed("sudo", &path.display().to_string(), e);
    }
    ap.file("sudo", &path, text.as_bytes(), NewFile::mode(0o440));
}
