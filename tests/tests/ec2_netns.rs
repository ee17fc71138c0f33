//! An EC2 instance with two NICs, applied in a network and UTS namespace: the primary NIC left
//! to DHCP, the secondary with its private IPs, its own table (101) and `from` rules; the
//! user-data's #cloud-config (hostname, user, write_files, runcmd) applied once per instance.

use vmctx_tests::*;

#[test]
fn two_nic_ec2_instance() {
    let Some(g) = Guest::new("ec2") else { return };
    let r = g.root.path().to_path_buf();
    let marker = r.join("runcmd-ran");
    let user_data = format!(
        "#cloud-config\nhostname: web-1\nwrite_files:\n  - path: /etc/vmctx-test/hello\n    content: hello\n    \
permissions: '0600'\nruncmd:\n  - echo ran >> {}\nusers:\n  - default\n  - name: alice\n    \
ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice]\nnot_a_key: 1\n",
        marker.display()
    );
    let tree = serde_json::json!({
        "meta-data": {
            "instance-id": "i-0feedface0000001",
            "local-hostname": "ip-10-0-1-10.ec2.internal",
            "placement": {"availability-zone": "eu-west-1b"},
            "public-keys": {"0=k0": {"openssh-key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 k0"}},
            "network": {"interfaces": {"macs": {
                "0e:00:00:00:01:0a": {"device-number": "0", "local-ipv4s": "10.0.1.10",
                    "subnet-ipv4-cidr-block": "10.0.1.0/24"},
                "0e:00:00:00:02:14": {"device-number": "1", "local-ipv4s": "10.0.2.20\n10.0.2.21",
                    "subnet-ipv4-cidr-block": "10.0.2.0/24"}
            }}}
        },
        "user-data": user_data,
    });
    let tree_file = r.join("tree.json");
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

    // The local stage does not read a network source.
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    assert!(
        o.status.success() && stderr(&o).contains("read in the final stage"),
        "{}",
        stderr(&o)
    );

    let o = g.vmctx(&["apply", "--stage", "final", "--source", &src, "--json"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report = json(&o);
    assert_eq!(report["instance_id"], "i-0feedface0000001");
    assert_eq!(report["failed"], 0, "{report:#}");

    let eth0 = g.ip(&["link", "show", "eth0"]);
    assert!(eth0.contains(",UP"), "primary brought up: {eth0}");
    let eth0 = g.ip(&["-4", "addr", "show", "eth0"]);
    assert!(!eth0.contains("inet "), "primary left to DHCP: {eth0}");
    let eth1 = g.ip(&["-4", "addr", "show", "eth1"]);
    assert!(
        eth1.contains("inet 10.0.2.20/24") && eth1.contains("inet 10.0.2.21/24"),
        "{eth1}"
    );
    let rules = g.ip(&["rule"]);
    for a in ["10.0.2.20", "10.0.2.21"] {
        assert!(rules.contains(&format!("from {a} lookup 101")), "{rules}");
    }
    let t101 = g.ip(&["route", "show", "table", "101"]);
    assert!(
        t101.contains("default via 10.0.2.1") && t101.contains("10.0.2.0/24"),
        "{t101}"
    );
    let main = g.ip(&["route", "show"]);
    assert!(
        !main.contains("default"),
        "the DHCP lease owns the main default: {main}"
    );

    assert_eq!(g.hostname(), "web-1", "#cloud-config hostname wins");
    assert!(g.file("/root/.ssh/authorized_keys").contains("AAAAIK0 k0"));
    assert!(g.file("/etc/passwd").contains("alice:"));
    assert_eq!(g.file("/etc/vmctx-test/hello"), "hello");
    let mode = std::fs::metadata(r.join("etc/vmctx-test/hello")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");

    // Again: nothing changes, runcmd does not run twice.
    let o = g.vmctx(&["apply", "--stage", "final", "--source", &src, "--json"]);
    let again = json(&o);
    assert_eq!(again["changed"], 0, "{again:#}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
}
