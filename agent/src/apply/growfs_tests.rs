use super::*;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
31 27 0:33 / /srv/my\\040data rw,relatime shared:12 master:3 - btrfs /dev/vdb rw,space_cache=v2
40 27 253:0 /sub /var rw - xfs /dev/mapper/vg0-var rw
41 27 7:1 / /mnt/a rw - ext4 /dev/loop0p1 rw
";

#[test]
fn mountinfo_fields_escapes_and_optional_fields() {
    let m = parse_mountinfo(MOUNTINFO);
    assert_eq!(m.len(), 5);
    assert_eq!(
        m[1],
        Mount {
            major: 254,
            minor: 1,
            mount_point: "/".into(),
            fstype: "ext4".into(),
            source: "/dev/vda1".into()
        }
    );
    assert_eq!(m[2].mount_point, "/srv/my data");
    assert_eq!(
        (m[2].major, m[2].minor, m[2].fstype.as_str()),
        (0, 33, "btrfs")
    );
    assert_eq!(m[3].source, "/dev/mapper/vg0-var");
    assert!(parse_mountinfo("garbage line\n\n1 2 x / / rw - ext4\n").is_empty());
    assert_eq!(unescape("a\\011b\\134c\\0"), "a\tb\\c\\0");
}

/// A fake sysfs: `devices/…` folders and `class/block` and `dev/block` links to them.
struct FakeSys(tempfile::TempDir);

impl FakeSys {
    fn new() -> Self {
        FakeSys(tempfile::tempdir().unwrap())
    }
    fn sys(&self) -> PathBuf {
        self.0.path().join("sys")
    }
    /// A block device at `devices/<rel>` (e.g. `pci0/virtio1/block/vda/vda1`).
    fn dev(&self, rel: &str, number: &str, files: &[(&str, &str)]) {
        let d = self.sys().join("devices").join(rel);
        std::fs::create_dir_all(&d).unwrap();
        for (f, body) in files {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let name = Path::new(rel).file_name().unwrap();
        for link_dir in ["class/block", "dev/block"] {
            let ld = self.sys().join(link_dir);
            std::fs::create_dir_all(&ld).unwrap();
            let target = format!("../../devices/{rel}");
            let link = if link_dir == "class/block" {
                ld.join(name)
            } else {
                ld.join(number)
            };
            symlink(&target, link).unwrap();
        }
    }
}

#[test]
fn partition_disk_and_number_from_sysfs() {
    let f = FakeSys::new();
    f.dev("pci0/virtio1/block/vda", "254:0", &[("size", "4194304\n")]);
    f.dev(
        "pci0/virtio1/block/vda/vda1",
        "254:1",
        &[("partition", "1\n")],
    );
    f.dev(
        "pci0/virtio1/block/vda/vda15",
        "254:15",
        &[("partition", "15\n")],
    );
    f.dev("virtual/block/loop0", "7:0", &[]);
    f.dev(
        "virtual/block/loop0/loop0p1",
        "7:1",
        &[("partition", "1\n")],
    );
    f.dev("pci0/virtio2/block/vdb", "254:16", &[]);
    let class = f.sys().join("class/block");
    assert_eq!(
        layout(&class, "vda1"),
        Layout::Partition {
            dev: "vda1".into(),
            disk: "vda".into(),
            number: 1
        }
    );
    assert_eq!(
        layout(&class, "vda15"),
        Layout::Partition {
            dev: "vda15".into(),
            disk: "vda".into(),
            number: 15
        }
    );
    assert_eq!(
        layout(&class, "loop0p1"),
        Layout::Partition {
            dev: "loop0p1".into(),
            disk: "loop0".into(),
            number: 1
        }
    );
    assert_eq!(layout(&class, "vdb"), Layout::Disk { dev: "vdb".into() });
    assert_eq!(layout(&class, "vda1").disks(), ["vda"]);

    let mounts = parse_mountinfo(MOUNTINFO);
    let dev = self::Path::new("/nonexistent");
    assert_eq!(
        device_of(&f.sys(), dev, &mounts[1]).as_deref(),
        Some("vda1")
    );
    assert_eq!(
        device_of(&f.sys(), dev, &mounts[4]).as_deref(),
        Some("loop0p1")
    );
    // btrfs: an anonymous device number; found by its source in /dev.
    let devdir = f.0.path().join("dev");
    std::fs::create_dir_all(&devdir).unwrap();
    std::fs::write(devdir.join("vdb"), "").unwrap();
    assert_eq!(
        device_of(&f.sys(), &devdir, &mounts[2]).as_deref(),
        Some("vdb")
    );
    assert_eq!(
        device_of(&f.sys(), dev, &mounts[0]),
        None,
        "proc has no device"
    );
}

#[test]
fn lvm_volume_on_a_partition() {
    let f = FakeSys::new();
    f.dev("pci0/virtio1/block/vda", "254:0", &[]);
    f.dev(
        "pci0/virtio1/block/vda/vda3",
        "254:3",
        &[("partition", "3\n")],
    );
    f.dev(
        "virtual/block/dm-0",
        "253:0",
        &[("dm/uuid", "LVM-abcdef\n"), ("dm/name", "vg0-root\n")],
    );
    let slaves = f.sys().join("devices/virtual/block/dm-0/slaves");
    std::fs::create_dir_all(&slaves).unwrap();
    symlink(
        "../../../../pci0/virtio1/block/vda/vda3",
        slaves.join("vda3"),
    )
    .unwrap();
    f.dev(
        "virtual/block/dm-1",
        "253:1",
        &[("dm/uuid", "CRYPT-LUKS2-x\n"), ("dm/name", "secret\n")],
    );
    let class = f.sys().join("class/block");
    let lv = layout(&class, "dm-0");
    assert_eq!(
        lv,
        Layout::Lvm {
            dev: "dm-0".into(),
            name: "vg0-root".into(),
            pvs: vec![Layout::Partition {
                dev: "vda3".into(),
                disk: "vda".into(),
                number: 3
            }]
        }
    );
    assert_eq!(lv.disks(), ["vda"]);
    assert_eq!(lv.describe(), "LVM volume vg0-root on /dev/vda3");
    assert_eq!(layout(&class, "dm-1"), Layout::Other { dev: "dm-1".into() });
    let lvm = missing_tools(&lv, Fs::Ext);
    // Whatever is installed here, the LVM tools are asked for by name.
    for t in lvm {
        assert!(
            ["pvresize", "lvextend", "growpart", "sfdisk", "resize2fs"]
                .iter()
                .any(|n| t.starts_with(n)),
            "{t}"
        );
    }
}

#[test]
fn markers_per_mount_point() {
    assert_eq!(marker("/"), "growfs-root");
    assert_eq!(marker("/srv/data"), "growfs-srv_data");
}
