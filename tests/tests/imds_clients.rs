//! The emulator against the real clients an imported AMI runs: botocore's metadata fetchers,
//! cloud-init's EC2 crawler, and amazon-ec2-utils' `ec2-metadata` (which only knows
//! 169.254.169.254, so it runs in a network namespace with the emulator in `--guest` mode).
//! Installed by `.ci/install-imds-clients`. Values are those of the imported-ami fixture.

use std::process::Command;
use vmctx_tests::*;

const INSTANCE_ID: &str = "i-0a1b2c3d4e5f60718";
const KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDImportedAmiTestKeyOnlyForFixturesAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA gsg-keypair";

fn ami_source() -> String {
    format!("dir:{}", fixture("imported-ami").display())
}

fn python(script: &str, args: &[&str]) -> Option<serde_json::Value> {
    let py = imds_python();
    if !need(
        "botocore and cloud-init (.ci/install-imds-clients)",
        py.is_some(),
    ) {
        return None;
    }
    let o = Command::new(py.unwrap())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    Some(json(&o))
}

const BOTOCORE: &str = r#"
import json, sys
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher
base = sys.argv[1] + "/"
creds = InstanceMetadataFetcher(timeout=2, num_attempts=1, base_url=base).retrieve_iam_role_credentials()
region = InstanceMetadataRegionFetcher(timeout=2, num_attempts=1, base_url=base).retrieve_region()
print(json.dumps({"creds": creds, "region": region}))
"#;

#[test]
fn botocore_reads_region_with_required_tokens() {
    let s = ImdsServer::start(&["--source", &ami_source(), "--require-token"]);
    let Some(v) = python(BOTOCORE, &[&s.url()]) else {
        return;
    };
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["creds"], serde_json::json!({}), "no role: no credentials");
    let (st, log) = s.stop();
    assert!(st.success(), "{log}");
    // Tokens were required, so every GET carried one: none came without.
    assert!(log.contains("tokens_issued=2"), "{log}");
    assert!(log.contains("no_token=0 bad_token=0"), "{log}");
}

#[test]
fn botocore_fetches_role_credentials() {
    let ctx = std::fs::read_to_string(fixture("imported-ami").join("context.sh")).unwrap();
    let dir = context_dir(
        &format!(
            "{ctx}EC2_IAM_ROLE='notebooks'\nEC2_IAM_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE'\n\
             EC2_IAM_SECRET_ACCESS_KEY='wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'\n\
             EC2_IAM_SESSION_TOKEN='FwoGZXIvYXdzEXAMPLE'\n"
        ),
        &[],
    );
    let src = format!("dir:{}", dir.path().display());
    let s = ImdsServer::start(&["--source", &src]);
    let Some(v) = python(BOTOCORE, &[&s.url()]) else {
        return;
    };
    let c = &v["creds"];
    assert_eq!(c["role_name"], "notebooks");
    assert_eq!(c["access_key"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(c["secret_key"], "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert_eq!(c["token"], "FwoGZXIvYXdzEXAMPLE");
    assert!(c["expiry_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["region"], "us-east-1");
}

const CLOUD_INIT: &str = r#"
import json, sys
from cloudinit.sources.helpers import ec2
base, errs, out = sys.argv[1], [], {}
def cb(req_args, exc):
    errs.append(str(exc))
    return False
for v in ["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest"]:
    out[v] = {
        "md": ec2.get_instance_metadata(api_version=v, metadata_address=base, retries=0, exception_cb=cb),
        "ud": ec2.get_instance_userdata(api_version=v, metadata_address=base, retries=0).decode(),
        "id": ec2.get_instance_identity(api_version=v, metadata_address=base, retries=0, exception_cb=cb),
    }
print(json.dumps({"versions": out, "errors": errs}))
"#;

/// cloud-init's crawl of every version it pins: the whole tree, no listed entry failing.
#[test]
fn cloud_init_crawls_the_whole_tree() {
    let s = ImdsServer::start(&["--source", &ami_source()]);
    let Some(v) = python(CLOUD_INIT, &[&s.url()]) else {
        return;
    };
    assert_eq!(v["errors"], serde_json::json!([]));
    for (version, got) in v["versions"].as_object().unwrap() {
        let md = &got["md"];
        assert_eq!(md["instance-id"], INSTANCE_ID, "{version}");
        assert_eq!(md["ami-id"], "ami-2bb65342");
        assert_eq!(md["instance-type"], "m1.small");
        assert_eq!(md["local-hostname"], "ami-import-0");
        assert_eq!(md["local-ipv4"], "192.168.1.6");
        assert_eq!(md["mac"], "02:00:c0:a8:01:06");
        assert_eq!(md["placement"]["availability-zone"], "us-east-1a");
        assert_eq!(md["public-keys"]["gsg-keypair"], KEY);
        let nic = &md["network"]["interfaces"]["macs"]["02:00:c0:a8:01:06"];
        assert_eq!(nic["device-number"], "0");
        assert_eq!(nic["local-ipv4s"], "192.168.1.6");
        assert_eq!(nic["subnet-ipv4-cidr-block"], "192.168.1.0/24");
        assert_eq!(
            got["ud"],
            "#!/bin/bash\nset -e -x\napt-get update && apt-get upgrade -y\n"
        );
        let doc = &got["id"]["document"];
        assert_eq!(doc["instanceId"], INSTANCE_ID);
        assert_eq!(doc["region"], "us-east-1");
        assert_eq!(doc["availabilityZone"], "us-east-1a");
        assert_eq!(doc["privateIp"], "192.168.1.6");
    }
}

/// `ec2-metadata` hard-codes 169.254.169.254: a private network namespace where the emulator
/// serves in guest mode, which also proves the address is added to lo and removed on exit.
#[test]
fn ec2_metadata_in_a_namespace_with_guest_mode() {
    if !need("root", is_root()) || !need("unshare", have_tool("unshare")) {
        return;
    }
    let script = ec2_metadata_script();
    if !need("ec2-metadata (.ci/install-imds-clients)", script.is_some()) {
        return;
    }
    if !need("curl", have_tool("curl")) {
        return;
    }
    let sh = r#"
set -u
"$VMCTX" imds serve --guest --require-token --source "$SRC" >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$T/out" && break; sleep 0.05; done
echo "== all"
"$EC2MD"
echo "== selected"
"$EC2MD" --instance-id --availability-zone --public-keys --local-ipv4 --ami-id
echo "== while serving"
ip -4 -o addr show dev lo
kill -TERM $pid
wait $pid
echo "== exit $?"
echo "== after"
ip -4 -o addr show dev lo
cat "$T/err"
"#;
    let t = tempfile::tempdir().unwrap();
    let o = Command::new("unshare")
        .args(["--net", "sh", "-c", sh])
        .env("VMCTX", vmctx_bin())
        .env("SRC", ami_source())
        .env("EC2MD", script.unwrap())
        .env("T", t.path())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let (all, rest) = out.split_once("== selected").unwrap();
    let (selected, rest) = rest.split_once("== while serving").unwrap();
    let (serving, after) = rest.split_once("== after").unwrap();
    for s in [all, selected] {
        assert!(s.contains(&format!("instance-id: {INSTANCE_ID}")), "{s}");
        assert!(s.contains("placement: us-east-1a"), "{s}");
        assert!(s.contains("local-ipv4: 192.168.1.6"), "{s}");
        assert!(s.contains("ami-id: ami-2bb65342"), "{s}");
        assert!(s.contains("keyname:gsg-keypair"), "{s}");
        assert!(s.contains(KEY), "{s}");
    }
    assert!(all.contains("instance-type: m1.small"), "{all}");
    assert!(!all.contains("[ERROR]"), "{all}");
    assert!(serving.contains("169.254.169.254/32"), "{serving}");
    assert!(serving.contains("== exit 0"), "{serving}");
    assert!(
        !after.contains("169.254.169.254/32"),
        "removed on exit: {after}"
    );
    assert!(after.contains("no_token=0 bad_token=0"), "{after}");
}
