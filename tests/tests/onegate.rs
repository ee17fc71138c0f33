//! `REPORT_READY=YES`: after the final stage, `PUT $ONEGATE_ENDPOINT/vm` with the token and
//! VMID headers and `READY=YES`, against a real HTTP server on 127.0.0.1: retried on 5xx,
//! given up with a clear error after the bound, once per instance, the token never shown.

use std::process::{Command, Output};
use vmctx_tests::*;

const TOKEN: &str = "tok-Zx81-SECRET-not-for-logs";

fn context(url: &str) -> tempfile::TempDir {
    context_dir(
        &format!("VMID='7'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='{url}'\n"),
        &[("token.txt", &format!("{TOKEN}\n"))],
    )
}

fn apply_final(ctx: &tempfile::TempDir, root: &tempfile::TempDir) -> Output {
    Command::new(vmctx_bin())
        .args(["apply", "--stage", "final", "--json", "--source"])
        .arg(format!("dir:{}", ctx.path().display()))
        .arg("--root")
        .arg(root.path())
        .env("VMCTX_ONEGATE_BACKOFF_MS", "50")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

fn no_token_shown(o: &Output, root: &tempfile::TempDir) {
    let all = stdout(o) + &stderr(o);
    assert!(!all.contains(TOKEN), "the token was shown:\n{all}");
    let status = std::fs::read_to_string(root.path().join("run/vmctx/status.json")).unwrap();
    assert!(!status.contains(TOKEN), "{status}");
}

fn onegate_action(v: &serde_json::Value) -> serde_json::Value {
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "onegate")
        .cloned()
        .unwrap_or_else(|| panic!("no onegate action: {v}"))
}

#[test]
fn ready_is_put_once_with_token_vmid_and_body() {
    let gate = FakeImds::start(|_, _| FakeResp::new(200, ""));
    let ctx = context(&format!("{}/", gate.url()));
    let root = tempfile::tempdir().unwrap();
    let o = apply_final(&ctx, &root);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let log = gate.log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/vm"));
    assert_eq!(r.header("X-ONEGATE-TOKEN"), Some(TOKEN));
    assert_eq!(r.header("X-ONEGATE-VMID"), Some("7"));
    assert_eq!(r.body, b"READY=YES");
    let a = onegate_action(&json(&o));
    assert_eq!(a["result"], "changed", "{a}");
    no_token_shown(&o, &root);

    // Once per instance: the next boot's final stage does not report again.
    let o = apply_final(&ctx, &root);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(gate.log.lock().unwrap().len(), 1);
    let a = onegate_action(&json(&o));
    assert_eq!(a["result"], "unchanged", "{a}");
}

#[test]
fn server_errors_are_retried() {
    let gate = FakeImds::start(|_, n| {
        if n < 2 {
            FakeResp::new(503, "busy")
        } else {
            FakeResp::new(200, "")
        }
    });
    let ctx = context(&gate.url());
    let root = tempfile::tempdir().unwrap();
    let o = apply_final(&ctx, &root);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(gate.requests(), ["PUT /vm", "PUT /vm", "PUT /vm"]);
    let a = onegate_action(&json(&o));
    assert!(a["detail"].as_str().unwrap().contains("try 3 of 5"), "{a}");
    no_token_shown(&o, &root);
}

#[test]
fn gives_up_after_the_bound_and_tries_again_next_boot() {
    let gate = FakeImds::start(|_, _| FakeResp::new(500, "down"));
    let ctx = context(&gate.url());
    let root = tempfile::tempdir().unwrap();
    vmctx_bin(); // built before the clock starts
    let started = std::time::Instant::now();
    let o = apply_final(&ctx, &root);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(gate.requests().len(), 5);
    assert!(started.elapsed().as_secs() < 20);
    let a = onegate_action(&json(&o));
    assert_eq!(a["result"], "failed");
    let detail = a["detail"].as_str().unwrap();
    assert!(
        detail.contains("gave up after 5 tries") && detail.contains("HTTP 500"),
        "{detail}"
    );
    no_token_shown(&o, &root);
    // The status names the failure.
    let st = Command::new(vmctx_bin())
        .args(["status", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1), "{}", stdout(&st));
    assert!(
        stdout(&st).contains("gave up after 5 tries"),
        "{}",
        stdout(&st)
    );
    // Not marked done: the next final stage tries again.
    let _ = apply_final(&ctx, &root);
    assert_eq!(gate.requests().len(), 10);
}

#[test]
fn a_refused_token_is_not_retried() {
    let gate = FakeImds::start(|_, _| FakeResp::new(401, "bad token"));
    let ctx = context(&gate.url());
    let root = tempfile::tempdir().unwrap();
    let o = apply_final(&ctx, &root);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(gate.requests().len(), 1);
    let a = onegate_action(&json(&o));
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("refused READY=YES: HTTP 401"),
        "{a}"
    );
    no_token_shown(&o, &root);
}

#[test]
fn not_reported_when_a_script_failed() {
    let gate = FakeImds::start(|_, _| FakeResp::new(200, ""));
    let ctx = context_dir(
        &format!(
            "VMID='8'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='{}'\nONEGATE_TOKEN='{TOKEN}'\nSTART_SCRIPT='exit 3'\n",
            gate.url()
        ),
        &[],
    );
    let root = tempfile::tempdir().unwrap();
    let o = apply_final(&ctx, &root);
    assert_eq!(o.status.code(), Some(1));
    assert!(gate.requests().is_empty());
    let a = onegate_action(&json(&o));
    assert!(
        a["detail"].as_str().unwrap().contains("not reported"),
        "{a}"
    );
    no_token_shown(&o, &root);
}
