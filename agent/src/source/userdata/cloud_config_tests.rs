use super::*;
use crate::source::opennebula::ctx;

fn fold(yaml: &str) -> (Context, CloudConfig, Vec<String>) {
    let mut c = ctx("VMID='1'\n");
    let mut w = Vec::new();
    let d = parse(yaml, &mut w).unwrap_or_else(|e| panic!("{e}"));
    let mut cc = CloudConfig::default();
    d.fold_into(&mut c, &mut cc, &mut w);
    (c, cc, w)
}

#[test]
fn hostname_and_fqdn() {
    let (c, _, _) = fold("#cloud-config\nhostname: web1\n");
    let h = c.hostname.unwrap();
    assert_eq!(
        (h.name.as_str(), h.from.as_str()),
        ("web1", "user-data hostname")
    );
    let (c, _, _) = fold("hostname: web1\nfqdn: web1.example.org\n");
    let h = c.hostname.unwrap();
    assert_eq!(
        (h.name.as_str(), h.domain.as_deref()),
        ("web1", Some("example.org"))
    );
}

#[test]
fn keys_users_and_runcmd() {
    let (c, cc, w) = fold(
        "ssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA a@b\n\
users:\n  - default\n  - name: alice\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/sh\n    groups: [adm, users]\n    \
ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice]\n    lock_passwd: false\n    gecos: Alice\n  - bob\n\
runcmd:\n  - echo hi > /tmp/x\n  - [touch, /tmp/a b]\n",
    );
    assert_eq!(c.ssh_keys, ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA a@b"]);
    assert_eq!(cc.users.len(), 2);
    let a = &cc.users[0];
    assert_eq!(a.name, "alice");
    assert_eq!(a.sudo.as_deref(), Some("ALL=(ALL) NOPASSWD:ALL"));
    assert_eq!((a.groups.len(), a.lock_passwd), (2, false));
    assert!(cc.users[1].lock_passwd && cc.users[1].sudo.is_none());
    assert_eq!(cc.runcmd, ["echo hi > /tmp/x", "touch '/tmp/a b'"]);
    assert!(w.iter().any(|w| w.contains("\"gecos\"")), "{w:?}");
}

#[test]
fn write_files_encodings() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"zipped\n").unwrap();
    let gz = base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap());
    let (_, cc, _) = fold(&format!(
        "write_files:\n  - path: /etc/a\n    content: plain\n  - path: /etc/b\n    encoding: b64\n    content: aGVsbG8=\n    \
permissions: '0600'\n    owner: root:root\n  - path: /etc/c\n    encoding: gz+b64\n    content: {gz}\n    append: true\n    \
permissions: 0755\n"
    ));
    let f = &cc.write_files;
    assert_eq!(
        (f[0].content.as_slice(), f[0].permissions),
        (&b"plain"[..], 0o644)
    );
    assert_eq!(
        (f[1].content.as_slice(), f[1].permissions),
        (&b"hello"[..], 0o600)
    );
    assert_eq!(
        (f[2].content.as_slice(), f[2].append),
        (&b"zipped\n"[..], true)
    );
    assert_eq!(
        f[2].permissions, 0o755,
        "a bare 0755 is octal, as in cloud-init"
    );
}

#[test]
fn packages_and_vmctx_settings() {
    let (c, cc, w) = fold(
        "package_upgrade: true\nvmctx:\n  update_schedule: '0 3 * * 0'\n  s3_sync:\n    bucket: notebooks\n    mode: pull\n    \
secret_access_key: s3cr3t\n    access_key_id: AKIA1\n",
    );
    assert!(cc.package_update && cc.package_upgrade);
    assert!(c.update.is_some(), "{:?}", c.errors);
    let s = c.sync.as_ref().unwrap();
    assert_eq!(
        (s.bucket.as_str(), s.dir.as_str()),
        ("notebooks", "/root/notebooks")
    );
    assert!(!serde_json::to_string(&c).unwrap().contains("s3cr3t"));
    assert!(w.is_empty(), "{w:?}");
    let (c, _, _) = fold("vmctx:\n  update_schedule: 'every tuesday-ish'\n");
    assert!(
        c.errors[0].starts_with("user-data vmctx: UPDATE_SCHEDULE:"),
        "{:?}",
        c.errors
    );
}

#[test]
fn unknown_keys_warn_bad_values_fail() {
    let (_, _, w) = fold("apt:\n  sources: {}\nbootcmd: [x]\n");
    assert_eq!(w.len(), 2, "{w:?}");
    let mut w = Vec::new();
    for (yaml, want) in [
        ("write_files: {path: /x}\n", "write_files: expected a list"),
        (
            "write_files:\n  - path: etc/x\n",
            "write_files: [0]: path: must be an absolute file path",
        ),
        (
            "write_files:\n  - path: /x\n    encoding: rot13\n",
            "unknown encoding \"rot13\"",
        ),
        (
            "users:\n  - name: Bad Name\n",
            "users: [0]: name: not a valid user name",
        ),
        ("runcmd: ls\n", "runcmd: expected a list"),
        (
            "package_update: maybe\n",
            "package_update: expected YES or NO",
        ),
        ("- a\n- b\n", "not a mapping"),
        ("runcmd: [\n", "not valid YAML"),
    ] {
        let e = parse(yaml, &mut w).map(|_| ()).unwrap_err();
        assert!(e.contains(want), "{yaml:?}: {e}");
    }
}

#[test]
fn malformed_yaml_is_a_context_error() {
    let mut c = ctx("VMID='1'\nUSER_DATA='#cloud-config\nhostname: [unclosed\n'\n");
    crate::source::userdata::merge(&mut c);
    assert!(
        c.errors
            .iter()
            .any(|e| e.starts_with("user-data: #cloud-config: not valid YAML")),
        "{:?}",
        c.errors
    );
    assert!(
        c.hostname.is_none(),
        "nothing of a broken document is folded in"
    );
}
