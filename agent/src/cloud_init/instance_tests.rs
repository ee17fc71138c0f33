use super::*;
use crate::source::context_sh::Parsed;
use crate::source::{ec2, openstack};
use std::os::unix::fs::PermissionsExt;

fn raw(origin: &str, context_sh: &str, cloud: Option<Cloud>) -> Raw {
    Raw {
        origin: origin.parse().unwrap(),
        parsed: if cloud.is_some() {
            Parsed::default()
        } else {
            crate::source::context_sh::parse(context_sh.as_bytes())
        },
        files: vec![],
        warnings: vec![],
        cloud,
    }
}

const ONE: &str = "VMID='9'\nSET_HOSTNAME='db-1'\nPASSWORD='hunter2'\nONEGATE_TOKEN='gate-tok'\n\
AWS_SECRET_ACCESS_KEY='aws-sec'\nSSH_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHol02ResearchTeamKeyForJupyterAccessOnlyAAAA k@x'\n\
START_SCRIPT='echo db-pw-in-script'\nUSER_DATA='#cloud-config\nhostname: db-1\n'\n";

fn one_doc() -> (Value, Value) {
    let t = tempfile::tempdir().unwrap();
    let r = raw("opennebula:/dev/sr0", ONE, None);
    let ds = Ds::from_raw(&r);
    let ctx = crate::source::to_context(r);
    let doc = document(t.path(), &ds, &ctx);
    let red = redacted(&doc);
    (doc, red)
}

#[test]
fn opennebula_document() {
    let (doc, red) = one_doc();
    let v1 = &doc["v1"];
    assert_eq!(v1["instance_id"], "one-9");
    assert_eq!(v1["instance-id"], "one-9");
    assert_eq!(v1["local_hostname"], "db-1");
    assert_eq!(v1["cloud_name"], "opennebula");
    assert_eq!(v1["cloud_id"], "opennebula");
    assert_eq!(v1["platform"], "opennebula");
    assert_eq!(v1["subplatform"], "config-disk (/dev/sr0)");
    assert_eq!(v1["region"], Value::Null);
    assert_eq!(
        v1["public_ssh_keys"],
        json!([
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHol02ResearchTeamKeyForJupyterAccessOnlyAAAA k@x"
        ])
    );
    assert_eq!(doc["ds"]["meta_data"]["SET_HOSTNAME"], "db-1");
    assert_eq!(doc["ds"]["meta_data"]["PASSWORD"], "hunter2");
    assert_eq!(doc["userdata"], "#cloud-config\nhostname: db-1");
    assert_eq!(
        doc["sensitive_keys"],
        json!([
            "ds/meta_data/AWS_SECRET_ACCESS_KEY",
            "ds/meta_data/ONEGATE_TOKEN",
            "ds/meta_data/PASSWORD",
            "ds/meta_data/START_SCRIPT",
            "ds/meta_data/USER_DATA",
            "userdata",
            "vendordata"
        ])
    );
    // Redacted: every secret replaced, the rest kept.
    let text = red.to_string();
    for secret in [
        "hunter2",
        "gate-tok",
        "aws-sec",
        "db-pw-in-script",
        "hostname: db-1",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(red["ds"]["meta_data"]["PASSWORD"], REDACTED);
    assert_eq!(red["userdata"], REDACTED);
    assert_eq!(red["ds"]["meta_data"]["SET_HOSTNAME"], "db-1");
    assert_eq!(red["v1"], doc["v1"]);
}

#[test]
fn secret_variable_names() {
    for s in [
        "PASSWORD",
        "CRYPTED_PASSWORD",
        "DB_PASS",
        "ONEGATE_TOKEN",
        "EC2_IAM_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "SSH_PRIVATE_KEY",
        "USER_DATA",
        "USERDATA_ENCODING",
        "START_SCRIPT_BASE64",
    ] {
        assert!(secret_var(s), "{s}");
    }
    for p in [
        "SSH_PUBLIC_KEY",
        "EC2_PUBLIC_KEY",
        "SSH_KEY",
        "ETH0_IP",
        "SET_HOSTNAME",
        "VMID",
    ] {
        assert!(!secret_var(p), "{p}");
    }
}

#[test]
fn ec2_document() {
    let leaves = [
        ("instance-id", "i-0abc"),
        ("local-hostname", "ip-10-0-1-5.ec2.internal"),
        ("placement/availability-zone", "cn-north-1a"),
        (
            "iam/security-credentials/role",
            "{\"SecretAccessKey\":\"iam-sec\"}",
        ),
    ];
    let md = ec2::Metadata {
        leaves: leaves
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        user_data: Some(b"#!/bin/sh\necho ud-secret\n".to_vec()),
        ..ec2::Metadata::default()
    };
    let r = raw(
        "ec2:http://169.254.169.254",
        "",
        Some(Cloud::Ec2(md.clone())),
    );
    let ds = Ds::from_raw(&r);
    let ctx = crate::source::to_context_checked(r).unwrap();
    let doc = document(Path::new("/nonexistent"), &ds, &ctx);
    assert_eq!(doc["v1"]["cloud_name"], "aws");
    assert_eq!(doc["v1"]["platform"], "ec2");
    assert_eq!(doc["v1"]["region"], "cn-north-1");
    assert_eq!(doc["v1"]["availability_zone"], "cn-north-1a");
    assert_eq!(doc["v1"]["cloud_id"], "aws-china");
    assert_eq!(doc["v1"]["local_hostname"], "ip-10-0-1-5");
    assert_eq!(
        doc["ds"]["meta-data"]["placement"]["availability-zone"],
        "cn-north-1a"
    );
    let red = redacted(&doc);
    assert_eq!(
        red["ds"]["meta-data"]["iam"]["security-credentials"],
        REDACTED
    );
    assert!(!red.to_string().contains("iam-sec") && !red.to_string().contains("ud-secret"));
    assert!(doc["userdata"].as_str().unwrap().contains("ud-secret"));
}

#[test]
fn openstack_document() {
    let meta = br#"{"uuid": "4b3c-11", "hostname": "gpu-1.novalocal", "availability_zone": "nova", "admin_pass": "os-pass"}"#;
    let md = openstack::Metadata {
        version: "openstack/latest".into(),
        meta_data: meta.to_vec(),
        network_data: None,
        user_data: None,
        notes: vec![],
        ..Default::default()
    };
    let r = raw("configdrive:/dev/sr1", "", Some(Cloud::OpenStack(md)));
    let ds = Ds::from_raw(&r);
    let ctx = crate::source::to_context_checked(r).unwrap();
    let doc = document(Path::new("/nonexistent"), &ds, &ctx);
    assert_eq!(doc["v1"]["cloud_name"], "openstack");
    assert_eq!(doc["v1"]["availability_zone"], "nova");
    assert_eq!(doc["v1"]["instance_id"], "4b3c-11");
    assert_eq!(doc["ds"]["meta_data"]["hostname"], "gpu-1.novalocal");
    assert_eq!(redacted(&doc)["ds"]["meta_data"]["admin_pass"], REDACTED);
    assert_eq!(doc["userdata"], "");
}

#[test]
fn platforms() {
    let p = platform_named("configdrive:/dev/sr1");
    assert_eq!(p.short_name(), "configdrive");
    assert_eq!(
        platform_named("ec2:http://[fd00:ec2::254]").short_name(),
        "ec2"
    );
    assert_eq!(
        platform_named("openstack:http://169.254.169.254").short_name(),
        "openstack"
    );
    assert_eq!(platform_named("dir:/ctx").subplatform, "seed-dir (/ctx)");
    assert_eq!(platform_named("what").short_name(), "none");
}

#[test]
fn user_data_forms() {
    assert_eq!(user_data_text(b"#!/bin/sh\n"), "#!/bin/sh\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b"#cloud-config\n").unwrap();
    assert_eq!(user_data_text(&gz.finish().unwrap()), "#cloud-config\n");
    assert_eq!(user_data_text(&[0xff, 0xfe, 0]), "ci-b64://4A");
}

#[test]
fn files_and_their_modes() {
    let t = tempfile::tempdir().unwrap();
    let r = raw("opennebula:/dev/sr0", ONE, None);
    let ds = Ds::from_raw(&r);
    let ctx = crate::source::to_context(r);
    // A sensitive file someone made world-readable is replaced, not reused.
    let sens = t.path().join("run/vmctx/instance-data-sensitive.json");
    std::fs::create_dir_all(sens.parent().unwrap()).unwrap();
    std::fs::write(&sens, "{}").unwrap();
    std::fs::set_permissions(&sens, std::fs::Permissions::from_mode(0o644)).unwrap();
    write(t.path(), &ds, &ctx).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sens), 0o600);
    let public = t.path().join("run/vmctx/instance-data.json");
    assert_eq!(mode(&public), 0o644);
    let text = std::fs::read_to_string(&public).unwrap();
    assert!(!text.contains("hunter2") && text.contains("\"local_hostname\": \"db-1\""));
    assert!(
        text.starts_with("{\n \"base64_encoded_keys\": []"),
        "{text}"
    );
    assert!(std::fs::read_to_string(&sens).unwrap().contains("hunter2"));
    // Never through a link.
    std::fs::remove_file(&public).unwrap();
    std::os::unix::fs::symlink(t.path().join("elsewhere"), &public).unwrap();
    assert!(write(t.path(), &ds, &ctx).is_err());
    assert!(!t.path().join("elsewhere").exists());
}
