//! The small commands: mac2ip, iso ls/cat, detect over a fake /sys + /dev tree, show.

use vmctx_tests::*;

#[test]
fn mac2ip_rule() {
    let o = vmctx(&["mac2ip", "02:00:0A:00:03:28"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "10.0.3.40\n");
    let o = vmctx(&[
        "mac2ip",
        "02:00:0a:00:03:28",
        "--ipv6-prefix",
        "2001:db8:1:2::",
    ]);
    assert_eq!(stdout(&o), "10.0.3.40\n2001:db8:1:2:0:aff:fe00:328\n");
    let o = vmctx(&["mac2ip", "02:ab:0a:00:03:28", "--mac-prefix", "02:ab"]);
    assert_eq!(stdout(&o), "10.0.3.40\n");
    for mac in ["52:54:00:12:34:56", "0a:00:0a:00:03:28"] {
        let o = vmctx(&["mac2ip", mac]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("carries no address"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn iso_ls_and_cat() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context_dir(
        "VMID='5'\n",
        &[
            ("init.sh", "#!/bin/sh\necho init\n"),
            ("Long-Name.With.Dots_and_Case.sh", "x"),
        ],
    );
    std::fs::create_dir(ctx.path().join("certs")).unwrap();
    std::fs::write(ctx.path().join("certs/ca.pem"), "PEM").unwrap();
    let Some(iso) = build_iso(ctx.path(), &t.path().join("c.iso")) else {
        return;
    };
    let iso = iso.to_str().unwrap();
    let o = vmctx(&["iso", "ls", iso]);
    let out = stdout(&o);
    assert!(out.starts_with("volume \"CONTEXT\"\n"), "{out}");
    for name in [
        "context.sh",
        "init.sh",
        "Long-Name.With.Dots_and_Case.sh",
        "certs",
    ] {
        assert!(
            out.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "{name} not in {out}"
        );
    }
    assert_eq!(stdout(&vmctx(&["iso", "cat", iso, "/certs/ca.pem"])), "PEM");
    assert_eq!(
        stdout(&vmctx(&["iso", "cat", iso, "init.sh"])),
        "#!/bin/sh\necho init\n"
    );
    let o = vmctx(&["iso", "cat", iso, "/nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    // INIT_SCRIPTS defaults to the CD's init.sh.
    let v = json(&vmctx(&[
        "plan",
        "--source",
        &format!("opennebula:{iso}"),
        "--links-file",
        "/dev/null",
        "--json",
    ]));
    assert_eq!(v["scripts"][0]["kind"], "init_script");
    assert_eq!(v["scripts"][0]["from"], "init.sh");
}

#[test]
fn detect_finds_the_cd_under_root() {
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = build_iso(&fixture("hol02-jupyter"), &t.path().join("j.iso")) else {
        return;
    };
    let root = t.path().join("root");
    for dev in ["vda", "sr0"] {
        std::fs::create_dir_all(root.join("sys/class/block").join(dev)).unwrap();
    }
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("dev/vda"), vec![0u8; 40 * 2048]).unwrap();
    std::fs::copy(&iso, root.join("dev/sr0")).unwrap();
    let r = root.to_str().unwrap();
    let o = vmctx(&["detect", "--root", r, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["source"], format!("opennebula:{r}/dev/sr0"));
    assert_eq!(v["probes"][0]["found"], "ISO9660 \"CONTEXT\"");
    // plan with the default source finds the same CD.
    let links = links_file("hol02-jupyter");
    let v = json(&vmctx(&[
        "plan",
        "--root",
        r,
        "--links-file",
        links.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        v["network"]["ethernets"]["eth0"]["addresses"][0],
        "10.0.3.40/24"
    );
    // Without the CD: exit 1 and the evidence.
    std::fs::remove_file(root.join("dev/sr0")).unwrap();
    let o = vmctx(&["detect", "--root", r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("vda (neither ISO9660 nor FAT)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn show_redacts_secrets() {
    let ctx = context_dir(
        "VMID='1'\nPASSWORD='hunter2'\nCRYPTED_PASSWORD='$6$x$y'\nS3_SYNC_BUCKET='nb1'\nAWS_ACCESS_KEY_ID='AKIAEXAMPLE'\nAWS_SECRET_ACCESS_KEY='wJalrXUtnFEMI'\nEC2_IAM_ROLE='r'\nEC2_IAM_ACCESS_KEY_ID='AKIA2'\nEC2_IAM_SECRET_ACCESS_KEY='topsecret2'\n",
        &[],
    );
    let o = vmctx(&["show", "--source", &format!("dir:{}", ctx.path().display())]);
    let out = stdout(&o) + &stderr(&o);
    for secret in ["hunter2", "$6$x$y", "wJalrXUtnFEMI", "topsecret2"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
    assert!(out.contains("<redacted>") && out.contains("AKIAEXAMPLE"));
}
