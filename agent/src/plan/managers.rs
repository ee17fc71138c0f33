//! Living with the image's network stack: for every NIC vmctx configures, a file that keeps
//! the distro's manager from fighting it (NetworkManager: unmanaged by MAC; networkd:
//! `Unmanaged=yes`; ifupdown: no stanza), and for `METHOD=dhcp` NICs the manager's own DHCP
//! configuration instead. All named `*vmctx*`, so stale ones can be found and removed.

use crate::context::{HeldNic, Ip6Method, MacAddr, Method, Network, Nic};
use crate::facts::{Links, Managers};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

pub const NM_CONF_DIR: &str = "/etc/NetworkManager/conf.d";
pub const NM_CONN_DIR: &str = "/etc/NetworkManager/system-connections";
pub const NETWORKD_DIR: &str = "/etc/systemd/network";
pub const IFUPDOWN_DIR: &str = "/etc/network/interfaces.d";

/// The folders where vmctx's manager files live, and how to tell its own files there.
pub const MANAGED_DIRS: [(&str, &str); 5] = [
    (NM_CONF_DIR, "90-vmctx-"),
    (NM_CONN_DIR, "vmctx-"),
    // Before the usual 10-* files of other generators: networkd uses the first match.
    (NETWORKD_DIR, "05-vmctx-"),
    (IFUPDOWN_DIR, "vmctx-"),
    // What networkd's wait-online waits for (`super::online`).
    ("/run/vmctx", "networkd-wait-online"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerFile {
    pub path: String,
    /// What the file is for, e.g. `networkd: unmanaged 02:00:0a:00:03:28`.
    pub purpose: String,
    #[serde(skip)]
    pub content: String,
    #[serde(skip)]
    pub mode: u32,
}

const HEADER: &str =
    "# Written by vmctx from the instance's context; removed when the NIC leaves it.\n";

/// `devices`: the names of the planned bonds, bridges and VLANs.
pub fn files(
    net: &Network,
    devices: &[&str],
    links: &Links,
    m: &Managers,
    warnings: &mut Vec<String>,
) -> Vec<ManagerFile> {
    let mut out = Vec::new();
    if !net.configure {
        return out;
    }
    // Bond and bridge members are vmctx's as a whole, as are the devices (by name).
    let members = super::devices::member_macs(net);
    let nics: Vec<_> = net
        .nics
        .iter()
        .filter(|n| n.method != Method::Skip && !members.contains(&n.mac))
        .collect();
    // A NIC left alone stays as vmctx had it: off NetworkManager's hands.
    let statics: Vec<MacAddr> = nics
        .iter()
        .filter(|n| n.method == Method::Static)
        .map(|n| n.mac)
        .chain(net.held.iter().filter_map(|h| h.mac))
        .chain(members.iter().copied())
        .collect();

    let header = HEADER;
    if m.network_manager && !(statics.is_empty() && devices.is_empty()) {
        let macs: Vec<String> = (statics.iter().map(|m| format!("mac:{m}")))
            .chain(devices.iter().map(|d| format!("interface-name:{d}")))
            .collect();
        out.push(ManagerFile {
            path: format!("{NM_CONF_DIR}/90-vmctx-unmanaged.conf"),
            purpose: format!("NetworkManager: unmanaged {}", macs.len()),
            content: format!("{header}[keyfile]\nunmanaged-devices={}\n", macs.join(";")),
            mode: 0o644,
        });
    }
    for nic in &nics {
        let mac = nic.mac;
        let id = file_id(mac);
        let dhcp = nic.method == Method::Dhcp;
        if m.network_manager && dhcp {
            let ipv6 = match nic.ip6_method {
                Ip6Method::Dhcp => "dhcp",
                Ip6Method::Auto | Ip6Method::Static => "auto",
                Ip6Method::Disable => "disabled",
                Ip6Method::Skip => "ignore",
            };
            out.push(ManagerFile {
                path: format!("{NM_CONN_DIR}/vmctx-{id}.nmconnection"),
                purpose: format!("NetworkManager: DHCP on {mac}"),
                content: format!(
                    "{header}[connection]\nid=vmctx ETH{}\nuuid={}\ntype=ethernet\nautoconnect=true\n\n[ethernet]\nmac-address={mac}\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod={ipv6}\n",
                    nic.index,
                    uuid_for(mac)
                ),
                mode: 0o600,
            });
        }
        if m.networkd {
            let body = if dhcp {
                let v6 = matches!(nic.ip6_method, Ip6Method::Dhcp);
                let ra = matches!(nic.ip6_method, Ip6Method::Dhcp | Ip6Method::Auto);
                format!(
                    "[Network]\nDHCP={}\nIPv6AcceptRA={}\n",
                    if v6 { "yes" } else { "ipv4" },
                    if ra { "yes" } else { "no" }
                )
            } else {
                "[Link]\nUnmanaged=yes\n".to_string()
            };
            out.push(ManagerFile {
                path: format!("{NETWORKD_DIR}/05-vmctx-{id}.network"),
                purpose: format!(
                    "networkd: {} {mac}",
                    if dhcp { "DHCP on" } else { "unmanaged" }
                ),
                content: format!("{header}[Match]\nMACAddress={mac}\n\n{body}"),
                mode: 0o644,
            });
        }
        if m.ifupdown && dhcp {
            ifupdown_dhcp(&mut out, nic, links, warnings);
        }
    }
    if m.networkd {
        networkd_unmanaged(&mut out, &members, devices);
    }
    out
}

/// networkd keeps off the members (by MAC) and the devices (by name).
fn networkd_unmanaged(out: &mut Vec<ManagerFile>, members: &BTreeSet<MacAddr>, devices: &[&str]) {
    let (header, unmanaged) = (HEADER, "[Link]\nUnmanaged=yes\n");
    for mac in members {
        out.push(ManagerFile {
            path: format!("{NETWORKD_DIR}/05-vmctx-{}.network", file_id(*mac)),
            purpose: format!("networkd: unmanaged {mac} (a member)"),
            content: format!("{header}[Match]\nMACAddress={mac}\n\n{unmanaged}"),
            mode: 0o644,
        });
    }
    for name in devices {
        out.push(ManagerFile {
            path: format!("{NETWORKD_DIR}/05-vmctx-{name}.network"),
            purpose: format!("networkd: unmanaged {name}"),
            content: format!("{header}[Match]\nName={name}\n\n{unmanaged}"),
            mode: 0o644,
        });
    }
}

/// ifupdown names interfaces, it cannot match a MAC: the live name is needed.
fn ifupdown_dhcp(out: &mut Vec<ManagerFile>, nic: &Nic, links: &Links, warnings: &mut Vec<String>) {
    let mac = nic.mac;
    let Some(link) = links.by_mac(mac) else {
        warnings.push(format!(
            "ETH{}: no link with MAC {mac}, so no ifupdown DHCP stanza",
            nic.index
        ));
        return;
    };
    let name = &link.name;
    let mut text = format!("{HEADER}allow-hotplug {name}\niface {name} inet dhcp\n");
    match nic.ip6_method {
        Ip6Method::Dhcp => text.push_str(&format!("iface {name} inet6 dhcp\n")),
        Ip6Method::Auto => text.push_str(&format!("iface {name} inet6 auto\n")),
        _ => {}
    }
    out.push(ManagerFile {
        path: format!("{IFUPDOWN_DIR}/vmctx-{name}"),
        purpose: format!("ifupdown: DHCP on {name}"),
        content: text,
        mode: 0o644,
    });
}

/// How a NIC's own files name it: its MAC without colons.
fn file_id(mac: MacAddr) -> String {
    mac.to_string().replace(':', "")
}

/// Whether `name`, a vmctx file in one of [`MANAGED_DIRS`], is the own file of a NIC the plan
/// leaves alone (kept as it is, not removed).
pub fn is_held_file(name: &str, held: &[HeldNic]) -> bool {
    held.iter()
        .filter_map(|h| h.mac)
        .any(|m| name.contains(&file_id(m)))
}

/// A stable connection UUID per MAC, so re-rendering gives the same file.
fn uuid_for(mac: MacAddr) -> String {
    let d = Sha256::digest(format!("vmctx {mac}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::parse_links;
    use crate::source::opennebula::ctx;

    const ALL: Managers = Managers {
        network_manager: true,
        networkd: true,
        ifupdown: true,
        wait_online: crate::facts::WaitOnline {
            networkd: true,
            network_manager: true,
            ifupdown: true,
        },
    };

    #[test]
    fn static_and_dhcp_nics_for_every_manager() {
        let c = ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH1_MAC='02:00:0a:00:03:29'\nETH1_METHOD='dhcp'\nETH2_MAC='02:00:0a:00:03:2a'\nETH2_METHOD='skip'\n");
        let links = parse_links("02:00:0a:00:03:29=ens4\n").unwrap();
        let mut w = Vec::new();
        let f = files(&c.network, &[], &links, &ALL, &mut w);
        let paths: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/NetworkManager/conf.d/90-vmctx-unmanaged.conf",
                "/etc/systemd/network/05-vmctx-02000a000328.network",
                "/etc/NetworkManager/system-connections/vmctx-02000a000329.nmconnection",
                "/etc/systemd/network/05-vmctx-02000a000329.network",
                "/etc/network/interfaces.d/vmctx-ens4",
            ]
        );
        assert!(f[0]
            .content
            .ends_with("unmanaged-devices=mac:02:00:0a:00:03:28\n"));
        assert!(f[1]
            .content
            .contains("MACAddress=02:00:0a:00:03:28\n\n[Link]\nUnmanaged=yes\n"));
        assert!(f[2].content.contains("mac-address=02:00:0a:00:03:29") && f[2].mode == 0o600);
        assert!(f[3].content.contains("DHCP=yes"));
        assert!(f[4].content.contains("iface ens4 inet dhcp"));
        assert!(w.is_empty());
        assert_eq!(
            uuid_for(c.network.nics[0].mac),
            uuid_for(c.network.nics[0].mac)
        );
    }

    #[test]
    fn nothing_without_managers_or_network() {
        let c = ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n");
        assert!(files(
            &c.network,
            &[],
            &Links::default(),
            &Managers::default(),
            &mut Vec::new()
        )
        .is_empty());
        let c = ctx("NETWORK='NO'\nETH0_MAC='02:00:0a:00:03:28'\n");
        assert!(files(&c.network, &[], &Links::default(), &ALL, &mut Vec::new()).is_empty());
    }
}
