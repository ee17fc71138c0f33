//! `users` of a `#cloud-config`: each created with `useradd` when missing (shell, groups,
//! password locked or unset), its sudo rules in `/etc/sudoers.d/90-vmctx-<name>` (rules other
//! than `sudo: true`'s checked by visudo), and its own keys in vmctx's block of its `authorized_keys`.

use super::users::{authorized_keys, lookup, sudoers_file, SUDO_ALL};
use super::Apply;
use crate::context::{CloudConfig, CloudUser};
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
    let (text, free_form) = sudoers_text(&u.name, rules);
    sudoers_file(ap, &path, &text, &[&u.name], free_form);
}

/// The drop-in for `name`'s rules, and whether any is free-form (not `sudo: true`'s rule).
fn sudoers_text(name: &str, rules: &str) -> (String, bool) {
    let mut text = format!("# Written by vmctx: sudo of user-data's user {name}.\n");
    let mut free_form = false;
    for rule in rules.lines().map(str::trim).filter(|r| !r.is_empty()) {
        free_form |= rule != SUDO_ALL;
        text.push_str(&format!("{name} {rule}\n"));
    }
    (text, free_form)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Outcome;
    use std::os::unix::fs::PermissionsExt;

    fn apply_in(root: &std::path::Path) -> Apply {
        Apply {
            root: crate::files::Root::new(root),
            dry_run: false,
            actions: Vec::new(),
            written: Default::default(),
        }
    }

    fn user(name: &str, sudo: &str) -> CloudUser {
        CloudUser {
            name: name.into(),
            sudo: Some(sudo.into()),
            shell: None,
            groups: Vec::new(),
            ssh_authorized_keys: Vec::new(),
            lock_passwd: true,
        }
    }

    #[test]
    fn only_free_form_rules_need_visudo() {
        let (text, free) = sudoers_text("alice", SUDO_ALL);
        assert!(!free);
        assert!(text.ends_with("\nalice ALL=(ALL) NOPASSWD:ALL\n"), "{text}");
        let (text, free) = sudoers_text(
            "alice",
            "ALL=(ALL) NOPASSWD:ALL\n  ALL=(ALL) /usr/bin/apt\n",
        );
        assert!(free);
        assert!(text.ends_with("\nalice ALL=(ALL) NOPASSWD:ALL\nalice ALL=(ALL) /usr/bin/apt\n"));
        // A name the parser would have refused is refused here too, without visudo.
        let t = tempfile::tempdir().unwrap();
        let mut ap = apply_in(t.path());
        sudo(&mut ap, &user("Bob Smith", SUDO_ALL));
        assert_eq!(ap.actions[0].result, Outcome::Failed, "{:?}", ap.actions);
        assert!(!t.path().join("etc").exists());
    }

    #[test]
    fn a_refused_rule_is_not_written_and_a_written_file_not_checked_again() {
        if !crate::os::test_tool("visudo") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("etc/sudoers.d");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("90-vmctx-alice");
        let bad = user("alice", "ALL=(ALL) NOPASSWD:ALL frob");
        let mut ap = apply_in(t.path());
        sudo(&mut ap, &bad);
        let a = ap.actions.last().unwrap();
        assert_eq!(a.result, Outcome::Failed, "{:?}", ap.actions);
        assert!(a.detail.contains("visudo refused the file"), "{}", a.detail);
        assert!(!file.exists());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "check copy left"
        );

        // A valid free-form rule: checked, written 0440; then unchanged.
        let good = user("alice", "ALL=(ALL) /usr/bin/apt");
        sudo(&mut ap, &good);
        assert_eq!(ap.actions.last().unwrap().result, Outcome::Changed);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().lines().last(),
            Some("alice ALL=(ALL) /usr/bin/apt")
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440);
        sudo(&mut ap, &good);
        assert_eq!(ap.actions.last().unwrap().result, Outcome::Unchanged);

        // A file already holding exactly the text is not given to visudo again: even the
        // refused text, put there by hand, is left as it is (visudo would refuse it).
        std::fs::write(&file, sudoers_text("alice", bad.sudo.as_deref().unwrap()).0).unwrap();
        sudo(&mut ap, &bad);
        assert_eq!(ap.actions.last().unwrap().result, Outcome::Unchanged);
    }
}
