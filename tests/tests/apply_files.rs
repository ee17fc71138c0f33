//! Files written by apply under `--root`, byte for byte; and scripts: once per instance, again
//! under a new instance id, `always` mode, timeouts, environment.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use vmctx_tests::*;

const KEY1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyOneForTheFilesTestAAAAAAAAAAA one@test";
const KEY2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQKeyTwoForTheFilesTest two@test";

#[test]
fn files_byte_for_byte_and_foreign_lines_kept() {
    let Some(g) = Guest::new("files") else { return };
    let r = g.root.path();
    std::fs::write(
        r.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
    )
    .unwrap();
    std::fs::write(
        r.join("etc/resolv.conf"),
        "options edns0\nnameserver 9.9.9.9\n",
    )
    .unwrap();
    std::fs::create_dir_all(r.join("root/.ssh")).unwrap();
    std::fs::write(
        r.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorsOwnKey ops@site\n",
    )
    .unwrap();
    let ctx = context_dir(
        &format!("VMID='11'\nSET_HOSTNAME='web01.lab.example'\nDNS='10.0.0.2 10.0.0.3'\nSEARCH_DOMAIN='lab.example corp.example'\nSSH_PUBLIC_KEY='{KEY1}\n{KEY2}\n{KEY1}'\nETH0_MAC='02:00:0a:00:00:05'\nETH0_IP='10.0.0.5'\nUSERNAME_PASSWORD_RESET='YES'\n"),
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    // No link with that MAC in the namespace: reported, not fatal.
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let b = "# BEGIN vmctx managed block: changes inside are overwritten\n";
    let e = "# END vmctx managed block\n";
    assert_eq!(g.file("/etc/hostname"), "web01\n");
    assert_eq!(g.file("/etc/hosts"), format!("127.0.0.1 localhost\n::1 localhost ip6-localhost\n{b}10.0.0.5 web01.lab.example web01\n{e}"));
    assert_eq!(
        g.file("/etc/resolv.conf"),
        format!("{b}search lab.example corp.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n{e}options edns0\nnameserver 9.9.9.9\n")
    );
    assert_eq!(
        g.file("/root/.ssh/authorized_keys"),
        format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorsOwnKey ops@site\n{b}{KEY1}\n{KEY2}\n{e}"
        )
    );
    let meta = std::fs::metadata(r.join("root/.ssh")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(g.file("/etc/shadow").starts_with("root:*:"), "locked");
    assert_eq!(g.hostname(), "web01");
    // Idempotent, then a context without keys takes only vmctx's block away.
    let o = g.vmctx(&["apply", "--stage", "local", "--json", "--source", &src]);
    assert_eq!(json(&o)["changed"], 0, "{}", stdout(&o));
    let nokeys = context_dir("VMID='11'\nSET_HOSTNAME='web01.lab.example'\n", &[]);
    g.vmctx(&[
        "apply",
        "--stage",
        "local",
        "--source",
        &format!("dir:{}", nokeys.path().display()),
    ]);
    assert_eq!(
        g.file("/root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorsOwnKey ops@site\n"
    );
}

#[test]
fn resolved_symlink_gets_a_drop_in_b17() {
    let Some(g) = Guest::new("resolved") else {
        return;
    };
    let r = g.root.path();
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        r.join("etc/resolv.conf"),
    )
    .unwrap();
    let ctx = context_dir(
        "VMID='12'\nDNS='10.0.0.2'\nSEARCH_DOMAIN='lab.example'\n",
        &[],
    );
    let o = g.vmctx(&[
        "apply",
        "--stage",
        "local",
        "--source",
        &format!("dir:{}", ctx.path().display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(r.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link stays"
    );
    assert_eq!(
        g.file("/etc/systemd/resolved.conf.d/90-vmctx.conf"),
        "# Written by vmctx from the instance's context.\n[Resolve]\nDNS=10.0.0.2\nDomains=lab.example\n"
    );
}

#[test]
fn user_created_with_password_and_keys() {
    let Some(g) = Guest::new("user") else { return };
    if !need("useradd", have_tool("useradd")) {
        return;
    }
    let ctx = context_dir(&format!("VMID='13'\nUSERNAME='alice'\nUSERNAME_SHELL='/bin/sh'\nPASSWORD='correct horse'\nSSH_PUBLIC_KEY='{KEY1}'\n"), &[]);
    let src = format!("dir:{}", ctx.path().display());
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o) + &stderr(&o);
    assert!(
        !out.contains("correct horse") && !out.contains("AAAAC3"),
        "secrets in output: {out}"
    );
    let passwd = g.file("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("alice:"))
        .expect("alice created");
    assert!(line.ends_with(":/home/alice:/bin/sh"), "{line}");
    let shadow = g.file("/etc/shadow");
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("alice:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(hash.starts_with("$6$"), "{hash}");
    let uid: u32 = line.split(':').nth(2).unwrap().parse().unwrap();
    let keys = g.root.path().join("home/alice/.ssh/authorized_keys");
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (uid, 0o600)
    );
    assert_eq!(
        g.file("/etc/sudoers.d/90-vmctx").lines().last(),
        Some("alice ALL=(ALL) NOPASSWD:ALL")
    );
    // The same plain password again: its hash verifies, nothing changes.
    let o = g.vmctx(&["apply", "--stage", "local", "--json", "--source", &src]);
    assert_eq!(json(&o)["changed"], 0, "{}", stdout(&o));
}

fn script_context(marker_dir: &std::path::Path, vmid: u32, extra: &str) -> tempfile::TempDir {
    let m = marker_dir.display();
    context_dir(
        &format!(
            "VMID='{vmid}'\nMY_SETTING='a b $HOME'\nPATH='/nonexistent'\nSTART_SCRIPT='#!/bin/sh\necho run >> {m}/start.log\nprintf \"%s|%s|%s\" \"$MY_SETTING\" \"$(pwd)\" \"$VMCTX_INSTANCE_ID\" > {m}/env\n'\nINIT_SCRIPTS='init.sh'\n{extra}"
        ),
        &[("init.sh", &format!("echo init >> {m}/init.log\n"))],
    )
}

#[test]
fn scripts_run_once_per_instance() {
    let marks = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let ctx = script_context(marks.path(), 21, "");
    let src = format!("dir:{}", ctx.path().display());
    for _ in 0..2 {
        let o = vmctx(&["apply", "--stage", "final", "--source", &src, "--root", r]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
    let count = |f: &str| {
        std::fs::read_to_string(marks.path().join(f))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(
        (count("start.log"), count("init.log")),
        (1, 1),
        "once across two applies"
    );
    // The context's variables reach the script literally; cwd is the private copy; the
    // context's PATH='/nonexistent' does not stop vmctx from running it.
    let env = std::fs::read_to_string(marks.path().join("env")).unwrap();
    assert_eq!(env, format!("a b $HOME|{r}/var/lib/vmctx/files|one-21"));
    let ctx2 = script_context(marks.path(), 22, "");
    let o = vmctx(&[
        "apply",
        "--stage",
        "final",
        "--source",
        &format!("dir:{}", ctx2.path().display()),
        "--root",
        r,
    ]);
    assert!(o.status.success());
    assert_eq!(
        (count("start.log"), count("init.log")),
        (2, 2),
        "again under a new instance id"
    );
}

#[test]
fn always_mode_runs_every_time() {
    let marks = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let ctx = script_context(marks.path(), 31, "START_SCRIPT_MODE='always'\n");
    for _ in 0..3 {
        vmctx(&[
            "apply",
            "--stage",
            "final",
            "--source",
            &format!("dir:{}", ctx.path().display()),
            "--root",
            root.path().to_str().unwrap(),
        ]);
    }
    let n = std::fs::read_to_string(marks.path().join("start.log"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(n, 3);
}

#[test]
fn a_script_past_its_timeout_is_killed_and_reported() {
    let marks = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let ctx = context_dir(
        &format!("VMID='41'\nSTART_SCRIPT_TIMEOUT='1'\nSTART_SCRIPT='(sleep 30; touch {m}/child-survived) &\nsleep 30\ntouch {m}/finished'\n"),
        &[],
    );
    vmctx_bin(); // built (once) before the clock starts
    let started = std::time::Instant::now();
    let o = vmctx(&[
        "apply",
        "--stage",
        "final",
        "--json",
        "--source",
        &format!("dir:{}", ctx.path().display()),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    let script = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "script")
        .unwrap()
        .clone();
    assert_eq!(script["result"], "failed");
    assert!(
        script["detail"]
            .as_str()
            .unwrap()
            .contains("killed after the 1 s timeout"),
        "{script}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!marks.path().join("finished").exists());
    let ps = sh(&["ps", "-eo", "args"]);
    assert!(
        !ps.contains(&format!("touch {m}/child-survived")),
        "the script's children were killed too"
    );
}

#[test]
fn failing_script_is_reported_with_its_exit_code() {
    let root = tempfile::tempdir().unwrap();
    let ctx = context_dir("VMID='51'\nSTART_SCRIPT='echo oops >&2\nexit 3'\n", &[]);
    let o = vmctx(&[
        "apply",
        "--stage",
        "final",
        "--json",
        "--source",
        &format!("dir:{}", ctx.path().display()),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert!(v.to_string().contains("exit 3"), "{v}");
    let log = std::fs::read_to_string(
        root.path()
            .join("var/lib/vmctx/instances/one-51/start_script.log"),
    )
    .unwrap();
    assert_eq!(log, "oops\n");
}

#[test]
fn network_manager_files_follow_the_context() {
    let Some(g) = Guest::new("mgr") else { return };
    let r = g.root.path();
    for f in [
        "usr/sbin/NetworkManager",
        "usr/lib/systemd/systemd-networkd",
        "sbin/ifup",
        "etc/network/interfaces",
    ] {
        std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
        std::fs::write(r.join(f), "").unwrap();
    }
    g.veth(("ens3", "02:00:0a:00:03:28"), ("ens4", "02:00:0a:00:03:29"));
    let both = context_dir("VMID='61'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH1_MAC='02:00:0a:00:03:29'\nETH1_METHOD='dhcp'\n", &[]);
    let o = g.vmctx(&[
        "apply",
        "--stage",
        "local",
        "--source",
        &format!("dir:{}", both.path().display()),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        g.file("/etc/systemd/network/05-vmctx-02000a000328.network"),
        "# Written by vmctx from the instance's context; removed when the NIC leaves it.\n[Match]\nMACAddress=02:00:0a:00:03:28\n\n[Link]\nUnmanaged=yes\n"
    );
    assert!(g
        .file("/etc/NetworkManager/conf.d/90-vmctx-unmanaged.conf")
        .ends_with("unmanaged-devices=mac:02:00:0a:00:03:28\n"));
    assert!(g
        .file("/etc/NetworkManager/system-connections/vmctx-02000a000329.nmconnection")
        .contains("[ipv4]\nmethod=auto\n"));
    assert!(g
        .file("/etc/network/interfaces.d/vmctx-ens4")
        .contains("iface ens4 inet dhcp\n"));
    // The DHCP NIC is up, with no address from vmctx.
    assert!(g.ip(&["link", "show", "ens4"]).contains(",UP"));
    assert!(!g.ip(&["-4", "addr", "show", "ens4"]).contains("inet "));
    // plan lists them.
    let v = json(&g.vmctx(&[
        "plan",
        "--json",
        "--source",
        &format!("dir:{}", both.path().display()),
    ]));
    assert_eq!(v["network_files"].as_array().unwrap().len(), 5, "{v}");
    // ETH1 leaves the context: its files go, ETH0's stay.
    let one = context_dir(
        "VMID='61'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n",
        &[],
    );
    g.vmctx(&[
        "apply",
        "--stage",
        "local",
        "--source",
        &format!("dir:{}", one.path().display()),
    ]);
    assert!(!r.join("etc/network/interfaces.d/vmctx-ens4").exists());
    assert!(!r
        .join("etc/NetworkManager/system-connections/vmctx-02000a000329.nmconnection")
        .exists());
    assert!(!r
        .join("etc/systemd/network/05-vmctx-02000a000329.network")
        .exists());
    assert!(r
        .join("etc/systemd/network/05-vmctx-02000a000328.network")
        .exists());
}

#[test]
fn imported_ami_flags_and_cloud_init_drop_in() {
    let Some(g) = Guest::new("ami") else { return };
    let r = g.root.path();
    std::fs::create_dir_all(r.join("etc/cloud/cloud.cfg.d")).unwrap();
    let src = format!("dir:{}", fixture("imported-ami").display());
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(g.file("/run/vmctx/imds"), "EC2_METADATA=YES\n");
    assert_eq!(g.file("/run/vmctx/context"), format!("{src}\n"));
    let drop_in = g.file("/etc/cloud/cloud.cfg.d/90-vmctx-imds.cfg");
    assert!(
        drop_in.contains("datasource_list: [Ec2, None]")
            && drop_in.contains("strict_id: false")
            && drop_in.contains("config: disabled"),
        "{drop_in}"
    );
    assert_eq!(
        g.file("/run/cloud-init/cloud.cfg"),
        "datasource_list: [ Ec2, None ]\nnetwork: {config: disabled}\n"
    );
    // Without EC2_METADATA the flag and the drop-in go.
    let plain = context_dir("VMID='6'\n", &[]);
    g.vmctx(&[
        "apply",
        "--stage",
        "local",
        "--source",
        &format!("dir:{}", plain.path().display()),
    ]);
    assert!(
        !r.join("run/vmctx/imds").exists()
            && !r.join("etc/cloud/cloud.cfg.d/90-vmctx-imds.cfg").exists()
    );
}
