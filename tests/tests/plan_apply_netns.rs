//! `vmctx plan` against what `vmctx apply` then did, in a network and UTS namespace: every
//! address, route (with its table) and `from` rule the plan lists is in the kernel afterwards,
//! and vmctx added nothing it did not list. And a bad network value costs only what it feeds.

use serde_json::Value;
use std::collections::BTreeSet;
use vmctx_tests::*;

const TWO_GATEWAYS: &str =
    "VMID='3'\nETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH1_MAC='02:00:0a:00:03:05'\nETH1_IP='10.0.3.5'\nETH1_GATEWAY='10.0.3.1'\n";

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@example";

fn vmctx_json(g: &Guest, args: &[&str]) -> (Option<i32>, Value, String) {
    let o = g.vmctx(args);
    let v = if o.stdout.is_empty() {
        Value::Null
    } else {
        json(&o)
    };
    (o.status.code(), v, stderr(&o))
}

/// `vmctx apply --json --stage local --source dir:CTX` in the guest's namespace.
fn apply_local(g: &Guest, ctx: &tempfile::TempDir) -> (Option<i32>, Value, String) {
    vmctx_json(
        g,
        &[
            "apply",
            "--json",
            "--stage",
            "local",
            "--source",
            &dir_source(ctx),
        ],
    )
}

fn dir_source(ctx: &tempfile::TempDir) -> String {
    format!("dir:{}", ctx.path().display())
}

/// `ip -j ARGS` in the guest's namespace, as JSON.
fn ip_json(g: &Guest, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = g.ip(&full);
    if out.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
}

/// A prefix as `ip` prints it: `default` for /0, no `/32` or `/128` for a host.
fn norm_prefix(p: &str) -> String {
    if p == "default" || p.ends_with("/0") {
        return "default".into();
    }
    p.trim_end_matches("/32").trim_end_matches("/128").into()
}

/// `to via table metric` of a planned route, as the kernel shows it.
fn planned_route(r: &Value) -> String {
    let to = norm_prefix(r["to"].as_str().unwrap());
    let v6 = to.contains(':') || r["via"].as_str().is_some_and(|v| v.contains(':'));
    let via = r["via"].as_str().unwrap_or("link");
    let table = r["table"]
        .as_u64()
        .map_or("main".to_string(), |t| t.to_string());
    let metric = r["metric"].as_u64().unwrap_or(if v6 { 1024 } else { 0 });
    format!("{to} via {via} table {table} metric {metric}")
}

/// The routes vmctx can have added on `dev` (not the kernel's own), as [`planned_route`] shows them.
fn live_routes(g: &Guest, dev: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for family in ["-4", "-6"] {
        for r in ip_json(g, &[family, "route", "show", "table", "all", "dev", dev]) {
            let proto = r["protocol"].as_str().unwrap_or("");
            let table = r["table"].as_str().unwrap_or("main");
            if proto == "kernel" || table == "local" || r["type"].as_str() == Some("multicast") {
                continue;
            }
            let to = norm_prefix(r["dst"].as_str().unwrap());
            let via = r["gateway"].as_str().unwrap_or("link");
            let v6 = family == "-6";
            let metric = r["metric"].as_u64().unwrap_or(if v6 { 1024 } else { 0 });
            out.insert(format!("{to} via {via} table {table} metric {metric}"));
        }
    }
    out
}

fn live_addresses(g: &Guest, dev: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for link in ip_json(g, &["addr", "show", "dev", dev]) {
        for a in link["addr_info"].as_array().unwrap() {
            if a["scope"] == "link" {
                continue;
            }
            out.insert(format!(
                "{}/{}",
                a["local"].as_str().unwrap(),
                a["prefixlen"]
            ));
        }
    }
    out
}

/// `from table priority` of the rules that name a source (the kernel's own name none).
fn live_rules(g: &Guest) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for family in ["-4", "-6"] {
        for r in ip_json(g, &[family, "rule"]) {
            let Some(src) = r["src"].as_str().filter(|s| *s != "all") else {
                continue;
            };
            let len = r["srclen"]
                .as_u64()
                .unwrap_or(if family == "-6" { 128 } else { 32 });
            out.insert(format!(
                "from {} table {} priority {}",
                norm_prefix(&format!("{src}/{len}")),
                r["table"].as_str().unwrap_or("?"),
                r["priority"]
            ));
        }
    }
    out
}

/// Every link of the plan holds exactly the addresses, routes and rules the plan lists.
fn assert_plan_is_what_apply_did(g: &Guest, plan: &Value) {
    let mut planned_rules = BTreeSet::new();
    let ethernets = plan["network"]["ethernets"].as_object().unwrap();
    assert!(!ethernets.is_empty(), "{plan:#}");
    for (dev, e) in ethernets {
        let want_addrs: BTreeSet<String> = e["addresses"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(live_addresses(g, dev), want_addrs, "{dev} addresses");
        let want_routes: BTreeSet<String> = e["routes"]
            .as_array()
            .map(|a| a.iter().map(planned_route).collect())
            .unwrap_or_default();
        assert_eq!(live_routes(g, dev), want_routes, "{dev} routes; plan {e:#}");
        for r in e["routing-policy"].as_array().into_iter().flatten() {
            planned_rules.insert(format!(
                "from {} table {} priority {}",
                norm_prefix(r["from"].as_str().unwrap()),
                r["table"],
                r["priority"]
            ));
        }
    }
    assert_eq!(live_rules(g), planned_rules, "rules");
}

/// Plans, applies (local stage, or `stage`), compares; a second apply changes nothing.
fn plan_apply_compare(g: &Guest, src: &str, stage: &str) -> Value {
    let (code, plan, err) = vmctx_json(g, &["plan", "--json", "--source", src]);
    assert_eq!(code, Some(0), "{err}");
    let (code, report, err) =
        vmctx_json(g, &["apply", "--json", "--stage", stage, "--source", src]);
    assert_eq!(code, Some(0), "{err}{report:#}");
    assert_plan_is_what_apply_did(g, &plan);
    let (_, again, _) = vmctx_json(g, &["apply", "--json", "--stage", stage, "--source", src]);
    assert_eq!(again["changed"], 0, "second apply: {again:#}");
    plan
}

#[test]
fn two_gateways_the_plan_shows_table_101_and_its_rule_as_apply_installs_them() {
    let Some(g) = Guest::new("p2gw") else { return };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let ctx = context_dir(TWO_GATEWAYS, &[]);
    let plan = plan_apply_compare(&g, &dir_source(&ctx), "local");
    let eth1 = &plan["network"]["ethernets"]["eth1"];
    let default = eth1["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["to"] == "default")
        .unwrap_or_else(|| panic!("{eth1:#}"));
    assert_eq!(default["via"], "10.0.3.1");
    assert_eq!(default["table"], 101);
    assert_eq!(eth1["routing-policy"][0]["from"], "10.0.3.5/32");
    assert_eq!(eth1["routing-policy"][0]["table"], 101);
    let eth0 = &plan["network"]["ethernets"]["eth0"];
    assert!(eth0["routing-policy"].is_null(), "{eth0:#}");

    // The readable plan shows the table and the rule too.
    let o = g.vmctx(&["plan", "--source", &dir_source(&ctx)]);
    let text = stdout(&o);
    assert!(
        text.contains("default via 10.0.3.1 table 101")
            && text.contains("from 10.0.3.5/32 table 101"),
        "{text}"
    );
}

#[test]
fn aliases_and_ipv6_plan_is_what_apply_did() {
    let Some(g) = Guest::new("palias") else {
        return;
    };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let ctx = context_dir(
        "VMID='4'\nETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH0_IP6='2001:db8:1::10'\nETH0_IP6_GATEWAY='2001:db8:1::1'\nETH0_METRIC='50'\n\
ETH0_ROUTES='10.9.0.0/16 via 10.0.1.254, 2001:db8:9::/48 via 2001:db8:1::fe'\n\
ETH1_MAC='02:00:0a:00:03:05'\nETH1_IP='10.0.3.5'\nETH1_GATEWAY='10.0.3.1'\n\
ETH1_IP6='2001:db8:3::5'\nETH1_IP6_GATEWAY='2001:db8:3::1'\n\
ETH1_ALIAS0_IP='10.0.2.5'\nETH1_ALIAS0_MASK='255.255.255.0'\n",
        &[],
    );
    let plan = plan_apply_compare(&g, &dir_source(&ctx), "local");
    let rules = plan["network"]["ethernets"]["eth1"]["routing-policy"].to_string();
    assert!(
        rules.contains("10.0.3.5/32") && rules.contains("2001:db8:3::5/128"),
        "{rules}"
    );
}

#[test]
fn ec2_secondary_nic_plan_is_what_apply_did() {
    let Some(g) = Guest::new("pec2") else { return };
    let tree = serde_json::json!({
        "meta-data": {
            "instance-id": "i-0feedface0000002",
            "local-hostname": "ip-10-0-1-10.ec2.internal",
            "network": {"interfaces": {"macs": {
                "0e:00:00:00:01:0a": {"device-number": "0", "local-ipv4s": "10.0.1.10",
                    "subnet-ipv4-cidr-block": "10.0.1.0/24"},
                "0e:00:00:00:02:14": {"device-number": "1", "local-ipv4s": "10.0.2.20\n10.0.2.21",
                    "subnet-ipv4-cidr-block": "10.0.2.0/24"}
            }}}
        }
    });
    let tree_file = g.root.path().join("tree.json");
    std::fs::write(&tree_file, tree.to_string()).unwrap();
    g.veth(
        ("eth0", "0e:00:00:00:01:0a"),
        ("peer0", "0e:00:00:00:01:ff"),
    );
    g.veth(
        ("eth1", "0e:00:00:00:02:14"),
        ("peer1", "0e:00:00:00:02:ff"),
    );
    let (_imds, src) = g.imds(&tree_file);
    let plan = plan_apply_compare(&g, &src, "final");
    let eth1 = &plan["network"]["ethernets"]["eth1"];
    assert_eq!(
        eth1["routing-policy"].as_array().unwrap().len(),
        2,
        "{eth1:#}"
    );
}

/// A context with a user and a key, a good ETH0 and `bad` added.
fn one_bad_value(bad: &str) -> tempfile::TempDir {
    context_dir(
        &format!(
            "VMID='5'\nSET_HOSTNAME='one-bad'\nUSERNAME='ops'\nSSH_PUBLIC_KEY='{KEY}'\n\
ETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH1_MAC='02:00:0a:00:03:05'\n{bad}"
        ),
        &[],
    )
}

/// eth0 has its address and default route, the hostname is set, the user has its key, the bad
/// variable is named, exit 1.
fn assert_the_rest_applied(g: &Guest, bad_var: &str, code: Option<i32>, report: &Value, err: &str) {
    assert_eq!(code, Some(1), "{err}{report:#}");
    assert!(
        report["errors"].to_string().contains(bad_var) || err.contains(bad_var),
        "{bad_var} not named: {err}{report:#}"
    );
    assert!(
        g.ip(&["-4", "addr", "show", "eth0"])
            .contains("inet 10.0.1.10/24"),
        "{report:#}"
    );
    assert!(g
        .ip(&["route", "show", "default"])
        .contains("default via 10.0.1.1 dev eth0"));
    assert_eq!(g.hostname(), "one-bad");
    assert!(g.file("/home/ops/.ssh/authorized_keys").contains(KEY));
}

#[test]
fn a_malformed_eth1_ip_costs_only_eth1() {
    let Some(g) = Guest::new("badip") else { return };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let ctx = one_bad_value("ETH1_IP='10.0.3.500'\nETH1_GATEWAY='10.0.3.1'\n");
    let src = dir_source(&ctx);
    let (code, plan, _) = vmctx_json(&g, &["plan", "--json", "--source", &src]);
    assert_eq!(code, Some(1));
    assert!(plan["network"]["ethernets"]["eth1"].is_null(), "{plan:#}");
    let (code, report, err) = vmctx_json(
        &g,
        &["apply", "--json", "--stage", "local", "--source", &src],
    );
    assert_the_rest_applied(&g, "ETH1_IP", code, &report, &err);
    assert!(!err.contains("10.0.3.500"), "the value is not shown: {err}");
    assert!(!g.ip(&["-4", "addr", "show", "eth1"]).contains("inet "));
}

#[test]
fn a_bad_eth0_routes_entry_costs_only_that_route() {
    let Some(g) = Guest::new("badrt") else { return };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let ctx = one_bad_value(
        "ETH1_IP='10.0.3.5'\nETH0_ROUTES='10.9.0.0/16 via 10.0.1.254, 10.8.0.0/33 via 10.0.1.254'\n",
    );
    let (code, report, err) = apply_local(&g, &ctx);
    assert_the_rest_applied(&g, "ETH0_ROUTES", code, &report, &err);
    let routes = g.ip(&["route"]);
    assert!(routes.contains("10.9.0.0/16 via 10.0.1.254"), "{routes}");
    assert!(!routes.contains("10.8.0.0"), "{routes}");
    assert!(g
        .ip(&["-4", "addr", "show", "eth1"])
        .contains("inet 10.0.3.5/24"));
}

#[test]
fn a_nic_configured_earlier_keeps_its_state_when_its_ip_turns_bad() {
    let Some(g) = Guest::new("keep") else { return };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let good = context_dir(TWO_GATEWAYS, &[]);
    let (code, _, err) = apply_local(&g, &good);
    assert_eq!(code, Some(0), "{err}");
    let before = (
        live_addresses(&g, "eth1"),
        live_routes(&g, "eth1"),
        live_rules(&g),
    );
    assert!(before.0.contains("10.0.3.5/24") && !before.2.is_empty());
    // The same folder (the same source) with ETH1_IP, then ETH1_MAC made invalid, applied
    // twice each.
    let context_sh = good.path().join("context.sh");
    let bad_ip = TWO_GATEWAYS.replace("ETH1_IP='10.0.3.5'", "ETH1_IP='10.0.3.5.1'");
    let bad_mac = TWO_GATEWAYS.replace("ETH1_MAC='02:00:0a:00:03:05'", "ETH1_MAC='02:00:0a:00:03'");
    for (bad, var) in [
        (&bad_ip, "ETH1_IP"),
        (&bad_ip, "ETH1_IP"),
        (&bad_mac, "ETH1_MAC"),
        (&bad_mac, "ETH1_MAC"),
    ] {
        std::fs::write(&context_sh, bad).unwrap();
        let (code, report, err) = apply_local(&g, &good);
        assert_eq!(code, Some(1), "{err}{report:#}");
        assert!(report["errors"].to_string().contains(var), "{report:#}");
        let after = (
            live_addresses(&g, "eth1"),
            live_routes(&g, "eth1"),
            live_rules(&g),
        );
        assert_eq!(after, before, "{report:#}");
    }
    // Once the value is good again, nothing needs changing: vmctx still owns what it added.
    std::fs::write(&context_sh, TWO_GATEWAYS).unwrap();
    let (code, report, _) = apply_local(&g, &good);
    assert_eq!(code, Some(0));
    assert_eq!(report["changed"], 0, "{report:#}");
    let state = g.file("/var/lib/vmctx/network.json");
    assert!(state.contains("02:00:0a:00:03:05"), "{state}");
}

#[test]
fn a_bad_extra_drops_only_itself() {
    let Some(g) = Guest::new("extra") else { return };
    g.veth(("eth0", "02:00:0a:00:01:0a"), ("eth1", "02:00:0a:00:03:05"));
    let ctx = one_bad_value(
        "ETH0_MTU='9000x'\nETH0_ALIAS0_IP='10.0.2.300'\nETH0_ALIAS1_IP='10.0.2.10'\n\
ETH0_DNS='10.0.1.2 10.0.1.999'\nETH0_SEARCH_DOMAIN='good.example bad..example'\n",
    );
    let (code, report, err) = apply_local(&g, &ctx);
    for var in [
        "ETH0_MTU",
        "ETH0_ALIAS0_IP",
        "ETH0_DNS",
        "ETH0_SEARCH_DOMAIN",
    ] {
        assert_the_rest_applied(&g, var, code, &report, &err);
    }
    assert!(g
        .ip(&["-4", "addr", "show", "eth0"])
        .contains("inet 10.0.2.10/24"));
    assert!(g.ip(&["link", "show", "eth0"]).contains("mtu 1500"));
    let resolv = g.file("/etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 10.0.1.2") && resolv.contains("search good.example"),
        "{resolv}"
    );
}
