//! `vmctx apply` on a live (namespaced) system: real rtnetlink, real files under `--root`.
//! Only the `local` stage for the fixtures: their start scripts must never run here.

use serde_json::Value;
use vmctx_tests::*;

fn iso(name: &str, dir: &tempfile::TempDir) -> Option<String> {
    build_iso(&fixture(name), &dir.path().join(format!("{name}.iso")))
        .map(|p| format!("opennebula:{}", p.display()))
}

fn apply(g: &Guest, src: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["apply", "--json", "--source", src];
    args.extend_from_slice(extra);
    let o = g.vmctx(&args);
    let v = if o.stdout.is_empty() {
        Value::Null
    } else {
        json(&o)
    };
    (o.status.code(), v)
}

fn changed(v: &Value) -> u64 {
    v["changed"].as_u64().unwrap()
}

#[test]
fn hol02_jupyter_address_gateway_mtu_then_no_change() {
    let Some(g) = Guest::new("jup") else { return };
    let t = tempfile::tempdir().unwrap();
    let Some(src) = iso("hol02-jupyter", &t) else {
        return;
    };
    g.veth(
        ("ens3", "02:00:0a:00:03:28"),
        ("peer0", "02:00:0a:00:03:99"),
    );
    g.ip(&["link", "set", "ens3", "mtu", "1400"]);
    let (code, v) = apply(&g, &src, &["--stage", "local"]);
    assert_eq!(code, Some(0), "{v}");
    assert!(g
        .ip(&["-4", "addr", "show", "ens3"])
        .contains("inet 10.0.3.40/24"));
    assert!(g.ip(&["link", "show", "ens3"]).contains("mtu 1500"));
    assert!(g.ip(&["link", "show", "ens3"]).contains(",UP"));
    assert!(g
        .ip(&["route", "show", "default"])
        .contains("default via 10.0.3.1 dev ens3"));
    assert_eq!(g.hostname(), "hol02-jupyter");
    // Static IPv6 method (the default): router advertisements off, so no stray SLAAC address.
    let ra = sh(&[
        "ip",
        "netns",
        "exec",
        &g.netns,
        "cat",
        "/proc/sys/net/ipv6/conf/ens3/accept_ra",
    ]);
    assert_eq!(ra.trim(), "0");
    assert_eq!(g.file("/etc/hostname"), "hol02-jupyter\n");
    assert!(g
        .file("/etc/resolv.conf")
        .contains("search research.hol02.internal\nnameserver 10.0.3.2\n"));

    let (code, again) = apply(&g, &src, &["--stage", "local"]);
    assert_eq!(code, Some(0));
    assert_eq!(changed(&again), 0, "second apply: {again}");
}

#[test]
fn hol02_vpn_two_nics_and_the_alias() {
    let Some(g) = Guest::new("vpn") else { return };
    let t = tempfile::tempdir().unwrap();
    let Some(src) = iso("hol02-vpn", &t) else {
        return;
    };
    g.veth(("dmz0", "02:00:0a:00:01:0a"), ("res0", "02:00:0a:00:03:05"));
    let (code, v) = apply(&g, &src, &["--stage", "local"]);
    assert_eq!(code, Some(0), "{v}");
    assert!(g
        .ip(&["-4", "addr", "show", "dmz0"])
        .contains("inet 10.0.1.10/24"));
    let res = g.ip(&["-4", "addr", "show", "res0"]);
    assert!(
        res.contains("inet 10.0.3.5/24") && res.contains("inet 10.0.2.5/24"),
        "{res}"
    );
    assert!(g
        .ip(&["route", "show", "default"])
        .contains("via 10.0.1.1 dev dmz0"));
    // Two users' keys in the managed block, the user created with sudo.
    let keys = g.file("/home/ubuntu/.ssh/authorized_keys");
    assert_eq!(
        keys.lines()
            .filter(|l| l.starts_with("ssh-ed25519"))
            .count(),
        2
    );
    assert_eq!(
        g.file("/etc/sudoers.d/90-vmctx").lines().last(),
        Some("ubuntu ALL=(ALL) NOPASSWD:ALL")
    );
    assert_eq!(changed(&apply(&g, &src, &["--stage", "local"]).1), 0);
}

#[test]
fn hol02_voila_address_from_its_mac() {
    let Some(g) = Guest::new("voila") else { return };
    let t = tempfile::tempdir().unwrap();
    let Some(src) = iso("hol02-voila", &t) else {
        return;
    };
    g.veth(
        ("eth0", "02:00:0a:00:02:0b"),
        ("peer0", "02:00:0a:00:02:99"),
    );
    let (code, v) = apply(&g, &src, &["--stage", "local"]);
    assert_eq!(code, Some(0), "{v}");
    assert!(g
        .ip(&["-4", "addr", "show", "eth0"])
        .contains("inet 10.0.2.11/24"));
    assert!(
        g.ip(&["-4", "addr", "show", "peer0"])
            .lines()
            .all(|l| !l.contains("inet ")),
        "a NIC not in the context is not touched"
    );
}

#[test]
fn a_new_context_replaces_what_vmctx_added_and_keeps_the_rest() {
    let Some(g) = Guest::new("change") else {
        return;
    };
    g.veth(
        ("eth0", "02:00:0a:00:03:28"),
        ("peer0", "02:00:0a:00:03:99"),
    );
    let first = context_dir(
        "VMID='1'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH0_GATEWAY='10.0.3.1'\n",
        &[],
    );
    let second = context_dir("VMID='2'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.41'\nETH0_GATEWAY='10.0.3.254'\nETH0_ROUTES='10.8.0.0/16 via 10.0.3.253'\n", &[]);
    let (code, v) = apply(
        &g,
        &format!("dir:{}", first.path().display()),
        &["--stage", "local"],
    );
    assert_eq!(code, Some(0), "{v}");
    // An address and a route the administrator added by hand.
    g.ip(&["addr", "add", "192.0.2.7/24", "dev", "eth0"]);
    g.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
    let (code, v) = apply(
        &g,
        &format!("dir:{}", second.path().display()),
        &["--stage", "local"],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["new_instance"], true);
    let addrs = g.ip(&["-4", "addr", "show", "eth0"]);
    assert!(!addrs.contains("10.0.3.40/"), "old address left: {addrs}");
    assert!(
        addrs.contains("10.0.3.41/24") && addrs.contains("192.0.2.7/24"),
        "{addrs}"
    );
    let routes = g.ip(&["route"]);
    assert!(
        routes.contains("default via 10.0.3.254") && !routes.contains("via 10.0.3.1 "),
        "{routes}"
    );
    assert!(
        routes.contains("10.8.0.0/16 via 10.0.3.253")
            && routes.contains("198.51.100.0/24 via 192.0.2.1"),
        "{routes}"
    );
    assert_eq!(g.file("/var/lib/vmctx/instance-id"), "one-2\n");
}

#[test]
fn second_gateway_gets_its_own_table_and_rule() {
    let Some(g) = Guest::new("mgw") else { return };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let ctx = context_dir(
        "VMID='3'\nETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH1_MAC='02:00:0a:00:03:05'\nETH1_IP='10.0.3.5'\nETH1_GATEWAY='10.0.3.1'\n",
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    let (code, v) = apply(&g, &src, &["--stage", "local"]);
    assert_eq!(code, Some(0), "{v}");
    assert!(g
        .ip(&["route", "show", "default"])
        .contains("via 10.0.1.1 dev eth0"));
    let t101 = g.ip(&["route", "show", "table", "101"]);
    assert!(
        t101.contains("default via 10.0.3.1 dev eth1") && t101.contains("10.0.3.0/24 dev eth1"),
        "{t101}"
    );
    assert!(
        g.ip(&["rule"]).contains("from 10.0.3.5 lookup 101"),
        "{}",
        g.ip(&["rule"])
    );
    assert_eq!(changed(&apply(&g, &src, &["--stage", "local"]).1), 0);
}

#[test]
fn an_invalid_nic_address_leaves_the_nic_alone_and_an_unreadable_context_changes_nothing() {
    let Some(g) = Guest::new("bad") else { return };
    g.veth(
        ("eth0", "02:00:0a:00:03:28"),
        ("peer0", "02:00:0a:00:03:99"),
    );
    for (body, var) in [
        ("SET_HOSTNAME='x'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.400'\n", "ETH0_IP"),
        ("SET_HOSTNAME='x'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH0_MASK='255.0.255.0'\n", "ETH0_MASK"),
        ("SET_HOSTNAME='x'\nETH0_MAC='02:00:0a:00:03:2g'\nETH0_IP='10.0.3.40'\n", "ETH0_MAC"),
    ] {
        let ctx = context_dir(body, &[]);
        let o = g.vmctx(&["apply", "--source", &format!("dir:{}", ctx.path().display())]);
        assert_eq!(o.status.code(), Some(1), "{body}");
        assert!(stdout(&o).contains(&format!("error: {var}: ")), "{}", stdout(&o));
        assert!(!g.ip(&["addr", "show", "eth0"]).contains("10.0.3.40"));
        assert_eq!(g.hostname(), "x", "the rest is applied");
    }
    let before_tree = root_files(g.root.path());
    let t = tempfile::tempdir().unwrap();
    if let Some(src) = iso("hol02-jupyter", &t) {
        let path = src.trim_start_matches("opennebula:");
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..40 * 1024]).unwrap();
        let o = g.vmctx(&["apply", "--source", &src]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    }
    assert_eq!(root_files(g.root.path()), before_tree, "files changed");
}

#[test]
fn dry_run_changes_nothing() {
    let Some(g) = Guest::new("dry") else { return };
    let t = tempfile::tempdir().unwrap();
    let Some(src) = iso("hol02-vpn", &t) else {
        return;
    };
    g.veth(("dmz0", "02:00:0a:00:01:0a"), ("res0", "02:00:0a:00:03:05"));
    let before = root_files(g.root.path());
    let (code, v) = apply(&g, &src, &["--dry-run", "--stage", "local"]);
    assert_eq!(code, Some(0), "{v}");
    assert!(changed(&v) > 5, "{v}");
    assert_eq!(root_files(g.root.path()), before);
    assert!(!g.ip(&["addr"]).contains("10.0.1.10"));
}
