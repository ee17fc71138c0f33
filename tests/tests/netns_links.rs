//! Facts over real rtnetlink: in a network namespace of its own, with a veth whose MAC is a
//! context NIC's, the plan keys the NIC by the live link's name (found by MAC, not by name).

use std::process::Command;
use vmctx_tests::*;

/// A namespace with a veth pair; removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("vmctx-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        Netns(name)
    }
    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.0.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
}

#[test]
fn plan_finds_links_by_mac_in_a_namespace() {
    if !need("root (network namespaces)", is_root()) || !need("iproute2", have_tool("ip")) {
        return;
    }
    let ns = Netns::new("links");
    // Names unlike eth0/eth1 and in the opposite order of the context's NICs.
    ns.ip(&[
        "link",
        "add",
        "ctx-b",
        "address",
        "02:00:0a:00:03:05",
        "type",
        "veth",
        "peer",
        "name",
        "ctx-a",
        "address",
        "02:00:0a:00:01:0a",
    ]);
    ns.ip(&[
        "link",
        "add",
        "other0",
        "address",
        "52:54:00:12:34:56",
        "type",
        "veth",
        "peer",
        "name",
        "other1",
    ]);
    let src = format!("dir:{}", fixture("hol02-vpn").display());
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(vmctx_bin())
        .args(["plan", "--json", "--source", &src])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let eth = v["network"]["ethernets"].as_object().unwrap();
    let names: Vec<&String> = eth.keys().collect();
    assert_eq!(names, ["ctx-a", "ctx-b"], "{v}");
    assert_eq!(eth["ctx-a"]["addresses"][0], "10.0.1.10/24");
    assert_eq!(eth["ctx-b"]["addresses"][0], "10.0.3.5/24");
    let warnings = v["warnings"].to_string();
    assert!(!warnings.contains("no link"), "{warnings}");
}
