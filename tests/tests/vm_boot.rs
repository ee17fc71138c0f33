//! End to end: the release binary in a busybox initramfs, booted under qemu (TCG) with a real
//! context CD and NICs carrying the context's MACs. The serial log is the oracle.

use serde_json::Value;
use std::path::{Path, PathBuf};
use vmctx_tests::*;

/// Boots and returns the serial log (CR stripped).
fn boot(cdrom: Option<&Path>, nics: &[&str], append: &str) -> String {
    boot_imds(cdrom, nics, append, None)
}

/// With `imds`, the guest's 169.254.169.254:80 reaches 127.0.0.1:PORT on the host.
fn boot_imds(cdrom: Option<&Path>, nics: &[&str], append: &str, imds: Option<&str>) -> String {
    let initrd = initramfs().expect("checked by the caller");
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("serial.log");
    let mut args = vec![
        "--initrd",
        initrd.to_str().unwrap(),
        "--append",
        append,
        "--timeout",
        "240",
    ];
    if let Some(c) = cdrom {
        args.extend(["--cdrom", c.to_str().unwrap()]);
    }
    for n in nics {
        args.extend(["--nic", n]);
    }
    if let Some(port) = imds {
        args.extend(["--imds", port]);
    }
    boot_vm(&args, &log)
}

fn vmctx_rc(serial: &str) -> i32 {
    let line = serial
        .lines()
        .find(|l| l.starts_with("VMCTX_END"))
        .expect("VMCTX_END");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("rc="))
        .unwrap()
        .parse()
        .unwrap()
}

fn uptime(serial: &str, marker: &str) -> f64 {
    let line = serial.lines().find(|l| l.starts_with(marker)).unwrap();
    line.rsplit("uptime=").next().unwrap().parse().unwrap()
}

fn context_iso(name: &str, dir: &Path) -> Option<PathBuf> {
    build_iso(&fixture(name), &dir.join(format!("{name}.iso")))
}

#[test]
fn hol02_vpn_guest_is_configured_as_planned() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = context_iso("hol02-vpn", t.path()) else {
        return;
    };
    let serial = boot(Some(&iso), &["02:00:0a:00:01:0a", "02:00:0a:00:03:05"], "");
    // What the plan says, for the guest's links (virtio first: eth0, then eth1).
    let links = t.path().join("links");
    std::fs::write(&links, "02:00:0a:00:01:0a=eth0\n02:00:0a:00:03:05=eth1\n").unwrap();
    let plan: Value = json(&vmctx(&[
        "plan",
        "--json",
        "--source",
        &format!("opennebula:{}", iso.display()),
        "--links-file",
        links.to_str().unwrap(),
    ]));
    let addrs = serial_section(&serial, "ADDR");
    for (ifname, eth) in plan["network"]["ethernets"].as_object().unwrap() {
        for a in eth["addresses"].as_array().unwrap() {
            let want = format!("{ifname}    inet {}", a.as_str().unwrap());
            assert!(
                addrs
                    .iter()
                    .any(|l| l.contains(ifname)
                        && l.contains(&format!("inet {} ", a.as_str().unwrap()))),
                "{want} missing:\n{serial}"
            );
        }
    }
    let routes = serial_section(&serial, "ROUTE");
    assert!(
        routes
            .iter()
            .any(|l| l.starts_with("default via 10.0.1.1 dev eth0")),
        "{serial}"
    );
    assert!(serial.contains("=== HOSTNAME hol02-vpn"), "{serial}");
    // The initramfs has no useradd: the user is the only thing that may fail here (users and
    // keys are checked in the packaged guest).
    let failed: Vec<&str> = serial
        .lines()
        .filter(|l| l.starts_with("APPLY FAILED"))
        .collect();
    assert!(failed.iter().all(|l| l.contains(" user ")), "{failed:?}");
    eprintln!(
        "boot figure: vmctx apply --stage local took {:.2} s of guest uptime (TCG)",
        uptime(&serial, "VMCTX_END") - uptime(&serial, "VMCTX_START")
    );
}

#[test]
fn hol02_voila_guest_gets_its_address_from_its_mac() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = context_iso("hol02-voila", t.path()) else {
        return;
    };
    let serial = boot(Some(&iso), &["02:00:0a:00:02:0b"], "");
    assert!(
        serial_section(&serial, "ADDR")
            .iter()
            .any(|l| l.contains("eth0") && l.contains("inet 10.0.2.11/24 ")),
        "{serial}"
    );
    assert!(
        serial_section(&serial, "ROUTE")
            .iter()
            .any(|l| l.starts_with("default via 10.0.2.1 dev eth0")),
        "{serial}"
    );
}

#[test]
fn broken_context_cds_leave_the_guest_alone() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // A CD that is not ISO9660, named explicitly: one clear error, exit 1.
    let junk = t.path().join("junk.iso");
    std::fs::write(&junk, vec![0x42u8; 1 << 20]).unwrap();
    let serial = boot(
        Some(&junk),
        &["02:00:0a:00:03:28"],
        "vmctx.source=opennebula:/dev/sr0",
    );
    assert_eq!(vmctx_rc(&serial), 1, "{serial}");
    assert!(
        serial.contains("APPLY vmctx: opennebula:/dev/sr0: not an ISO9660 image"),
        "{serial}"
    );
    assert!(serial_section(&serial, "ADDR").is_empty(), "{serial}");

    // A CONTEXT CD without context.sh, found by detection.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("init.sh"), "true\n").unwrap();
    let iso = t.path().join("nocontext.iso");
    sh(&[
        "xorriso",
        "-as",
        "mkisofs",
        "-quiet",
        "-V",
        "CONTEXT",
        "-J",
        "-R",
        "-o",
        iso.to_str().unwrap(),
        empty.path().to_str().unwrap(),
    ]);
    let serial = boot(Some(&iso), &["02:00:0a:00:03:28"], "");
    assert_eq!(vmctx_rc(&serial), 1, "{serial}");
    assert!(
        serial.contains("no context.sh in it; nothing was changed"),
        "{serial}"
    );
    assert!(serial_section(&serial, "ADDR").is_empty(), "{serial}");

    // An EC2 metadata service that never answers: one clear error within the budget, exit 1,
    // and the guest still boots.
    // The forward leads to a socket that accepts and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let serial = boot_imds(None, &["02:00:0a:00:03:28"], "vmctx.ec2", Some(&port));
    drop(silent);
    assert!(serial.contains("VMCTX_EC2 rc=1"), "{serial}");
    assert!(
        serial.contains("no complete answer within the 10000 ms budget"),
        "{serial}"
    );

    // No CD at all: nothing to do, and it says so.
    let serial = boot(None, &["02:00:0a:00:03:28"], "");
    assert_eq!(vmctx_rc(&serial), 0, "{serial}");
    assert!(serial.contains("no context found"), "{serial}");
}

#[test]
fn ec2_guest_reads_the_host_imds_with_a_token() {
    if initramfs().is_none() || !need("socat", have_tool("socat")) {
        return;
    }
    // Tokens required: a v1 read would get 401, so success means the IMDSv2 path was taken.
    let src = format!("dir:{}", fixture("imported-ami").display());
    let imds = ImdsServer::start(&["--source", &src, "--require-token"]);
    let port = imds.addr.rsplit(':').next().unwrap().to_string();
    let serial = boot_imds(None, &["02:00:c0:a8:01:06"], "vmctx.ec2", Some(&port));
    assert!(serial.contains("VMCTX_EC2 rc="), "{serial}");
    assert!(serial.contains("=== HOSTNAME ami-import-0"), "{serial}");
    assert!(
        serial_section(&serial, "KEYS")
            .iter()
            .any(|l| l.ends_with("gsg-keypair")),
        "{serial}"
    );
    // The primary NIC stays on DHCP, as on EC2: the lease, not a static address.
    assert!(
        section_has(&serial, "ADDR", "inet 169.254.0.15/16"),
        "{serial}"
    );
}

#[test]
fn imported_ami_guest_serves_its_own_metadata() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = context_iso("imported-ami", t.path()) else {
        return;
    };
    let serial = boot(Some(&iso), &["02:00:c0:a8:01:06"], "vmctx.guestimds");
    let show = serial_section(&serial, "SHOW").join("\n");
    let v: Value = serde_json::from_str(show.trim()).unwrap_or_else(|e| panic!("{e}:\n{serial}"));
    assert_eq!(v["instance_id"], "i-0a1b2c3d4e5f60718", "{serial}");
    assert_eq!(v["hostname"]["name"], "ami-import-0");
    assert!(v["ssh_keys"][0].as_str().unwrap().ends_with("gsg-keypair"));
    assert!(
        section_has(&serial, "ADDR", "inet 192.168.1.6/24"),
        "{serial}"
    );
}

/// Proxmox's NoCloud seed (`cidata`, as Proxmox builds it) found by `--source auto`: the static
/// NIC gets its addresses and gateway, the DHCP NIC is brought up, the hostname is set.
#[test]
fn proxmox_nocloud_guest_is_configured_by_auto() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let seed = workspace().join("vm-fixtures/nocloud/proxmox-web01");
    let Some(iso) = build_nocloud_seed(&seed, &t.path().join("cidata.iso"), false) else {
        return;
    };
    let serial = boot(Some(&iso), &["bc:24:11:5a:0e:01", "bc:24:11:5a:0e:02"], "");
    let addrs = serial_section(&serial, "ADDR");
    for want in ["inet 192.0.2.10/24 ", "inet6 2001:db8::10/64 "] {
        assert!(
            addrs.iter().any(|l| l.contains("eth0") && l.contains(want)),
            "{want} missing:\n{serial}"
        );
    }
    assert!(
        serial_section(&serial, "ROUTE")
            .iter()
            .any(|l| l.starts_with("default via 192.0.2.1 dev eth0")),
        "{serial}"
    );
    assert!(serial.contains("=== HOSTNAME web01"), "{serial}");
}

/// A NoCloud netplan v2 seed on a `cidata` ISO, found by `--source auto`: two virtio NICs
/// bonded (802.3ad, miimon, hash policy, the bond's MAC and MTU) with a VLAN on the bond, made
/// by the guest's own kernel (bonding and 8021q modules); a second apply changes nothing.
#[test]
fn nocloud_bond_and_vlan_in_a_guest() {
    if initramfs().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let seed = workspace().join("vm-fixtures/nocloud/netplan-bond-vlan");
    let Some(iso) = build_nocloud_seed(&seed, &t.path().join("cidata.iso"), false) else {
        return;
    };
    let nics = [
        "52:54:00:b0:00:01",
        "52:54:00:b0:00:02",
        "52:54:00:b0:00:03",
    ];
    let serial = boot(Some(&iso), &nics, "vmctx.again");
    assert_eq!(vmctx_rc(&serial), 0, "{serial}");
    let bond = serial_section(&serial, "BOND").join("\n");
    for want in [
        "Bonding Mode: IEEE 802.3ad Dynamic link aggregation",
        "Transmit Hash Policy: layer3+4 (1)",
        "MII Polling Interval (ms): 100",
        "Slave Interface: eth0",
        "Slave Interface: eth1",
    ] {
        assert!(bond.contains(want), "{want} missing:\n{serial}");
    }
    assert!(!bond.contains("Slave Interface: eth2"), "{serial}");
    let vlan = serial_section(&serial, "VLAN");
    assert!(
        vlan.iter().any(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            f == ["bond0.42", "42", "bond0"]
        }),
        "{serial}"
    );
    let addrs = serial_section(&serial, "ADDR");
    for (dev, want) in [
        ("bond0 ", "inet 198.51.100.7/24 "),
        ("bond0.42 ", "inet 203.0.113.7/24 "),
        ("bond0.42 ", "inet6 2001:db8:42::7/64 "),
    ] {
        assert!(
            addrs.iter().any(|l| l.contains(dev) && l.contains(want)),
            "{dev}{want} missing:\n{serial}"
        );
    }
    assert!(
        !addrs
            .iter()
            .any(|l| l.contains(" eth0 ") && l.contains("inet ")),
        "a member has an address:\n{serial}"
    );
    assert!(
        serial_section(&serial, "ROUTE")
            .iter()
            .any(|l| l.starts_with("default via 203.0.113.1 dev bond0.42")),
        "{serial}"
    );
    let mtu = serial_section(&serial, "MTU");
    assert!(
        mtu.iter().any(|l| l == &"bond0 52:54:00:b0:00:01 9000"),
        "{serial}"
    );
    let again = serial
        .lines()
        .find(|l| l.starts_with("VMCTX_AGAIN"))
        .expect("VMCTX_AGAIN");
    assert!(
        again.starts_with("VMCTX_AGAIN rc=0 ") && again.contains(" 0 changed"),
        "{again}\n{serial}"
    );
}
