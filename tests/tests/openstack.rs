//! The OpenStack source through the binary: config drives as ISO9660, FAT and folders, the
//! version rule, bad drives, detection under `--root`, and Nova's metadata service (retries,
//! no token, the EC2 fallback, no other probes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vmctx_tests::*;

const FIXTURE: &str = "vm-fixtures/configdrive/gpu-notebook";

fn fixture_dir() -> PathBuf {
    workspace().join(FIXTURE)
}

fn latest(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join("openstack/latest").join(name)).unwrap()
}

fn plan_json(source: &str) -> serde_json::Value {
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        source,
        "--links-file",
        "/dev/null",
    ]);
    assert!(o.status.success(), "{source}: {}{}", stdout(&o), stderr(&o));
    let mut v = json(&o);
    // Where it came from differs by construction; everything else must not.
    v.as_object_mut().unwrap().remove("source");
    v
}

#[test]
fn iso_fat_and_folder_drives_plan_alike() {
    let t = tempfile::tempdir().unwrap();
    let from_dir = plan_json(&format!("configdrive:{}", fixture_dir().display()));
    assert_eq!(
        from_dir["instance_id"],
        "7d3c2a1b-5e4f-4a6b-9c8d-0e1f2a3b4c5d"
    );
    let s = from_dir.to_string();
    for needle in [
        "10.0.5.20/24",
        "10.0.5.1",
        "10.10.0.0/16",
        "10.0.5.53",
        "gpu-notebook-01",
    ] {
        assert!(s.contains(needle), "{needle} missing in {s}");
    }
    if let Some(iso) = build_config_drive(&fixture_dir(), &t.path().join("cd.iso"), false) {
        assert_eq!(
            plan_json(&format!("configdrive:{}", iso.display())),
            from_dir
        );
    }
    if let Some(img) = build_config_drive(&fixture_dir(), &t.path().join("cd.img"), true) {
        assert_eq!(
            plan_json(&format!("configdrive:{}", img.display())),
            from_dir
        );
    }
}

/// A drive folder with the fixture's documents in the given version folders.
fn drive_with(versions: &[&str]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for v in versions {
        let d = t.path().join("openstack").join(v);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["meta_data.json", "network_data.json", "user_data"] {
            std::fs::write(d.join(f), latest(f)).unwrap();
        }
    }
    t
}

#[test]
fn newest_dated_version_without_latest() {
    let t = drive_with(&["2012-08-10", "2018-08-27"]);
    // The older one differs: were it read, the hostname would say so.
    std::fs::write(
        t.path().join("openstack/2012-08-10/meta_data.json"),
        br#"{"uuid": "old", "hostname": "old-version"}"#,
    )
    .unwrap();
    let o = vmctx(&[
        "show",
        "--json",
        "--source",
        &format!("configdrive:{}", t.path().display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["hostname"]["name"], "gpu-notebook-01");
    assert_eq!(
        v["hostname"]["from"],
        "openstack/2018-08-27/meta_data.json hostname"
    );
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("no openstack/latest: using 2018-08-27"),
        "{warnings}"
    );
}

/// Runs apply against a drive into a scratch root; returns the output and whether the root
/// is still empty.
fn apply_into_empty_root(source: &str) -> (Output, bool) {
    let root = tempfile::tempdir().unwrap();
    let o = Command::new(vmctx_bin())
        .args(["--root", root.path().to_str().unwrap()])
        .args(["apply", "--stage", "all", "--source", source])
        .output()
        .unwrap();
    let empty = root_files(root.path()).is_empty();
    (o, empty)
}

#[test]
fn bad_drives_name_file_and_field_and_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    // Malformed JSON.
    let d = drive_with(&["latest"]);
    std::fs::write(
        d.path().join("openstack/latest/meta_data.json"),
        b"{\"uuid\": \"x\", \"hostname\": ",
    )
    .unwrap();
    let (o, empty) = apply_into_empty_root(&format!("configdrive:{}", d.path().display()));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("openstack/latest/meta_data.json: field hostname: EOF while parsing"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(empty, "a refused context wrote files");

    // A network on a link that is not there.
    let d = drive_with(&["latest"]);
    let net = String::from_utf8(latest("network_data.json"))
        .unwrap()
        .replace(r#""link": "tap7d3c2a1b-5e""#, r#""link": "tap-gone""#);
    std::fs::write(d.path().join("openstack/latest/network_data.json"), net).unwrap();
    let (o, empty) = apply_into_empty_root(&format!("configdrive:{}", d.path().display()));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(
            "network_data.json: field networks[0].link: \"tap-gone\" names no entry of links"
        ),
        "{e}"
    );
    assert!(empty);

    // `latest` a dangling symbolic link: on a folder, and on an ISO (Rock Ridge SL).
    let d = drive_with(&["2018-08-27"]);
    std::os::unix::fs::symlink("2020-10-14", d.path().join("openstack/latest")).unwrap();
    let mut sources = vec![format!("configdrive:{}", d.path().display())];
    if let Some(iso) = build_config_drive(d.path(), &t.path().join("dangling.iso"), false) {
        sources.push(format!("configdrive:{}", iso.display()));
    }
    for s in sources {
        let (o, empty) = apply_into_empty_root(&s);
        assert_eq!(o.status.code(), Some(1), "{s}");
        let e = stderr(&o);
        assert!(
            e.contains("openstack/latest is a symbolic link to \"2020-10-14\", which is not a version folder on the drive"),
            "{s}: {e}"
        );
        assert!(empty, "{s}");
    }

    // A link that resolves is followed.
    let d = drive_with(&["2018-08-27"]);
    std::os::unix::fs::symlink("2018-08-27", d.path().join("openstack/latest")).unwrap();
    if let Some(iso) = build_config_drive(d.path(), &t.path().join("linked.iso"), false) {
        let o = vmctx(&[
            "show",
            "--json",
            "--source",
            &format!("configdrive:{}", iso.display()),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(json(&o)["warnings"]
            .to_string()
            .contains("openstack/latest links to 2018-08-27"));
    }

    // Not a drive at all.
    std::fs::write(t.path().join("zeros.img"), vec![0u8; 1 << 20]).unwrap();
    let (o, empty) = apply_into_empty_root(&format!(
        "configdrive:{}",
        t.path().join("zeros.img").display()
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("neither an ISO9660 nor a FAT filesystem"),
        "{}",
        stderr(&o)
    );
    assert!(empty);
}

/// A fake root whose block devices are `devs` (name → image file) and whose DMI says `dmi`.
fn fake_root(devs: &[(&str, &Path)], dmi: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("dev")).unwrap();
    for (name, img) in devs {
        let sys = t.path().join("sys/class/block").join(name);
        std::fs::create_dir_all(&sys).unwrap();
        let len = std::fs::metadata(img).unwrap().len();
        std::fs::write(sys.join("size"), format!("{}\n", len / 512)).unwrap();
        std::fs::copy(img, t.path().join("dev").join(name)).unwrap();
    }
    let id = t.path().join("sys/class/dmi/id");
    std::fs::create_dir_all(&id).unwrap();
    for (k, v) in dmi {
        std::fs::write(id.join(k), format!("{v}\n")).unwrap();
    }
    t
}

#[test]
fn detection_finds_drives_and_nova() {
    let t = tempfile::tempdir().unwrap();
    let (Some(iso), Some(img)) = (
        build_config_drive(&fixture_dir(), &t.path().join("cd.iso"), false),
        build_config_drive(&fixture_dir(), &t.path().join("cd.img"), true),
    ) else {
        return;
    };
    let detect = |root: &Path| {
        let o = Command::new(vmctx_bin())
            .args(["--root", root.to_str().unwrap(), "detect"])
            .env_remove("VMCTX_IMDS_URL")
            .output()
            .unwrap();
        (o.status.code(), stdout(&o), stderr(&o))
    };
    // The ISO on the CD-ROM; the root disk (zeros here) is looked at and passed over.
    let zeros = t.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 64 << 10]).unwrap();
    let root = fake_root(&[("vda", &zeros), ("sr0", &iso)], &[]);
    let (code, out, _) = detect(root.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("configdrive:{}/dev/sr0\n", root.path().display())),
        "{out}"
    );
    assert!(out.contains("ISO9660 \"config-2\""), "{out}");
    // The FAT image on a second disk, label upper-cased.
    let root = fake_root(&[("vdb", &img)], &[]);
    let (code, out, _) = detect(root.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("configdrive:{}/dev/vdb\n", root.path().display())),
        "{out}"
    );
    assert!(out.contains("FAT \"CONFIG-2\""), "{out}");
    // No drive; DMI says Nova: its metadata service (not probed under --root).
    for (k, v) in [
        ("product_name", "OpenStack Nova"),
        ("product_name", "OpenStack Compute"),
        ("sys_vendor", "OpenStack Foundation"),
        ("chassis_asset_tag", "OpenTelekomCloud"),
    ] {
        let root = fake_root(&[], &[(k, v)]);
        let (code, out, _) = detect(root.path());
        assert_eq!(code, Some(0), "{k}={v}: {out}");
        assert!(out.starts_with("openstack\n"), "{k}={v}: {out}");
    }
}

const META: &str = r#"{"uuid": "svc-0001", "hostname": "from-service.novalocal",
  "public_keys": {"k": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIsvc k@svc"}}"#;

fn nova(req: &FakeReq, _: usize) -> FakeResp {
    match req.path.as_str() {
        "/openstack" => FakeResp::new(200, "2012-08-10\n2018-08-27\nlatest"),
        "/openstack/latest/meta_data.json" => FakeResp::new(200, META),
        "/openstack/latest/network_data.json" => FakeResp::new(200, latest("network_data.json")),
        _ => FakeResp::new(404, "Not Found"),
    }
}

fn show_service(url: &str, budget: &str) -> Output {
    Command::new(vmctx_bin())
        .args(["show", "--json", "--source", &format!("openstack:{url}")])
        .env("VMCTX_IMDS_TIMEOUT", budget)
        .output()
        .unwrap()
}

#[test]
fn metadata_service() {
    let svc = FakeImds::start(nova);
    let o = show_service(&svc.url(), "10");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["instance_id"], "svc-0001");
    assert_eq!(v["source"], format!("openstack:{}", svc.url()));
    assert_eq!(v["hostname"]["name"], "from-service");
    assert!(v["scripts"]["user_data"].is_null(), "user_data 404 is none");
    let reqs = svc.requests();
    assert_eq!(reqs[0], "GET /openstack");
    assert!(
        reqs.iter().all(|r| r.starts_with("GET /openstack")),
        "no token PUT, nothing outside /openstack: {reqs:?}"
    );
    assert_eq!(reqs.len(), 4, "{reqs:?}");
}

#[test]
fn metadata_service_retries_then_answers() {
    // The first two answers are 503 and 408: retried, not taken for "no OpenStack".
    let svc = FakeImds::start(|r, n| match n {
        0 => FakeResp::new(503, "busy"),
        1 => FakeResp::new(408, "slow"),
        _ => nova(r, n),
    });
    let o = show_service(&svc.url(), "10");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["instance_id"], "svc-0001");
    assert_eq!(&svc.requests()[..3], ["GET /openstack"; 3]);

    // Always failing: an error naming the URL within the budget, nothing else asked.
    let svc = FakeImds::start(|_, _| FakeResp::new(500, "down"));
    let started = std::time::Instant::now();
    let o = show_service(&svc.url(), "2");
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}/openstack", svc.url())) && e.contains("500"),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(6));

    // A listed version whose meta_data.json is missing.
    let svc = FakeImds::start(|r, _| match r.path.as_str() {
        "/openstack" => FakeResp::new(200, "latest"),
        _ => FakeResp::new(404, "Not Found"),
    });
    let o = show_service(&svc.url(), "5");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("openstack/latest/meta_data.json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn service_without_openstack_is_read_as_ec2() {
    const TREE: &[(&str, &str)] = &[
        ("meta-data/instance-id", "i-0nova0000000001"),
        ("meta-data/local-hostname", "ec2-compat.novalocal"),
    ];
    let svc = FakeImds::start(|r, _| {
        if r.method != "GET" {
            return FakeResp::new(405, "");
        }
        match tree_answer(TREE, &r.path) {
            Some(b) => FakeResp::new(200, b),
            None => FakeResp::new(404, "Not Found"),
        }
    });
    let o = show_service(&svc.url(), "5");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["instance_id"], "i-0nova0000000001");
    assert!(
        v["warnings"].to_string().contains("/openstack answers 404"),
        "{v}"
    );
}

#[test]
fn probe_without_dmi_tells_nova_from_ec2() {
    let svc = FakeImds::start(|r, n| match r.path.as_str() {
        "/latest/meta-data/instance-id" => FakeResp::new(200, "i-0nova0000000001"),
        _ => nova(r, n),
    });
    let root = fake_root(&[], &[("sys_vendor", "QEMU")]);
    let o = Command::new(vmctx_bin())
        .args(["--root", root.path().to_str().unwrap(), "detect"])
        .env("VMCTX_IMDS_URL", svc.url())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("openstack:{}\n", svc.url())),
        "{out}"
    );
    assert!(out.contains("/openstack answers too"), "{out}");
}
