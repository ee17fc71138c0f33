//! The EC2 source against vmctx's own emulator and against a fault-injecting IMDS: tokens and
//! their fallbacks, retries, the budget, 401 mid-crawl, a listed entry that 404s, detection.

use std::process::{Command, Output};
use std::time::{Duration, Instant};
use vmctx_tests::*;

/// A small, consistent tree: one NIC, one key, a shell-script user-data.
const TREE: &[(&str, &str)] = &[
    ("meta-data/instance-id", "i-0123456789abcdef0"),
    ("meta-data/local-hostname", "ip-10-0-1-10.ec2.internal"),
    ("meta-data/placement/availability-zone", "eu-west-1b"),
    (
        "meta-data/public-keys/0/openssh-key",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 k0",
    ),
    (
        "meta-data/network/interfaces/macs/0e:00:00:00:01:0a/device-number",
        "0",
    ),
    (
        "meta-data/network/interfaces/macs/0e:00:00:00:01:0a/local-ipv4s",
        "10.0.1.10",
    ),
    (
        "meta-data/network/interfaces/macs/0e:00:00:00:01:0a/subnet-ipv4-cidr-block",
        "10.0.1.0/24",
    ),
    ("user-data", "#!/bin/sh\necho hi\n"),
];

fn serve_tree(req: &FakeReq) -> FakeResp {
    match tree_answer(TREE, &req.path) {
        Some(body) => FakeResp::new(200, body),
        None => FakeResp::new(404, "404 - Not Found"),
    }
}

/// `vmctx show --json` with a budget (seconds) in the environment.
fn show(url: &str, budget: &str) -> Output {
    Command::new(vmctx_bin())
        .args(["show", "--json", "--source", &format!("ec2:{url}")])
        .env("VMCTX_IMDS_TIMEOUT", budget)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    json(o)
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    stderr(o)
}

#[test]
fn reads_the_emulator_with_tokens_required() {
    let imds = ImdsServer::start(&[
        "--source",
        &format!("dir:{}", fixture("imported-ami").display()),
        "--require-token",
    ]);
    let v = ok(&show(&imds.url(), "10"));
    assert_eq!(v["instance_id"], "i-0a1b2c3d4e5f60718");
    assert_eq!(v["source"], format!("ec2:{}", imds.url()));
    assert_eq!(v["hostname"]["name"], "ami-import-0");
    assert_eq!(v["ec2"]["region"], "us-east-1");
    assert_eq!(v["ec2"]["availability_zone"], "us-east-1a");
    assert!(v["ssh_keys"][0].as_str().unwrap().ends_with("gsg-keypair"));
    assert_eq!(v["network"]["nics"][0]["method"], "dhcp");
    assert_eq!(v["cloud_config"]["scripts"][0]["name"], "user-data");
    assert_eq!(
        v["warnings"],
        serde_json::json!([]),
        "v2 worked: no fallback"
    );
    // plan works on it exactly as on OpenNebula.
    let links = links_file("imported-ami");
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        &format!("ec2:{}", imds.url()),
        "--links-file",
        links.to_str().unwrap(),
    ]);
    let p = ok(&o);
    assert_eq!(p["network"]["ethernets"]["ens3"]["dhcp4"], true);
    assert_eq!(p["scripts"][0]["kind"], "user_data");
}

#[test]
fn token_put_403_404_405_fall_back_to_v1() {
    for status in [403, 404, 405] {
        let imds = FakeImds::start(move |r, _| match r.method.as_str() {
            "PUT" => FakeResp::new(status, ""),
            _ => serve_tree(r),
        });
        let v = ok(&show(&imds.url(), "10"));
        assert_eq!(v["instance_id"], "i-0123456789abcdef0");
        let w = v["warnings"][0].as_str().unwrap();
        assert!(
            w.contains(&format!("token PUT answered {status}")) && w.contains("using IMDSv1"),
            "{w}"
        );
        let log = imds.log.lock().unwrap();
        assert_eq!(log.iter().filter(|r| r.method == "PUT").count(), 1);
        assert!(log
            .iter()
            .all(|r| r.header("x-aws-ec2-metadata-token").is_none()));
    }
}

#[test]
fn token_put_400_is_an_error() {
    let imds = FakeImds::start(|r, _| match r.method.as_str() {
        "PUT" => FakeResp::new(400, "Missing or Invalid Parameters"),
        _ => serve_tree(r),
    });
    let e = failed(&show(&imds.url(), "10"));
    assert!(
        e.contains("/latest/api/token: the token PUT was refused with 400 Bad Request; not falling back to IMDSv1"),
        "{e}"
    );
    assert_eq!(
        imds.requests(),
        ["PUT /latest/api/token"],
        "no GET after a 400"
    );
}

#[test]
fn a_token_put_that_times_out_falls_back_to_v1() {
    let imds = FakeImds::start(|r, _| match r.method.as_str() {
        "PUT" => FakeResp::new(200, "late-token").after(Duration::from_secs(3)),
        _ => serve_tree(r),
    });
    vmctx_bin(); // built (once) before the clock starts
    let t = Instant::now();
    let v = ok(&show(&imds.url(), "10"));
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("token PUT timed out"),
        "{v}"
    );
}

#[test]
fn tokens_are_sent_and_ttl_asked() {
    let imds = FakeImds::start(|r, _| match r.method.as_str() {
        "PUT" if r.header("x-aws-ec2-metadata-token-ttl-seconds") == Some("21600") => {
            FakeResp::new(200, "tok-1")
        }
        "PUT" => FakeResp::new(400, ""),
        _ if r.header("x-aws-ec2-metadata-token") != Some("tok-1") => FakeResp::new(401, ""),
        _ => serve_tree(r),
    });
    let v = ok(&show(&imds.url(), "10"));
    assert_eq!(v["hostname"]["domain"], "ec2.internal");
    assert_eq!(v["scripts"]["user_data"]["kind"], "#!/bin/sh");
}

#[test]
fn a_401_mid_crawl_gets_one_new_token() {
    // The first token stops working after four requests; the second PUT gives a good one.
    let imds = FakeImds::start(|r, n| {
        if r.method == "PUT" {
            return FakeResp::new(200, if n == 0 { "old" } else { "new" });
        }
        match r.header("x-aws-ec2-metadata-token") {
            Some("new") => serve_tree(r),
            Some("old") if n < 4 => serve_tree(r),
            _ => FakeResp::new(401, ""),
        }
    });
    let v = ok(&show(&imds.url(), "10"));
    assert_eq!(v["network"]["nics"][0]["mac"], "0e:00:00:00:01:0a");
    let puts = imds
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .count();
    assert_eq!(puts, 2, "{:?}", imds.requests());
    assert!(
        v["warnings"].to_string().contains("fetching a new token"),
        "{v}"
    );

    // A server that keeps refusing: one refresh, then a clear error.
    let imds = FakeImds::start(|r, _| match r.method.as_str() {
        "PUT" => FakeResp::new(200, "t"),
        _ => FakeResp::new(401, ""),
    });
    let e = failed(&show(&imds.url(), "10"));
    assert!(
        e.contains("401 Unauthorized again with a fresh token"),
        "{e}"
    );
}

#[test]
fn transient_500s_are_retried_then_reported() {
    // Two 500s on the instance id, then the real answer.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = seen.clone();
    let imds = FakeImds::start(move |r, _| {
        if r.path.ends_with("/instance-id")
            && s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
        {
            return FakeResp::new(500, "");
        }
        serve_tree(r)
    });
    ok(&show(&imds.url(), "10"));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);

    // Always 500: never "no data", an error naming the URL and the attempts.
    let imds = FakeImds::start(|r, _| {
        if r.path.ends_with("/meta-data/") {
            return FakeResp::new(500, "");
        }
        serve_tree(r)
    });
    let e = failed(&show(&imds.url(), "10"));
    assert!(
        e.contains(
            "/latest/meta-data/: still failing after 6 attempts (last: 500 Internal Server Error)"
        ),
        "{e}"
    );
    assert!(e.ends_with("\n") && e.lines().count() == 1, "one line: {e}");
}

#[test]
fn delays_past_the_budget_fail_within_it() {
    let imds = FakeImds::start(|r, _| {
        if r.path.ends_with("/local-hostname") {
            return FakeResp::new(200, "late").after(Duration::from_secs(5));
        }
        serve_tree(r)
    });
    vmctx_bin(); // built (once) before the clock starts
    let t = Instant::now();
    let e = failed(&show(&imds.url(), "1.5"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        e.contains(
            "/latest/meta-data/local-hostname: no complete answer within the 1500 ms budget"
        ),
        "{e}"
    );
}

#[test]
fn a_listed_entry_that_404s_fails_the_read() {
    let imds = FakeImds::start(|r, _| {
        if r.path == "/latest/meta-data/" {
            let mut body = tree_answer(TREE, &r.path).unwrap();
            body.push_str("\nhostname");
            return FakeResp::new(200, body);
        }
        serve_tree(r)
    });
    let e = failed(&show(&imds.url(), "10"));
    assert!(
        e.contains("/latest/meta-data/hostname: listed in http://")
            && e.contains("/latest/meta-data/ but answers 404 Not Found"),
        "{e}"
    );
}

#[test]
fn no_user_data_is_fine_and_hosts_are_refused() {
    let imds = FakeImds::start(|r, _| {
        if r.path == "/latest/user-data" {
            return FakeResp::new(404, "");
        }
        serve_tree(r)
    });
    let v = ok(&show(&imds.url(), "10"));
    assert!(
        v["scripts"]["user_data"].is_null() && v["cloud_config"].is_null(),
        "{v}"
    );
    let e = failed(&vmctx(&[
        "show",
        "--source",
        "ec2:http://instance-data:8773",
    ]));
    assert!(e.contains("the host must be an IP literal"), "{e}");
}

#[test]
fn detect_dmi_then_probe() {
    let t = tempfile::tempdir().unwrap();
    let dmi = t.path().join("sys/class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("sys_vendor"), "QEMU\n").unwrap();
    let r = t.path().to_str().unwrap();
    // No CD, DMI names no cloud, nothing to probe under --root without VMCTX_IMDS_URL.
    let o = vmctx(&["detect", "--root", r]);
    assert!(failed(&o).contains("DMI names no cloud"), "{}", stderr(&o));
    // With an IMDS to probe: the decision and the evidence.
    let imds = FakeImds::start(|r, _| serve_tree(r));
    let o = Command::new(vmctx_bin())
        .args(["detect", "--json", "--root", r])
        .env("VMCTX_IMDS_URL", imds.url())
        .output()
        .unwrap();
    let v = ok(&o);
    assert_eq!(v["source"], format!("ec2:{}", imds.url()));
    let ev = v["evidence"].to_string();
    assert!(
        ev.contains("answered: instance i-0123456789abcdef0") && ev.contains("QEMU"),
        "{ev}"
    );
    // DMI saying EC2 decides without a probe.
    std::fs::write(dmi.join("sys_vendor"), "Amazon EC2\n").unwrap();
    let o = vmctx(&["detect", "--root", r]);
    let out = stdout(&o);
    assert!(
        out.starts_with("ec2\n") && out.contains("DMI says EC2"),
        "{out}"
    );
    // The local stage finds no CD: on EC2 it leaves the flag for the final stage and does nothing.
    let o = vmctx(&["apply", "--stage", "local", "--root", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("read in the final stage"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("run/vmctx/context")).unwrap(),
        "ec2\n"
    );
}
