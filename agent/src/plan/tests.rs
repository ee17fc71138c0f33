use super::*;
use crate::facts::{parse_links, Facts};
use crate::source::opennebula::ctx;

fn plan(text: &str, links: &str) -> Plan {
    build(
        &ctx(text),
        &Facts {
            links: parse_links(links).unwrap(),
            managers: Default::default(),
            selinux: Default::default(),
            ..Default::default()
        },
    )
}

fn json(p: &Plan) -> serde_json::Value {
    serde_json::to_value(p).unwrap()
}

#[test]
fn netplan_shape() {
    let p = plan(
        "ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH0_MASK='255.255.255.0'\nETH0_GATEWAY='10.0.3.1'\nETH0_METRIC='100'\nETH0_DNS='10.0.3.2'\nETH0_SEARCH_DOMAIN='example.org'\nETH0_MTU='1500'\nDNS='8.8.8.8'\n",
        "02:00:0a:00:03:28=ens3\n",
    );
    let j = json(&p);
    assert_eq!(
        j["network"],
        serde_json::json!({"version": 2, "ethernets": {"ens3": {
            "match": {"macaddress": "02:00:0a:00:03:28"},
            "addresses": ["10.0.3.40/24"],
            "routes": [{"to": "default", "via": "10.0.3.1", "metric": 100}],
            "nameservers": {"addresses": ["10.0.3.2", "8.8.8.8"], "search": ["example.org"]},
            "mtu": 1500, "dhcp4": false, "dhcp6": false, "accept-ra": false}}})
    );
    assert_eq!(
        j["dns"]["nameservers"],
        serde_json::json!(["8.8.8.8", "10.0.3.2"])
    );
}

#[test]
fn missing_link_is_keyed_by_index_with_warning() {
    let p = plan(
        "ETH3_MAC='02:00:0a:00:03:28'\nETH3_IP='10.0.3.40'\nVMID='1'\n",
        "",
    );
    assert!(p.network.ethernets.contains_key("eth3"));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("ETH3") && w.contains("no link")),
        "{:?}",
        p.warnings
    );
}

/// A NIC the machine lacks must not take the name of one it has (issue 18, part 4): ETH0's
/// link is missing, ETH1's link is called eth0.
#[test]
fn a_missing_link_never_shadows_a_real_one() {
    let p = plan(
        "ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH1_MAC='02:00:0a:00:04:28'\nETH1_IP='10.0.4.40'\nVMID='1'\n",
        "02:00:0a:00:04:28=eth0\n",
    );
    let eth0 = &p.network.ethernets["eth0"];
    assert_eq!(eth0.match_.macaddress.to_string(), "02:00:0a:00:04:28");
    assert_eq!(p.network.ethernets.len(), 2, "{:?}", p.network);
    assert!(
        !p.warnings.iter().any(|w| w.contains("already configured")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn skipped_and_absent_nics_do_not_appear() {
    let p = plan(
        "ETH0_MAC='02:00:0a:00:03:28'\nETH0_METHOD='skip'\nETH0_IP='10.0.3.40'\n",
        "02:00:0a:00:03:28=eth0\n52:54:00:12:34:56=eth1\n02:00:0a:00:03:29=eth2\n",
    );
    assert!(p.network.ethernets.is_empty(), "{:?}", p.network);
}

#[test]
fn network_no_configures_nothing() {
    let p = plan(
        "NETWORK='NO'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nDNS='1.1.1.1'\n",
        "02:00:0a:00:03:28=eth0\n",
    );
    assert!(p.network.ethernets.is_empty());
    assert!(p.dns.nameservers.is_empty());
}

#[test]
fn legacy_context_derives_every_prefixed_link() {
    // No ETHx_* at all: the original OpenNebula behaviour, but never for foreign MACs (B5).
    let p = plan(
        "DNS='10.0.0.1'\nVMID='3'\n",
        "02:00:0a:00:03:28=eth0\n52:54:00:12:34:56=eth1\n02:00:0a:00:02:0b=eth2\n",
    );
    let names: Vec<&String> = p.network.ethernets.keys().collect();
    assert_eq!(names, ["eth0", "eth2"]);
    assert_eq!(
        p.network.ethernets["eth2"].addresses[0].to_string(),
        "10.0.2.11/24"
    );
}

#[test]
fn dhcp_and_slaac() {
    let p = plan(
        "ETH0_MAC='02:00:0a:00:03:28'\nETH0_METHOD='dhcp'\nETH1_MAC='02:00:0a:00:03:29'\nETH1_IP='10.0.3.41'\nETH1_IP6_METHOD='auto'\n",
        "02:00:0a:00:03:28=eth0\n02:00:0a:00:03:29=eth1\n",
    );
    let e0 = &p.network.ethernets["eth0"];
    assert!(e0.dhcp4 && e0.dhcp6 && e0.addresses.is_empty());
    let e1 = &p.network.ethernets["eth1"];
    assert!(!e1.dhcp4 && !e1.dhcp6 && e1.accept_ra == Some(true));
}

const TWO_GATEWAYS: &str =
    "ETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH1_MAC='02:00:0a:00:03:05'\nETH1_IP='10.0.3.5'\nETH1_GATEWAY='10.0.3.1'\n";
const TWO_LINKS: &str = "02:00:0a:00:01:0a=eth0\n02:00:0a:00:03:05=eth1\n";

#[test]
fn second_gateway_is_planned_in_its_table_with_its_rule() {
    let p = plan(TWO_GATEWAYS, TWO_LINKS);
    let j = json(&p);
    assert_eq!(
        j["network"]["ethernets"]["eth1"]["routes"],
        serde_json::json!([
            {"to": "10.0.3.0/24", "from": "10.0.3.5", "scope": "link", "table": 101},
            {"to": "default", "via": "10.0.3.1", "from": "10.0.3.5", "table": 101}
        ])
    );
    assert_eq!(
        j["network"]["ethernets"]["eth1"]["routing-policy"],
        serde_json::json!([{"from": "10.0.3.5/32", "table": 101, "priority": 1001}])
    );
    assert_eq!(
        j["network"]["ethernets"]["eth0"]["routes"],
        serde_json::json!([{"to": "default", "via": "10.0.1.1"}])
    );
    let s = p.summary();
    assert!(
        s.contains("route default via 10.0.3.1 table 101 from 10.0.3.5")
            && s.contains("rule  from 10.0.3.5/32 table 101 priority 1001"),
        "{s}"
    );
}

#[test]
fn a_nic_with_a_bad_address_is_left_alone_and_said_so() {
    let p = plan(
        &TWO_GATEWAYS.replace("ETH1_IP='10.0.3.5'", "ETH1_IP='10.0.3.500'"),
        TWO_LINKS,
    );
    assert!(!p.network.ethernets.contains_key("eth1"));
    assert!(p.errors.iter().any(|e| e.starts_with("ETH1_IP: ")));
    assert_eq!(
        json(&p)["network"]["left-alone"],
        serde_json::json!([{"index": 1, "mac": "02:00:0a:00:03:05"}])
    );
    assert!(p
        .summary()
        .contains("ETH1 (02:00:0a:00:03:05)  left as it is"));
    // ETH1 still goes into its own table when ETH0, the main table's NIC, is left alone.
    let p0 = plan(
        &TWO_GATEWAYS.replace("ETH0_IP='10.0.1.10'", "ETH0_IP='10.0.1'"),
        TWO_LINKS,
    );
    assert!(p0.network.ethernets["eth1"]
        .routes
        .iter()
        .all(|r| r.table == 101));
    // ETH0 is planned whole; its manager files keep ETH1 off NetworkManager's hands as before.
    assert_eq!(p.network.ethernets["eth0"].routes.len(), 1);
    assert!(is_held_file(
        "05-vmctx-02000a000305.network",
        &p.network.left_alone
    ));
    assert!(!is_held_file(
        "05-vmctx-02000a00010a.network",
        &p.network.left_alone
    ));
}

#[test]
fn without_ipv6_in_the_kernel_no_ipv6_is_planned() {
    let text = "ETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_IP6='2001:db8::10'\nETH0_IP6_GATEWAY='2001:db8::1'\n";
    let facts = Facts {
        links: parse_links("02:00:0a:00:01:0a=eth0\n").unwrap(),
        ipv6_disabled: true,
        ..Facts::default()
    };
    let p = build(&ctx(text), &facts);
    let e = &p.network.ethernets["eth0"];
    assert_eq!(e.addresses.len(), 1);
    assert!(e.routes.is_empty() && e.accept_ra.is_none());
    assert!(p.warnings.iter().any(|w| w.contains("IPv6 is disabled")));
    let on = plan(text, "02:00:0a:00:01:0a=eth0\n");
    assert_eq!(on.network.ethernets["eth0"].addresses.len(), 2);
    assert_eq!(on.network.ethernets["eth0"].accept_ra, Some(false));
}

#[test]
fn summary_mentions_the_essentials() {
    let p = plan(
        "SET_HOSTNAME='web'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_GATEWAY='10.0.3.1'\nUSERNAME='ubuntu'\nSTART_SCRIPT='echo hi'\nVMID='9'\nUPDATE_SCHEDULE='bogus schedule'\n",
        "02:00:0a:00:03:28=eth0\n",
    );
    let s = p.summary();
    for needle in [
        "one-9",
        "hostname  web",
        "eth0",
        "10.0.3.40/24",
        "default via 10.0.3.1",
        "user      ubuntu (sudo",
        "start_script",
        "error: UPDATE_SCHEDULE:",
    ] {
        assert!(s.contains(needle), "{needle:?} missing in:\n{s}");
    }
}

#[test]
fn plan_never_contains_secrets() {
    let p = plan("PASSWORD='hunter2'\nAWS_ACCESS_KEY_ID='AKIAX'\nAWS_SECRET_ACCESS_KEY='s3cr3tkey'\nS3_SYNC_BUCKET='nb'\nVMID='1'\n", "");
    let out = p.to_json() + &p.summary();
    assert!(
        !out.contains("hunter2") && !out.contains("s3cr3tkey"),
        "{out}"
    );
    assert_eq!(p.users[0].password, Some("plain"));
}

#[test]
fn selinux_relabel_is_planned_only_when_enabled() {
    let text = "SET_HOSTNAME='web'\nVMID='3'\n";
    let off = plan(text, "");
    assert!(!off.summary().contains("selinux"));
    assert!(
        json(&off).get("selinux_relabel").is_none(),
        "absent when off"
    );
    let on = build(
        &ctx(text),
        &Facts {
            selinux: crate::apply::selinux::Status::Enabled {
                policy: "targeted".into(),
            },
            ..Facts::default()
        },
    );
    assert!(on.summary().contains("selinux   enabled: labels restored"));
    assert_eq!(json(&on)["selinux_relabel"], true);
}

#[test]
fn secrets_are_carried_but_never_printed() {
    let mut c = ctx(
        "VMID='3'\nUSERNAME='ann'\nPASSWORD='pw-Secret-1'\nREPORT_READY='YES'\n\
         ONEGATE_ENDPOINT='http://10.0.0.1:5030'\nONEGATE_TOKEN='tok-Secret-2'\n\
         START_SCRIPT='echo sc-Secret-3'\n",
    );
    c.files = vec![("token.txt".into(), b"file-Secret-4".to_vec())];
    let p = build(&c, &Facts::default());
    let shown = format!("{}{}{:?}", p.to_json(), p.summary(), p);
    for s in [
        "pw-Secret-1",
        "tok-Secret-2",
        "sc-Secret-3",
        "file-Secret-4",
    ] {
        assert!(!shown.contains(s), "{s} shown");
    }
    // …yet apply gets them from the plan.
    let pw = match &p.users[0].account.password {
        Some(crate::context::Password::Plain(s)) => s.expose().to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pw, "pw-Secret-1");
    let gate = p.onegate.as_ref().unwrap();
    assert_eq!(gate.token.as_ref().unwrap().expose(), "tok-Secret-2");
    assert!(p.scripts[0].body.ends_with(b"echo sc-Secret-3\n"));
    assert!(p
        .env
        .iter()
        .any(|(k, v)| k == "PASSWORD" && v == "pw-Secret-1"));
}

#[test]
fn scripts_in_run_order_with_their_files() {
    let mut c = ctx("VMID='3'\nSTART_SCRIPT='echo 1'\nINIT_SCRIPTS='a.sh b.sh'\n");
    // Names the parser checked against the CD, contents read with it.
    c.scripts.init = vec!["a.sh".into(), "b.sh".into()];
    c.files = vec![
        ("a.sh".into(), b"echo a\n".to_vec()),
        ("b.sh".into(), b"echo b\n".to_vec()),
    ];
    let p = build(&c, &Facts::default());
    let jobs: Vec<(&str, &str)> = p.scripts.iter().map(|s| (s.kind, s.job.as_str())).collect();
    assert_eq!(
        jobs,
        [
            ("start_script", "start_script"),
            ("init_script", "a.sh"),
            ("init_script", "b.sh")
        ]
    );
    assert_eq!(&p.scripts[2].body[..], b"echo b\n");
}

#[test]
fn a_missing_zone_is_an_error_and_left_out() {
    let c = ctx("VMID='3'\nTIMEZONE='Mars/Olympus_Mons'\nSET_HOSTNAME='web'\n");
    let facts = Facts {
        timezone: crate::facts::Zone::Missing("no such zone".into()),
        ..Default::default()
    };
    let p = build(&c, &facts);
    assert_eq!(p.errors, ["TIMEZONE: no such zone"]);
    assert_eq!(p.system.timezone, None);
    assert_eq!(
        p.hostname.as_ref().unwrap().name,
        "web",
        "the rest is planned"
    );
}

#[test]
fn plan_shows_the_wait_online_decision_and_the_final_stage() {
    let mut managers = crate::facts::Managers {
        networkd: true,
        ..Default::default()
    };
    managers.wait_online.networkd = true;
    let facts = Facts {
        links: parse_links("02:00:0a:00:03:28=ens3\n").unwrap(),
        managers,
        ..Default::default()
    };
    let p = build(
        &ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n"),
        &facts,
    );
    let s = p.summary();
    assert!(
        s.contains("online    systemd-networkd-wait-online.service skipped: nothing to wait for (ens3 vmctx's)\n"),
        "{s}"
    );
    assert!(s.contains("  file     /run/vmctx/networkd-wait-online-skip   (networkd-wait-online: skipped (ens3 vmctx's))\n"), "{s}");
    assert!(
        s.contains("final     nothing to do: vmctx.service is not started\n"),
        "{s}"
    );
    let p = build(
        &ctx("ETH0_MAC='02:00:0a:00:03:28'\nSTART_SCRIPT='echo hi'\n"),
        &facts,
    );
    assert!(p.summary().contains("final     start script\n"));
    assert_eq!(json(&p)["final_stage"], serde_json::json!(["start script"]));
}
