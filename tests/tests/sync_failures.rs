//! The notebook sync when things go wrong — bad credentials, a closed endpoint, a missing
//! bucket, a download killed mid-transfer — and where its keys come from (environment,
//! profile, settings file, the instance role through vmctx's own metadata emulator).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use vmctx_tests::{
    context_dir, free_port, moto_server_bin, stderr, stdout, vmctx_bin, ImdsServer, Moto, SyncCase,
};

fn local_snapshot(c: &SyncCase) -> Vec<(String, String)> {
    c.local()
        .into_iter()
        .map(|n| (n.clone(), c.read(&n).unwrap_or_default()))
        .collect()
}

fn no_state(c: &SyncCase) -> bool {
    std::fs::read_dir(c.tmp.path().join("state")).map_or(true, |d| {
        d.flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".json"))
    })
}

#[test]
fn bad_credentials_change_nothing_and_say_so() {
    let Some(bin) = moto_server_bin() else {
        vmctx_tests::need("moto_server", false);
        return;
    };
    // A second moto that enforces keys after its first few (unauthenticated) requests.
    let m: &'static Moto = Box::leak(Box::new(Moto::start(
        &bin,
        &[("INITIAL_NO_AUTH_ACTION_COUNT", "4")],
    )));
    m.create_bucket("t-auth");
    m.put("t-auth", "nb/remote.ipynb", b"remote");
    for _ in 0..10 {
        if m.request("GET", "/t-auth?list-type=2", b"").0 == 403 {
            break;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let c = SyncCase {
        moto: m,
        bucket: "t-auth".into(),
        tmp,
    };
    std::fs::create_dir(c.dir()).unwrap();
    c.write("local.ipynb", "local");
    let before = local_snapshot(&c);
    let log_before = m.log_lines().len();
    let o = c
        .command(&[])
        .env("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY")
        .env("AWS_SECRET_ACCESS_KEY", "SECRETVALUE-never-printed")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("bad credentials"), "{err}");
    assert!(!err.contains("SECRETVALUE") && !stdout(&o).contains("SECRETVALUE"));
    assert_eq!(local_snapshot(&c), before, "nothing changed here");
    assert!(no_state(&c), "no state written");
    let writes: Vec<String> = m.log_lines()[log_before..]
        .iter()
        .filter(|l| l.contains("\"PUT") || l.contains("\"DELETE"))
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "nothing changed in the bucket: {writes:?}"
    );
}

#[test]
fn a_closed_endpoint_fails_fast_and_changes_nothing() {
    let Some(c) = SyncCase::new("closed") else {
        return;
    };
    c.write("local.ipynb", "local");
    let port = free_port(); // nothing listens there
    vmctx_bin(); // built (once) before the clock starts
    let t = Instant::now();
    let o = c
        .command(&["--endpoint", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(c.local(), ["local.ipynb"]);
    assert!(no_state(&c));
    assert!(c.remote().is_empty());
}

#[test]
fn a_missing_bucket_is_named() {
    let Some(c) = SyncCase::new("missing-exists") else {
        return;
    };
    let o = c
        .command(&["--bucket", "t-no-such-bucket"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bucket \"t-no-such-bucket\" does not exist"),
        "{}",
        stderr(&o)
    );
}

/// A TCP proxy to moto that forwards `budget` bytes of each response stream, then stalls.
fn stalling_proxy(upstream: u16, budget: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c_in, mut up_out) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut c_in, &mut up_out));
            let (mut up_in, mut c_out) = (up, conn);
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut buf = vec![0; 64 << 10];
                while sent < budget {
                    let Ok(n) = up_in.read(&mut buf) else { return };
                    if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    sent += n;
                }
                std::thread::sleep(Duration::from_secs(60)); // the client is killed meanwhile
            });
        }
    });
    port
}

#[test]
fn a_killed_download_leaves_no_partial_file_and_the_next_run_completes() {
    let Some(c) = SyncCase::new("killed") else {
        return;
    };
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    c.moto.put(&c.bucket, "nb/big file.bin", &big);
    let proxy = stalling_proxy(c.moto.port, 1 << 20);
    let mut child = c
        .command(&[
            "--endpoint",
            &format!("http://127.0.0.1:{proxy}"),
            "--jobs",
            "1",
        ])
        .spawn()
        .unwrap();
    let part = c.dir().join(".big file.bin.vmctx-part");
    vmctx_bin(); // built (once) before the clock starts
    let t = Instant::now();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 256 << 10 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    assert!(
        !c.dir().join("big file.bin").exists(),
        "never a partial file at the final path"
    );
    assert!(
        part.exists(),
        "the temp file of the killed run is left (swept next time)"
    );

    let r = c.ok(&[]);
    assert_eq!(r["swept"], 1, "{r}");
    assert_eq!(std::fs::read(c.dir().join("big file.bin")).unwrap(), big);
    assert!(!part.exists());
}

#[test]
fn explicit_keys_probe_nothing_else() {
    let Some(c) = SyncCase::new("no-probe") else {
        return;
    };
    let imds = TcpListener::bind("127.0.0.1:0").unwrap();
    imds.set_nonblocking(true).unwrap();
    let url = format!("http://{}", imds.local_addr().unwrap());
    let r = c
        .command(&[])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(vmctx_tests::json(&r)["credentials_from"], "environment");
    assert!(imds.accept().is_err(), "the metadata service was not asked");
}

#[test]
fn keys_from_a_profile_or_the_settings_file() {
    let Some(c) = SyncCase::new("chain") else {
        return;
    };
    let aws = c.tmp.path().join(".aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = AKPROFILE\naws_secret_access_key = s\n",
    )
    .unwrap();
    let o = c
        .command(&[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let from = vmctx_tests::json(&o)["credentials_from"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(from.ends_with(".aws/credentials [default]"), "{from}");

    let conf = c.tmp.path().join("sync.toml");
    std::fs::write(
        &conf,
        format!(
            "bucket = \"{}\"\ndir = \"{}\"\nprefix = \"nb/\"\nendpoint = \"{}\"\nmode = \"both\"\n\n[credentials]\naccess_key_id = \"AKFILE\"\nsecret_access_key = \"s\"\n",
            c.bucket,
            c.dir().display(),
            c.moto.url()
        ),
    )
    .unwrap();
    let o = std::process::Command::new(vmctx_tests::vmctx_bin())
        .args(["sync", "--once", "--json", "--config"])
        .arg(&conf)
        .arg("--state-dir")
        .arg(c.tmp.path().join("state"))
        .env_clear()
        .env("HOME", c.tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(vmctx_tests::json(&o)["credentials_from"], "sync settings");
}

#[test]
fn keys_from_the_instance_role_over_imdsv2() {
    let Some(c) = SyncCase::new("role") else {
        return;
    };
    let ctx = context_dir(
        "EC2_METADATA='YES'\nEC2_IMDS_TOKENS='required'\nEC2_IAM_ROLE='notebooks'\n\
         EC2_IAM_ACCESS_KEY_ID='ASIAROLEKEY'\nEC2_IAM_SECRET_ACCESS_KEY='rolesecret'\n\
         EC2_IAM_SESSION_TOKEN='roletoken'\nVMID='7'\n",
        &[],
    );
    let server = ImdsServer::start(&["--source", &format!("dir:{}", ctx.path().display())]);
    c.rput("a.ipynb", "a");
    let o = c
        .command(&[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        vmctx_tests::json(&o)["credentials_from"],
        "instance role notebooks"
    );
    assert_eq!(c.read("a.ipynb").unwrap(), "a");
}

#[test]
fn a_host_name_endpoint_resolves_without_glibc() {
    // hickory answers `localhost` itself (RFC 6761) and from /etc/hosts: no DNS traffic.
    let Some(c) = SyncCase::new("resolver") else {
        return;
    };
    c.rput("a.ipynb", "a");
    let ep = format!("http://localhost:{}", c.moto.port);
    let o = c.command(&["--endpoint", &ep]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.read("a.ipynb").unwrap(), "a");
}
