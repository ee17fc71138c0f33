use super::*;
use crate::source::{self, context_sh, opennebula, Source};
use vmctx_imds::tree::Node;

const NOW: u64 = 1_714_566_896; // 2024-05-01T12:34:56Z

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn ctx(text: &str) -> Context {
    let p = context_sh::parse(text.as_bytes());
    opennebula::to_context(&p.vars, &[], &"dir:test".parse().unwrap())
}

fn imported_ami() -> Tree {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vm-fixtures/contexts/imported-ami"
    );
    let c = source::load(
        &Source::Dir(dir.into()),
        std::path::Path::new("/"),
        &Default::default(),
    )
    .unwrap();
    build(&c, now()).unwrap()
}

fn get(t: &Tree, path: &str) -> Option<String> {
    match t.lookup(path.split('/').filter(|s| !s.is_empty()))? {
        Node::Leaf(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
        Node::Dir(d) => Some(String::from_utf8(d.listing().to_vec()).unwrap()),
    }
}

#[test]
fn imported_ami_values() {
    let t = imported_ami();
    let md = |p: &str| get(&t, &format!("meta-data/{p}"));
    assert_eq!(md("instance-id").as_deref(), Some("i-0a1b2c3d4e5f60718"));
    assert_eq!(md("ami-id").as_deref(), Some("ami-2bb65342"));
    assert_eq!(md("instance-type").as_deref(), Some("m1.small"));
    assert_eq!(md("hostname").as_deref(), Some("ami-import-0"));
    assert_eq!(md("local-hostname").as_deref(), Some("ami-import-0"));
    assert_eq!(md("local-ipv4").as_deref(), Some("192.168.1.6"));
    assert_eq!(md("mac").as_deref(), Some("02:00:c0:a8:01:06"));
    assert_eq!(
        md("placement/availability-zone").as_deref(),
        Some("us-east-1a")
    );
    assert_eq!(md("placement/region").as_deref(), Some("us-east-1"));
    assert_eq!(md("public-keys/").as_deref(), Some("0=gsg-keypair"));
    assert!(md("public-keys/0/openssh-key")
        .unwrap()
        .starts_with("ssh-rsa AAAAB3NzaC1yc2E"));
    assert_eq!(md("services/domain").as_deref(), Some("amazonaws.com"));
    let nic = "network/interfaces/macs/02:00:c0:a8:01:06";
    assert_eq!(md(&format!("{nic}/device-number")).as_deref(), Some("0"));
    assert_eq!(
        md(&format!("{nic}/local-ipv4s")).as_deref(),
        Some("192.168.1.6")
    );
    assert_eq!(
        md(&format!("{nic}/subnet-ipv4-cidr-block")).as_deref(),
        Some("192.168.1.0/24")
    );
    assert_eq!(
        get(&t, "user-data").as_deref(),
        Some("#!/bin/bash\nset -e -x\napt-get update && apt-get upgrade -y\n")
    );
    // Nothing is listed that would not be served.
    for absent in [
        "kernel-id",
        "ramdisk-id",
        "public-ipv4",
        "iam",
        "ancestor-ami-ids",
    ] {
        assert_eq!(md(absent), None, "{absent}");
    }
    assert_eq!(
        get(&t, "dynamic/instance-identity/").as_deref(),
        Some("document")
    );
    let doc: serde_json::Value =
        serde_json::from_str(&get(&t, "dynamic/instance-identity/document").unwrap()).unwrap();
    assert_eq!(doc["instanceId"], "i-0a1b2c3d4e5f60718");
    assert_eq!(doc["imageId"], "ami-2bb65342");
    assert_eq!(doc["instanceType"], "m1.small");
    assert_eq!(doc["availabilityZone"], "us-east-1a");
    assert_eq!(doc["region"], "us-east-1");
    assert_eq!(doc["privateIp"], "192.168.1.6");
    assert_eq!(doc["accountId"], ACCOUNT_ID);
    assert_eq!(doc["pendingTime"], "2024-05-01T12:34:56Z");
    assert_eq!(doc["version"], "2017-09-30");
    assert!(["x86_64", "arm64", "i386"].contains(&doc["architecture"].as_str().unwrap()));
}

/// Every entry a listing names resolves (cloud-init's crawl rule), for the fixture and for a
/// context with two NICs, an alias, IPv6 and a role.
#[test]
fn every_listed_entry_resolves() {
    fn walk(t: &Tree, path: &str, d: &vmctx_imds::tree::Dir, n: &mut usize) {
        for (label, node) in d.iter() {
            let name = label.split('=').next().unwrap();
            let p = format!("{path}{name}");
            assert!(t.lookup(p.split('/')).is_some(), "{p}");
            *n += 1;
            if let Node::Dir(sub) = node {
                walk(t, &format!("{p}/"), sub, n);
            }
        }
    }
    let mut n = 0;
    walk(&imported_ami(), "", imported_ami().root(), &mut n);
    let t = build(&ctx(FULL), now()).unwrap();
    walk(&t, "", t.root(), &mut n);
    assert!(n > 80, "{n}");
}

const FULL: &str = "VMID='42'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n\
ETH0_MASK='255.255.255.0'\nETH0_IP6='fd00:3::28'\nETH0_IP6_PREFIX_LENGTH='64'\n\
ETH0_ALIAS0_MAC='02:00:0a:00:03:29'\nETH0_ALIAS0_IP='10.0.3.41'\n\
ETH1_MAC='02:00:0a:00:01:05'\nETH1_IP='10.0.1.5'\nETH1_MASK='255.255.0.0'\n\
EC2_METADATA='YES'\nEC2_REGION='eu-west-1'\nEC2_IAM_ROLE='notebooks'\n\
EC2_IAM_ACCESS_KEY_ID='AKIAEXAMPLE'\nEC2_IAM_SECRET_ACCESS_KEY='c2VjcmV0'\n\
SSH_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA a@b\nfrom=\"10.0.0.0/8\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5BBBB\nssh-rsa AAAAB3NzaC1yc2EAAAAD x=y/z'\n";

#[test]
fn derived_values_for_a_context_without_ec2_ids() {
    let t = build(&ctx(FULL), now()).unwrap();
    let md = |p: &str| get(&t, &format!("meta-data/{p}"));
    assert_eq!(md("instance-id").as_deref(), Some("i-0000000000000002a"));
    assert!(md("ami-id").unwrap().starts_with("ami-"));
    assert_eq!(md("ami-id").unwrap().len(), 21);
    assert_eq!(md("instance-type").as_deref(), Some(DEFAULT_INSTANCE_TYPE));
    assert_eq!(
        md("placement/availability-zone").as_deref(),
        Some("eu-west-1a")
    );
    assert_eq!(md("hostname").as_deref(), Some("ip-10-0-3-40"));
    assert_eq!(md("local-ipv4").as_deref(), Some("10.0.3.40"));
    assert_eq!(md("ipv6").as_deref(), Some("fd00:3::28"));
    assert_eq!(
        md("public-keys/").as_deref(),
        Some("0=a@b\n1=key-1\n2=x-y-z")
    );
    let eth0 = "network/interfaces/macs/02:00:0a:00:03:28";
    assert_eq!(
        md(&format!("{eth0}/local-ipv4s")).as_deref(),
        Some("10.0.3.40\n10.0.3.41")
    );
    assert_eq!(md(&format!("{eth0}/ipv6s")).as_deref(), Some("fd00:3::28"));
    assert_eq!(
        md(&format!("{eth0}/subnet-ipv6-cidr-blocks")).as_deref(),
        Some("fd00:3::/64")
    );
    let eth1 = "network/interfaces/macs/02:00:0a:00:01:05";
    assert_eq!(md(&format!("{eth1}/device-number")).as_deref(), Some("1"));
    assert_eq!(
        md(&format!("{eth1}/subnet-ipv4-cidr-block")).as_deref(),
        Some("10.0.0.0/16")
    );
    assert_eq!(md(&format!("{eth1}/local-hostname")), None);
    // Role credentials.
    assert_eq!(
        md("iam/security-credentials/").as_deref(),
        Some("notebooks")
    );
    let c: serde_json::Value =
        serde_json::from_str(&md("iam/security-credentials/notebooks").unwrap()).unwrap();
    assert_eq!(c["Code"], "Success");
    assert_eq!(c["Type"], "AWS-HMAC");
    assert_eq!(c["AccessKeyId"], "AKIAEXAMPLE");
    assert_eq!(c["SecretAccessKey"], "c2VjcmV0");
    assert_eq!(c["Expiration"], "2024-05-01T18:34:56Z");
    let info: serde_json::Value = serde_json::from_str(&md("iam/info").unwrap()).unwrap();
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::000000000000:instance-profile/notebooks"
    );
    assert_eq!(get(&t, "user-data"), None);
    assert_eq!(&t.root().listing()[..], b"dynamic\nmeta-data");
}

#[test]
fn a_role_without_credentials_is_not_listed() {
    let t = build(&ctx("VMID='1'\nEC2_IAM_ROLE='r'\n"), now()).unwrap();
    assert_eq!(get(&t, "meta-data/iam/info"), None);
    assert_eq!(
        get(&t, "meta-data/placement/region").as_deref(),
        Some(DEFAULT_REGION)
    );
}

#[test]
fn instance_id_without_vmid_is_a_stable_hash() {
    let c = ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n");
    let id = instance_id_for(&c);
    assert!(id.starts_with("i-") && id.len() == 19, "{id}");
    assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(id, instance_id_for(&c));
}

#[test]
fn iso8601_dates() {
    assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(iso8601(now()), "2024-05-01T12:34:56Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
}
