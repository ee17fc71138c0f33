//! Where a context was read from, resolved: the device, folder or URL that answered. It is shown
//! (`vmctx show`, `plan`, `status`, cloud-init's datasource) as `KIND:WHERE`, the form
//! `--source` takes.

use serde::{Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// OpenNebula's context CD: a block device or an image file.
    OpenNebula(PathBuf),
    /// A folder holding `context.sh`.
    Dir(PathBuf),
    /// An OpenStack config drive: a block device, an image file or an unpacked folder.
    ConfigDrive(PathBuf),
    /// An EC2-style instance metadata service, at this base URL.
    Ec2(String),
    /// OpenStack's (Nova's) metadata service, at this base URL.
    OpenStack(String),
    /// A NoCloud seed (`cidata`): a block device, an image file or a folder.
    NoCloud(PathBuf),
    /// A NoCloud seed served over http (cloud-init's `nocloud-net`), at this base URL.
    NoCloudNet(String),
}

impl Origin {
    /// Read over the network — after it is up, in the final stage — not from a local volume.
    pub fn is_network(&self) -> bool {
        match self {
            Origin::Ec2(_) | Origin::OpenStack(_) | Origin::NoCloudNet(_) => true,
            Origin::OpenNebula(_)
            | Origin::Dir(_)
            | Origin::ConfigDrive(_)
            | Origin::NoCloud(_) => false,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::OpenNebula(p) => write!(f, "opennebula:{}", p.display()),
            Origin::Dir(p) => write!(f, "dir:{}", p.display()),
            Origin::ConfigDrive(p) => write!(f, "configdrive:{}", p.display()),
            Origin::Ec2(u) => write!(f, "ec2:{u}"),
            Origin::OpenStack(u) => write!(f, "openstack:{u}"),
            Origin::NoCloud(p) => write!(f, "nocloud:{}", p.display()),
            Origin::NoCloudNet(u) => write!(f, "nocloud:{u}"),
        }
    }
}

/// The shown form read back (e.g. from `/run/vmctx/status.json`).
impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a context origin");
        let (kind, arg) = s.split_once(':').ok_or_else(bad)?;
        if arg.is_empty() {
            return Err(bad());
        }
        Ok(match kind {
            "opennebula" => Origin::OpenNebula(arg.into()),
            "dir" => Origin::Dir(arg.into()),
            "configdrive" => Origin::ConfigDrive(arg.into()),
            "ec2" => Origin::Ec2(arg.into()),
            "openstack" => Origin::OpenStack(arg.into()),
            "nocloud" if arg.starts_with("http") => Origin::NoCloudNet(arg.into()),
            "nocloud" => Origin::NoCloud(arg.into()),
            _ => return Err(bad()),
        })
    }
}

/// As the string it always was, so `show` and `plan` JSON stay the same.
impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_kind_and_where_and_read_back() {
        let all = [
            (
                Origin::OpenNebula("/dev/sr0".into()),
                "opennebula:/dev/sr0",
                false,
            ),
            (Origin::Dir("/ctx".into()), "dir:/ctx", false),
            (
                Origin::ConfigDrive("/dev/vdb".into()),
                "configdrive:/dev/vdb",
                false,
            ),
            (
                Origin::Ec2("http://169.254.169.254".into()),
                "ec2:http://169.254.169.254",
                true,
            ),
            (
                Origin::OpenStack("http://[fd00::1]:80".into()),
                "openstack:http://[fd00::1]:80",
                true,
            ),
            (
                Origin::NoCloud("/dev/sr1".into()),
                "nocloud:/dev/sr1",
                false,
            ),
            (
                Origin::NoCloudNet("http://10.0.0.1/seed/".into()),
                "nocloud:http://10.0.0.1/seed/",
                true,
            ),
        ];
        for (o, shown, network) in all {
            assert_eq!(o.to_string(), shown);
            assert_eq!(serde_json::to_value(&o).unwrap(), shown);
            assert_eq!(shown.parse::<Origin>().unwrap(), o);
            assert_eq!(o.is_network(), network, "{shown}");
        }
        for bad in ["auto", "ec2", "dir:", "nocloud:", "other:/x", ""] {
            assert!(bad.parse::<Origin>().is_err(), "{bad:?}");
        }
    }
}
