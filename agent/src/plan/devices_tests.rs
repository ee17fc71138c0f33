use super::super::build;
use crate::context::Context;
use crate::facts::{parse_links, Facts};
use crate::source::{nocloud, to_context_checked, Cloud, Raw};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../vm-fixtures/nocloud");

pub(crate) fn seed_ctx(name: &str) -> Context {
    let path = std::path::Path::new(FIXTURES).join(name);
    to_context_checked(Raw {
        origin: crate::context::Origin::NoCloud(path.clone()),
        parsed: Default::default(),
        files: Vec::new(),
        warnings: Vec::new(),
        cloud: Some(Cloud::NoCloud(nocloud::read_seed(&path).unwrap())),
    })
    .unwrap()
}

pub(crate) fn facts(links: &str) -> Facts {
    Facts {
        links: parse_links(links).unwrap(),
        managers: crate::facts::Managers {
            network_manager: true,
            networkd: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(crate) const LINKS: &str =
    "52:54:00:b0:00:01=ens3\n52:54:00:b0:00:02=ens4\n52:54:00:b0:00:03=ens5\n";

#[test]
fn bond_and_vlan_in_netplan_terms() {
    let p = build(&seed_ctx("netplan-bond-vlan"), &facts(LINKS));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let j = serde_json::to_value(&p.network).unwrap();
    assert_eq!(
        j["bonds"]["bond0"],
        serde_json::json!({
            "interfaces": ["ens3", "ens4"],
            "parameters": {"mode": "802.3ad", "mii-monitor-interval": 100,
                           "transmit-hash-policy": "layer3+4"},
            "macaddress": "52:54:00:b0:00:01",
            "addresses": ["198.51.100.7/24"],
            "nameservers": {"addresses": ["203.0.113.53"], "search": ["rack3.lab.example"]},
            "mtu": 9000, "dhcp4": false, "dhcp6": false})
    );
    let v = &j["vlans"]["bond0.42"];
    assert_eq!((&v["id"], &v["link"]), (&42.into(), &"bond0".into()));
    assert_eq!(
        v["addresses"],
        serde_json::json!(["203.0.113.7/24", "2001:db8:42::7/64"])
    );
    let routes: Vec<String> = p.network.vlans["bond0.42"]
        .l3
        .routes
        .iter()
        .map(|r| format!("{} {:?}", r.to, r.via))
        .collect();
    assert!(
        routes.contains(&"0.0.0.0/0 Some(203.0.113.1)".to_string()),
        "{routes:?}"
    );
    assert!(routes.contains(&"192.0.2.0/24 Some(203.0.113.254)".to_string()));
    assert!(v.get("match").is_none());
    // The members keep no addresses and are no ethernets of their own; the DHCP NIC is.
    let eth: Vec<&String> = p.network.ethernets.keys().collect();
    assert_eq!(eth, ["ens5"]);
    // The image's managers keep off the members and the devices.
    let nm = p
        .network_files
        .iter()
        .find(|f| f.path.contains("unmanaged"))
        .unwrap();
    for want in [
        "mac:52:54:00:b0:00:01",
        "mac:52:54:00:b0:00:02",
        "interface-name:bond0",
        "interface-name:bond0.42",
    ] {
        assert!(nm.content.contains(want), "{want}: {}", nm.content);
    }
    let nd = p
        .network_files
        .iter()
        .find(|f| f.path.ends_with("05-vmctx-bond0.42.network"))
        .unwrap();
    assert!(nd.content.contains("Name=bond0.42") && nd.content.contains("Unmanaged=yes"));
    assert!(p
        .network_files
        .iter()
        .any(|f| f.path.ends_with("05-vmctx-525400b00002.network")));
    let s = p.summary();
    assert!(s.contains("bond0    bond 802.3ad of ens3, ens4"), "{s}");
    assert!(s.contains("bond0.42 vlan 42 on bond0"), "{s}");
    assert!(
        !p.warnings.iter().any(|w| w.contains("not configured")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn missing_members_and_bad_parameters() {
    // ens4 is absent: the bond has one member, with a warning.
    let p = build(
        &seed_ctx("netplan-bond-vlan"),
        &facts("52:54:00:b0:00:01=ens3\n"),
    );
    assert_eq!(
        serde_json::to_value(&p.network.bonds["bond0"].kind).unwrap()["interfaces"],
        serde_json::json!(["ens3"])
    );
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("52:54:00:b0:00:02") && w.contains("bond0")));
    // An unknown mode drops the bond with an error naming the key, never the value; the
    // VLAN on it goes with it (its link is not on this machine).
    let mut ctx = seed_ctx("netplan-bond-vlan");
    ctx.network.bonds[0].mode = Some("secret-mode".into());
    ctx.network.vlans[0].name = "bond0.42".into();
    let p = build(&ctx, &facts(LINKS));
    assert!(p.network.bonds.is_empty() && p.network.vlans.is_empty());
    assert_eq!(
        p.errors,
        ["bonds.bond0.parameters.mode: not a bond mode; bond left out"]
    );
    // A name that is no interface name (a path, too long) is an error, never a file name.
    let mut ctx = seed_ctx("netplan-bond-vlan");
    ctx.network.vlans[0].name = "../../etc/x".into();
    let p = build(&ctx, &facts(LINKS));
    assert!(p.network.vlans.is_empty());
    assert!(p.errors[0].starts_with("vlans: "), "{:?}", p.errors);
    assert!(!p.network_files.iter().any(|f| f.path.contains("..")));
}
