use super::*;

const META: &str = r#"{
  "uuid": "3f2b9c1e-8d4a-4e5f-9a0b-1c2d3e4f5a6b",
  "name": "gpu notebook 1",
  "hostname": "gpu-nb-1.novalocal",
  "public_keys": {"alice": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@lab\n"},
  "keys": [
    {"name": "alice", "type": "ssh", "data": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@lab\n"},
    {"name": "bob", "type": "ssh", "data": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB bob@lab"},
    {"name": "win", "type": "x509", "data": "-----BEGIN CERTIFICATE-----"}
  ],
  "admin_pass": "s3cret-admin",
  "meta": {"role": "notebook"},
  "availability_zone": "nova",
  "launch_index": 0
}"#;

const NET: &str = r#"{
  "links": [
    {"id": "tap5f0e9c2a-11", "vif_id": "5f0e9c2a", "type": "ovs",
     "ethernet_mac_address": "FA:16:3E:4C:2D:7A", "mtu": 1450}
  ],
  "networks": [
    {"id": "network0", "type": "ipv4", "link": "tap5f0e9c2a-11", "network_id": "0c8f",
     "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
     "routes": [
       {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"},
       {"network": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254"}
     ],
     "services": [{"type": "dns", "address": "192.0.2.53"}]},
    {"id": "network1", "type": "ipv6", "link": "tap5f0e9c2a-11", "network_id": "0c90",
     "ip_address": "2001:db8::10", "netmask": "ffff:ffff:ffff:ffff::",
     "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]}
  ],
  "services": [{"type": "dns", "address": "192.0.2.53"}, {"type": "dns", "address": "192.0.2.54"}]
}"#;

fn md(meta: &str, net: Option<&str>) -> Metadata {
    Metadata {
        version: "openstack/latest".into(),
        meta_data: meta.as_bytes().to_vec(),
        network_data: net.map(|n| n.as_bytes().to_vec()),
        user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
        network_eni: None,
        notes: Vec::new(),
    }
}

fn ctx(meta: &str, net: &str) -> Result<Context, String> {
    to_context(
        &md(meta, Some(net)),
        &"configdrive:/dev/sr0".parse().unwrap(),
    )
}

#[test]
fn a_gpu_notebook_vm() {
    let c = ctx(META, NET).unwrap();
    assert_eq!(c.instance_id, "3f2b9c1e-8d4a-4e5f-9a0b-1c2d3e4f5a6b");
    let h = c.hostname.unwrap();
    assert_eq!(
        (h.name.as_str(), h.domain.as_deref()),
        ("gpu-nb-1", Some("novalocal"))
    );
    assert_eq!(
        c.ssh_keys,
        [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@lab",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB bob@lab"
        ]
    );
    let u = c.user.unwrap();
    assert_eq!(u.name, "root");
    assert!(u.password.is_none(), "admin_pass is opt-in");
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("admin_pass is not used")));
    assert_eq!(c.scripts.user_data.unwrap().kind, "#!/bin/sh");
    let nic = &c.network.nics[0];
    assert_eq!(nic.mac.to_string(), "fa:16:3e:4c:2d:7a");
    assert_eq!(
        (nic.method, nic.ip6_method),
        (Method::Static, Ip6Method::Static)
    );
    let addrs: Vec<String> = nic.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["192.0.2.10/24", "2001:db8::10/64"]);
    assert_eq!(nic.gateway, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(nic.gateway6, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(nic.routes.len(), 1);
    assert_eq!(nic.routes[0].to.to_string(), "198.51.100.0/24");
    assert_eq!(nic.mtu, Some(1450));
    let dns: Vec<String> = c.network.dns.iter().map(ToString::to_string).collect();
    assert_eq!(dns, ["192.0.2.53", "192.0.2.54"]);
    assert_eq!(nic.dns.len(), 2);
    assert!(c.errors.is_empty());
}

#[test]
fn opt_ins_from_meta() {
    let meta = META.replace(
        r#""meta": {"role": "notebook"}"#,
        r#""meta": {"vmctx_user": "jovyan", "vmctx_admin_pass": "yes"}"#,
    );
    let c = ctx(&meta, NET).unwrap();
    let u = c.user.unwrap();
    assert_eq!(u.name, "jovyan");
    assert!(u.sudo);
    assert!(matches!(&u.password, Some(Password::Plain(p)) if p.expose() == "s3cret-admin"));
    // The password never reaches the serialized context.
    let shown = serde_json::to_string(&ctx(&meta, NET).unwrap()).unwrap();
    assert!(!shown.contains("s3cret-admin"));
    let bad = META.replace(r#""role": "notebook""#, r#""vmctx_user": "../root""#);
    let e = ctx(&bad, NET).unwrap_err();
    assert!(e.contains("meta.vmctx_user"), "{e}");
}

#[test]
fn dhcp_slaac_and_unknown_types() {
    let net = r#"{"links": [
        {"id": "a", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": null},
        {"id": "b", "type": "cascading", "ethernet_mac_address": "fa-16-3e-00-00-02"}],
      "networks": [
        {"id": "n0", "type": "ipv4_dhcp", "link": "a", "network_id": "x"},
        {"id": "n1", "type": "ipv6_slaac", "link": "a", "network_id": "y",
         "ip_address": "2001:db8::5", "netmask": "ffff:ffff:ffff:ffff::"},
        {"id": "n2", "type": "ipv6_dhcpv6-stateful", "link": "b", "network_id": "z"},
        {"id": "n3", "type": "ipx", "link": "b", "network_id": "w"}]}"#;
    let c = ctx(META, net).unwrap();
    let n = &c.network.nics;
    assert_eq!(
        (n[0].method, n[0].ip6_method),
        (Method::Dhcp, Ip6Method::Auto)
    );
    assert_eq!(n[0].mtu, None, "null MTU is left to DHCP");
    assert!(n[0].addresses.is_empty());
    // IPv6 only: configured (IPv4 left off), not dropped from the plan.
    assert_eq!(
        (n[1].method, n[1].ip6_method),
        (Method::Static, Ip6Method::Dhcp)
    );
    assert_eq!(n[1].mac.to_string(), "fa:16:3e:00:00:02");
    assert!(c.warnings.iter().any(|w| w.contains("\"ipx\"")));
}

#[test]
fn bonds_and_vlans_feed_the_network() {
    let net = r#"{"links": [
        {"id": "p0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01"},
        {"id": "p1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:02"},
        {"id": "b0", "type": "bond", "bond_links": ["p0", "p1"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4", "mtu": 9000,
         "ethernet_mac_address": "fa:16:3e:00:00:01"},
        {"id": "v0", "type": "vlan", "vlan_link": "b0", "vlan_id": 42,
         "vlan_mac_address": "fa:16:3e:00:00:09"},
        {"id": "v1", "type": "vlan", "name": "p0.7", "vlan_link": "p0", "vlan_id": 7}],
      "networks": [
        {"id": "n0", "type": "ipv4", "link": "v0", "network_id": "x",
         "ip_address": "10.42.0.5", "netmask": "255.255.255.0", "gateway": "10.42.0.1"},
        {"id": "n1", "type": "ipv4", "link": "b0", "network_id": "y",
         "ip_address": "10.43.0.5", "netmask": "255.255.255.0"}],
      "services": [{"type": "dns", "address": "10.42.0.53"}]}"#;
    let c = ctx(META, net).unwrap();
    let n = &c.network;
    assert_eq!(n.nics.len(), 2);
    assert!(n.nics.iter().all(|x| x.addresses.is_empty()));
    let b = &n.bonds[0];
    assert_eq!(b.name, "bond0");
    let members: Vec<String> = b.members.iter().map(|m| m.to_string()).collect();
    assert_eq!(members, ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02"]);
    assert_eq!(
        (b.mode.as_deref(), b.mii_monitor_interval),
        (Some("802.3ad"), Some(100))
    );
    assert_eq!(b.transmit_hash_policy.as_deref(), Some("layer3+4"));
    assert_eq!(b.config.addresses[0].to_string(), "10.43.0.5/24");
    assert_eq!(b.config.mac.to_string(), "fa:16:3e:00:00:01");
    assert_eq!(b.config.mtu, Some(9000));
    let v = &n.vlans[0];
    assert_eq!(
        (v.name.as_str(), v.id, v.link.as_str()),
        ("vlan42", 42, "bond0")
    );
    assert_eq!(v.config.mac.to_string(), "fa:16:3e:00:00:09");
    assert_eq!(v.config.addresses[0].to_string(), "10.42.0.5/24");
    assert_eq!(v.config.gateway.unwrap().to_string(), "10.42.0.1");
    assert_eq!(v.config.dns[0].to_string(), "10.42.0.53");
    let v1 = &n.vlans[1];
    assert_eq!(
        (v1.name.as_str(), v1.link_mac),
        ("p0.7", Some(n.nics[0].mac))
    );
    assert!(
        !c.warnings.iter().any(|w| w.contains("links[")),
        "{:?}",
        c.warnings
    );
    // A VLAN on a link that is not a NIC or bond before it is an error naming the field.
    let bad = r#"{"links": [{"id": "v0", "type": "vlan", "vlan_link": "zz", "vlan_id": 5}]}"#;
    let e = ctx(META, bad).unwrap_err();
    assert!(e.contains("links[0].vlan_link"), "{e}");
}

#[test]
fn bad_input_names_file_and_field() {
    let cases = [
        (
            r#"{"links": [], "networks": [{"id": "n", "type": "ipv4", "link": "tap-gone",
               "network_id": "x", "ip_address": "10.0.0.2"}]}"#,
            "openstack/latest/network_data.json: field networks[0].link: \"tap-gone\" names no entry of links",
        ),
        (
            r#"{"links": [{"id": "a", "type": "ovs", "ethernet_mac_address": "zz"}]}"#,
            "openstack/latest/network_data.json: field links[0].ethernet_mac_address:",
        ),
        (
            r#"{"links": [{"id": "a", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
               "networks": [{"id": "n", "type": "ipv4", "link": "a", "network_id": "x",
               "ip_address": "10.0.0.300", "netmask": "255.255.255.0"}]}"#,
            "field networks[0].ip_address: \"10.0.0.300\" is not an address",
        ),
        (
            r#"{"links": [{"id": "a", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
               "networks": [{"id": "n", "type": "ipv4", "link": "a", "network_id": "x",
               "ip_address": "10.0.0.3", "netmask": "255.0.255.0"}]}"#,
            "not a contiguous netmask",
        ),
        (r#"{"links": "#, "openstack/latest/network_data.json: field links: EOF"),
    ];
    for (net, want) in cases {
        let e = ctx(META, net).unwrap_err();
        assert!(e.contains(want), "{e}\nwanted {want}");
    }
    let e = ctx(r#"{"hostname": "x"}"#, NET).unwrap_err();
    assert_eq!(
        e,
        "openstack/latest/meta_data.json: field uuid: \"\" is not an instance id"
    );
    let e = ctx(r#"{"uuid": "../../etc"}"#, NET).unwrap_err();
    assert!(e.contains("not an instance id"), "{e}");
}

#[test]
fn netmask_forms() {
    let v6 = |ip: &str, m: Option<&str>| address(ip, m, true).map(|c| c.to_string());
    assert_eq!(
        v6("2001:db8::1", Some("ffff:ffff:ffff:ffff::")).unwrap(),
        "2001:db8::1/64"
    );
    assert_eq!(v6("2001:db8::1", Some("64")).unwrap(), "2001:db8::1/64");
    assert_eq!(v6("2001:db8::1/56", None).unwrap(), "2001:db8::1/56");
    assert_eq!(v6("2001:db8::1", None).unwrap(), "2001:db8::1/64");
    assert!(v6("2001:db8::1", Some("ffff::ffff")).is_err());
    assert!(v6("10.0.0.1", Some("64")).is_err());
    let v4 = |ip: &str, m: Option<&str>| address(ip, m, false).map(|c| c.to_string());
    assert_eq!(v4("10.0.0.1", None).unwrap(), "10.0.0.1/24");
    assert_eq!(v4("10.0.0.1/16", None).unwrap(), "10.0.0.1/16");
    assert_eq!(
        v4("10.0.0.1", Some("255.255.254.0")).unwrap(),
        "10.0.0.1/23"
    );
}

#[test]
fn no_network_data_leaves_the_network_alone() {
    let c = to_context(&md(META, None), &"configdrive:x".parse().unwrap()).unwrap();
    assert!(!c.network.configure);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("network_data.json: none")));
}

/// The gaps a held-out set of real drives found (issue 18, part 4): each reproduced here.
mod held_out {
    use super::*;

    const META1: &str = r#"{"uuid": "u-1"}"#;

    #[test]
    fn an_ipv6_only_nic_is_configured() {
        let net = r#"{"links": [{"id": "t0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01"},
                                {"id": "t1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:02"}],
          "networks": [{"id": "n0", "type": "ipv6", "link": "t0", "ip_address": "2001:db8::5",
                        "netmask": "ffff:ffff:ffff:ffff::"},
                       {"id": "n1", "type": "ipv6_slaac", "link": "t1"}]}"#;
        let c = ctx(META1, net).unwrap();
        for nic in &c.network.nics {
            assert_ne!(
                nic.method,
                Method::Skip,
                "{nic:?} would be dropped from the plan"
            );
        }
        assert_eq!(c.network.nics[0].addresses[0].to_string(), "2001:db8::5/64");
        assert_eq!(c.network.nics[1].ip6_method, Ip6Method::Auto);
    }

    #[test]
    fn a_null_link_type_is_a_nic() {
        let net = r#"{"links": [{"id": "t0", "type": null, "ethernet_mac_address": "fa:16:3e:00:00:01"}],
          "networks": [{"id": "n0", "type": "ipv4_dhcp", "link": "t0"}]}"#;
        let c = ctx(META1, net).unwrap();
        assert_eq!(c.network.nics[0].method, Method::Dhcp);
    }

    #[test]
    fn unknown_link_types_are_skipped_with_a_warning() {
        let net = r#"{"links": [{"id": "t0", "type": "quantum-flux"},
                                {"id": "t1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:02"}],
          "networks": [{"id": "n0", "type": "ipv4_dhcp", "link": "t0"},
                       {"id": "n1", "type": "ipv4_dhcp", "link": "t1"}]}"#;
        let c = ctx(META1, net).unwrap();
        assert_eq!(c.network.nics.len(), 1);
        assert!(
            c.warnings.iter().any(|w| w.contains("quantum-flux")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn x509_keys_never_become_ssh_keys() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCARygAwIBAgIJAJ1XW0mQ2qKdMA0GCSqGSIb3DQEBBQUAMBAxDjAMBgNV\n-----END CERTIFICATE-----\n";
        let meta = serde_json::json!({
            "uuid": "u-1",
            "public_keys": {"winkey": pem, "alice": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@lab"},
            "keys": [{"name": "winkey", "type": "x509", "data": pem},
                     {"name": "alice", "type": "ssh", "data": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@lab"}]
        })
        .to_string();
        let c = to_context(&md(&meta, None), &"configdrive:x".parse().unwrap()).unwrap();
        assert_eq!(
            c.ssh_keys,
            ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@lab"]
        );
        assert!(
            !c.warnings.iter().any(|w| w.contains("winkey")),
            "an x509 key pair is not a broken SSH key: {:?}",
            c.warnings
        );
    }

    #[test]
    fn proxmox_configdrive2_eni() {
        let drive = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../vm-fixtures/configdrive/proxmox-web01"
        );
        let m = crate::source::openstack::read_drive(std::path::Path::new(drive)).unwrap();
        let c = to_context(&m, &"configdrive:x".parse().unwrap()).unwrap();
        assert_eq!(c.instance_id.len(), 40);
        let n = &c.network;
        assert!(n.nics.is_empty());
        let e0 = &n.by_order[0];
        assert_eq!(
            (e0.index, e0.method, e0.ip6_method),
            (0, Method::Static, Ip6Method::Static)
        );
        let addrs: Vec<String> = e0.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.10/24", "2001:db8::10/64"]);
        assert_eq!(e0.gateway6.unwrap().to_string(), "2001:db8::1");
        let e1 = &n.by_order[1];
        assert_eq!(
            (e1.index, e1.method, e1.ip6_method),
            (1, Method::Dhcp, Ip6Method::Auto)
        );
        assert_eq!(n.dns.len(), 2);
        assert_eq!(n.search, ["lab.example"]);
        let live = [
            "bc:24:11:5a:0e:01".parse().unwrap(),
            "bc:24:11:5a:0e:02".parse().unwrap(),
        ];
        let mut w = Vec::new();
        let resolved = n.with_nic_order(&live, &mut w);
        assert_eq!(resolved.nics[1].mac, live[1]);
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn large_vendor_data_never_makes_the_drive_unreadable() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path().join("openstack/latest");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("meta_data.json"), META1).unwrap();
        std::fs::write(v.join("vendor_data.json"), vec![b' '; (1 << 20) + 10]).unwrap();
        let m = crate::source::openstack::read_drive(t.path()).unwrap();
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("vendor_data.json: not read")),
            "{:?}",
            m.notes
        );
        // An oversized file that is used is an error naming its path once.
        std::fs::write(v.join("network_data.json"), vec![b' '; (1 << 20) + 10]).unwrap();
        let e = crate::source::openstack::read_drive(t.path())
            .unwrap_err()
            .to_string();
        assert_eq!(e.matches("network_data.json").count(), 1, "{e}");
        assert!(e.ends_with("bytes, over the 1048576-byte limit"), "{e}");
    }
}
