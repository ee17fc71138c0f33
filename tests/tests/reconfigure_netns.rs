//! `vmctx reconfigure` in a network namespace: a context naming two NICs while one exists; the
//! second NIC arrives (it gets its configuration, the first is left alone), then leaves (the
//! state forgets it, its rule is removed, nothing fails). Per-instance work does not run,
//! unless the context now names a new instance.

use serde_json::Value;
use vmctx_tests::*;

const MAC0: &str = "02:00:0a:00:03:28";
const MAC1: &str = "02:00:0a:00:04:28";

fn context(vmid: u32, marker: &std::path::Path) -> String {
    format!(
        "VMID='{vmid}'\nETH0_MAC='{MAC0}'\nETH0_IP='10.0.3.40'\nETH0_GATEWAY='10.0.3.1'\n\
         ETH1_MAC='{MAC1}'\nETH1_IP='10.0.4.40'\nETH1_GATEWAY='10.0.4.1'\n\
         START_SCRIPT='echo ran >> {}'\n",
        marker.display()
    )
}

fn reconfigure(g: &Guest, src: &str) -> Value {
    let o = g.vmctx(&[
        "reconfigure",
        "--json",
        "--settle-ms",
        "200",
        "--source",
        src,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    json(&o)
}

fn actions(v: &Value) -> Vec<Value> {
    v["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["report"]["actions"].as_array().unwrap().clone())
        .collect()
}

fn network_state(g: &Guest) -> String {
    g.file("/var/lib/vmctx/network.json")
}

#[test]
fn nics_arriving_and_leaving() {
    let Some(g) = Guest::new("recfg") else { return };
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("start-script-ran");
    let ctx = context_dir(&context(1, &marker), &[]);
    let src = format!("dir:{}", ctx.path().display());
    g.veth(("eth0", MAC0), ("peer0", "02:00:0a:00:03:99"));

    let o = g.vmctx(&["apply", "--json", "--stage", "local", "--source", &src]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let missing = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "link" && a["target"] == "ETH1")
        .unwrap_or_else(|| panic!("no note about ETH1: {v}"))
        .clone();
    assert_eq!(missing["result"], "unchanged");
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("no link with MAC {MAC1} (not attached)")),
        "{missing}"
    );
    assert!(g
        .ip(&["-4", "addr", "show", "eth0"])
        .contains("inet 10.0.3.40/24"));
    let eth0_before = g.ip(&["-4", "addr", "show", "eth0"]);

    // The second NIC is attached.
    g.veth(("eth1", MAC1), ("peer1", "02:00:0a:00:04:99"));
    let v = reconfigure(&g, &src);
    assert_eq!(v["rounds"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["rounds"][0]["stage"], "local");
    assert!(g
        .ip(&["-4", "addr", "show", "eth1"])
        .contains("inet 10.0.4.40/24"));
    // The second gateway goes into ETH1's own table, with a `from` rule.
    assert!(g.ip(&["rule"]).contains("from 10.0.4.40 lookup 101"));
    assert!(g
        .ip(&["route", "show", "table", "101"])
        .contains("default via 10.0.4.1 dev eth1"));
    let all = actions(&v);
    let changed: Vec<&Value> = all.iter().filter(|a| a["result"] == "changed").collect();
    assert!(!changed.is_empty());
    for a in &changed {
        let t = a["target"].as_str().unwrap();
        assert!(!t.contains("eth0"), "the first NIC was changed: {a}");
    }
    assert_eq!(g.ip(&["-4", "addr", "show", "eth0"]), eth0_before);
    assert!(network_state(&g).contains(MAC1));

    // It is detached again.
    g.ip(&["link", "del", "eth1"]);
    let v = reconfigure(&g, &src);
    let all = actions(&v);
    assert!(all.iter().all(|a| a["result"] != "failed"), "{v}");
    assert!(
        all.iter().any(|a| a["kind"] == "link"
            && a["detail"]
                .as_str()
                .unwrap()
                .contains("gone: forgot the 1 address(es) (10.0.4.40/24)")),
        "{v}"
    );
    assert!(!network_state(&g).contains(MAC1), "{}", network_state(&g));
    assert!(network_state(&g).contains(MAC0));
    assert!(
        !g.ip(&["rule"]).contains("10.0.4.40"),
        "{}",
        g.ip(&["rule"])
    );
    assert_eq!(g.ip(&["-4", "addr", "show", "eth0"]), eth0_before);

    // Nothing changed since: a reconfigure changes nothing.
    let v = reconfigure(&g, &src);
    assert_eq!(v["rounds"][0]["report"]["changed"], 0, "{v}");
    // No per-instance work ran in any of these.
    assert!(!marker.exists(), "the start script ran on a reconfigure");

    // The CD now names another instance: applied whole, as that instance's first boot.
    std::fs::write(ctx.path().join("context.sh"), context(2, &marker)).unwrap();
    let v = reconfigure(&g, &src);
    assert_eq!(v["rounds"][0]["stage"], "all", "{v}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
}
