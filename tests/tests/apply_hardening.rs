//! What apply leaves behind for others to read or to run: script logs private, a script that
//! never started not marked done, and SSH keys from a cloud's metadata that hide a second
//! line left out of `authorized_keys`.

use std::os::unix::fs::PermissionsExt;
use vmctx_tests::*;

const GOOD: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodKeyGoodKeyGoodKeyAAAA good@lab";
const HIDDEN: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHiddenKeyHiddenKeyAAAA front@lab\n\
command=\"touch /tmp/vmctx-pwned\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttackerKeyAAAA x";

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn script_logs_and_their_folders_are_private() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // As an older vmctx left them: a world-readable folder and log.
    let inst = r.join("var/lib/vmctx/instances/one-81");
    std::fs::create_dir_all(&inst).unwrap();
    std::fs::write(inst.join("start_script.log"), "old\n").unwrap();
    for (p, m) in [
        (r.join("var/lib/vmctx/instances"), 0o755),
        (inst.clone(), 0o755),
        (inst.join("start_script.log"), 0o644),
    ] {
        std::fs::set_permissions(p, PermissionsExt::from_mode(m)).unwrap();
    }
    let ctx = context_dir(
        "VMID='81'\nMY_SECRET='s3cr3t-value'\nSTART_SCRIPT='set -x\necho \"$MY_SECRET\"'\nSTART_SCRIPT_MODE='always'\n",
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    let o = vmctx(&[
        "apply",
        "--stage",
        "final",
        "--source",
        &src,
        "--root",
        r.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let log = inst.join("start_script.log");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("s3cr3t-value"));
    assert_eq!(mode(&log), 0o600, "the log");
    assert_eq!(mode(&inst), 0o700, "the instance's folder");
    assert_eq!(mode(&r.join("var/lib/vmctx/instances")), 0o700);
    // A new instance's folder and log are made that way.
    let ctx2 = context_dir("VMID='82'\nSTART_SCRIPT='echo hi'\n", &[]);
    let src2 = format!("dir:{}", ctx2.path().display());
    vmctx(&[
        "apply",
        "--stage",
        "final",
        "--source",
        &src2,
        "--root",
        r.to_str().unwrap(),
    ]);
    let inst2 = r.join("var/lib/vmctx/instances/one-82");
    assert_eq!(
        (mode(&inst2), mode(&inst2.join("start_script.log"))),
        (0o700, 0o600)
    );
}

#[test]
fn a_script_that_did_not_start_is_not_marked_done() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let ctx = context_dir(
        "VMID='83'\nSTART_SCRIPT='#!/nonexistent/interpreter\necho hi'\n",
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    for round in 0..2 {
        let o = vmctx(&[
            "apply", "--stage", "final", "--json", "--source", &src, "--root", r,
        ]);
        assert_eq!(o.status.code(), Some(1), "round {round}: {}", stdout(&o));
        let v = json(&o);
        let script = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "script")
            .unwrap()
            .clone();
        assert_eq!(script["result"], "failed", "round {round}: {script}");
        assert!(
            script["detail"].as_str().unwrap().contains("cannot start"),
            "round {round}: tried again, not 'already ran': {script}"
        );
    }
    let marker = root
        .path()
        .join("var/lib/vmctx/instances/one-83/script-start_script.done");
    assert!(!marker.exists());
}

fn keys_file(g: &Guest) -> String {
    g.file("/root/.ssh/authorized_keys")
}

fn assert_hidden_line_left_out(keys: &str) {
    assert!(keys.contains(GOOD), "{keys}");
    assert!(
        !keys.contains("command=") && !keys.contains("AttackerKey") && !keys.contains("front@lab"),
        "{keys}"
    );
}

#[test]
fn config_drive_key_with_a_hidden_line_is_left_out() {
    let Some(g) = Guest::new("cd-keys") else {
        return;
    };
    let drive = tempfile::tempdir().unwrap();
    let latest = drive.path().join("openstack/latest");
    std::fs::create_dir_all(&latest).unwrap();
    let meta = serde_json::json!({
        "uuid": "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a5b",
        "public_keys": {"front": HIDDEN},
        "keys": [{"name": "good", "type": "ssh", "data": GOOD}],
    });
    std::fs::write(latest.join("meta_data.json"), meta.to_string()).unwrap();
    let src = format!("configdrive:{}", drive.path().display());
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_hidden_line_left_out(&keys_file(&g));
    let shown = stdout(&g.vmctx(&["show", "--json", "--source", &src]));
    assert!(
        shown.contains("public_keys.front"),
        "the warning names it: {shown}"
    );
}

#[test]
fn ec2_key_with_a_hidden_line_is_left_out() {
    let Some(g) = Guest::new("ec2-keys") else {
        return;
    };
    let tree = serde_json::json!({
        "meta-data": {
            "instance-id": "i-0feedface0000081",
            "public-keys": {
                "0=front": {"openssh-key": HIDDEN},
                "1=good": {"openssh-key": GOOD},
            },
        },
    });
    let tree_file = g.root.path().join("tree.json");
    std::fs::write(&tree_file, tree.to_string()).unwrap();
    let (_imds, src) = g.imds(&tree_file);
    let o = g.vmctx(&["apply", "--stage", "final", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_hidden_line_left_out(&keys_file(&g));
}
