//! SSH host keys: every copy of an image must not share one host identity. On a new instance
//! (unless `SSH_HOST_KEYS=KEEP`) the image's `/etc/ssh/ssh_host_*_key{,.pub}` are replaced by
//! fresh ones before sshd starts; otherwise only missing keys are made (as one-context's
//! loc-24). SSH comes first: the local stage makes the fast keys (ed25519, then ECDSA, in-process:
//! [`keygen`]) and leaves `/run/vmctx/hostkeys`; `vmctx-hostkeys.service` makes the RSA key after sshd started
//! (`vmctx hostkeys`: seconds of CPU on a small VM) and reloads sshd. sshd is never left
//! without a key: new keys are made in a folder beside `/etc/ssh`'s and renamed into place, so
//! a failure keeps the old ones. Their fingerprints go to the console in cloud-init's format,
//! once every key exists, for operators who check them on first connection.

mod keygen;

use super::files::{Dir, NewFile, Root};
use super::{Apply, Report};
use crate::context::HostKeys;
use crate::state::State;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

/// The key types `ssh-keygen -A` makes (OpenSSH ≥ 7.0 without DSA), the fast ones first.
const TYPES: [&str; 3] = ["ed25519", "ecdsa", "rsa"];
/// Made after sshd started: RSA-3072 takes seconds of CPU (tens under emulation).
const SLOW: &str = "rsa";
const KIND: &str = "ssh_host_keys";
const TARGET: &str = "/etc/ssh";
/// New keys are made here, beside the old ones, and renamed in.
const SCRATCH: &str = ".vmctx-hostkeys";
const NO_KEYGEN: &str = "ssh-keygen is not installed: no RSA host key";
const RSA_KEY: &str = "/etc/ssh/ssh_host_rsa_key";
/// Left by the local stage when the slow key is still to be made (`vmctx-hostkeys.service`).
pub const PENDING: &str = "/run/vmctx/hostkeys";
/// `VMCTX_HOST_KEYS=all` (in /etc/default/vmctx) makes every key before sshd, as before.
const SETTING: &str = "VMCTX_HOST_KEYS";

/// `defer_slow`: sshd has not started yet and `vmctx-hostkeys.service` follows it (the local
/// stage of a context read before the network).
pub fn apply(
    ap: &mut Apply,
    mode: HostKeys,
    new_instance: bool,
    state: &State,
    id: &str,
    defer_slow: bool,
) {
    let etc_ssh = ap.root.path(TARGET);
    let sshd = ap.root.path("/usr/sbin/sshd").exists() || etc_ssh.join("sshd_config").exists();
    let pending = ap.root.path(PENDING);
    if !sshd {
        return ap.unchanged(KIND, TARGET, "no OpenSSH server in this system");
    }
    let regenerate = new_instance && mode == HostKeys::Regenerate;
    let missing = missing(&etc_ssh);
    // Without ssh-keygen there is no RSA key to make: the fast ones are made in-process.
    let no_rsa = crate::os::which("ssh-keygen").is_none();
    if no_rsa && (regenerate || missing.contains(&SLOW)) {
        ap.skipped(KIND, RSA_KEY, NO_KEYGEN);
    }
    let wanted = wanted(regenerate, missing, !no_rsa);
    if !regenerate && wanted.is_empty() {
        let why = if new_instance {
            "kept (SSH_HOST_KEYS=KEEP)"
        } else {
            "present"
        };
        return ap.unchanged(KIND, TARGET, why);
    }
    let defer = defer_slow
        && wanted.contains(&SLOW)
        && std::env::var(SETTING).as_deref() != Ok("all")
        && fast_keys_serve(&etc_ssh);
    let now: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|t| !(defer && *t == SLOW))
        .collect();
    let later = if defer {
        " (rsa after sshd started)"
    } else {
        ""
    };
    if now.is_empty() && pending.exists() {
        // Only the slow key is missing and vmctx-hostkeys.service is to make it.
        return ap.unchanged(KIND, TARGET, "rsa pending (vmctx-hostkeys.service)");
    }
    if ap.dry_run {
        let what = if regenerate {
            format!("would replace the image's host keys with new ones for this instance{later}")
        } else {
            format!(
                "would generate the missing {} host keys{later}",
                wanted.join(", ")
            )
        };
        return ap.changed(KIND, TARGET, what);
    }
    let comment = keygen::comment(&ap.root);
    if let Err(e) = make(&etc_ssh, &now, regenerate, &comment) {
        return ap.failed(KIND, TARGET, e);
    }
    for f in host_key_files(&etc_ssh) {
        ap.wrote(&etc_ssh.join(f)); // sshd_key_t, not the scratch folder's label
    }
    let (fingerprints, keys) = fingerprints(&etc_ssh);
    if defer {
        // The console block waits for the last key (`finish_slow`).
        ap.file("flag", &pending, b"rsa\n", NewFile::mode(0o644));
    } else {
        to_console(&ap.root, &fingerprint_block(&fingerprints, &keys));
        ap.remove("flag", &pending);
    }
    let detail = if regenerate {
        "new host keys for this instance"
    } else {
        "missing host keys generated"
    };
    if regenerate && ap.root.is_real() && sshd_running() {
        restart_running_sshd();
    }
    if let Err(e) = state.mark_done(id, "ssh-host-keys", &fingerprints.join("\n")) {
        ap.failed("state", "ssh-host-keys", e);
    }
    ap.changed(
        KIND,
        TARGET,
        format!("{detail}: {}{later}", short(&fingerprints)),
    );
}

/// `vmctx hostkeys` (`vmctx-hostkeys.service`, after sshd): makes the keys the local stage left
/// for later, reloads sshd, and prints the fingerprints of all keys. Nothing when none is
/// pending: a second run, or a boot of an instance whose keys are complete.
pub fn finish_slow(root: &Path) -> Report {
    let mut ap = Apply {
        root: Root::new(root),
        dry_run: false,
        actions: Vec::new(),
        written: super::files::Written::default(),
    };
    let pending = ap.root.path(PENDING);
    let etc_ssh = ap.root.path(TARGET);
    let state = State::new(&ap.root);
    let id = state.instance_id().unwrap_or_default();
    if !pending.exists() {
        ap.unchanged(KIND, TARGET, "no host key pending");
    } else {
        let mut missing = missing(&etc_ssh);
        if crate::os::which("ssh-keygen").is_none() && missing.contains(&SLOW) {
            ap.skipped(KIND, RSA_KEY, NO_KEYGEN);
            missing.retain(|t| *t != SLOW);
        }
        match make(&etc_ssh, &missing, false, &keygen::comment(&ap.root)) {
            Err(e) => ap.failed(KIND, TARGET, e),
            Ok(()) => {
                for f in host_key_files(&etc_ssh) {
                    ap.wrote(&etc_ssh.join(f));
                }
                super::selinux::relabel(&mut ap, &super::selinux::Status::read(root));
                if ap.root.is_real() {
                    reload_sshd();
                }
                let (fingerprints, keys) = fingerprints(&etc_ssh);
                to_console(&ap.root, &fingerprint_block(&fingerprints, &keys));
                if !id.is_empty() {
                    if let Err(e) = state.mark_done(&id, "ssh-host-keys", &fingerprints.join("\n"))
                    {
                        ap.failed("state", "ssh-host-keys", e);
                    }
                }
                let made = if missing.is_empty() {
                    "none missing".to_string()
                } else {
                    missing.join(", ")
                };
                ap.changed(KIND, TARGET, format!("made after sshd started: {made}"));
                ap.remove("flag", &pending);
            }
        }
    }
    Report {
        instance_id: id,
        new_instance: false,
        changed: ap.count(super::Outcome::Changed),
        failed: ap.count(super::Outcome::Failed),
        dry_run: false,
        actions: ap.actions,
        errors: Vec::new(),
    }
}

/// Whether sshd would load an ed25519 or ECDSA key: not when `sshd_config` names only other
/// `HostKey`s (then every key is made before it starts).
fn fast_keys_serve(etc_ssh: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(etc_ssh.join("sshd_config")) else {
        return true;
    };
    let named: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("hostkey"))
        })
        .map(str::to_ascii_lowercase)
        .collect();
    named.is_empty()
        || named
            .iter()
            .any(|l| l.contains("ed25519") || l.contains("ecdsa"))
}

/// A network source (EC2, Nova's service) is applied after sshd started: it still holds the
/// image's keys until restarted. `try-restart` leaves a stopped sshd stopped (the local stage
/// runs before it); `--no-block` because this may run inside a unit ordered before it.
fn restart_running_sshd() {
    systemctl(&["--no-block", "try-restart", "ssh.service", "sshd.service"]);
}

/// Whether an sshd process runs (it loaded the old keys). Asked of /proc, not of systemd: at
/// early boot, when sshd has not started yet, PID 1 is busy and `systemctl` takes seconds.
fn sshd_running() -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    procs.flatten().any(|p| {
        p.file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim_end() == "sshd")
    })
}

/// sshd re-reads its keys on SIGHUP (`reload`); open sessions stay.
fn reload_sshd() {
    systemctl(&["try-reload-or-restart", "ssh.service", "sshd.service"]);
}

fn systemctl(args: &[&str]) {
    if !Path::new("/run/systemd/system").is_dir() {
        return;
    }
    let _ = Command::new("systemctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Makes the `types` in `/etc/ssh/.vmctx-hostkeys`, then (with `replace`) removes every
/// image key and renames the new ones into `/etc/ssh`. A failure changes nothing.
fn make(etc_ssh: &Path, types: &[&str], replace: bool, comment: &str) -> Result<(), String> {
    let scratch = etc_ssh.join(SCRATCH);
    let _ = std::fs::remove_dir_all(&scratch);
    let result = Dir::open(etc_ssh, None)
        .and_then(|d| d.child(SCRATCH, Some(0o700)))
        .map_err(|e| format!("{}: {e}", scratch.display()))
        .and_then(|dir| {
            types
                .iter()
                .try_for_each(|t| keygen::make(&dir, t, comment))
        })
        .and_then(|()| {
            let new = host_key_files(&scratch);
            if new.is_empty() && !types.is_empty() {
                return Err("no keys were made".into());
            }
            if replace {
                for old in host_key_files(etc_ssh) {
                    std::fs::remove_file(etc_ssh.join(&old)).map_err(|e| format!("{old}: {e}"))?;
                }
            }
            for f in &new {
                std::fs::rename(scratch.join(f), etc_ssh.join(f))
                    .map_err(|e| format!("{f}: {e}"))?;
            }
            std::fs::File::open(etc_ssh)
                .and_then(|d| d.sync_all())
                .map_err(|e| e.to_string())
        });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The keys to make: all on a new instance (with `regenerate`), else the missing ones; RSA
/// only when ssh-keygen can make it.
fn wanted(regenerate: bool, missing: Vec<&'static str>, rsa: bool) -> Vec<&'static str> {
    let all = if regenerate { TYPES.to_vec() } else { missing };
    all.into_iter().filter(|t| rsa || *t != SLOW).collect()
}

/// The key types without a private key file in `/etc/ssh`.
fn missing(etc_ssh: &Path) -> Vec<&'static str> {
    TYPES
        .into_iter()
        .filter(|t| !etc_ssh.join(format!("ssh_host_{t}_key")).exists())
        .collect()
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

/// The `ssh-keygen -l -f` line of every public host key, and the keys themselves.
fn fingerprints(etc_ssh: &Path) -> (Vec<String>, Vec<String>) {
    let mut fps = Vec::new();
    let mut keys = Vec::new();
    for f in host_key_files(etc_ssh)
        .into_iter()
        .filter(|f| f.ends_with(".pub"))
    {
        let line = keygen::read_public(&etc_ssh.join(&f));
        match line
            .as_deref()
            .map_err(String::clone)
            .and_then(keygen::fingerprint)
        {
            Ok(fp) => fps.push(fp),
            Err(e) => tracing::warn!("{f}: {e}"),
        }
        keys.extend(line.ok());
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
fn to_console(root: &Root, block: &str) {
    eprint!("{block}");
    let console = root.path("/dev/console");
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

    fn pub_key(etc_ssh: &Path, t: &str) -> Option<String> {
        std::fs::read_to_string(etc_ssh.join(format!("ssh_host_{t}_key.pub"))).ok()
    }

    fn run(root: &Path, new_instance: bool) -> Vec<Action> {
        let mut ap = Apply {
            root: Root::new(root),
            dry_run: false,
            actions: Vec::new(),
            written: super::super::files::Written::default(),
        };
        let state = State::new(&ap.root);
        apply(
            &mut ap,
            HostKeys::Regenerate,
            new_instance,
            &state,
            "i-1",
            true,
        );
        ap.actions
    }

    use super::super::Action;

    #[test]
    fn fast_keys_first_rsa_after_sshd_once_per_instance() {
        if !crate::os::test_tool("ssh-keygen") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let etc_ssh = t.path().join("etc/ssh");
        std::fs::create_dir_all(&etc_ssh).unwrap();
        std::fs::write(etc_ssh.join("sshd_config"), "PermitRootLogin no\n").unwrap();
        // The image's keys (all three, as its openssh-server package made them).
        make(&etc_ssh, &TYPES, false, "root@image").unwrap();
        let image: Vec<_> = TYPES.iter().map(|k| pub_key(&etc_ssh, k)).collect();
        let pending = t.path().join("run/vmctx/hostkeys");

        let actions = run(t.path(), true);
        let keys = actions.iter().find(|a| a.kind == KIND).unwrap();
        assert_eq!(keys.result, super::super::Outcome::Changed, "{actions:?}");
        assert!(
            keys.detail.ends_with("(rsa after sshd started)"),
            "{}",
            keys.detail
        );
        // New fast keys, and the image's RSA key is gone (never served by this instance).
        assert!(pub_key(&etc_ssh, "ed25519").is_some_and(|k| Some(k) != image[0]));
        assert!(pub_key(&etc_ssh, "ecdsa").is_some_and(|k| Some(k) != image[1]));
        assert_eq!(pub_key(&etc_ssh, "rsa"), None);
        assert!(pending.exists());
        assert!(!etc_ssh.join(".vmctx-hostkeys").exists());

        // After sshd: the RSA key, the flag gone; a second run has nothing to do.
        let r = finish_slow(t.path());
        // The key, and the flag removed.
        assert_eq!((r.changed, r.failed), (2, 0), "{:?}", r.actions);
        assert!(pub_key(&etc_ssh, "rsa").is_some_and(|k| Some(k.clone()) != image[2]));
        assert!(!pending.exists());
        let ed = pub_key(&etc_ssh, "ed25519");
        let r = finish_slow(t.path());
        assert_eq!(r.changed, 0);

        // The same instance again: nothing is regenerated.
        let actions = run(t.path(), false);
        let keys = actions.iter().find(|a| a.kind == KIND).unwrap();
        assert_eq!(keys.detail, "present");
        assert_eq!(pub_key(&etc_ssh, "ed25519"), ed);
    }

    #[test]
    fn without_ssh_keygen_the_fast_keys_are_still_made() {
        assert_eq!(wanted(true, vec![], false), ["ed25519", "ecdsa"]);
        assert_eq!(wanted(true, vec![], true), TYPES);
        assert_eq!(wanted(false, vec!["ecdsa", "rsa"], false), ["ecdsa"]);
        assert!(wanted(false, vec!["rsa"], false).is_empty());
        assert_eq!(wanted(false, vec!["rsa"], true), ["rsa"]);
    }

    #[test]
    fn rsa_only_hostkey_config_makes_everything_first() {
        let t = tempfile::tempdir().unwrap();
        assert!(fast_keys_serve(t.path()));
        let cfg = t.path().join("sshd_config");
        std::fs::write(&cfg, "HostKey /etc/ssh/ssh_host_rsa_key\n").unwrap();
        assert!(!fast_keys_serve(t.path()));
        std::fs::write(
            &cfg,
            "HostKey /etc/ssh/ssh_host_rsa_key\nhostkey /etc/ssh/ssh_host_ed25519_key\n",
        )
        .unwrap();
        assert!(fast_keys_serve(t.path()));
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
