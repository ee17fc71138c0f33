//! What the running system has: its network links and their MACs (over rtnetlink), or a
//! `--links-file` standing in for them so a plan can be made for another machine.

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| FactsError::Netlink(e.to_string()))?;
    rt.block_on(netlink_links()).map_err(FactsError::Netlink)
}

async fn netlink_links() -> Result<Links, String> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType};

    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let mut stream = handle.link().get().execute();
    let mut links = Vec::new();
    while let Some(msg) = stream.try_next().await.map_err(|e| e.to_string())? {
        if msg.header.link_layer_type != LinkLayerType::Ether {
            continue;
        }
        let mut name = None;
        let mut mac = None;
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n),
                LinkAttribute::Address(a) => {
                    mac = <[u8; 6]>::try_from(a.as_slice()).ok().map(MacAddr)
                }
                _ => {}
            }
        }
        if let (Some(name), Some(mac)) = (name, mac) {
            links.push((msg.header.index, Link { name, mac }));
        }
    }
    task.abort();
    links.sort_by_key(|(idx, _)| *idx);
    Ok(Links(links.into_iter().map(|(_, l)| l).collect()))
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
