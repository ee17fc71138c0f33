//! The metadata sidecar on a cloud host (`vmctx imds serve --host-map opennebula:DIR` with
//! `vmctx imds host-rules`), end to end in network namespaces: real context CDs in a fake
//! OpenNebula datastore, real nftables rules, curl from each VM's namespace.

use std::process::Command;
use vmctx_tests::*;

/// One variant of `imds_host_sidecar.sh`: its output, after the checks every variant shares.
fn sidecar(variant: &str) -> Option<String> {
    if !need("root", is_root()) || !need_tools(&["ip", "curl", "nft", "setpriv", "xorriso"]) {
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let o = Command::new("sh")
        .args(["-c", include_str!("imds_host_sidecar.sh")])
        .env("VMCTX", vmctx_bin())
        .env("ISO", workspace().join("vm-fixtures/build-context-iso"))
        .env("T", t.path())
        // Both variants run at once in this process: their namespaces' names differ.
        .env("TAG", format!("{}{}", &variant[..1], std::process::id()))
        .env("VARIANT", variant)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let has = |line: &str| assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    has("rules applied");
    has("rules again unchanged");
    // Each VM its own id, at the address its context gives (A's from its MAC).
    has("A get=200 id=i-00000000000000005");
    // B's context requires tokens; its own token works, A's does not.
    has("B v1=401");
    has("B token=200 id=i-00000000000000006");
    has("B with A's token=401");
    // A VM folder added while serving is answered within 2 s; a removed one is forgotten.
    let ms = |prefix: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{out}"));
        let v = line[prefix.len()..].split_whitespace().next().unwrap();
        v.parse()
            .unwrap_or_else(|_| panic!("{prefix}: {v} (not within its time)\n{out}"))
    };
    assert!(ms("C appeared answered_ms=") <= 2000, "{out}");
    assert!(out.contains("id=i-00000000000000007"), "{out}");
    ms("B removed gone_ms=");
    // Two folders claiming one address: neither is served, both are named in the log.
    ms("A claimed twice gone_ms=");
    ms("A claimed once again back_ms=");
    assert!(
        out.contains("10.0.0.5: claimed by ") && out.contains("/ds/0/9: served to none"),
        "{out}"
    );
    // host-status and SIGUSR1: every VM with its addresses and counts.
    assert!(
        out.lines().any(|l| l.starts_with("status: ")
            && l.contains("/ds/0/5 i-00000000000000005 [10.0.0.5] ready")
            && l.contains("tree_age=")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("imds vm ") && l.contains("/ds/0/7 i-00000000000000007 [10.0.0.7]")),
        "{out}"
    );
    assert!(!out.contains("/ds/0/6 i-"), "B was forgotten: {out}");
    // Removing the rules takes the guests' path away, and only vmctx's tables.
    has("rules removed removed");
    has("after removal A=000");
    has("rules removed again nothing to remove");
    Some(out)
}

/// The host is the guests' gateway: an `ip` family redirect on the bridge.
#[test]
fn sidecar_serves_each_vm_of_a_datastore_through_the_gateway_rules() {
    sidecar("gateway");
}

/// A plain L2 bridge with the gateway elsewhere: the `bridge` family takes the frames up to
/// the host, which has no route to the guests and answers through the bridge.
#[test]
fn sidecar_serves_each_vm_of_a_datastore_through_the_l2_bridge_rules() {
    if let Some(out) = sidecar("l2") {
        assert!(out.contains("(bound to br0)"), "{out}");
    }
}
