//! The four bundled contexts, burnt to real context ISOs with xorriso, plan as their README says.

use serde_json::{json, Value};
use vmctx_tests::*;

fn plan_iso(name: &str) -> Option<Value> {
    let t = tempfile::tempdir().unwrap();
    let iso = build_iso(&fixture(name), &t.path().join(format!("{name}.iso")))?;
    let src = format!("opennebula:{}", iso.display());
    let links = links_file(name);
    let o = vmctx(&[
        "plan",
        "--source",
        &src,
        "--links-file",
        links.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let plan = json(&o);
    // The same folder read as dir: plans the same (apart from where it came from).
    let o = vmctx(&[
        "plan",
        "--source",
        &format!("dir:{}", fixture(name).display()),
        "--links-file",
        links.to_str().unwrap(),
        "--json",
    ]);
    let mut dir_plan = json(&o);
    dir_plan["source"] = plan["source"].clone();
    assert_eq!(
        plan, dir_plan,
        "{name}: the ISO and the folder plan differently"
    );
    Some(plan)
}

#[test]
fn hol02_voila_address_from_its_mac() {
    let Some(p) = plan_iso("hol02-voila") else {
        return;
    };
    let eth0 = &p["network"]["ethernets"]["eth0"];
    assert_eq!(eth0["match"]["macaddress"], "02:00:0a:00:02:0b");
    assert_eq!(eth0["addresses"], json!(["10.0.2.11/24"]));
    assert_eq!(
        eth0["routes"],
        json!([{"to": "default", "via": "10.0.2.1"}])
    );
    assert_eq!(p["hostname"]["name"], "hol02-voilaserver");
    assert_eq!(p["sync"]["mode"], "pull");
    assert_eq!(p["scripts"][0]["from"], "START_SCRIPT_BASE64");
    assert_eq!(p["errors"], json!([]));
}

#[test]
fn hol02_jupyter_explicit_ip_mtu_search() {
    let Some(p) = plan_iso("hol02-jupyter") else {
        return;
    };
    let eth0 = &p["network"]["ethernets"]["eth0"];
    assert_eq!(eth0["addresses"], json!(["10.0.3.40/24"]));
    assert_eq!(eth0["mtu"], 1500);
    assert_eq!(
        eth0["nameservers"],
        json!({"addresses": ["10.0.3.2"], "search": ["research.hol02.internal"]})
    );
    assert_eq!(p["sync"]["mode"], "both");
    assert_eq!(
        p["update"]["schedule"],
        json!({"kind": "cron", "spec": "0 0 * * 0"})
    );
    assert_eq!(p["users"][0]["name"], "ec2-user");
    assert_eq!(p["errors"], json!([]));
}

#[test]
fn hol02_vpn_two_nics_alias_keys_script() {
    let Some(p) = plan_iso("hol02-vpn") else {
        return;
    };
    let eth = &p["network"]["ethernets"];
    assert_eq!(eth["eth0"]["addresses"], json!(["10.0.1.10/24"]));
    assert_eq!(
        eth["eth0"]["nameservers"]["addresses"],
        json!(["10.0.1.2", "1.1.1.1"])
    );
    assert_eq!(
        eth["eth1"]["addresses"],
        json!(["10.0.3.5/24", "10.0.2.5/24"])
    );
    assert!(
        eth["eth1"].get("routes").is_none(),
        "the alias brings no gateway"
    );
    assert_eq!(p["ssh_keys"].as_array().unwrap().len(), 2);
    assert_eq!(p["scripts"][0]["run"], "always");
    assert_eq!(p["scripts"][0]["from"], "START_SCRIPT");
    assert_eq!(p["errors"], json!([]));
}

#[test]
fn imported_ami_emulated_metadata() {
    let Some(p) = plan_iso("imported-ami") else {
        return;
    };
    assert_eq!(p["instance_id"], "one-6");
    assert_eq!(
        p["network"]["ethernets"]["ens3"]["addresses"],
        json!(["192.168.1.6/24"])
    );
    assert_eq!(p["ec2"]["metadata"], true);
    assert_eq!(p["ec2"]["instance_id"], "i-0a1b2c3d4e5f60718");
    assert_eq!(p["scripts"][0]["kind"], "user_data");
    assert_eq!(p["scripts"][0]["type"], "#!/bin/bash");
    assert_eq!(p["errors"], json!([]));
    assert_eq!(p["warnings"], json!([]));
}
