//! The NoCloud source through the binary: seeds as folders, ISO9660 (as Proxmox writes them)
//! and FAT; Proxmox's three formats; detection under `--root` (the cidata volume and the
//! kernel command line); malformed files refused naming the file and line, nothing changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vmctx_tests::*;

fn seed_dir(name: &str) -> PathBuf {
    workspace().join("vm-fixtures/nocloud").join(name)
}

fn links(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

const PROXMOX_LINKS: &str = "bc:24:11:5a:0e:01=eth0\nbc:24:11:5a:0e:02=eth1\n";
const BOND_LINKS: &str = "52:54:00:b0:00:01=ens3\n52:54:00:b0:00:02=ens4\n52:54:00:b0:00:03=ens5\n";

fn plan_json(source: &str, links_text: &str) -> serde_json::Value {
    let l = links(links_text);
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        source,
        "--links-file",
        l.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{source}: {}{}", stdout(&o), stderr(&o));
    let mut v = json(&o);
    v.as_object_mut().unwrap().remove("source");
    v
}

#[test]
fn proxmox_seed_as_folder_iso_and_fat() {
    let dir = seed_dir("proxmox-web01");
    let t = tempfile::tempdir().unwrap();
    let mut sources = vec![format!("nocloud:{}", dir.display())];
    sources.extend(
        build_nocloud_seed(&dir, &t.path().join("seed.iso"), false)
            .map(|p| format!("nocloud:{}", p.display())),
    );
    sources.extend(
        build_nocloud_seed(&dir, &t.path().join("seed.img"), true)
            .map(|p| format!("nocloud:{}", p.display())),
    );
    let first = plan_json(&sources[0], PROXMOX_LINKS);
    let eth = &first["network"]["ethernets"];
    assert_eq!(
        eth["eth0"]["addresses"],
        serde_json::json!(["192.0.2.10/24", "2001:db8::10/64"])
    );
    assert_eq!(eth["eth1"]["dhcp4"], true);
    assert_eq!(first["hostname"]["name"], "web01", "{first}");
    for s in &sources[1..] {
        let mut p = plan_json(s, PROXMOX_LINKS);
        // The label of a FAT image is upper case; nothing else may differ.
        p.as_object_mut().unwrap().remove("warnings");
        let mut f = first.clone();
        f.as_object_mut().unwrap().remove("warnings");
        assert_eq!(p, f, "{s}");
    }
    let o = vmctx(&["show", "--json", "--source", &sources[0]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    assert!(
        !shown.contains("$5$"),
        "the crypted password is never shown"
    );
    assert_eq!(json(&o)["user"]["name"], "debian");
}

#[test]
fn netplan_bond_and_vlan_are_planned() {
    let p = plan_json(
        &format!("nocloud:{}", seed_dir("netplan-bond-vlan").display()),
        BOND_LINKS,
    );
    let eth = p["network"]["ethernets"].as_object().unwrap();
    assert_eq!(
        eth.keys().collect::<Vec<_>>(),
        ["ens5"],
        "members and the bond are not NICs"
    );
    let bond = &p["network"]["bonds"]["bond0"];
    assert_eq!(bond["interfaces"], serde_json::json!(["ens3", "ens4"]));
    assert_eq!(bond["parameters"]["mode"], "802.3ad");
    let vlan = &p["network"]["vlans"]["bond0.42"];
    assert_eq!((&vlan["id"], &vlan["link"]), (&42.into(), &"bond0".into()));
    assert!(
        !p["warnings"].to_string().contains("bond0"),
        "{}",
        p["warnings"]
    );
    let o = vmctx(&[
        "show",
        "--json",
        "--source",
        &format!("nocloud:{}", seed_dir("netplan-bond-vlan").display()),
    ]);
    let c = json(&o);
    assert_eq!(c["network"]["bonds"][0]["mode"], "802.3ad");
    assert_eq!(c["network"]["vlans"][0]["id"], 42);
}

#[test]
fn proxmox_configdrive2_and_opennebula_formats_plan_alike() {
    let cd = workspace().join("vm-fixtures/configdrive/proxmox-web01");
    let one = workspace().join("vm-fixtures/contexts/proxmox-web01");
    let nc = plan_json(
        &format!("nocloud:{}", seed_dir("proxmox-web01").display()),
        PROXMOX_LINKS,
    );
    let c2 = plan_json(&format!("configdrive:{}", cd.display()), PROXMOX_LINKS);
    let on = plan_json(&format!("dir:{}", one.display()), PROXMOX_LINKS);
    for (what, p) in [("configdrive2", &c2), ("opennebula", &on)] {
        assert_eq!(p["network"], nc["network"], "{what}");
        assert_eq!(p["dns"], nc["dns"], "{what}");
        let w = p["warnings"].to_string();
        assert!(
            w.contains("matched by NIC order to bc:24:11:5a:0e:02"),
            "{what}: {w}"
        );
    }
    assert_eq!(
        on["users"], nc["users"],
        "opennebula user and crypted password"
    );
}

fn write_seed(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (n, text) in files {
        std::fs::write(d.path().join(n), text).unwrap();
    }
    d
}

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
fn malformed_files_exit_1_name_the_file_and_change_nothing() {
    const BAD: &str = "a: [1, 2\nb: c\n";
    let good_meta = "instance-id: i-1\n";
    // (what, the seed's files, what the message says)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: [Case; 5] = [
        (
            "meta-data",
            vec![("meta-data", BAD.into())],
            "meta-data: not valid YAML",
        ),
        (
            "network-config",
            vec![
                ("meta-data", good_meta.into()),
                ("network-config", BAD.into()),
            ],
            "network-config: not valid YAML",
        ),
        (
            "user-data",
            vec![
                ("meta-data", good_meta.into()),
                ("user-data", format!("#cloud-config\n{BAD}")),
            ],
            "user-data: #cloud-config: not valid YAML",
        ),
        (
            "vendor-data",
            vec![
                ("meta-data", good_meta.into()),
                ("vendor-data", format!("#cloud-config\n{BAD}")),
            ],
            "vendor-data: #cloud-config: not valid YAML",
        ),
        (
            "version",
            vec![
                ("meta-data", good_meta.into()),
                ("network-config", "version: 3\n".into()),
            ],
            "network-config: version: version 3 is not supported",
        ),
    ];
    for (what, files, want) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let d = write_seed(&files);
        let source = format!("nocloud:{}", d.path().display());
        let (o, empty) = apply_into_empty_root(&source);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(all.contains(want), "{what}: {all}");
        assert!(what == "version" || all.contains("line"), "{what}: {all}");
        assert!(empty, "{what}: a refused seed wrote files");
        let o = vmctx(&["plan", "--source", &source, "--links-file", "/dev/null"]);
        assert_eq!(o.status.code(), Some(1), "{what}: plan");
    }
}

/// A fake root whose block devices are `devs` (name → image file) and whose kernel command
/// line is `cmdline`.
fn fake_root(devs: &[(&str, &Path)], cmdline: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("dev")).unwrap();
    std::fs::create_dir_all(t.path().join("proc")).unwrap();
    std::fs::write(t.path().join("proc/cmdline"), cmdline).unwrap();
    for (name, img) in devs {
        let sys = t.path().join("sys/class/block").join(name);
        std::fs::create_dir_all(&sys).unwrap();
        let len = std::fs::metadata(img).unwrap().len();
        std::fs::write(sys.join("size"), format!("{}\n", len / 512)).unwrap();
        std::fs::copy(img, t.path().join("dev").join(name)).unwrap();
    }
    t
}

#[test]
fn auto_finds_the_cidata_volume_and_the_kernel_command_line() {
    let t = tempfile::tempdir().unwrap();
    let Some(iso) = build_nocloud_seed(&seed_dir("proxmox-web01"), &t.path().join("s.iso"), false)
    else {
        return;
    };
    let root = fake_root(&[("sr0", &iso)], "ro quiet");
    let r = root.path().to_str().unwrap();
    let o = Command::new(vmctx_bin())
        .args(["--root", r, "detect", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["source"], format!("nocloud:{r}/dev/sr0"));
    let l = links(PROXMOX_LINKS);
    let o = Command::new(vmctx_bin())
        .args([
            "--root",
            r,
            "plan",
            "--json",
            "--links-file",
            l.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["network"]["ethernets"]["eth1"]["dhcp4"], true);

    // ds=nocloud;s=file:///seed/ names a folder: it wins over the volume.
    let root = fake_root(&[("sr0", &iso)], "ro ds=nocloud;s=file:///seed/ quiet");
    let seed = root.path().join("seed");
    std::fs::create_dir(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), "instance-id: from-cmdline\n").unwrap();
    let r = root.path().to_str().unwrap();
    let o = Command::new(vmctx_bin())
        .args(["--root", r, "show", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["instance_id"], "from-cmdline");
}

/// `nocloud:http://…` (cloud-init's nocloud-net): the four files under the URL, from a seed
/// server on loopback; nothing else is asked for.
#[test]
fn seed_over_http() {
    let dir = seed_dir("netplan-bond-vlan");
    let svc = FakeImds::start(
        move |req: &FakeReq, _| match req.path.strip_prefix("/seed/") {
            Some(name @ ("meta-data" | "user-data" | "vendor-data" | "network-config")) => {
                FakeResp::new(200, std::fs::read(dir.join(name)).unwrap())
            }
            _ => FakeResp::new(404, "Not Found"),
        },
    );
    let source = format!("nocloud:{}/seed/", svc.url());
    let l = links(BOND_LINKS);
    let o = vmctx(&[
        "plan",
        "--json",
        "--source",
        &source,
        "--links-file",
        l.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = json(&o);
    assert_eq!(p["instance_id"], "iid-storage-07");
    assert!(p["network"]["ethernets"]["ens5"]["dhcp4"]
        .as_bool()
        .unwrap());
    let mut asked = svc.requests();
    asked.sort();
    assert_eq!(
        asked,
        [
            "GET /seed/meta-data",
            "GET /seed/network-config",
            "GET /seed/user-data",
            "GET /seed/vendor-data"
        ]
    );
    // No meta-data: refused, naming it.
    let empty = FakeImds::start(|_: &FakeReq, _| FakeResp::new(404, "Not Found"));
    let o = vmctx(&["show", "--source", &format!("nocloud:{}/", empty.url())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("meta-data: 404"), "{}", stderr(&o));
}
