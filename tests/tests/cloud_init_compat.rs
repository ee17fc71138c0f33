//! The vmctx binary started as `cloud-init` (through a link of that name, as the packages make
//! it on images without cloud-init): `status`, `query` and `clean` answer from what a real
//! `vmctx apply --root …` recorded; every other subcommand names vmctx and fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use vmctx_tests::*;

/// A folder holding `cloud-init -> vmctx`.
struct Shim {
    _dir: tempfile::TempDir,
    link: PathBuf,
}

impl Shim {
    fn new() -> Shim {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("cloud-init");
        std::os::unix::fs::symlink(vmctx_bin(), &link).unwrap();
        Shim { _dir: dir, link }
    }

    fn cmd(&self, root: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.link);
        c.args(args).env("VMCTX_ROOT", root);
        c
    }

    fn run(&self, root: &Path, args: &[&str]) -> Output {
        self.cmd(root, args).output().unwrap()
    }
}

fn apply(root: &Path, ctx: &Path, stage: &str) -> Output {
    let src = format!("dir:{}", ctx.display());
    Command::new(vmctx_bin())
        .args(["apply", "--stage", stage, "--source", &src, "--root"])
        .arg(root)
        .output()
        .unwrap()
}

const CONTEXT: &str = "VMID='42'\nSET_HOSTNAME='nb-7'\nPASSWORD='pw-secret-1'\n\
ONEGATE_TOKEN='gate-secret-2'\nUSER_DATA='#cloud-config\n# ud-secret-3\n'\n";

#[test]
fn status_follows_what_apply_recorded() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    let o = ci.run(root.path(), &["status"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "status: not started\n")
    );
    let v = json(&ci.run(root.path(), &["status", "--format", "json"]));
    assert_eq!(v["status"], "not started");
    assert_eq!(v["boot_status_code"], "enabled-by-sysvinit");
    assert!(v.get("stage").is_none(), "{v}");

    let ctx = context_dir(CONTEXT, &[]);
    let o = apply(root.path(), ctx.path(), "final");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ci.run(root.path(), &["status"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "status: done\n")
    );
    // The same through --root instead of the environment.
    let o = Command::new(&ci.link)
        .args(["status", "--long", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    let long = stdout(&o);
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "status: done",
            "extended_status: done",
            "boot_status_code: enabled-by-sysvinit"
        ],
        "{long}"
    );
    assert!(
        lines[3].starts_with("last_update: ") && lines[3].ends_with(" +0000"),
        "{long}"
    );
    assert_eq!(
        lines[4..],
        [
            format!(
                "detail: DataSourceOpenNebula [seed={}]",
                ctx.path().display()
            )
            .as_str(),
            "errors: []",
            "recoverable_errors: {}"
        ],
        "{long}"
    );
    let v = json(&ci.run(root.path(), &["status", "--format=json"]));
    assert_eq!(v["datasource"], "opennebula");
    assert_eq!(v["extended_status"], "done");
    assert_eq!(v["stage"], serde_json::Value::Null);
    assert!(
        v["modules-final"]["finished"].as_f64().unwrap()
            >= v["modules-final"]["start"].as_f64().unwrap()
    );
    assert_eq!(v["init-local"]["start"], serde_json::Value::Null);
    let y = stdout(&ci.run(root.path(), &["status", "--format", "yaml"]));
    assert!(
        y.starts_with("---\nboot_status_code: enabled-by-sysvinit\ndatasource: opennebula\n"),
        "{y}"
    );
    assert!(
        y.contains("\nmodules-final:\n    errors: []\n    finished: "),
        "{y}"
    );
    assert!(y.ends_with("status: done\n...\n\n"), "{y}");
}

#[test]
fn status_wait_prints_a_dot_per_poll_until_done() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    let waiter = ci
        .cmd(root.path(), &["status", "--wait"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let ctx = context_dir("VMID='6'\nSTART_SCRIPT='sleep 1'\n", &[]);
    assert!(apply(root.path(), ctx.path(), "final").status.success());
    let applied = Instant::now();
    let out = waiter.wait_with_output().unwrap();
    assert!(applied.elapsed() < Duration::from_secs(3));
    let text = stdout(&out);
    let dots = text.len() - text.trim_start_matches('.').len();
    // 0.8 s before the apply and the 1 s script: a dot every 0.25 s.
    assert!(dots >= 6, "{text:?}");
    assert_eq!(&text[dots..], "status: done\n");
    assert_eq!(out.status.code(), Some(0));
    // JSON: no dots.
    let o = ci.run(root.path(), &["status", "--wait", "--format", "json"]);
    assert_eq!(json(&o)["status"], "done");
}

#[test]
fn errors_exit_1_and_warnings_exit_2() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    // A context line vmctx skips: a warning, so done but degraded (cloud-init's exit 2).
    let ctx = context_dir("VMID='8'\nthis is not a variable\n", &[]);
    assert!(apply(root.path(), ctx.path(), "final").status.success());
    let o = ci.run(root.path(), &["status", "--long"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let long = stdout(&o);
    assert!(
        long.starts_with("status: done\nextended_status: degraded done\n"),
        "{long}"
    );
    assert!(
        long.contains("\nrecoverable_errors:\nWARNING:\n\t- context.sh line 2"),
        "{long}"
    );

    // A stage that could not read its context: error, exit 1, the reason listed.
    let o = Command::new(vmctx_bin())
        .args([
            "apply",
            "--stage",
            "local",
            "--source",
            "dir:/nonexistent/ctx",
            "--root",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = ci.run(root.path(), &["status", "--long"]);
    assert_eq!(o.status.code(), Some(1));
    let long = stdout(&o);
    assert!(
        long.starts_with("status: error\nextended_status: error - done\n"),
        "{long}"
    );
    assert!(
        long.contains("errors:\n\t- ") && long.contains("/nonexistent/ctx"),
        "{long}"
    );
    let v = json(&ci.run(root.path(), &["status", "--format", "json"]));
    assert_eq!(v["status"], "error");
    assert!(v["init-local"]["errors"][0]
        .as_str()
        .unwrap()
        .contains("/nonexistent/ctx"));
}

#[test]
fn disabled_vmctx_is_a_disabled_cloud_init() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/vmctx")).unwrap();
    std::fs::write(root.path().join("etc/vmctx/disabled"), "").unwrap();
    let o = ci.run(root.path(), &["status", "--wait"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "status: disabled\n")
    );
    let v = json(&ci.run(root.path(), &["status", "--format", "json"]));
    assert_eq!(v["boot_status_code"], "disabled-by-marker-file");
    assert_eq!(v["detail"], "vmctx disabled by /etc/vmctx/disabled");
}

#[test]
fn query_reads_the_instance_data_apply_wrote() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    let ctx = context_dir(CONTEXT, &[]);
    let applied = apply(root.path(), ctx.path(), "final");
    assert!(applied.status.success(), "{}", stderr(&applied));
    let q = |key: &str| {
        let o = ci.run(root.path(), &["query", key]);
        assert_eq!(o.status.code(), Some(0), "{key}: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(q("v1.local_hostname"), "nb-7\n");
    assert_eq!(q("local_hostname"), "nb-7\n");
    assert_eq!(q("instance_id"), "one-42\n");
    assert_eq!(q("v1.instance_id"), "one-42\n");
    assert_eq!(q("v1.cloud_name"), "opennebula\n");
    assert_eq!(q("v1.platform"), "opennebula\n");
    assert_eq!(q("v1.region"), "null\n");
    assert_eq!(q("v1.availability_zone"), "null\n");
    assert_eq!(q("ds.meta_data.SET_HOSTNAME"), "nb-7\n");
    assert_eq!(q("vendordata"), "\n");
    let all: serde_json::Value = serde_json::from_str(&q("--all")).unwrap();
    assert_eq!(all["v1"]["instance-id"], "one-42");
    assert_eq!(all["cloud_name"], "opennebula");
    let o = ci.run(
        root.path(),
        &[
            "query",
            "--format",
            "{{ v1.local_hostname }}.{{ v1.cloud_name }}",
        ],
    );
    assert_eq!(stdout(&o), "nb-7.opennebula\n");
    let o = ci.run(root.path(), &["query", "v1.nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o)
            .trim_end()
            .ends_with("query.py[ERROR]: instance-data 'v1' has no 'nope'"),
        "{}",
        stderr(&o)
    );

    // The files: redacted 0644, sensitive 0600; secrets only in the sensitive one, and
    // nowhere in status.json or apply's output.
    use std::os::unix::fs::PermissionsExt;
    let run = root.path().join("run/vmctx");
    let mode = |f: &str| std::fs::metadata(run.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("instance-data.json"), 0o644);
    assert_eq!(mode("instance-data-sensitive.json"), 0o600);
    let public = std::fs::read_to_string(run.join("instance-data.json")).unwrap();
    let sensitive = std::fs::read_to_string(run.join("instance-data-sensitive.json")).unwrap();
    let status = std::fs::read_to_string(run.join("status.json")).unwrap();
    let said = format!("{}{}", stdout(&applied), stderr(&applied));
    for secret in ["pw-secret-1", "gate-secret-2", "ud-secret-3"] {
        assert!(sensitive.contains(secret), "{secret}");
        assert!(!public.contains(secret), "{secret} in {public}");
        assert!(
            !status.contains(secret) && !said.contains(secret),
            "{secret}"
        );
    }
    assert!(public.contains("\"PASSWORD\": \"redacted for non-root user\""));

    // As root, user-data from the sensitive file.
    if is_root() {
        assert_eq!(q("userdata"), "#cloud-config\n# ud-secret-3\n");
        assert_eq!(q("ds.meta_data.PASSWORD"), "pw-secret-1\n");
    }
}

#[test]
fn query_as_another_user_sees_only_the_redacted_file() {
    if !need("root (to run as nobody)", is_root()) || !need_tools(&["setpriv"]) {
        return;
    }
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    let ctx = context_dir(CONTEXT, &[]);
    assert!(apply(root.path(), ctx.path(), "final").status.success());
    // Let nobody reach the files (the temp folder is 0700).
    use std::os::unix::fs::PermissionsExt;
    for d in [
        root.path(),
        &root.path().join("run"),
        &root.path().join("run/vmctx"),
    ] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let link_dir = ci.link.parent().unwrap();
    std::fs::set_permissions(link_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&ci.link)
            .args(args)
            .env("VMCTX_ROOT", root.path())
            .output()
            .unwrap()
    };
    let o = nobody(&["query", "v1.local_hostname"]);
    assert_eq!(stdout(&o), "nb-7\n", "{}", stderr(&o));
    assert_eq!(
        stdout(&nobody(&["query", "userdata"])),
        "<redacted for non-root user> file:/run/vmctx/instance-data-sensitive.json\n"
    );
    assert_eq!(
        stdout(&nobody(&["query", "ds.meta_data.PASSWORD"])),
        "redacted for non-root user\n"
    );
    let all = stdout(&nobody(&["query", "--all"]));
    assert!(
        !all.contains("pw-secret-1") && !all.contains("ud-secret-3"),
        "{all}"
    );
}

#[test]
fn clean_maps_to_vmctx_clean() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    let ctx = context_dir("VMID='3'\nSTART_SCRIPT='true'\n", &[]);
    assert!(apply(root.path(), ctx.path(), "final").status.success());
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/machine-id"), "0123456789abcdef\n").unwrap();
    let lib = root.path().join("var/lib/vmctx");
    assert!(lib.join("instance-id").exists());
    // --reboot is refused, and nothing is cleaned.
    let o = ci.run(root.path(), &["clean", "--logs", "-r"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("vmctx"), "{}", stderr(&o));
    assert!(lib.join("instance-id").exists());
    let o = ci.run(root.path(), &["clean", "--logs", "--machine-id", "-s"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).is_empty(),
        "quiet, as cloud-init: {}",
        stdout(&o)
    );
    assert!(!lib.join("instance-id").exists());
    assert!(!root.path().join("run/vmctx/instance-data.json").exists());
    assert_eq!(
        std::fs::read(root.path().join("etc/machine-id")).unwrap(),
        b""
    );
    // After clean: not started again.
    assert_eq!(
        stdout(&ci.run(root.path(), &["status"])),
        "status: not started\n"
    );
}

#[test]
fn everything_else_names_vmctx() {
    let ci = Shim::new();
    let root = tempfile::tempdir().unwrap();
    for args in [
        &["init", "--local"][..],
        &["modules", "--mode", "final"],
        &["single", "--name", "cc_runcmd"],
        &["devel", "schema"],
        &["analyze", "blame"],
        &["schema", "--system"],
        &["frobnicate"],
    ] {
        let o = ci.run(root.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("vmctx standing in for cloud-init") && err.contains("vmctx --help"),
            "{err}"
        );
        assert!(stdout(&o).is_empty());
    }
    let o = ci.run(root.path(), &["--version"]);
    assert_eq!(o.status.code(), Some(0));
    let version = stdout(&o);
    assert!(
        version.contains("vmctx") && version.contains(env!("CARGO_PKG_VERSION")),
        "{version}"
    );
    let o = ci.run(root.path(), &["status", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unrecognized arguments: --bogus"));
    let o = ci.run(root.path(), &["query"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Expected one of the options: --all, --format, --list-keys or varname")
    );
    // Invoked by its own name, vmctx is vmctx.
    let o = vmctx(&["status", "--root", root.path().to_str().unwrap()]);
    assert!(stdout(&o).starts_with("status: not run"), "{}", stdout(&o));
}

#[test]
fn query_after_an_ec2_instance_was_applied() {
    let Some(g) = Guest::new("ci-ec2") else {
        return;
    };
    let tree = serde_json::json!({
        "meta-data": {
            "instance-id": "i-0c1c1c1c1c1c1c1c1",
            "local-hostname": "ip-10-0-1-10.ec2.internal",
            "placement": {"availability-zone": "eu-west-1b"},
            "network": {"interfaces": {"macs": {
                "0e:00:00:00:01:0a": {"device-number": "0", "local-ipv4s": "10.0.1.10",
                    "subnet-ipv4-cidr-block": "10.0.1.0/24"}
            }}}
        },
        "user-data": "#!/bin/sh\ntrue # ec2-ud-5\n",
    });
    let tree_file = g.root.path().join("tree.json");
    std::fs::write(&tree_file, tree.to_string()).unwrap();
    g.veth(
        ("eth0", "0e:00:00:00:01:0a"),
        ("peer0", "0e:00:00:00:01:ff"),
    );
    let (_imds, src) = g.imds(&tree_file);
    let o = g.vmctx(&["apply", "--stage", "final", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    let ci = Shim::new();
    let root = g.root.path();
    let q = |key: &str| stdout(&ci.run(root, &["query", key]));
    assert_eq!(q("v1.cloud_name"), "aws\n");
    assert_eq!(q("v1.platform"), "ec2\n");
    assert_eq!(q("v1.region"), "eu-west-1\n");
    assert_eq!(q("v1.availability_zone"), "eu-west-1b\n");
    assert_eq!(q("availability_zone"), "eu-west-1b\n");
    assert_eq!(q("instance_id"), "i-0c1c1c1c1c1c1c1c1\n");
    assert_eq!(q("v1.local_hostname"), "ip-10-0-1-10\n");
    assert_eq!(
        q("ds.meta_data.placement.availability_zone"),
        "eu-west-1b\n"
    );
    assert_eq!(q("ds.meta-data.instance-id"), "i-0c1c1c1c1c1c1c1c1\n");
    // print() adds a line break after the user-data's own.
    assert_eq!(q("userdata"), "#!/bin/sh\ntrue # ec2-ud-5\n\n");
    let public = std::fs::read_to_string(root.join("run/vmctx/instance-data.json")).unwrap();
    assert!(!public.contains("ec2-ud-5"), "{public}");
    let v = json(&ci.run(root, &["status", "--format", "json"]));
    assert_eq!(
        (v["status"].as_str(), v["datasource"].as_str()),
        (Some("done"), Some("ec2"))
    );
    assert!(
        v["detail"].as_str().unwrap().starts_with("DataSourceEc2"),
        "{v}"
    );
}

#[test]
fn reconfigure_rewrites_the_instance_data() {
    let Some(g) = Guest::new("ci-recfg") else {
        return;
    };
    g.veth(
        ("eth0", "02:00:0a:00:03:28"),
        ("peer0", "02:00:0a:00:03:99"),
    );
    let ctx = context_dir(
        "VMID='71'\nSET_HOSTNAME='first'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n",
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    let o = g.vmctx(&["apply", "--stage", "local", "--source", &src]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ci = Shim::new();
    let q = |key: &str| stdout(&ci.run(g.root.path(), &["query", key]));
    assert_eq!(
        (q("instance_id"), q("local_hostname")),
        ("one-71\n".into(), "first\n".into())
    );
    // The CD now names another instance: reconfigure applies it, and the data follows.
    std::fs::write(
        ctx.path().join("context.sh"),
        "VMID='72'\nSET_HOSTNAME='second'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n",
    )
    .unwrap();
    let o = g.vmctx(&["reconfigure", "--settle-ms", "100", "--source", &src]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        (q("instance_id"), q("local_hostname")),
        ("one-72\n".into(), "second\n".into())
    );
}
