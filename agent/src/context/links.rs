//! Bonds, VLANs and bridges as the sources describe them (netplan v2 terms), and NICs known
//! only by their position: part of [`Network`], pure data.

use super::{MacAddr, Network, Nic};
use serde::Serialize;

/// A bond: its members (by MAC when the source gave one) and its own addressing in `config`
/// (whose `index` is the bond's position and `mac` the bond's MAC, or zero when not set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bond {
    pub name: String,
    /// The members' names as the source wrote them.
    pub interfaces: Vec<String>,
    /// The members' MACs, where known.
    pub members: Vec<MacAddr>,
    pub mode: Option<String>,
    pub mii_monitor_interval: Option<u32>,
    pub transmit_hash_policy: Option<String>,
    pub config: Nic,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vlan {
    pub name: String,
    pub id: u16,
    /// The link it sits on, as the source named it (a NIC, a bond).
    pub link: String,
    /// The MAC of that link when it is a NIC of the source.
    pub link_mac: Option<MacAddr>,
    pub config: Nic,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bridge {
    pub name: String,
    pub interfaces: Vec<String>,
    pub members: Vec<MacAddr>,
    pub config: Nic,
}

/// An interface name the kernel takes (at most 15 bytes), that is also one path component
/// (under /sys/class/net, in a network manager's file name) and safe unquoted.
pub fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b))
}

impl Network {
    /// The network with every [`Network::by_order`] NIC given the MAC of the live NIC at its
    /// position among `live` (the machine's NICs in order); each match or miss is a warning.
    pub fn with_nic_order(&self, live: &[MacAddr], warnings: &mut Vec<String>) -> Network {
        let mut net = self.clone();
        for nic in std::mem::take(&mut net.by_order) {
            let pos = nic.index as usize;
            match live.get(pos) {
                Some(mac) if net.nics.iter().any(|n| n.mac == *mac) => warnings.push(format!(
                    "NIC {pos} has no MAC in the context and the NIC at that position ({mac}) \
                     is configured by MAC already; skipped"
                )),
                Some(mac) => {
                    warnings.push(format!(
                        "NIC {pos} has no MAC in the context: matched by NIC order to {mac}"
                    ));
                    net.nics.push(Nic { mac: *mac, ..nic });
                }
                None => warnings.push(format!(
                    "NIC {pos} has no MAC in the context and this machine has no NIC at that \
                     position; skipped"
                )),
            }
        }
        net
    }
}
