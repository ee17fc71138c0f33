//! Scheduled updates and the sync settings as `vmctx apply --stage final --root R` renders
//! them: systemd timers (or cron without systemd), the detected package manager, the 0600
//! settings file, idempotence, removal when the variables go, and refusal of bad schedules.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use vmctx_tests::{context_dir, fixture, json, links_file, stderr, stdout, vmctx};

fn image(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (p, body) in files {
        let p = t.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    t
}

fn apply(source: &Path, root: &Path, extra: &[&str]) -> serde_json::Value {
    let src = format!("dir:{}", source.display());
    let r = root.to_str().unwrap();
    let mut args = vec![
        "--root", r, "apply", "--source", &src, "--stage", "final", "--json",
    ];
    args.extend(extra);
    let o = vmctx(&args);
    assert!(o.status.success(), "apply: {}\n{}", stdout(&o), stderr(&o));
    json(&o)
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

const UNITS: [&str; 4] = [
    "etc/systemd/system/vmctx-update.timer",
    "etc/systemd/system/vmctx-update.service",
    "etc/systemd/system/vmctx-sync.timer",
    "etc/systemd/system/vmctx-sync.service",
];
const DROPINS: [&str; 2] = [
    "etc/systemd/system/vmctx-update.timer.d/vmctx-schedule.conf",
    "etc/systemd/system/vmctx-sync.timer.d/vmctx-interval.conf",
];
const WANTS: &str = "etc/systemd/system/timers.target.wants/vmctx-update.timer";

fn rocky(packaged: bool) -> tempfile::TempDir {
    let mut files: Vec<(String, String)> = [
        (
            "etc/os-release",
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
        ),
        ("usr/bin/dnf", ""),
        ("usr/bin/yum", ""),
        ("usr/lib/systemd/systemd", ""),
    ]
    .iter()
    .map(|(p, b)| (p.to_string(), b.to_string()))
    .collect();
    if packaged {
        let dir = vmctx_tests::workspace().join("packaging/systemd");
        for u in [
            "vmctx-update.timer",
            "vmctx-update.service",
            "vmctx-sync.timer",
            "vmctx-sync.service",
        ] {
            let body = std::fs::read_to_string(dir.join(u)).unwrap();
            files.push((format!("usr/lib/systemd/system/{u}"), body));
        }
    }
    let v: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_str()))
        .collect();
    image(&v)
}

fn check_settings(r: &Path) {
    let conf = read(r, "etc/vmctx/update.conf");
    assert!(
        conf.contains("\nVMCTX_UPDATE_COMMAND=\"dnf -y -q upgrade --refresh\"\n"),
        "{conf}"
    );
    let dropin = read(r, DROPINS[0]);
    assert!(
        dropin.contains("\nOnCalendar=\nOnCalendar=Sun *-*-* 00:00:00\n"),
        "{dropin}"
    );
    let toml = read(r, "etc/vmctx/sync.toml");
    for want in [
        "bucket = \"hol02-notebooks\"",
        "dir = \"/home/ec2-user/notebooks\"",
        "mode = \"both\"",
        "interval = \"5min\"",
        "region = \"us-east-1\"",
    ] {
        assert!(toml.contains(want), "{want} in:\n{toml}");
    }
    let mode = std::fs::metadata(r.join("etc/vmctx/sync.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let interval = read(r, DROPINS[1]);
    assert!(
        interval.contains("\nOnUnitInactiveSec=\nOnUnitInactiveSec=300s\n"),
        "{interval}"
    );
    assert!(!r.join("etc/cron.d/vmctx-update").exists());
}

#[test]
fn systemd_without_packaged_units_gets_whole_units_idempotent_and_removed() {
    let root = rocky(false);
    let r = root.path();
    apply(&fixture("hol02-jupyter"), r, &[]);
    check_settings(r);
    let timer = read(r, UNITS[0]);
    for want in [
        "RandomizedDelaySec=30min",
        "Persistent=true",
        "WantedBy=timers.target",
    ] {
        assert!(timer.contains(want), "{want} in:\n{timer}");
    }
    let service = read(r, UNITS[1]);
    assert!(
        service.contains("EnvironmentFile=/etc/vmctx/update.conf"),
        "{service}"
    );
    assert!(
        service.contains("ExecStart=/bin/sh -c \"$VMCTX_UPDATE_COMMAND\""),
        "{service}"
    );
    assert_eq!(
        std::fs::read_link(r.join(WANTS)).unwrap(),
        Path::new("/etc/systemd/system/vmctx-update.timer")
    );
    assert!(read(r, UNITS[3]).contains("ExecStart=/usr/bin/vmctx sync --once\n"));

    let again = apply(&fixture("hol02-jupyter"), r, &[]);
    let changed: Vec<&serde_json::Value> = again["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| (a["kind"] == "update" || a["kind"] == "sync") && a["result"] != "unchanged")
        .collect();
    assert!(
        changed.is_empty(),
        "a second apply changes nothing: {changed:?}"
    );

    // The variables go: so do the files (a dry run first changes nothing).
    let plain = context_dir("SET_HOSTNAME='plain'\nVMID='40'\n", &[]);
    let dry = apply(plain.path(), r, &["--dry-run"]);
    assert!(dry["changed"].as_u64().unwrap() > 0);
    assert!(r.join(UNITS[0]).exists());
    apply(plain.path(), r, &[]);
    let gone = [
        "etc/vmctx/sync.toml",
        "etc/vmctx/update.conf",
        WANTS,
        "etc/systemd/system/vmctx-update.timer.d",
    ];
    for p in UNITS.iter().chain(&DROPINS).chain(&gone) {
        assert!(!r.join(p).exists(), "{p} removed");
    }
}

#[test]
fn packaged_units_get_only_settings_and_drop_ins() {
    let root = rocky(true);
    let r = root.path();
    apply(&fixture("hol02-jupyter"), r, &[]);
    check_settings(r);
    for p in UNITS.iter().chain(&[WANTS]) {
        assert!(!r.join(p).exists(), "{p}: the package's unit is used");
    }
    let plain = context_dir("SET_HOSTNAME='plain'\nVMID='40'\n", &[]);
    apply(plain.path(), r, &[]);
    for p in DROPINS
        .iter()
        .chain(&["etc/vmctx/sync.toml", "etc/vmctx/update.conf"])
    {
        assert!(!r.join(p).exists(), "{p} removed");
    }
    assert!(
        r.join("usr/lib/systemd/system/vmctx-update.timer").exists(),
        "packaged units stay"
    );
}

#[test]
fn cron_without_systemd_and_the_command_override() {
    let root = image(&[("etc/os-release", "ID=alpine\n"), ("sbin/apk", "")]);
    let r = root.path();
    let ctx = context_dir("UPDATE_SCHEDULE='Mon..Fri 02:30'\nVMID='41'\n", &[]);
    apply(ctx.path(), r, &[]);
    let cron = read(r, "etc/cron.d/vmctx-update");
    assert!(
        cron.contains("\n30 2 * * 1-5 root apk update -q && apk upgrade -q\n"),
        "{cron}"
    );
    assert!(!r.join(UNITS[0]).exists());

    let ctx = context_dir(
        "UPDATE_SCHEDULE='0 4 * * *'\nUPDATE_COMMAND='/usr/local/bin/upgrade --keep 50%'\nVMID='41'\n",
        &[],
    );
    apply(ctx.path(), r, &[]);
    let cron = read(r, "etc/cron.d/vmctx-update");
    assert!(
        cron.contains("\n0 4 * * * root /usr/local/bin/upgrade --keep 50\\%\n"),
        "{cron}"
    );
}

#[test]
fn no_package_manager_is_a_failed_action_naming_the_fix() {
    let root = image(&[("usr/lib/systemd/systemd", "")]);
    let ctx = context_dir("UPDATE_SCHEDULE='@weekly'\nVMID='42'\n", &[]);
    let src = format!("dir:{}", ctx.path().display());
    let o = vmctx(&[
        "--root",
        root.path().to_str().unwrap(),
        "apply",
        "--source",
        &src,
        "--stage",
        "final",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("set UPDATE_COMMAND"), "{}", stdout(&o));
}

#[test]
fn invalid_schedules_write_no_schedule() {
    let root = image(&[("usr/bin/apt-get", ""), ("usr/lib/systemd/systemd", "")]);
    for (bad, why) in [("0 0 * *", "5 fields"), ("61 * * * *", "minute")] {
        let ctx = context_dir(&format!("UPDATE_SCHEDULE='{bad}'\nVMID='43'\n"), &[]);
        let src = format!("dir:{}", ctx.path().display());
        let o = vmctx(&[
            "--root",
            root.path().to_str().unwrap(),
            "apply",
            "--source",
            &src,
            "--stage",
            "final",
        ]);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{bad}: {all}");
        assert!(
            all.contains("UPDATE_SCHEDULE: ") && all.contains(why),
            "{bad}: {all}"
        );
        assert!(!root.path().join("etc/systemd").exists());
    }
}

#[test]
fn plan_shows_the_schedule_and_the_sync() {
    let src = format!("dir:{}", fixture("hol02-voila").display());
    let lf = links_file("hol02-voila");
    let o = vmctx(&[
        "plan",
        "--source",
        &src,
        "--links-file",
        lf.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(out.contains("updates   cron \"0 0 * * 0\""), "{out}");
    assert!(out.contains("sync      s3://hol02-notebooks/"), "{out}");
}
