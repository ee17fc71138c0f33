//! The plan is the program (everything but the network): `plan` shows the #cloud-config work
//! and what this system cannot do (an unknown zone); one bad value costs only what it
//! configures (applied in a namespace: the rest is there, the variable named, exit 1); and
//! the context's files are read once, so scripts and OneGate work after the CD went away.

use std::path::Path;
use std::process::{Command, Output};
use vmctx_tests::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHol02ResearchTeamKeyForJupyterAccessOnlyAAAA iso@15";

/// A NIC with an address and a gateway, a hostname and root's key: what must survive.
fn base(extra: &str) -> String {
    format!(
        "VMID='15'\nSET_HOSTNAME='iso15'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n\
         ETH0_MASK='255.255.255.0'\nETH0_GATEWAY='10.0.3.1'\nSSH_PUBLIC_KEY='{KEY}'\n{extra}"
    )
}

/// A scratch root's tzdata: one zone.
fn zoneinfo(root: &Path) {
    let zi = root.join("usr/share/zoneinfo/Europe");
    std::fs::create_dir_all(&zi).unwrap();
    std::fs::write(zi.join("Prague"), b"TZif2 Prague").unwrap();
}

fn out(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn cloud_config_work_is_in_the_plan() {
    let ud = "#cloud-config\nusers:\n  - name: carol\n    shell: /bin/bash\n\
              write_files:\n  - path: /etc/carol/app.conf\n    content: hello\n\
              runcmd:\n  - touch /var/tmp/carol-was-here\n";
    let ctx = context_dir(&format!("VMID='15'\nUSER_DATA='{ud}'\n"), &[]);
    let src = format!("dir:{}", ctx.path().display());
    let o = vmctx(&["plan", "--source", &src, "--links-file", "/dev/null"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for needle in [
        "carol",
        "/etc/carol/app.conf",
        "touch /var/tmp/carol-was-here",
    ] {
        assert!(text.contains(needle), "{needle:?} not in the plan:\n{text}");
    }
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        &src,
        "--links-file",
        "/dev/null",
    ]);
    let p = json(&o);
    let cc = &p["cloud_config"];
    assert_eq!(cc["users"][0]["name"], "carol", "{p:#}");
    assert_eq!(cc["write_files"][0]["path"], "/etc/carol/app.conf", "{p:#}");
    assert_eq!(cc["runcmd"][0], "touch /var/tmp/carol-was-here", "{p:#}");
}

#[test]
fn an_unknown_zone_fails_the_plan_by_name() {
    let root = tempfile::tempdir().unwrap();
    zoneinfo(root.path());
    let ctx = context_dir("VMID='15'\nTIMEZONE='Mars/Olympus_Mons'\n", &[]);
    let src = format!("dir:{}", ctx.path().display());
    let r = root.path().to_str().unwrap();
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        &src,
        "--links-file",
        "/dev/null",
        "--root",
        r,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let p = json(&o);
    let errors = p["errors"].to_string();
    assert!(errors.contains("TIMEZONE: "), "{p:#}");
    assert!(
        !errors.contains("Olympus"),
        "the value is not repeated: {errors}"
    );
    assert!(p["system"]["timezone"].is_null(), "{p:#}");
    // A zone it has is planned, and plans clean.
    let ok = context_dir("VMID='15'\nTIMEZONE='Europe/Prague'\n", &[]);
    let src = format!("dir:{}", ok.path().display());
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        &src,
        "--links-file",
        "/dev/null",
        "--root",
        r,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(json(&o)["system"]["timezone"], "Europe/Prague");
}

/// Applies `context` (with `files` beside it) in a fresh guest; checks that the network,
/// hostname and key are there, `var` is named under errors, exit 1. Returns the guest.
fn one_bad_value(tag: &str, extra: &str, files: &[(&str, &str)], var: &str) -> Option<Guest> {
    let g = Guest::new(tag)?;
    zoneinfo(g.root.path());
    g.veth(
        ("eth0", "02:00:0a:00:03:28"),
        ("peer0", "02:00:0a:00:03:99"),
    );
    let ctx = context_dir(&base(extra), files);
    let src = format!("dir:{}", ctx.path().display());
    let o = g.vmctx(&["apply", "--json", "--stage", "all", "--source", &src]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{var}: {text}");
    let v = json(&o);
    let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{v:#}"));
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().starts_with(&format!("{var}: "))),
        "{var} not named: {v:#}"
    );
    assert!(
        g.ip(&["-4", "addr", "show", "eth0"])
            .contains("inet 10.0.3.40/24"),
        "{var}: no address"
    );
    assert!(
        g.ip(&["route", "show", "default"])
            .contains("default via 10.0.3.1 dev eth0"),
        "{var}: no default route"
    );
    assert_eq!(g.hostname(), "iso15", "{var}");
    assert!(
        g.file("/root/.ssh/authorized_keys").contains(KEY),
        "{var}: no key"
    );
    // The rest is applied once: a second apply changes nothing and still names the variable.
    let o = g.vmctx(&["apply", "--json", "--stage", "all", "--source", &src]);
    assert_eq!(o.status.code(), Some(1), "{var}: {}", out(&o));
    assert_eq!(
        json(&o)["changed"],
        0,
        "{var}: second apply: {}",
        stdout(&o)
    );
    Some(g)
}

#[test]
fn a_missing_init_script_skips_it_and_those_after() {
    let t = tempfile::tempdir().unwrap();
    let mark = t.path().display().to_string();
    let a = format!("#!/bin/sh\ntouch {mark}/a\n");
    let c = format!("#!/bin/sh\ntouch {mark}/c\n");
    let Some(_g) = one_bad_value(
        "init",
        "INIT_SCRIPTS='a.sh missing.sh c.sh'\n",
        &[("a.sh", &a), ("c.sh", &c)],
        "INIT_SCRIPTS",
    ) else {
        return;
    };
    assert!(
        t.path().join("a").exists(),
        "a.sh, before the missing one, ran"
    );
    assert!(!t.path().join("c").exists(), "c.sh, after it, did not");
}

#[test]
fn an_unknown_zone_costs_only_the_zone() {
    let Some(g) = one_bad_value("tz", "TIMEZONE='Mars/Olympus_Mons'\n", &[], "TIMEZONE") else {
        return;
    };
    assert!(!g.root.path().join("etc/localtime").exists());
}

#[test]
fn a_bad_update_schedule_costs_only_the_updates() {
    let Some(g) = one_bad_value(
        "upd",
        "UPDATE_SCHEDULE='every tuesday-ish'\n",
        &[],
        "UPDATE_SCHEDULE",
    ) else {
        return;
    };
    assert!(!g.root.path().join("etc/vmctx/update.conf").exists());
}

#[test]
fn a_bad_sync_mode_costs_only_the_sync() {
    let Some(g) = one_bad_value(
        "sync",
        "S3_SYNC_BUCKET='notebooks'\nS3_SYNC_MODE='sideways'\n",
        &[],
        "S3_SYNC_MODE",
    ) else {
        return;
    };
    assert!(!g.root.path().join("etc/vmctx/sync.toml").exists());
}

#[test]
fn a_bad_script_timeout_costs_only_the_scripts() {
    let t = tempfile::tempdir().unwrap();
    let extra = format!(
        "START_SCRIPT='touch {}/start'\nSTART_SCRIPT_TIMEOUT='soon'\n",
        t.path().display()
    );
    let Some(_g) = one_bad_value("tmo", &extra, &[], "START_SCRIPT_TIMEOUT") else {
        return;
    };
    assert!(
        !t.path().join("start").exists(),
        "not run with a timeout it was not given"
    );
}

#[test]
fn a_relative_grow_fs_costs_only_that_growth() {
    let Some(_g) = one_bad_value("grow", "GROW_FS='data'\n", &[], "GROW_FS") else {
        return;
    };
}

/// The scripts' files and OneGate's token come from the one read: the start script removes
/// the CD image, then INIT_SCRIPTS still run and the token is still sent.
#[test]
fn scripts_and_onegate_work_after_the_cd_went_away() {
    const TOKEN: &str = "tok-issue15-once";
    let gate = FakeImds::start(|_, _| FakeResp::new(200, ""));
    let t = tempfile::tempdir().unwrap();
    let image = t.path().join("ctx.iso");
    let mark = t.path().join("init-ran");
    let ctx = context_dir(
        &format!(
            "VMID='16'\nSTART_SCRIPT='rm -f {}'\nINIT_SCRIPTS='init.sh'\nREPORT_READY='YES'\n\
             ONEGATE_ENDPOINT='{}'\n",
            image.display(),
            gate.url()
        ),
        &[
            ("init.sh", &format!("#!/bin/sh\ntouch {}\n", mark.display())),
            ("token.txt", &format!("{TOKEN}\n")),
        ],
    );
    let Some(image) = build_iso(ctx.path(), &image) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let o = Command::new(vmctx_bin())
        .args(["apply", "--stage", "final", "--json", "--source"])
        .arg(format!("opennebula:{}", image.display()))
        .arg("--root")
        .arg(root.path())
        .env("VMCTX_ONEGATE_BACKOFF_MS", "50")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!image.exists(), "the start script removed the image");
    assert!(mark.exists(), "init.sh ran from the copy read before");
    let log = gate.log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].header("X-ONEGATE-TOKEN"), Some(TOKEN));
    assert!(!out(&o).contains(TOKEN), "the token is never shown");
}
