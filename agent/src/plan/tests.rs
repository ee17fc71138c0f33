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
fn plan_shows_the_wait_online_decision_and_the_final_stage() {
    let mut managers = crate::facts::Managers {
        networkd: true,
        ..Default::default()
    };
    managers.wait_online.networkd = true;
    let facts = Facts {
        links: parse_links("02:00:0a:00:03:28=ens3\n").unwrap(),
        managers,
        selinux: Default::default(),
    };
    let p = build(
        &ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n"),
        &facts,
    );
    let s = p.summary();
    assert!(
        s.contains("online    systemd-networkd-wait-online.service waits for no link (DHCP), not for ens3 (vmctx's)\n"),
        "{s}"
    );
    assert!(s.contains("  file     /run/vmctx/networkd-wait-online   (networkd-wait-online: --interface=ens3:no-carrier)\n"), "{s}");
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
