//! Hostname, the managed user, its password and SSH keys.

use super::Reader;
use crate::context::{Hostname, Password, Secret, User};
use crate::derive;
use base64::Engine;
use std::net::Ipv4Addr;

/// The first non-empty of `SET_HOSTNAME`, `HOSTNAME`, then the legacy address variables
/// (`PUBLIC_IP`, `IP_PUBLIC`, `ETH0_IP`) as `ip-a-b-c-d`. Empty values are skipped (B3), and a
/// name is never an IP string.
pub(super) fn hostname(r: &mut Reader) -> Option<Hostname> {
    for flag in ["DNS_HOSTNAME", "EC2_HOSTNAME"] {
        if r.flag(flag, false) {
            r.warn(format!(
                "{flag}=YES is not supported yet; the hostname comes from the other variables"
            ));
        }
    }
    if let Some((from, raw)) = r.first(&["SET_HOSTNAME", "HOSTNAME"]) {
        return match derive::sanitize_hostname(raw) {
            Some((name, domain)) => Some(Hostname {
                name,
                domain,
                from: from.into(),
            }),
            None => {
                r.error(from, "has no character usable in a hostname");
                None
            }
        };
    }
    let (from, raw) = r.first(&["PUBLIC_IP", "IP_PUBLIC", "ETH0_IP"])?;
    match raw.parse::<Ipv4Addr>() {
        Ok(ip) => Some(Hostname {
            name: derive::ipv4_hostname(ip),
            domain: None,
            from: from.into(),
        }),
        Err(_) => None, // reported by the network part when it matters (ETH0_IP)
    }
}

/// The union of `SSH_PUBLIC_KEY`, `EC2_PUBLIC_KEY` and legacy `SSH_KEY` (none shadows another,
/// B8): lines trimmed, blank and `#` lines dropped, duplicates dropped, options kept.
pub(super) fn ssh_keys(r: &mut Reader) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for var in ["SSH_PUBLIC_KEY", "EC2_PUBLIC_KEY", "SSH_KEY"] {
        let Some(value) = r.get(var) else { continue };
        for line in value.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !crate::ssh_keys::is_key(line, crate::ssh_keys::Options::Allowed) {
                r.warn(format!(
                    "{var}: a line that is not an SSH public key was left out"
                ));
                continue;
            }
            if !keys.iter().any(|k| k == line) {
                keys.push(line.to_string());
            }
        }
    }
    keys
}

/// `USERNAME` (default root) with sudo, shell and password per one-context's rules.
pub(super) fn user(r: &mut Reader) -> Option<User> {
    let name = match r.get("USERNAME") {
        None => "root".to_string(),
        Some(n) if crate::context::valid_username(n) => n.to_string(),
        Some(_) => {
            r.error(
                "USERNAME",
                "not a valid user name ([a-z_][a-z0-9_-]*, at most 32)",
            );
            return None;
        }
    };
    let sudo_var = if r.get("USERNAME_SUDO").is_some() {
        "USERNAME_SUDO"
    } else {
        "GRANT_SUDO"
    };
    let sudo = name != "root" && r.flag(sudo_var, true);
    let shell = match r.get("USERNAME_SHELL") {
        None => "/bin/bash".to_string(),
        Some(s) if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c == ':') => {
            s.to_string()
        }
        Some(_) => {
            r.error("USERNAME_SHELL", "not an absolute path");
            "/bin/bash".to_string()
        }
    };
    let password = password(r);
    let lock_password = password.is_none() && r.flag("USERNAME_PASSWORD_RESET", false);
    Some(User {
        name,
        sudo,
        shell,
        password,
        lock_password,
    })
}

/// `CRYPTED_PASSWORD_BASE64` > `PASSWORD_BASE64` > `CRYPTED_PASSWORD` > `PASSWORD`.
fn password(r: &mut Reader) -> Option<Password> {
    const ORDER: [(&str, bool, bool); 4] = [
        ("CRYPTED_PASSWORD_BASE64", true, true),
        ("PASSWORD_BASE64", false, true),
        ("CRYPTED_PASSWORD", true, false),
        ("PASSWORD", false, false),
    ];
    for (var, crypted, b64) in ORDER {
        // Secrets: errors name the variable, never the value.
        let Some(raw) = r.vars.get(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = if b64 {
            match base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                Some(v) => v,
                None => {
                    r.errors
                        .push(format!("{var}: not valid base64 of UTF-8 text"));
                    continue;
                }
            }
        } else {
            raw.to_string()
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.contains('\n') || (crypted && value.contains(':')) {
            r.errors.push(format!(
                "{var}: not a single-line password{}",
                if crypted { " hash" } else { "" }
            ));
            continue;
        }
        let secret = Secret::new(value);
        return Some(if crypted {
            Password::Crypted(secret)
        } else {
            Password::Plain(secret)
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::ctx;
    use crate::context::Password;

    #[test]
    fn hostname_precedence_skips_empty_values() {
        // B3: OpenNebula writes SET_HOSTNAME='' and ETH0_IP=''; an empty value is unset.
        let c = ctx("SET_HOSTNAME=''\nHOSTNAME='web'\nETH0_IP=''\n");
        let h = c.hostname.unwrap();
        assert_eq!((h.name.as_str(), h.from.as_str()), ("web", "HOSTNAME"));
        assert!(ctx("SET_HOSTNAME=''\nETH0_IP=''\n").hostname.is_none());
    }

    #[test]
    fn hostname_from_an_address_is_not_an_ip_string() {
        let c = ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n");
        assert_eq!(c.hostname.unwrap().name, "ip-10-0-3-40");
    }

    #[test]
    fn fqdn_is_split_and_sanitised() {
        let h = ctx("SET_HOSTNAME='Jupyter.Research.HOL02.internal'\n")
            .hostname
            .unwrap();
        assert_eq!(h.name, "jupyter");
        assert_eq!(h.domain.as_deref(), Some("research.hol02.internal"));
        let h = ctx("SET_HOSTNAME='héllo wörld'\n").hostname.unwrap();
        assert_eq!(h.name, "h-llo-w-rld");
    }

    #[test]
    fn unusable_hostname_is_an_error() {
        let c = ctx("SET_HOSTNAME='...'\n");
        assert!(c.hostname.is_none());
        assert!(c.errors[0].starts_with("SET_HOSTNAME:"));
    }

    #[test]
    fn ssh_keys_union_trimmed_deduplicated() {
        let k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1 a@b";
        let k2 = "no-pty,command=\"/bin/true\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB c@d";
        let k3 = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= e@f";
        let text = format!(
            "SSH_PUBLIC_KEY='  {k1}  \n\n# a comment\n{k2}'\nEC2_PUBLIC_KEY='{k1}\n{k3}'\nSSH_KEY='{k3}'\n"
        );
        let c = ctx(&text);
        // B8: SSH_KEY does not shadow SSH_PUBLIC_KEY; EC2_PUBLIC_KEY counts; B16: no comments.
        assert_eq!(c.ssh_keys, vec![k1, k2, k3]);
    }

    #[test]
    fn backslashes_in_keys_are_kept() {
        // B16: `read` without -r ate backslashes in options.
        let k = r#"command="echo a\\b" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1"#;
        assert_eq!(ctx(&format!("SSH_PUBLIC_KEY='{k}'\n")).ssh_keys, vec![k]);
    }

    #[test]
    fn non_key_lines_are_left_out() {
        let c = ctx("SSH_PUBLIC_KEY='hello world'\n");
        assert!(c.ssh_keys.is_empty());
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings); // + the instance-id hash note
    }

    #[test]
    fn user_defaults_and_sudo() {
        let root = ctx("VMID='1'\n").user.unwrap();
        assert_eq!(
            (root.name.as_str(), root.sudo, root.shell.as_str()),
            ("root", false, "/bin/bash")
        );
        let u = ctx("USERNAME='ubuntu'\n").user.unwrap();
        assert!(u.sudo);
        let u = ctx("USERNAME='ubuntu'\nUSERNAME_SUDO='NO'\nUSERNAME_SHELL='/bin/zsh'\n")
            .user
            .unwrap();
        assert!(!u.sudo);
        assert_eq!(u.shell, "/bin/zsh");
        assert!(!ctx("USERNAME='u'\nGRANT_SUDO='no'\n").user.unwrap().sudo);
        let bad = ctx("USERNAME='Robert; rm'\n");
        assert!(bad.user.is_none());
        assert_eq!(bad.errors.len(), 1);
    }

    #[test]
    fn password_precedence() {
        // base64("hunter2") and base64("$6$salt$hash")
        let c = ctx("PASSWORD='plain'\nPASSWORD_BASE64='aHVudGVyMg=='\n");
        match c.user.unwrap().password.unwrap() {
            Password::Plain(s) => assert_eq!(s.expose(), "hunter2"),
            other => panic!("{other:?}"),
        }
        let c = ctx("PASSWORD='plain'\nCRYPTED_PASSWORD='$6$salt$hash'\n");
        assert!(matches!(
            c.user.unwrap().password,
            Some(Password::Crypted(_))
        ));
        let c = ctx("CRYPTED_PASSWORD_BASE64='JDYkc2FsdCRoYXNo'\nPASSWORD='x'\n");
        match c.user.unwrap().password.unwrap() {
            Password::Crypted(s) => assert_eq!(s.expose(), "$6$salt$hash"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_base64_password_falls_through_and_never_shows() {
        let c = ctx("PASSWORD_BASE64='%%%secret%%%'\nPASSWORD='fallback'\n");
        assert!(matches!(c.user.unwrap().password, Some(Password::Plain(_))));
        assert!(
            c.errors.iter().all(|e| !e.contains("secret")),
            "{:?}",
            c.errors
        );
        assert_eq!(c.errors.len(), 1);
    }

    #[test]
    fn password_reset_locks_only_without_password() {
        assert!(
            ctx("USERNAME_PASSWORD_RESET='YES'\n")
                .user
                .unwrap()
                .lock_password
        );
        assert!(
            !ctx("USERNAME_PASSWORD_RESET='YES'\nPASSWORD='x'\n")
                .user
                .unwrap()
                .lock_password
        );
    }
}
