//! SSH host keys: every copy of an image must not share one host identity. On a new instance
//! (unless `SSH_HOST_KEYS=KEEP`) the image's `/etc/ssh/ssh_host_*_key{,.pub}` are replaced by
//! fresh ones from `ssh-keygen -A`, before sshd starts; otherwise only missing keys are made
//! (as one-context's loc-24). The new keys are made in a folder beside `/etc/ssh`'s and renamed
//! into place, so a failure keeps the old ones. Their fingerprints go to the console in
//! cloud-init's format, for operators who check them on first connection.

use super::Apply;
use crate::context::HostKeys;
use crate::state::State;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

/// The key types `ssh-keygen -A` makes (OpenSSH ≥ 7.0 without DSA).
const TYPES: [&str; 3] = ["rsa", "ecdsa", "ed25519"];
const KIND: &str = "ssh_host_keys";
const TARGET: &str = "/etc/ssh";

pub fn apply(ap: &mut Apply, mode: HostKeys, new_instance: bool, state: &State, id: &str) {
    let etc_ssh = ap.root.path(TARGET);
    let sshd = ap.root.path("/usr/sbin/sshd").exists() || etc_ssh.join("sshd_config").exists();
    if !sshd {
        return ap.unchanged(KIND, TARGET, "no OpenSSH server in this system");
    }
    let regenerate = new_instance && mode == HostKeys::Regenerate;
    let missing: Vec<&str> = TYPES
        .into_iter()
        .filter(|t| !etc_ssh.join(format!("ssh_host_{t}_key")).exists())
        .collect();
    if !regenerate && missing.is_empty() {
        let why = if new_instance {
            "kept (SSH_HOST_KEYS=KEEP)"
        } else {
            "present"
        };
        return ap.unchanged(KIND, TARGET, why);
    }
    if crate::os::which("ssh-keygen").is_none() {
        return ap.skipped(
            KIND,
            TARGET,
            "ssh-keygen is not installed: the host keys were not made",
        );
    }
    if ap.dry_run {
        let what = if regenerate {
            "would replace the image's host keys with new ones for this instance".to_string()
        } else {
            format!(
                "would generate the missing {} host keys",
                missing.join(", ")
            )
        };
        return ap.changed(KIND, TARGET, what);
    }
    let result = if regenerate {
        replace_all(&etc_ssh)
    } else {
        keygen(ap.root.dir(), ap.root.is_real())
    };
    if let Err(e) = result {
        return ap.failed(KIND, TARGET, e);
    }
    for f in host_key_files(&etc_ssh) {
        ap.wrote(&etc_ssh.join(f)); // sshd_key_t, not the scratch folder's label
    }
    let (fingerprints, keys) = fingerprints(&etc_ssh);
    let block = fingerprint_block(&fingerprints, &keys);
    to_console(ap, &block);
    let detail = if regenerate {
        "new host keys for this instance"
    } else {
        "missing host keys generated"
    };
    if regenerate && ap.root.is_real() {
        restart_running_sshd();
    }
    if let Err(e) = state.mark_done(id, "ssh-host-keys", &fingerprints.join("\n")) {
        ap.failed("state", "ssh-host-keys", e);
    }
    ap.changed(KIND, TARGET, format!("{detail}: {}", short(&fingerprints)));
}

/// A network source (EC2, Nova's service) is applied after sshd started: it still holds the
/// image's keys until restarted. `try-restart` leaves a stopped sshd stopped (the local stage
/// runs before it); `--no-block` because this may run inside a unit ordered before it.
fn restart_running_sshd() {
    if !Path::new("/run/systemd/system").is_dir() {
        return;
    }
    let _ = Command::new("systemctl")
        .args(["--no-block", "try-restart", "ssh.service", "sshd.service"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// `ssh-keygen -A` (with `-f ROOT` under a root): makes every missing key type.
fn keygen(root: &Path, real: bool) -> Result<(), String> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-A");
    if !real {
        cmd.arg("-f").arg(root);
    }
    let o = cmd.output().map_err(|e| format!("ssh-keygen: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen -A failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// New keys made in `/etc/ssh/.vmctx-hostkeys/etc/ssh`, then the image's removed and the new
/// ones renamed into `/etc/ssh`.
fn replace_all(etc_ssh: &Path) -> Result<(), String> {
    let scratch = etc_ssh.join(".vmctx-hostkeys");
    let _ = std::fs::remove_dir_all(&scratch);
    let made = scratch.join("etc/ssh");
    std::fs::create_dir_all(&made).map_err(|e| format!("{}: {e}", made.display()))?;
    let result = keygen(&scratch, false).and_then(|()| {
        let new = host_key_files(&made);
        if new.is_empty() {
            return Err("ssh-keygen -A made no keys".into());
        }
        for old in host_key_files(etc_ssh) {
            std::fs::remove_file(etc_ssh.join(&old)).map_err(|e| format!("{old}: {e}"))?;
        }
        for f in &new {
            std::fs::rename(made.join(f), etc_ssh.join(f)).map_err(|e| format!("{f}: {e}"))?;
        }
        std::fs::File::open(etc_ssh)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// `ssh_host_*_key` and `ssh_host_*_key.pub` in a folder, sorted.
fn host_key_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with("ssh_host_") && (n.ends_with("_key") || n.ends_with("_key.pub"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `ssh-keygen -l -f` of every public host key, and the keys themselves.
fn fingerprints(etc_ssh: &Path) -> (Vec<String>, Vec<String>) {
    let mut fps = Vec::new();
    let mut keys = Vec::new();
    for f in host_key_files(etc_ssh)
        .into_iter()
        .filter(|f| f.ends_with(".pub"))
    {
        let p = etc_ssh.join(&f);
        if let Ok(o) = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&p)
            .output()
        {
            if o.status.success() {
                fps.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
            }
        }
        if let Ok(k) = std::fs::read_to_string(&p) {
            keys.push(k.trim().to_string());
        }
    }
    (fps, keys)
}

/// cloud-init's console block (its `write-ssh-key-fingerprints`), which tools that read a VM's
/// console for host keys look for.
pub fn fingerprint_block(fingerprints: &[String], keys: &[String]) -> String {
    let rule = "#".repeat(61);
    let mut o = format!("\n{rule}\n-----BEGIN SSH HOST KEY FINGERPRINTS-----\n");
    for f in fingerprints {
        o.push_str(f);
        o.push('\n');
    }
    o.push_str(&format!(
        "-----END SSH HOST KEY FINGERPRINTS-----\n{rule}\n-----BEGIN SSH HOST KEY KEYS-----\n"
    ));
    for k in keys {
        o.push_str(k);
        o.push('\n');
    }
    o.push_str("-----END SSH HOST KEY KEYS-----\n");
    o
}

/// To `/dev/console` (when it is a writable console under the root) and to stderr, the log.
fn to_console(ap: &Apply, block: &str) {
    eprint!("{block}");
    let console = ap.root.path("/dev/console");
    let is_console = std::fs::metadata(&console).is_ok_and(|m| m.file_type().is_char_device());
    if !is_console {
        return;
    }
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&console);
    if let Ok(mut c) = opened {
        // A console takes \r\n; the block is written in one go so it is not interleaved.
        let _ = c.write_all(block.replace('\n', "\r\n").as_bytes());
    }
}

/// `ED25519 SHA256:…, RSA SHA256:…` for the report.
fn short(fingerprints: &[String]) -> String {
    fingerprints
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let kind = f.last()?.trim_matches(|c| c == '(' || c == ')');
            Some(format!("{kind} {}", f.get(1)?))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_has_cloud_inits_shape() {
        let fps = [
            "256 SHA256:AbCdEf root@web (ED25519)".to_string(),
            "3072 SHA256:GhIjKl root@web (RSA)".to_string(),
        ];
        let keys = ["ssh-ed25519 AAAAC3Nz root@web".to_string()];
        let b = fingerprint_block(&fps, &keys);
        let rule = "#".repeat(61);
        assert_eq!(
            b,
            format!(
                "\n{rule}\n-----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
                 256 SHA256:AbCdEf root@web (ED25519)\n3072 SHA256:GhIjKl root@web (RSA)\n\
                 -----END SSH HOST KEY FINGERPRINTS-----\n{rule}\n\
                 -----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAAC3Nz root@web\n\
                 -----END SSH HOST KEY KEYS-----\n"
            )
        );
        assert_eq!(short(&fps), "ED25519 SHA256:AbCdEf, RSA SHA256:GhIjKl");
    }

    #[test]
    fn host_key_files_are_keys_only() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "ssh_host_rsa_key",
            "ssh_host_rsa_key.pub",
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key-cert.pub",
            "sshd_config",
            "moduli",
        ] {
            std::fs::write(t.path().join(f), "").unwrap();
        }
        assert_eq!(
            host_key_files(t.path()),
            [
                "ssh_host_ed25519_key",
                "ssh_host_rsa_key",
                "ssh_host_rsa_key.pub"
            ]
        );
    }
}
