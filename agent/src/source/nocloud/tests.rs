use super::*;
use crate::context::{Ip6Method, Method, Password};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../vm-fixtures/nocloud");

fn load(name: &str) -> Context {
    let path = std::path::Path::new(FIXTURES).join(name);
    let seed = read_seed(&path).unwrap();
    let raw = crate::source::Raw {
        origin: crate::context::Origin::NoCloud(path.to_path_buf()),
        parsed: Default::default(),
        files: Vec::new(),
        warnings: Vec::new(),
        cloud: Some(crate::source::Cloud::NoCloud(seed)),
    };
    crate::source::to_context_checked(raw).unwrap()
}

fn seed(meta: &str, net: Option<&str>, user: Option<&str>, vendor: Option<&str>) -> Seed {
    Seed {
        meta_data: meta.as_bytes().to_vec(),
        network_config: net.map(|n| n.as_bytes().to_vec()),
        user_data: user.map(|u| u.as_bytes().to_vec()),
        vendor_data: vendor.map(|v| v.as_bytes().to_vec()),
        notes: Vec::new(),
    }
}

#[test]
fn proxmox_seed_as_proxmox_writes_it() {
    let c = load("proxmox-web01");
    assert_eq!(c.instance_id.len(), 40, "a SHA1: {}", c.instance_id);
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let h = c.hostname.as_ref().unwrap();
    assert_eq!(
        (h.name.as_str(), h.domain.as_deref()),
        ("web01", Some("lab.example"))
    );
    let u = c.user.as_ref().unwrap();
    assert_eq!((u.name.as_str(), u.sudo), ("debian", true));
    assert!(matches!(&u.password, Some(Password::Crypted(p)) if p.expose().starts_with("$5$")));
    assert_eq!(c.ssh_keys.len(), 2);
    let cc = c.cloud_config.as_ref().unwrap();
    assert!(cc.package_upgrade);
    // Proxmox's keys are honoured, not warned about.
    assert!(
        !c.warnings.iter().any(|w| w.contains("not supported")),
        "{:?}",
        c.warnings
    );
    let n = &c.network;
    assert_eq!(n.nics.len(), 2);
    let e0 = &n.nics[0];
    assert_eq!(e0.mac.to_string(), "bc:24:11:5a:0e:01");
    assert_eq!(
        (e0.method, e0.ip6_method),
        (Method::Static, Ip6Method::Static)
    );
    let addrs: Vec<String> = e0.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["192.0.2.10/24", "2001:db8::10/64"]);
    assert_eq!(e0.gateway.unwrap().to_string(), "192.0.2.1");
    assert_eq!(e0.gateway6.unwrap().to_string(), "2001:db8::1");
    assert_eq!(e0.dns.len(), 2);
    assert_eq!(e0.search, ["lab.example"]);
    let e1 = &n.nics[1];
    assert_eq!((e1.method, e1.ip6_method), (Method::Dhcp, Ip6Method::Auto));
    assert_eq!(n.dns.len(), 2);
}

#[test]
fn netplan_bond_with_a_vlan() {
    let c = load("netplan-bond-vlan");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(c.instance_id, "iid-storage-07");
    assert_eq!(c.hostname.as_ref().unwrap().name, "storage-07");
    let n = &c.network;
    let b = &n.bonds[0];
    assert_eq!(b.name, "bond0");
    assert_eq!(b.interfaces, ["nic0", "nic1"]);
    let members: Vec<String> = b.members.iter().map(|m| m.to_string()).collect();
    assert_eq!(members, ["52:54:00:b0:00:01", "52:54:00:b0:00:02"]);
    assert_eq!(b.mode.as_deref(), Some("802.3ad"));
    assert_eq!(b.mii_monitor_interval, Some(100));
    assert_eq!(b.transmit_hash_policy.as_deref(), Some("layer3+4"));
    assert_eq!(b.config.mtu, Some(9000));
    assert_eq!(b.config.addresses[0].to_string(), "198.51.100.7/24");
    let v = &n.vlans[0];
    assert_eq!(
        (v.name.as_str(), v.id, v.link.as_str()),
        ("bond0.42", 42, "bond0")
    );
    assert_eq!(v.config.addresses.len(), 2);
    assert_eq!(v.config.gateway.unwrap().to_string(), "203.0.113.1");
    assert_eq!(v.config.routes[0].to.to_string(), "192.0.2.0/24");
    assert_eq!(v.config.dns[0].to_string(), "203.0.113.53");
    // The members carry nothing; the management NIC is DHCP.
    let mgmt = n.nics.iter().find(|x| x.method == Method::Dhcp).unwrap();
    assert_eq!(mgmt.mac.to_string(), "52:54:00:b0:00:03");
    assert_eq!(
        n.nics.iter().filter(|x| x.method == Method::Skip).count(),
        2
    );
    // Bonds and VLANs are configured now: no warning says otherwise.
    assert!(
        !c.warnings.iter().any(|w| w.contains("bond0")),
        "{:?}",
        c.warnings
    );
    // vendor-data first, user-data after it.
    assert_eq!(c.ssh_keys.len(), 3, "{:?}", c.ssh_keys);
    assert!(c.ssh_keys[1].contains("vendor@lab"), "{:?}", c.ssh_keys);
    assert!(c.ssh_keys[2].contains("ops2@lab"), "{:?}", c.ssh_keys);
    let cc = c.cloud_config.as_ref().unwrap();
    assert!(cc.runcmd[0].contains("vendor-was-here"), "{:?}", cc.runcmd);
    assert!(cc.runcmd[1].contains("storage-07-ready"), "{:?}", cc.runcmd);
}

#[test]
fn user_data_wins_over_vendor_data() {
    let s = seed(
        "instance-id: i-1\nlocal-hostname: meta\n",
        None,
        Some("#cloud-config\nhostname: user\n"),
        Some("#cloud-config\nhostname: vendor\n"),
    );
    let c = to_context(&s, &nc()).unwrap();
    assert_eq!(c.hostname.unwrap().name, "user");
    let s = seed(
        "instance-id: i-1\nlocal-hostname: meta\n",
        None,
        None,
        Some("#cloud-config\nhostname: vendor\n"),
    );
    assert_eq!(
        to_context(&s, &nc()).unwrap().hostname.unwrap().name,
        "vendor"
    );
}

#[test]
fn meta_data_forms() {
    const K: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyKeyKeyKey";
    for keys in [
        format!("public-keys: \"{K} a\"\n"),
        format!("public-keys:\n  - \"{K} a\"\n"),
        format!("public-keys:\n  alice: \"{K} a\"\n"),
        format!("public-keys:\n  0:\n    openssh-key: \"{K} a\"\n"),
    ] {
        let s = seed(&format!("instance-id: i-9\n{keys}"), None, None, None);
        let c = to_context(&s, &nc()).unwrap();
        assert_eq!(c.ssh_keys, [format!("{K} a")], "{keys}");
    }
    // JSON is YAML too.
    let s = seed(
        r#"{"instance-id": "i-2", "hostname": "h.example"}"#,
        None,
        None,
        None,
    );
    let c = to_context(&s, &nc()).unwrap();
    assert_eq!(c.instance_id, "i-2");
    assert_eq!(c.hostname.unwrap().name, "h");
    let e = to_context(&seed("local-hostname: x\n", None, None, None), &nc()).unwrap_err();
    assert_eq!(e, "meta-data: instance-id: missing");
    let e = to_context(&seed("instance-id: ../x\n", None, None, None), &nc()).unwrap_err();
    assert!(
        e.starts_with("meta-data: instance-id: not an instance id"),
        "{e}"
    );
}

#[test]
fn malformed_files_name_the_file_and_line() {
    let bad = "a: [1, 2\nb: c\n";
    let e = to_context(&seed(bad, None, None, None), &nc()).unwrap_err();
    assert!(
        e.starts_with("meta-data: not valid YAML:") && e.contains("line"),
        "{e}"
    );
    let e = to_context(&seed("instance-id: i\n", Some(bad), None, None), &nc()).unwrap_err();
    assert!(
        e.starts_with("network-config: not valid YAML:") && e.contains("line"),
        "{e}"
    );
    // Malformed user-data or vendor-data leaves the whole seed unreadable, like the others.
    let doc = format!("#cloud-config\n{bad}");
    let e = to_context(&seed("instance-id: i\n", None, Some(&doc), None), &nc()).unwrap_err();
    assert!(e.starts_with("user-data: ") && e.contains("line"), "{e}");
    let e = to_context(&seed("instance-id: i\n", None, None, Some(&doc)), &nc()).unwrap_err();
    assert!(e.starts_with("vendor-data: ") && e.contains("line"), "{e}");
    let e = to_context(
        &seed("instance-id: i\n", Some("version: 3\n"), None, None),
        &nc(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "network-config: version: version 3 is not supported (1 or 2)"
    );
    let deep = format!("version: 2\nethernets: {}", "[".repeat(200));
    let e = to_context(&seed("instance-id: i\n", Some(&deep), None, None), &nc()).unwrap_err();
    assert!(e.contains("nested deeper than"), "{e}");
}

#[test]
fn network_disabled_absent_and_unknown() {
    let c = to_context(
        &seed(
            "instance-id: i\n",
            Some("network:\n  config: disabled\n"),
            None,
            None,
        ),
        &nc(),
    )
    .unwrap();
    assert!(!c.network.configure);
    let c = to_context(&seed("instance-id: i\n", None, None, None), &nc()).unwrap();
    assert!(c.network.nics.is_empty());
    assert_eq!(c.network.by_order[0].method, Method::Dhcp);
    let v1 = "version: 1\nconfig:\n- type: infiniband\n  name: ib0\n- type: physical\n  name: e\n  mac_address: 02:00:00:00:00:01\n  subnets:\n  - type: static\n    address: 10.0.0.2/24\n  - type: weird\n- type: route\n  destination: 10.9.0.0/16\n  gateway: 10.0.0.1\n";
    let c = to_context(&seed("instance-id: i\n", Some(v1), None, None), &nc()).unwrap();
    let nic = &c.network.nics[0];
    assert_eq!(nic.routes[0].to.to_string(), "10.9.0.0/16");
    assert_eq!(
        c.warnings.iter().filter(|w| w.contains("skipped")).count(),
        2,
        "{:?}",
        c.warnings
    );
    // An IPv6-only interface is configured, not dropped.
    let v2 = "version: 2\nethernets:\n  e:\n    match: {macaddress: '02:00:00:00:00:02'}\n    addresses: ['2001:db8::5/64']\n";
    let c = to_context(&seed("instance-id: i\n", Some(v2), None, None), &nc()).unwrap();
    assert_ne!(c.network.nics[0].method, Method::Skip);
}

/// Proxmox's other generator (`nocloud_network_v2`), byte for byte: `netN` ids matched by an
/// upper-case quoted MAC, `set-name`, addresses at the key's own indentation.
#[test]
fn proxmox_network_v2() {
    let v2 = concat!(
        "version: 2\n",
        "ethernets:\n",
        "    net0:\n",
        "        match:\n",
        "            macaddress: \"BC:24:11:5A:0E:01\"\n",
        "        set-name: eth0\n",
        "        addresses:\n",
        "        - '192.0.2.10/24'\n",
        "        - '2001:db8::10/64'\n",
        "        gateway4: '192.0.2.1'\n",
        "        gateway6: '2001:db8::1'\n",
        "        nameservers:\n",
        "          addresses:\n",
        "          - '192.0.2.53'\n",
        "          search:\n",
        "          - 'lab.example'\n",
        "    net1:\n",
        "        match:\n",
        "            macaddress: \"BC:24:11:5A:0E:02\"\n",
        "        set-name: eth1\n",
        "        dhcp4: true\n",
        "        dhcp6: true\n",
    );
    let c = to_context(&seed("instance-id: i\n", Some(v2), None, None), &nc()).unwrap();
    let n = &c.network.nics;
    assert_eq!(n[0].mac.to_string(), "bc:24:11:5a:0e:01");
    assert_eq!(n[0].addresses.len(), 2);
    assert_eq!(n[0].gateway.unwrap().to_string(), "192.0.2.1");
    assert_eq!(n[0].gateway6.unwrap().to_string(), "2001:db8::1");
    assert_eq!(n[0].search, ["lab.example"]);
    assert_eq!(
        (n[1].method, n[1].ip6_method),
        (Method::Dhcp, Ip6Method::Dhcp)
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

fn nc() -> crate::context::Origin {
    crate::context::Origin::NoCloud("x".into())
}
