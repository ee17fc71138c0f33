use super::*;

fn run(result: RunResult, start: f64, took: Option<f64>) -> StageRun {
    StageRun {
        result,
        started: String::new(),
        started_unix: start,
        finished: None,
        duration_secs: took,
        pid: std::process::id(),
        source: Some("opennebula:/dev/sr0".into()),
        instance_id: Some("one-7".into()),
        changed: 0,
        failed: 0,
        errors: vec![],
        warnings: vec![],
    }
}

fn enabled() -> Boot {
    Boot {
        code: "enabled-by-generator",
        reason: "vmctx enabled by its systemd units".into(),
    }
}

fn status(stages: &[(&str, StageRun)]) -> Status {
    Status {
        stages: stages
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect(),
    }
}

#[test]
fn words_and_exit_codes() {
    let none = Status::default();
    let d = details(Overall::NotRun, &none, enabled());
    assert_eq!(d.words(), ("not started".into(), "not started".into()));
    assert_eq!(d.exit_code(), 0);
    assert_eq!(d.detail, "vmctx enabled by its systemd units");
    assert!(d.v1.is_empty(), "no stage keys before any stage ran");

    let disabled = Boot {
        code: "disabled-by-marker-file",
        reason: "vmctx disabled by /etc/vmctx/disabled".into(),
    };
    let d = details(Overall::Disabled, &none, disabled);
    assert_eq!(d.words().0, "disabled");
    assert_eq!(d.to_value()["boot_status_code"], "disabled-by-marker-file");
    assert_eq!(d.exit_code(), 0);

    let mut local = run(RunResult::Running, 100.0, None);
    local.source = None;
    let d = details(Overall::Running, &status(&[("local", local)]), enabled());
    assert_eq!(d.words(), ("running".into(), "running".into()));
    assert_eq!(d.detail, "Running in stage: init-local");
    assert_eq!(d.v1["stage"], "init-local");
    assert_eq!(d.exit_code(), 0);

    let st = status(&[
        ("local", run(RunResult::Done, 100.0, Some(0.5))),
        ("final", run(RunResult::Done, 105.0, Some(2.25))),
    ]);
    let d = details(Overall::Done, &st, enabled());
    assert_eq!(d.words(), ("done".into(), "done".into()));
    assert_eq!(d.exit_code(), 0);
    assert_eq!(d.datasource, "opennebula");
    assert_eq!(d.detail, "DataSourceOpenNebula [seed=/dev/sr0]");
    assert_eq!(d.last_update, "Thu, 01 Jan 1970 00:01:47 +0000");
    assert_eq!(d.v1["modules-final"]["finished"], 107.25);
    assert_eq!(d.v1["init-local"]["start"], 100.0);
    assert_eq!(d.v1["init"]["start"], Value::Null);
    assert_eq!(d.v1["stage"], Value::Null);

    // Warnings: done, but degraded (exit 2).
    let mut fin = run(RunResult::Done, 105.0, Some(1.0));
    fin.warnings = vec!["growfs /: not a partition".into()];
    let d = details(Overall::Done, &status(&[("final", fin)]), enabled());
    assert_eq!(d.words(), ("done".into(), "degraded done".into()));
    assert_eq!(d.exit_code(), 2);

    // A failed stage: error (exit 1), its errors listed; a failure without a message still
    // counts as one.
    let mut fin = run(RunResult::Failed, 105.0, Some(1.0));
    fin.errors = vec!["script start_script: exit 3".into()];
    let d = details(Overall::Error, &status(&[("final", fin)]), enabled());
    assert_eq!(d.words(), ("error".into(), "error - done".into()));
    assert_eq!(d.exit_code(), 1);
    assert_eq!(d.errors, ["script start_script: exit 3"]);
    let bare = run(RunResult::Failed, 105.0, Some(1.0));
    let d = details(Overall::Error, &status(&[("final", bare)]), enabled());
    assert_eq!(d.exit_code(), 1);
    assert_eq!(d.errors.len(), 1);
}

#[test]
fn errors_in_cloud_init_stage_order() {
    let mut local = run(RunResult::Failed, 100.0, Some(1.0));
    local.errors = vec!["from local".into()];
    let mut all = run(RunResult::Failed, 110.0, Some(1.0));
    all.errors = vec!["from all".into()];
    let st = status(&[("local", local), ("all", all)]);
    // init (all) sorts before init-local (local), as in cloud-init.
    assert_eq!(
        details(Overall::Error, &st, enabled()).errors,
        ["from all", "from local"]
    );
}

#[test]
fn long_and_json_shapes() {
    let mut fin = run(RunResult::Failed, 125.0, Some(0.678));
    fin.errors = vec!["e1".into(), "e2".into()];
    fin.warnings = vec!["w1\nmore".into()];
    let d = details(Overall::Error, &status(&[("final", fin)]), enabled());
    let long = d.render(Args {
        long: true,
        ..Args::default()
    });
    assert_eq!(
        long,
        "status: error\nextended_status: error - done\nboot_status_code: enabled-by-generator\n\
         last_update: Thu, 01 Jan 1970 00:02:05 +0000\ndetail: DataSourceOpenNebula [seed=/dev/sr0]\n\
         errors:\n\t- e1\n\t- e2\nrecoverable_errors:\nWARNING:\n\t- w1 more\n"
    );
    assert_eq!(d.render(Args::default()), "status: error\n");
    let json = d.render(Args {
        format: Format::Json,
        ..Args::default()
    });
    let v: Value = serde_json::from_str(&json).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "boot_status_code",
            "datasource",
            "detail",
            "errors",
            "extended_status",
            "init",
            "init-local",
            "last_update",
            "modules-config",
            "modules-final",
            "recoverable_errors",
            "stage",
            "status"
        ]
    );
    assert_eq!(v["recoverable_errors"]["WARNING"][0], "w1\nmore");
    assert_eq!(v["modules-final"]["errors"], json!(["e1", "e2"]));
    assert!(json.starts_with("{\n  \"boot_status_code\": "), "{json}");
    let yaml = d.render(Args {
        format: Format::Yaml,
        ..Args::default()
    });
    assert!(
        yaml.starts_with("---\nboot_status_code: enabled-by-generator\n"),
        "{yaml}"
    );
    assert!(yaml.contains("\nerrors:\n- e1\n- e2\n"), "{yaml}");
    assert!(yaml.ends_with("status: error\n...\n\n"), "{yaml}");
}

#[test]
fn dates_like_python() {
    assert_eq!(http_date(125.678), "Thu, 01 Jan 1970 00:02:05 +0000");
    assert_eq!(
        http_date(1_709_251_199.9),
        "Thu, 29 Feb 2024 23:59:59 +0000"
    );
    assert_eq!(
        http_date(1_796_515_200.0),
        "Sun, 06 Dec 2026 00:00:00 +0000"
    );
}

#[test]
fn boot_codes_from_the_root() {
    let t = tempfile::tempdir().unwrap();
    assert_eq!(boot(t.path(), Overall::Done).code, "enabled-by-sysvinit");
    std::fs::create_dir_all(t.path().join("run/systemd/system")).unwrap();
    assert_eq!(boot(t.path(), Overall::Done).code, "enabled-by-generator");
    assert_eq!(
        boot(t.path(), Overall::Disabled).code,
        "disabled-by-kernel-command-line"
    );
    std::fs::create_dir_all(t.path().join("etc/vmctx")).unwrap();
    std::fs::write(t.path().join("etc/vmctx/disabled"), "").unwrap();
    assert_eq!(
        boot(t.path(), Overall::Disabled).code,
        "disabled-by-marker-file"
    );
}
