//! SSH public keys, as every source hands them over: the check a key passes before it can
//! reach an `authorized_keys` file. One key is one line; a value that smuggles a second line
//! (`…\ncommand="…" ssh-ed25519 …`) would add an entry of its own.

use crate::context::Context;

/// Whether options (`from=`, `command=`, …) may precede the key type: yes for OpenNebula's
/// `SSH_PUBLIC_KEY` and `#cloud-config` (authorized_keys lines), no for a cloud's key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options {
    Allowed,
    Refused,
}

/// One authorized_keys line: (options, when allowed) a key type and base64 data, then an
/// optional comment; no line break or other control character anywhere.
pub fn is_key(line: &str, options: Options) -> bool {
    if line.trim().is_empty() || line.contains(|c: char| c.is_control()) {
        return false;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let key_at = |i: usize| {
        let (Some(t), Some(data)) = (words.get(i), words.get(i + 1)) else {
            return false;
        };
        (t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"))
            && data.len() >= 16
            && data
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    };
    match options {
        Options::Refused => key_at(0),
        Options::Allowed => (0..words.len()).any(key_at),
    }
}

/// The keys of a cloud's metadata values (`where`, value): each value one key, or several on
/// lines of their own; blank and `#` lines skipped, duplicates out. A value with a line that
/// is not a bare key is left out whole, with a warning naming where it came from.
pub fn from_values<'a>(
    values: impl IntoIterator<Item = (String, &'a str)>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (at, value) in values {
        let lines: Vec<&str> = value
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if lines.iter().any(|l| !is_key(l, Options::Refused)) {
            warnings.push(format!(
                "{at}: not one SSH public key per line (a line break inside a key, options or \
                 other text); left out"
            ));
            continue;
        }
        for l in lines {
            if !out.iter().any(|k| k == l) {
                out.push(l.to_string());
            }
        }
    }
    out
}

/// The gate every context passes whatever its source (after user-data is merged): a key
/// that is not one authorized_keys line is dropped, with a warning.
pub fn check(ctx: &mut Context) {
    let mut dropped = 0;
    ctx.ssh_keys.retain(|k| {
        let ok = is_key(k, Options::Allowed);
        dropped += usize::from(!ok);
        ok
    });
    if let Some(cc) = &mut ctx.cloud_config {
        for u in &mut cc.users {
            u.ssh_authorized_keys.retain(|k| {
                let ok = is_key(k, Options::Allowed);
                dropped += usize::from(!ok);
                ok
            });
        }
    }
    if dropped > 0 {
        ctx.warnings.push(format!(
            "{dropped} SSH key(s) that are not one authorized_keys line were left out"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyKeyKeyKey me@host";

    #[test]
    fn one_line_one_key() {
        assert!(is_key(K, Options::Refused));
        let with_opts = format!("from=\"10.0.0.0/8\" {K}");
        assert!(is_key(&with_opts, Options::Allowed));
        assert!(!is_key(&with_opts, Options::Refused));
        for bad in [
            format!("{K}\ncommand=\"/bin/evil\" {K}"),
            format!("{K}\rx"),
            format!("{K}\0"),
            "hello world".into(),
            "ssh-ed25519 AAAA".into(),
        ] {
            assert!(!is_key(&bad, Options::Allowed), "{bad:?}");
        }
    }

    #[test]
    fn a_value_with_a_smuggled_line_is_left_out_whole() {
        let two = format!("{K}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ other");
        let evil = format!("{K}2\ncommand=\"curl x|sh\",no-pty {K}");
        let mut w = Vec::new();
        let keys = from_values(
            [
                ("a".to_string(), two.as_str()),
                ("b".to_string(), evil.as_str()),
            ],
            &mut w,
        );
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.iter().all(|k| !k.contains("command")));
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("b: "), "{w:?}");
    }
}
