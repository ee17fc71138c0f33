//! What the running system has: its network links and their MACs (over rtnetlink), or a
//! `--links-file` standing in for them so a plan can be made for another machine; whether the
//! kernel has IPv6. Gathered before planning, so `plan` and `apply` agree.

use crate::context::MacAddr;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub mac: MacAddr,
}

/// The machine's Ethernet links, in interface-index order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links(pub Vec<Link>);

impl Links {
    /// The link with this MAC. VLANs and bond members share a MAC with their parent; the
    /// first (lowest index: the parent) wins.
    pub fn by_mac(&self, mac: MacAddr) -> Option<&Link> {
        self.0.iter().find(|l| l.mac == mac)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.0.iter()
    }

    /// The links' MACs in order: NIC positions for contexts that name NICs only by order.
    pub fn macs(&self) -> Vec<MacAddr> {
        self.0.iter().map(|l| l.mac).collect()
    }
}

/// The network managers an image has (under `--root`): vmctx keeps each from fighting it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Managers {
    pub network_manager: bool,
    pub networkd: bool,
    pub ifupdown: bool,
    /// Which of their wait-online services the image enables (see `plan::online`).
    pub wait_online: WaitOnline,
}

/// The wait-online services enabled in the image: each holds `network-online.target` until
/// its manager says the network is up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaitOnline {
    pub networkd: bool,
    pub network_manager: bool,
    pub ifupdown: bool,
}

impl Managers {
    pub fn detect(root: &Path) -> Managers {
        let has = |p: &str| root.join(p).exists();
        // Enabled: a `network-online.target.wants` link, the admin's or the vendor's.
        let wanted = |unit: &str| {
            ["etc", "lib", "usr/lib"].iter().any(|d| {
                let p = format!("{d}/systemd/system/network-online.target.wants/{unit}");
                root.join(p).symlink_metadata().is_ok()
            })
        };
        Managers {
            network_manager: has("usr/sbin/NetworkManager") || has("usr/bin/NetworkManager"),
            networkd: has("lib/systemd/systemd-networkd")
                || has("usr/lib/systemd/systemd-networkd"),
            ifupdown: has("etc/network/interfaces") && (has("sbin/ifup") || has("usr/sbin/ifup")),
            wait_online: WaitOnline {
                networkd: wanted("systemd-networkd-wait-online.service"),
                network_manager: wanted("NetworkManager-wait-online.service"),
                ifupdown: wanted("ifupdown-wait-online.service"),
            },
        }
    }
}

/// What the plan needs to know of the system.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub links: Links,
    pub managers: Managers,
    /// Whether SELinux labels files here: apply then restores the labels of what it wrote.
    pub selinux: crate::apply::selinux::Status,
    /// Whether the context's `TIMEZONE` is a zone of this system's tzdata.
    pub timezone: Zone,
    /// The image has cloud-init's configuration (`/etc/cloud`).
    pub cloud_init: bool,
    /// The image's package manager (for `package_update` of a `#cloud-config`).
    pub package_manager: Option<crate::os::PackageManager>,
    /// The kernel has no IPv6 (`ipv6.disable=1`): no IPv6 address, route or sysctl is planned.
    pub ipv6_disabled: bool,
}

/// Whether this network namespace's kernel has IPv6 off (its sysctl tree is absent).
pub fn ipv6_disabled() -> bool {
    !Path::new("/proc/sys/net/ipv6").exists()
}

/// The asked-for time zone against `/usr/share/zoneinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Zone {
    /// No `TIMEZONE`, or a zone this system has.
    #[default]
    Found,
    /// No tzdata at all: nothing to check against (apply reports it as skipped).
    NoTzdata,
    /// Not a zone of this system's tzdata: why.
    Missing(String),
}

impl Facts {
    /// Everything but the links, read under `root` for `ctx` (its zone), before planning: so
    /// `plan` and `apply` see the same system.
    pub fn gather(root: &Path, links: Links, ctx: &crate::context::Context) -> Facts {
        let os = crate::os::OsRelease::read(root);
        Facts {
            links,
            managers: Managers::detect(root),
            selinux: crate::apply::selinux::Status::read(root),
            timezone: zone(root, ctx.system.timezone.as_deref()),
            cloud_init: root.join("etc/cloud").is_dir(),
            package_manager: crate::os::PackageManager::detect(root, &os),
            ipv6_disabled: ipv6_disabled(),
        }
    }
}

pub(crate) fn zone(root: &Path, zone: Option<&str>) -> Zone {
    let Some(zone) = zone else {
        return Zone::Found;
    };
    let dir = crate::files::Root::new(root).path(crate::apply::timezone::ZONEINFO);
    if !dir.is_dir() {
        return Zone::NoTzdata;
    }
    match crate::apply::timezone::zone_file(&dir, zone) {
        Ok(_) => Zone::Found,
        Err(why) => Zone::Missing(why),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Syntax {
        path: String,
        line: usize,
        why: String,
    },
    #[error("listing network links over netlink: {0}")]
    Netlink(String),
}

/// `MAC=ifname` lines; `#` comments and blank lines ignored.
pub fn read_links_file(path: &Path) -> Result<Links, FactsError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FactsError::Read {
        path: p.clone(),
        source,
    })?;
    parse_links(&text).map_err(|(line, why)| FactsError::Syntax { path: p, line, why })
}

pub fn parse_links(text: &str) -> Result<Links, (usize, String)> {
    let mut links = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (mac, name) = line
            .split_once('=')
            .ok_or((i + 1, "expected MAC=ifname".to_string()))?;
        let mac: MacAddr = mac.trim().parse().map_err(|e| (i + 1, e))?;
        let name = name.trim();
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
            return Err((i + 1, format!("{name:?} is not an interface name")));
        }
        links.push(Link {
            mac,
            name: name.to_string(),
        });
    }
    Ok(Links(links))
}

/// The live Ethernet links of the current network namespace.
pub fn live_links() -> Result<Links, FactsError> {
    crate::netlink::Shared::run(links_of)
        .and_then(|links| links)
        .map_err(|e| FactsError::Netlink(e.to_string()))
}

/// The Ethernet links `nl` sees, in interface-index order.
pub async fn links_of(nl: &crate::netlink::Netlink) -> crate::netlink::Result<Links> {
    let live = nl.links().await?;
    Ok(Links(
        live.into_iter()
            .map(|l| Link {
                name: l.name,
                mac: l.mac,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_file() {
        let l = parse_links("# test\n02:00:0A:00:03:28=eth0\n\n02:00:0a:00:01:0a = ens3 # DMZ\n")
            .unwrap();
        assert_eq!(l.0.len(), 2);
        assert_eq!(
            l.by_mac("02:00:0a:00:03:28".parse().unwrap()).unwrap().name,
            "eth0"
        );
        assert_eq!(l.0[1].name, "ens3");
        assert_eq!(parse_links("eth0\n").unwrap_err().0, 1);
        assert_eq!(parse_links("# x\nzz=eth0\n").unwrap_err().0, 2);
        assert!(parse_links("02:00:0a:00:03:28=\n").is_err());
    }

    #[test]
    fn wait_online_units_from_their_enablement_links() {
        let t = tempfile::tempdir().unwrap();
        let wants = t
            .path()
            .join("etc/systemd/system/network-online.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        // A dangling link still says the unit is enabled (the root may be another system's).
        std::os::unix::fs::symlink(
            "/lib/systemd/system/systemd-networkd-wait-online.service",
            wants.join("systemd-networkd-wait-online.service"),
        )
        .unwrap();
        let m = Managers::detect(t.path());
        assert_eq!(
            m.wait_online,
            WaitOnline {
                networkd: true,
                ..WaitOnline::default()
            }
        );
    }

    #[test]
    fn live_links_lists_loopback_free_ethernet() {
        // Works unprivileged; lo is not Ethernet, so it never appears.
        let links = live_links().expect("netlink dump");
        assert!(links.iter().all(|l| l.name != "lo"));
    }
}
