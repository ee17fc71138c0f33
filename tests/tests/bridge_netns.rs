//! A NoCloud netplan v2 seed with a bridge, applied in a network namespace over real
//! rtnetlink: the bridge is created with both veth members, its MAC, MTU, addresses and
//! routes; DNS is written under `--root`; a second apply changes nothing; a changed seed takes
//! back exactly what no longer applies (and nothing vmctx did not add); a seed without the
//! bridge deletes it. (This kernel has no bonding or 8021q module: bonds and VLANs are
//! covered by the plan and request tests of the agent.)

use serde_json::Value;
use vmctx_tests::*;

fn seed(t: &tempfile::TempDir, network_config: &str) -> String {
    let from = workspace().join("vm-fixtures/nocloud/netplan-bridge");
    std::fs::copy(from.join("meta-data"), t.path().join("meta-data")).unwrap();
    std::fs::write(t.path().join("network-config"), network_config).unwrap();
    format!("nocloud:{}", t.path().display())
}

fn apply(g: &Guest, src: &str) -> Value {
    let o = g.vmctx(&["apply", "--json", "--stage", "local", "--source", src]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    json(&o)
}

fn changed(v: &Value) -> u64 {
    v["changed"].as_u64().unwrap()
}

fn link(g: &Guest, name: &str) -> Option<Value> {
    let out = g.ip(&["-j", "-d", "link", "show"]);
    let all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.into_iter().find(|l| l["ifname"] == name)
}

fn members(g: &Guest, master: &str) -> Vec<String> {
    let out = g.ip(&["-j", "link", "show", "master", master]);
    let all: Vec<Value> = serde_json::from_str(out.trim()).unwrap_or_default();
    let mut names: Vec<String> = all
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

const SMALLER: &str = r#"network:
  version: 2
  ethernets:
    port0:
      match:
        macaddress: "52:54:00:b1:00:01"
  bridges:
    br0:
      interfaces: [port0]
      macaddress: "52:54:00:b1:00:10"
      mtu: 1400
      addresses: [192.0.2.20/24]
      routes:
        - to: default
          via: 192.0.2.1
      nameservers:
        addresses: [192.0.2.53]
"#;

const NO_BRIDGE: &str = r#"network:
  version: 2
  ethernets:
    port0:
      match:
        macaddress: "52:54:00:b1:00:01"
      addresses: [192.0.2.30/24]
"#;

#[test]
fn bridge_over_two_veths_then_a_changed_seed() {
    let Some(g) = Guest::new("bridge") else {
        return;
    };
    g.veth(
        ("port0", "52:54:00:b1:00:01"),
        ("peer0", "02:00:00:00:00:a0"),
    );
    g.veth(
        ("port1", "52:54:00:b1:00:02"),
        ("peer1", "02:00:00:00:00:a1"),
    );
    for p in ["peer0", "peer1"] {
        g.ip(&["link", "set", p, "up"]);
    }
    // A bridge vmctx did not make and the plan does not name: never touched.
    g.ip(&["link", "add", "brx", "type", "bridge"]);
    let t = tempfile::tempdir().unwrap();
    let full = std::fs::read_to_string(
        workspace().join("vm-fixtures/nocloud/netplan-bridge/network-config"),
    )
    .unwrap();
    let src = seed(&t, &full);

    let plan = g.vmctx(&["plan", "--json", "--source", &src]);
    let plan = json(&plan);
    assert_eq!(
        plan["network"]["bridges"]["br0"]["interfaces"],
        serde_json::json!(["port0", "port1"])
    );

    // A dry run says what it would make and makes nothing.
    let o = g.vmctx(&["apply", "--dry-run", "--stage", "local", "--source", &src]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("br0: created (bridge)") && out.contains("port1 master br0"),
        "{out}"
    );
    assert!(link(&g, "br0").is_none(), "a dry run made br0");

    let v = apply(&g, &src);
    assert!(changed(&v) > 0, "{v}");
    let br = link(&g, "br0").expect("br0 created");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["address"], "52:54:00:b1:00:10");
    assert_eq!(br["mtu"], 1400);
    assert!(
        br["flags"].as_array().unwrap().contains(&"UP".into()),
        "{br}"
    );
    assert_eq!(members(&g, "br0"), ["port0", "port1"]);
    let addrs = g.ip(&["addr", "show", "dev", "br0"]);
    assert!(addrs.contains("inet 192.0.2.20/24"), "{addrs}");
    assert!(addrs.contains("inet6 2001:db8:b1::20/64"), "{addrs}");
    let routes = g.ip(&["-4", "route", "show", "dev", "br0"]);
    assert!(routes.contains("default via 192.0.2.1"), "{routes}");
    assert!(
        routes.contains("198.51.100.0/24 via 192.0.2.254"),
        "{routes}"
    );
    let resolv = g.file("/etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 192.0.2.53") && resolv.contains("br.lab.example"),
        "{resolv}"
    );
    // The members carry nothing of their own.
    assert!(!g
        .ip(&["-4", "addr", "show", "dev", "port0"])
        .contains("inet "));

    let again = apply(&g, &src);
    assert_eq!(changed(&again), 0, "second apply: {again}");

    // Someone else's address on the bridge stays; vmctx takes back only its own.
    g.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    let v = apply(&g, &seed(&t, SMALLER));
    assert!(changed(&v) > 0, "{v}");
    assert_eq!(members(&g, "br0"), ["port0"], "port1 released");
    let addrs = g.ip(&["addr", "show", "dev", "br0"]);
    assert!(addrs.contains("inet 192.0.2.20/24") && addrs.contains("inet 10.99.0.1/24"));
    assert!(!addrs.contains("2001:db8:b1::20"), "{addrs}");
    let routes = g.ip(&["-4", "route", "show", "dev", "br0"]);
    assert!(routes.contains("default via 192.0.2.1"), "{routes}");
    assert!(!routes.contains("198.51.100.0/24"), "{routes}");
    let again = apply(&g, &seed(&t, SMALLER));
    assert_eq!(changed(&again), 0, "second apply: {again}");

    // No bridge any more: vmctx deletes the one it made, its ports stay (and port0 is a NIC
    // of the seed again); brx is as it was.
    apply(&g, &seed(&t, NO_BRIDGE));
    assert!(link(&g, "br0").is_none(), "br0 deleted");
    assert!(link(&g, "port1").is_some() && link(&g, "brx").is_some());
    assert!(g
        .ip(&["-4", "addr", "show", "dev", "port0"])
        .contains("inet 192.0.2.30/24"));
    let state = g.file("/var/lib/vmctx/devices.json");
    assert!(!state.contains("br0"), "{state}");
    let again = apply(&g, &seed(&t, NO_BRIDGE));
    assert_eq!(changed(&again), 0, "second apply: {again}");
}
