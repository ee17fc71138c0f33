//! An OpenStack config drive applied on a live (namespaced) system: the GPU notebook fixture
//! built as Nova builds it (ISO9660 `config-2`, or FAT `CONFIG-2`), `vmctx apply --stage all`
//! with real rtnetlink, real files under `--root`, and its `#!/bin/sh` user_data run once.
//!
//! The fixture's user_data writes to `/run/vmctx-fixture/`: vmctx runs here in a private mount
//! namespace with a scratch folder bound on `/run`, so the test machine's `/run` is never
//! written and the script's own log can be read back.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vmctx_tests::*;

const MAC: &str = "fa:16:3e:5a:0b:14";
const INSTANCE: &str = "7d3c2a1b-5e4f-4a6b-9c8d-0e1f2a3b4c5d";
const KEYS: [&str; 2] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpuNotebookResearcherKeyForTheLabOnlyAAAAA researcher@lab",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpuNotebookAdminsKeyForTheGpuClusterOnlyAAAAA admins@lab",
];

fn drive_dir() -> PathBuf {
    workspace().join("vm-fixtures/configdrive/gpu-notebook")
}

/// `vmctx ARGS --root ROOT` in the guest's network and UTS namespaces and in a private mount
/// namespace whose `/run` is `run` (a scratch folder).
fn vmctx_in(g: &Guest, run: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &g.netns])
        .args(["unshare", "--mount", "--propagation", "private", "--"])
        .args([
            "sh",
            "-c",
            r#"mount --bind "$1" /run && shift && exec nsenter --uts="$@""#,
            "sh",
        ])
        .arg(run)
        // Guest::new keeps its UTS namespace handle here.
        .arg(g.root.path().join(".uts"))
        .arg(vmctx_bin())
        .args(args)
        .args(["--root", g.root_str()])
        .output()
        .unwrap()
}

fn apply(g: &Guest, run: &Path, src: &str) -> (Option<i32>, Value, String) {
    let o = vmctx_in(
        g,
        run,
        &["apply", "--json", "--stage", "all", "--source", src],
    );
    let v = if o.stdout.is_empty() {
        Value::Null
    } else {
        json(&o)
    };
    (o.status.code(), v, stderr(&o))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The report's actions of one kind.
fn actions<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

#[test]
fn gpu_notebook_config_drive_applied_then_nothing_changes() {
    let Some(g) = Guest::new("osdrive") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = build_config_drive(&drive_dir(), &t.path().join("config-2.iso"), false) else {
        return;
    };
    let src = format!("configdrive:{}", iso.display());
    let run = t.path().join("run");
    std::fs::create_dir(&run).unwrap();
    g.veth(("eth0", MAC), ("peer0", "fa:16:3e:5a:0b:ff"));
    g.ip(&["link", "set", "peer0", "up"]);

    let (code, v, err) = apply(&g, &run, &src);
    assert_eq!(code, Some(0), "{v:#}\n{err}");
    assert_eq!(v["failed"], 0, "{v:#}");
    assert_eq!(v["instance_id"], INSTANCE);
    assert_eq!(v["new_instance"], true);

    // Network: address, MTU, link up, both routes.
    let addr = g.ip(&["-4", "addr", "show", "eth0"]);
    assert!(addr.contains("inet 10.0.5.20/24"), "{addr}");
    let link = g.ip(&["link", "show", "eth0"]);
    assert!(link.contains("mtu 1450") && link.contains(",UP"), "{link}");
    let routes = g.ip(&["route", "show"]);
    assert!(
        routes.contains("default via 10.0.5.1 dev eth0"),
        "default route: {routes}"
    );
    assert!(
        routes.contains("10.10.0.0/16 via 10.0.5.254 dev eth0"),
        "static route: {routes}"
    );

    // Identity: hostname, /etc/hosts block, resolvers.
    assert_eq!(g.hostname(), "gpu-notebook-01");
    assert_eq!(g.file("/etc/hostname"), "gpu-notebook-01\n");
    let hosts = g.file("/etc/hosts");
    assert!(
        hosts.contains(
            "# BEGIN vmctx managed block: changes inside are overwritten\n\
             10.0.5.20 gpu-notebook-01.novalocal gpu-notebook-01\n"
        ),
        "{hosts}"
    );
    let resolv = g.file("/etc/resolv.conf");
    let ns: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(ns, ["10.0.5.53", "10.0.5.54"], "{resolv}");

    // Both keys to root, with the modes sshd insists on.
    let keys = g.file("/root/.ssh/authorized_keys");
    for k in KEYS {
        assert_eq!(keys.lines().filter(|l| *l == k).count(), 1, "{k}:\n{keys}");
    }
    let ssh = g.root.path().join("root/.ssh");
    assert_eq!(mode(&ssh), 0o700);
    assert_eq!(mode(&ssh.join("authorized_keys")), 0o600);

    // user_data ran once, as root, with the instance id in its environment.
    let ran = "gpu-notebook user_data ran as root for 7d3c2a1b-5e4f-4a6b-9c8d-0e1f2a3b4c5d\n";
    let log = run.join("vmctx-fixture/user_data.log");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), ran);
    let scripts = actions(&v, "script");
    assert!(
        scripts.len() == 1
            && scripts[0]["result"] == "changed"
            && scripts[0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("ran: exit 0"),
        "{scripts:#?}"
    );
    let inst = format!("/var/lib/vmctx/instances/{INSTANCE}");
    assert!(
        g.file(&format!("{inst}/script-user-data-1-user-data.done"))
            .starts_with("ran: exit 0"),
        "the once-per-instance marker"
    );
    assert_eq!(
        g.file("/var/lib/vmctx/instance-id"),
        format!("{INSTANCE}\n")
    );

    // Again: nothing changes, the user_data does not run twice.
    let (code, again, err) = apply(&g, &run, &src);
    assert_eq!(code, Some(0), "{again:#}\n{err}");
    assert_eq!(again["changed"], 0, "second apply: {again:#}");
    assert_eq!(again["new_instance"], false);
    let scripts = actions(&again, "script");
    assert!(
        scripts.len() == 1
            && scripts[0]["result"] == "unchanged"
            && scripts[0]["detail"] == "already ran for this instance",
        "{scripts:#?}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), ran);
    assert!(g
        .ip(&["-4", "addr", "show", "eth0"])
        .contains("inet 10.0.5.20/24"));
}

#[test]
fn vfat_drive_plans_like_the_iso() {
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = build_config_drive(&drive_dir(), &t.path().join("config-2.iso"), false) else {
        return;
    };
    let Some(fat) = build_config_drive(&drive_dir(), &t.path().join("config-2.img"), true) else {
        return;
    };
    let plan = |img: &Path| {
        let o = vmctx(&[
            "plan",
            "--json",
            "--source",
            &format!("configdrive:{}", img.display()),
            "--links-file",
            "/dev/null",
        ]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let mut v = json(&o);
        assert_eq!(
            v["source"],
            format!("configdrive:{}", img.display()),
            "{v:#}"
        );
        v["source"] = Value::Null;
        v
    };
    let (a, b) = (plan(&iso), plan(&fat));
    assert_eq!(a, b, "ISO:\n{a:#}\nFAT:\n{b:#}");
    assert_eq!(a["instance_id"], INSTANCE);
    assert_eq!(a["network"]["ethernets"]["eth0"]["mtu"], 1450);
    assert_eq!(a["ssh_keys"].as_array().unwrap().len(), 2);
    assert_eq!(a["scripts"][0]["kind"], "user_data");
}

#[test]
fn a_network_on_a_missing_link_changes_nothing() {
    let Some(g) = Guest::new("osbad") else { return };
    g.veth(("eth0", MAC), ("peer0", "fa:16:3e:5a:0b:ff"));
    // The fixture, with networks[0] on a link that network_data.json does not list.
    let t = tempfile::tempdir().unwrap();
    let latest = t.path().join("openstack/latest");
    std::fs::create_dir_all(&latest).unwrap();
    let fixture = drive_dir().join("openstack/latest");
    for f in std::fs::read_dir(&fixture).unwrap().flatten() {
        std::fs::copy(f.path(), latest.join(f.file_name())).unwrap();
    }
    let nd = latest.join("network_data.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&nd).unwrap()).unwrap();
    doc["networks"][0]["link"] = "tap-gone".into();
    std::fs::write(&nd, doc.to_string()).unwrap();

    let run = t.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let before = root_files(g.root.path());
    let src = format!("configdrive:{}", t.path().display());
    let o = vmctx_in(&g, &run, &["apply", "--stage", "all", "--source", &src]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{}{err}", stdout(&o));
    assert!(
        err.contains("network_data.json") && err.contains("networks[0].link"),
        "{err}"
    );
    assert!(err.contains("tap-gone"), "{err}");
    assert_eq!(root_files(g.root.path()), before, "files changed");
    assert!(
        !g.ip(&["addr", "show", "eth0"]).contains("10.0.5.20"),
        "an address was added"
    );
    assert!(g.ip(&["link", "show", "eth0"]).contains("mtu 1500"));
    assert_ne!(g.hostname(), "gpu-notebook-01");
    assert!(
        std::fs::read_dir(&run).unwrap().next().is_none(),
        "user_data ran"
    );
}
