//! Which source is present, cheap checks first:
//! 1. a local volume among the block devices, CD-ROMs first: OpenNebula's `CONTEXT` or an
//!    OpenStack config drive (`config-2`/`CONFIG-2`, ISO9660 or FAT) — each device's volume
//!    descriptor or boot sector is read (no mount, no blkid, a few KiB per device);
//! 2. DMI (`/sys/class/dmi/id`): EC2 → its IMDS; OpenStack Nova → its metadata service (with
//!    the EC2-compatible tree as fallback);
//! 3. a short IMDS probe at 169.254.169.254.
//!
//! Every path is taken under `--root`.

use super::iso9660::read_volume_id;
use super::opennebula::CONTEXT_LABEL;
use super::openstack::drive::is_drive_label;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Kernel names of the devices a context CD can be: CD-ROMs, virtio, SCSI/SATA, Xen and IDE
/// disks. Loop, RAM, device-mapper and md devices never hold one.
const CANDIDATES: [&str; 5] = ["sr", "vd", "sd", "xvd", "hd"];

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub device: String,
    /// What was found: the volume label, or why the device was passed over.
    pub found: String,
}

/// Which kind of local volume was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Volume {
    /// OpenNebula's context CD.
    Context,
    /// OpenStack's config drive.
    ConfigDrive,
    /// A NoCloud seed (`cidata`).
    NoCloud,
}

#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// The CONTEXT or config-2 device, if any.
    pub device: Option<PathBuf>,
    pub kind: Option<Volume>,
    /// Every device looked at, in order, with what it held: the evidence for the decision.
    pub probes: Vec<Probe>,
}

impl Detection {
    pub fn summary(&self) -> String {
        if self.probes.is_empty() {
            return "no CD-ROM or disk in /sys/class/block".into();
        }
        let seen: Vec<String> = self
            .probes
            .iter()
            .map(|p| format!("{} ({})", p.device, p.found))
            .collect();
        format!(
            "no volume labelled {CONTEXT_LABEL}, config-2 or cidata among {}",
            seen.join(", ")
        )
    }
}

/// Looks at `<root>/sys/class/block/*` and reads `<root>/dev/<name>`; CD-ROMs first. The
/// first CONTEXT or config-2 volume wins.
pub fn find_volume(root: &Path) -> Detection {
    let mut names: Vec<String> = match std::fs::read_dir(root.join("sys/class/block")) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| CANDIDATES.iter().any(|c| n.starts_with(c)))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort_by_key(|n| (rank(n), n.len(), n.clone()));
    let mut probes = Vec::new();
    for name in names {
        let dev = root.join("dev").join(&name);
        let found = probe(root, &name, &dev);
        let kind = match &found {
            Ok((_, label)) if label == CONTEXT_LABEL => Some(Volume::Context),
            Ok((_, label)) if is_drive_label(label) => Some(Volume::ConfigDrive),
            Ok((_, label)) if super::nocloud::is_seed_label(label) => Some(Volume::NoCloud),
            _ => None,
        };
        probes.push(Probe {
            device: dev.display().to_string(),
            found: match found {
                Ok((fs, label)) if label.is_empty() => format!("{fs}, no label"),
                Ok((fs, label)) => format!("{fs} {label:?}"),
                Err(why) => why,
            },
        });
        if kind.is_some() {
            return Detection {
                device: Some(dev),
                kind,
                probes,
            };
        }
    }
    Detection {
        device: None,
        kind: None,
        probes,
    }
}

/// DMI files read, and what in them marks a cloud with an EC2-style metadata service.
const DMI_FILES: [&str; 6] = [
    "sys_vendor",
    "bios_vendor",
    "product_name",
    "product_uuid",
    "chassis_asset_tag",
    "board_asset_tag",
];

/// The cloud DMI names, if any: `(which, evidence)`.
pub fn dmi_cloud(root: &Path, evidence: &mut Vec<Probe>) -> Option<String> {
    let dmi = root.join("sys/class/dmi/id");
    let mut cloud = None;
    for f in DMI_FILES {
        let Ok(v) = std::fs::read_to_string(dmi.join(f)) else {
            continue;
        };
        let v = v.trim().to_string();
        let lower = v.to_ascii_lowercase();
        let hit = match f {
            "product_uuid" if lower.starts_with("ec2") => Some("EC2 (product uuid ec2…)"),
            "sys_vendor" | "bios_vendor" | "chassis_asset_tag" if lower.contains("amazon ec2") => {
                Some("EC2")
            }
            "product_name" | "chassis_asset_tag" if is_openstack(&lower) => Some(OPENSTACK),
            "sys_vendor" if lower == "openstack foundation" => Some(OPENSTACK),
            _ => None,
        };
        evidence.push(Probe {
            device: format!("dmi {f}"),
            found: format!("{v:?}"),
        });
        if cloud.is_none() {
            cloud = hit.map(str::to_string);
        }
    }
    // Xen-based EC2 instances: the hypervisor's uuid.
    if let Ok(u) = std::fs::read_to_string(root.join("sys/hypervisor/uuid")) {
        let u = u.trim().to_ascii_lowercase();
        evidence.push(Probe {
            device: "hypervisor uuid".into(),
            found: format!("{u:?}"),
        });
        if cloud.is_none() && u.starts_with("ec2") {
            cloud = Some("EC2 (Xen hypervisor uuid ec2…)".into());
        }
    }
    if evidence.is_empty() {
        evidence.push(Probe {
            device: "dmi".into(),
            found: format!("no {}", dmi.display()),
        });
    }
    cloud
}

/// What [`dmi_cloud`] says for Nova and the clouds built on it.
pub const OPENSTACK: &str = "OpenStack";

/// Nova's DMI names (`[Nova] product=` may override them) and the asset tags of clouds built
/// on it (cloud-init's list).
fn is_openstack(lower: &str) -> bool {
    [
        "openstack nova",
        "openstack compute",
        "opentelekomcloud",
        "sap ccloud vm",
        "huaweicloud",
        "samsung cloud platform",
    ]
    .iter()
    .any(|n| lower.starts_with(n))
}

/// The whole decision: a source, or none, with every check's evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub source: Option<super::Source>,
    pub probes: Vec<Probe>,
    pub evidence: Vec<Probe>,
    #[serde(skip)]
    pub summary: String,
}

/// A local volume, then DMI, then (when `imds` is given) a short IMDS probe there. DMI naming
/// a cloud decides without the probe: its IMDS may only answer once the network is up.
pub fn decide(root: &Path, imds: Option<&str>) -> Decision {
    let cd = find_volume(root);
    let mut evidence = Vec::new();
    // The kernel command line names a NoCloud seed folder: that wins, as in cloud-init.
    match super::nocloud::cmdline_seed(root) {
        Some(Ok(path)) => {
            evidence.push(Probe {
                device: "kernel command line".into(),
                found: format!("ds=nocloud seed {}", path.display()),
            });
            return Decision {
                source: Some(super::Source::NoCloud(Some(path))),
                probes: cd.probes,
                evidence,
                summary: String::new(),
            };
        }
        Some(Err(why)) => evidence.push(Probe {
            device: "kernel command line".into(),
            found: why,
        }),
        None => {}
    }
    if let (Some(dev), Some(kind)) = (&cd.device, cd.kind) {
        let dev = Some(dev.clone());
        let source = match kind {
            Volume::Context => super::Source::OpenNebula(dev),
            Volume::ConfigDrive => super::Source::ConfigDrive(dev),
            Volume::NoCloud => super::Source::NoCloud(dev),
        };
        return Decision {
            source: Some(source),
            probes: cd.probes,
            evidence,
            summary: String::new(),
        };
    }
    let mut summary = cd.summary();
    let ec2 = |url: Option<&str>| super::Source::Ec2(url.map(str::to_string));
    if let Some(cloud) = dmi_cloud(root, &mut evidence) {
        let source = if cloud == OPENSTACK {
            super::Source::OpenStack(imds.map(str::to_string))
        } else {
            ec2(imds)
        };
        return Decision {
            source: Some(source),
            probes: cd.probes,
            evidence: {
                evidence.push(Probe {
                    device: "decision".into(),
                    found: format!("DMI says {cloud}: read its metadata service"),
                });
                evidence
            },
            summary,
        };
    }
    summary.push_str("; DMI names no cloud");
    let mut source = None;
    match imds {
        Some(url) => {
            let endpoint = super::ec2::Endpoint::parse(url).map_err(|e| e.to_string());
            let answer = endpoint.as_ref().map_err(Clone::clone).and_then(|e| {
                super::ec2::probe(e, super::ec2::PROBE_BUDGET).map_err(|e| e.to_string())
            });
            let found = match answer {
                // Nova serves an EC2 tree too: its own `/openstack` says which cloud this is.
                Ok(id) if endpoint.as_ref().is_ok_and(super::openstack::has_service) => {
                    source = Some(super::Source::OpenStack(Some(url.to_string())));
                    format!("answered: instance {id}; /openstack answers too (OpenStack)")
                }
                Ok(id) => {
                    source = Some(ec2(Some(url)));
                    format!("answered: instance {id}")
                }
                Err(e) => {
                    summary.push_str(&format!("; no IMDS ({e})"));
                    format!("no answer: {e}")
                }
            };
            evidence.push(Probe {
                device: format!("imds {url}"),
                found,
            });
        }
        None => evidence.push(Probe {
            device: "imds".into(),
            found: "not probed".into(),
        }),
    }
    Decision {
        source,
        probes: cd.probes,
        evidence,
        summary,
    }
}

/// Where `--source auto` probes: the settings' URL (`VMCTX_IMDS_URL`), else EC2's address —
/// but only on the real root: with `--root DIR` the machine is a test tree and only an
/// explicit URL is asked.
pub fn probe_url(root: &Path, imds: &crate::settings::Imds) -> Option<String> {
    match &imds.url {
        Some(u) => Some(u.clone()),
        None if root == Path::new("/") => Some(super::ec2::DEFAULT_URL.to_string()),
        None => None,
    }
}

/// Whether the machine has a CD-ROM drive (where OpenNebula attaches the context).
pub fn has_cdrom(root: &Path) -> bool {
    std::fs::read_dir(root.join("sys/class/block"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("sr"))
        })
        .unwrap_or(false)
}

fn rank(name: &str) -> usize {
    CANDIDATES
        .iter()
        .position(|c| name.starts_with(c))
        .unwrap_or(CANDIDATES.len())
}

/// The filesystem and label of `dev`: ISO9660's volume id, else a FAT volume label.
fn probe(root: &Path, name: &str, dev: &Path) -> Result<(&'static str, String), String> {
    // An empty CD drive reports size 0: don't wait on it.
    let size = std::fs::read_to_string(root.join("sys/class/block").join(name).join("size"));
    if size.is_ok_and(|s| s.trim() == "0") {
        return Err("no medium".into());
    }
    let file = std::fs::File::open(dev).map_err(|e| match e.raw_os_error() {
        Some(123) => "no medium".to_string(), // ENOMEDIUM
        _ => format!("cannot open: {e}"),
    })?;
    match read_volume_id(&file) {
        Ok(Some(label)) => return Ok(("ISO9660", label)),
        Ok(None) => {}
        Err(e) => return Err(format!("unreadable: {e}")),
    }
    match super::vfat::read_label(&file) {
        Ok(Some(label)) => Ok(("FAT", label)),
        Ok(None) => Err("neither ISO9660 nor FAT".into()),
        Err(e) => Err(format!("unreadable FAT: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root with `sys/class/block/<name>` entries and `dev/<name>` files.
    fn fake_root(devs: &[(&str, Option<&str>)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (name, label) in devs {
            let sys = t.path().join("sys/class/block").join(name);
            std::fs::create_dir_all(&sys).unwrap();
            std::fs::create_dir_all(t.path().join("dev")).unwrap();
            let mut img = vec![0u8; 17 * 2048];
            if let Some(label) = label {
                let pvd = &mut img[16 * 2048..];
                pvd[0] = 1;
                pvd[1..6].copy_from_slice(b"CD001");
                pvd[6] = 1;
                pvd[40..72].fill(b' ');
                pvd[40..40 + label.len()].copy_from_slice(label.as_bytes());
            }
            std::fs::write(sys.join("size"), format!("{}\n", img.len() / 512)).unwrap();
            std::fs::write(t.path().join("dev").join(name), img).unwrap();
        }
        t
    }

    #[test]
    fn finds_the_context_volume_cdroms_first() {
        let root = fake_root(&[
            ("vda", None),
            ("sr1", Some("CONTEXT")),
            ("sr0", Some("DATA")),
            ("loop0", Some("CONTEXT")),
        ]);
        let d = find_volume(root.path());
        assert_eq!(d.device, Some(root.path().join("dev/sr1")));
        let looked: Vec<&str> = d
            .probes
            .iter()
            .map(|p| p.device.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            looked,
            ["sr0", "sr1"],
            "loop devices are never read; stops at the first match"
        );
    }

    #[test]
    fn finds_a_nocloud_seed() {
        for label in ["cidata", "CIDATA"] {
            let root = fake_root(&[("sr0", Some("DATA")), ("vdb", Some(label))]);
            let d = decide(root.path(), None);
            let dev = root.path().join("dev/vdb");
            assert_eq!(
                d.source,
                Some(crate::source::Source::NoCloud(Some(dev))),
                "{label}"
            );
        }
    }

    #[test]
    fn reports_what_it_saw() {
        let root = fake_root(&[("vda", None), ("sr0", Some("DATA"))]);
        let d = find_volume(root.path());
        assert!(d.device.is_none());
        let s = d.summary();
        assert!(
            s.contains("sr0 (ISO9660 \"DATA\")") && s.contains("vda (neither ISO9660 nor FAT)"),
            "{s}"
        );
    }

    #[test]
    fn empty_drive_is_skipped() {
        let root = fake_root(&[("sr0", Some("CONTEXT"))]);
        std::fs::write(root.path().join("sys/class/block/sr0/size"), "0\n").unwrap();
        let d = find_volume(root.path());
        assert!(d.device.is_none());
        assert_eq!(d.probes[0].found, "no medium");
    }

    #[test]
    fn dmi_names_ec2() {
        let t = tempfile::tempdir().unwrap();
        let dmi = t.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("sys_vendor"), "QEMU\n").unwrap();
        let d = decide(t.path(), None);
        assert_eq!(d.source, None);
        assert!(d.summary.contains("DMI names no cloud"), "{}", d.summary);
        std::fs::write(
            dmi.join("product_uuid"),
            "EC2E1916-9099-7CAF-FD21-012345678901\n",
        )
        .unwrap();
        let d = decide(t.path(), Some("http://127.0.0.1:9"));
        assert_eq!(
            d.source.map(|s| s.to_string()).as_deref(),
            Some("ec2:http://127.0.0.1:9")
        );
        assert!(d.evidence.iter().any(|p| p.device == "dmi product_uuid"));
    }

    #[test]
    fn nothing_to_look_at() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            find_volume(t.path()).summary(),
            "no CD-ROM or disk in /sys/class/block"
        );
    }
}
