//! Host keys made and fingerprinted in-process: under emulation every `ssh-keygen` costs
//! 0.4–1.5 s of the boot before sshd. ed25519 and ECDSA (P-256) keys are written as
//! `ssh-keygen -q -t TYPE -N "" -f F` writes them (OpenSSH private key format, 0600; `F.pub`,
//! 0644; comment `root@<hostname>`); RSA-3072, made after sshd started, stays with ssh-keygen.
//! Fingerprints are the line `ssh-keygen -l -f` prints, for every key.

use crate::files::{Dir, NewFile, Root};
use ssh_key::public::{EcdsaPublicKey, KeyData};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, Mpint, PrivateKey, PublicKey};
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// A public key file larger than this is not one (RSA-16384's is under 3 KiB).
const MAX_PUBLIC: u64 = 64 * 1024;

/// `ssh_host_KIND_key` and its `.pub` in `dir`: ed25519 and ecdsa here, rsa by ssh-keygen.
pub fn make(dir: &Dir, kind: &str, comment: &str) -> Result<(), String> {
    let algorithm = match kind {
        "ed25519" => Algorithm::Ed25519,
        "ecdsa" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        _ => return ssh_keygen(dir.path(), kind, comment),
    };
    let name = format!("ssh_host_{kind}_key");
    let mut key = PrivateKey::random(&mut rand_core::OsRng, algorithm)
        .map_err(|e| format!("{kind} key: {e}"))?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("{kind} key: {e}"))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("{kind} key: {e}"))?;
    // Written at 0600 from the start (Dir::write): the secret is never readable by others.
    let new = NewFile::mode(0o600).exact();
    dir.write(name.as_ref(), private.as_bytes(), new)
        .map_err(|e| format!("{name}: {e}"))?;
    let name = format!("{name}.pub");
    dir.write(
        name.as_ref(),
        format!("{public}\n").as_bytes(),
        NewFile::mode(0o644).exact(),
    )
    .map_err(|e| format!("{name}: {e}"))?;
    Ok(())
}

/// `ssh-keygen -t TYPE` into `dir/ssh_host_TYPE_key` without a passphrase (as `-A` does).
fn ssh_keygen(dir: &Path, kind: &str, comment: &str) -> Result<(), String> {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"])
        .arg(dir.join(format!("ssh_host_{kind}_key")))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen -t {kind} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// `root@<hostname>`, ssh-keygen's comment: the running hostname (the local stage set it
/// already), from the kernel, never through NSS.
pub fn comment(root: &Root) -> String {
    let proc = std::fs::read_to_string(root.path("/proc/sys/kernel/hostname"));
    let host = match proc.as_deref().map(str::trim) {
        Ok(h) if !h.is_empty() => h.to_string(),
        _ => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    format!("root@{host}")
}

/// The first line of a public key file, read within a bound.
pub fn read_public(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PUBLIC + 1).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_PUBLIC {
        return Err(format!(
            "{}: larger than {MAX_PUBLIC} bytes",
            path.display()
        ));
    }
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// `ssh-keygen -l -f FILE`'s line for a public key `TYPE BASE64 [COMMENT]`:
/// `BITS SHA256:… COMMENT (TYPE)`.
pub fn fingerprint(line: &str) -> Result<String, String> {
    let key = PublicKey::from_openssh(line.trim()).map_err(|e| e.to_string())?;
    let data = key.key_data();
    let comment = match key.comment() {
        "" => "no comment",
        c => c,
    };
    Ok(format!(
        "{} {} {comment} ({})",
        bits(data),
        data.fingerprint(HashAlg::Sha256),
        type_name(&key.algorithm())
    ))
}

/// `sshkey_size`: the modulus's bits (RSA, DSA's p), the curve's, 256 for Ed25519.
fn bits(data: &KeyData) -> u32 {
    match data {
        KeyData::Rsa(k) => mpint_bits(&k.n),
        KeyData::Dsa(k) => mpint_bits(&k.p),
        KeyData::Ecdsa(EcdsaPublicKey::NistP256(_)) => 256,
        KeyData::Ecdsa(EcdsaPublicKey::NistP384(_)) => 384,
        KeyData::Ecdsa(EcdsaPublicKey::NistP521(_)) => 521,
        _ => 256, // Ed25519 and the security keys (P-256, Ed25519)
    }
}

fn mpint_bits(n: &Mpint) -> u32 {
    let bytes = n.as_positive_bytes().unwrap_or(&[]);
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => (bytes.len() - i) as u32 * 8 - bytes[i].leading_zeros(),
        None => 0,
    }
}

/// `sshkey_type`: the name ssh-keygen shows in parentheses.
fn type_name(a: &Algorithm) -> String {
    match a {
        Algorithm::Rsa { .. } => "RSA".into(),
        Algorithm::Dsa => "DSA".into(),
        Algorithm::Ecdsa { .. } => "ECDSA".into(),
        Algorithm::Ed25519 => "ED25519".into(),
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK".into(),
        Algorithm::SkEd25519 => "ED25519-SK".into(),
        other => other.as_str().to_ascii_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Keys and the lines `ssh-keygen -l -f` (OpenSSH 9.2) printed for them.
    const KNOWN: [(&str, &str); 4] = [
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMlqyAGjcoJAZ/jybCSUVZAl68fAWoj0WGBD2/bSt7AD root@kat",
            "256 SHA256:qYyUsgNhqNhuA48apSR8wCD0iHp4AcTZcn8XHsldYmI root@kat (ED25519)",
        ),
        (
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKioR1NZDujwtr18RjBIdmjgHH5najGpv8vXxi+kdXJKAT5V19eWVNh4+/ocwG2NXsT73AeiMJONmkk273qw6FE= root@kat",
            "256 SHA256:mRA3e27hbQ4pcBJlNLOUahscP5LdwnkEWdaTpL20yqA root@kat (ECDSA)",
        ),
        (
            "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBIS0dr9oB0CnTlmAgvKvIWIfYA9guav4YDVV1+cSqBBzhFOQ4xzLTmZ9TQx+LPsQ+GX5O7lQ+frSqbrW1P1idIWF4bqrwWWgS8qNadTl9FTs9kx7giK7eruRDcNF/oLFaQ== two words",
            "384 SHA256:VSVXZuNP30zYoQCXQrw+XyG2eaYTTPnc1QMXyBM7UgE two words (ECDSA)",
        ),
        (
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCcbpirkr2vCs/j/ZY8NkYDe6VSf359ONKr/X3DDFbvYEG+UIHxlPUY3TLss6sNEl06E5WS3d+nQuh5GLJZg3BVKydqD+abdG7+bfz7TCzV4WsElPBYNOhH9ji2XOXDItDZOPIBSplMvEociyCQcemzKm4GujBc39m/kqbfWDi6NH0AKu/mxcHoVJt0pxU7wpxlBFp1KmUVMWsd8qsydahRejfHZOlzdCfv51QP6fTf0kjGKc8zrNdQqi98SRnRq0YjsOEtOTCFo6rOagPa161oZePZ9CLwObloG69yhAjoUBe7lC9EArmwEGqANsqsf3mgaQzVCVJZW4GouKuU/zw3 ",
            "2048 SHA256:rJZU9GJPY43cNsxATKgUr9O1uO8SUDW3NxDNl3rN3f4 no comment (RSA)",
        ),
    ];

    #[test]
    fn fingerprints_read_as_ssh_keygen_prints_them() {
        for (key, line) in KNOWN {
            assert_eq!(fingerprint(key).unwrap(), line);
        }
        // A type the base64 does not hold, or no key at all, is refused.
        let ed = KNOWN[0].0.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(fingerprint(&ed).is_err());
        assert!(fingerprint("not a key").is_err());
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.pub");
        std::fs::write(&big, "a".repeat(MAX_PUBLIC as usize + 1)).unwrap();
        let e = read_public(&big).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn comment_is_root_at_the_running_hostname() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let host = nix::unistd::gethostname().unwrap();
        assert_eq!(comment(&root), format!("root@{}", host.to_string_lossy()));
        std::fs::create_dir_all(t.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(t.path().join("proc/sys/kernel/hostname"), "web-1\n").unwrap();
        assert_eq!(comment(&root), "root@web-1");
    }

    fn ssh_keygen_says(args: &[&str], file: &Path) -> String {
        let o = Command::new("ssh-keygen")
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// What OpenSSH reads of the keys made here: the fingerprint line we print, and the
    /// public key it derives from the private file.
    #[test]
    fn made_keys_are_what_openssh_reads() {
        if !crate::os::test_tool("ssh-keygen") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open(t.path(), None).unwrap();
        for kind in ["ed25519", "ecdsa", "rsa"] {
            make(&dir, kind, "root@test-host").unwrap();
            let private = t.path().join(format!("ssh_host_{kind}_key"));
            let public = t.path().join(format!("ssh_host_{kind}_key.pub"));
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
            assert_eq!((mode(&private), mode(&public)), (0o600, 0o644), "{kind}");
            let text = std::fs::read_to_string(&private).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----", "{kind}");
            assert_eq!(lines[lines.len() - 1], "-----END OPENSSH PRIVATE KEY-----");
            // ssh-keygen's 70-column base64.
            let body = &lines[1..lines.len() - 1];
            assert!(
                body[..body.len() - 1].iter().all(|l| l.len() == 70),
                "{text}"
            );
            assert!(text.ends_with("-----\n"));

            let pub_line = std::fs::read_to_string(&public).unwrap();
            assert!(pub_line.ends_with(" root@test-host\n"), "{pub_line}");
            assert_eq!(pub_line.lines().count(), 1);
            let ours = fingerprint(&read_public(&public).unwrap()).unwrap();
            assert_eq!(ssh_keygen_says(&["-l", "-f"], &public).trim_end(), ours);
            let expected = match kind {
                "ed25519" => "256 ",
                "ecdsa" => "256 ",
                _ => "3072 ",
            };
            assert!(ours.starts_with(expected), "{ours}");
            assert!(ours.ends_with(&format!(" root@test-host ({})", kind.to_uppercase())));
            // The private file is OpenSSH's: ssh-keygen derives the same public key from it.
            let derived = ssh_keygen_says(&["-y", "-f"], &private);
            let fields = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            assert_eq!(fields(&derived), fields(&pub_line), "{kind}");
        }
        // Two keys made in a row differ (the random source is used).
        let other = tempfile::tempdir().unwrap();
        make(&Dir::open(other.path(), None).unwrap(), "ed25519", "c").unwrap();
        let read = |d: &Path| std::fs::read_to_string(d.join("ssh_host_ed25519_key.pub")).unwrap();
        assert_ne!(fields_of(&read(t.path())), fields_of(&read(other.path())));
    }

    fn fields_of(line: &str) -> String {
        line.split_whitespace().nth(1).unwrap_or("").to_string()
    }
}
