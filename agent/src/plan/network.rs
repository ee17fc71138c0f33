//! The network part of a plan, in netplan version-2 form (comparable with cloud-init's output).

use crate::context::{Cidr, Ip6Method, MacAddr, Method, Network, Nic};
use crate::derive;
use crate::facts::Links;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Netplan {
    pub version: u8,
    pub ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ethernet {
    #[serde(rename = "match")]
    pub match_: Match,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Cidr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteOut>,
    #[serde(skip_serializing_if = "Nameservers::is_empty")]
    pub nameservers: Nameservers,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub dhcp4: bool,
    pub dhcp6: bool,
    #[serde(rename = "accept-ra", skip_serializing_if = "Option::is_none")]
    pub accept_ra: Option<bool>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Match {
    pub macaddress: MacAddr,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteOut {
    /// `default` or a prefix.
    pub to: String,
    pub via: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Nameservers {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl Nameservers {
    fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.search.is_empty()
    }
}

/// Interfaces vmctx leaves alone (METHOD=skip, not in the context) do not appear. A context NIC
/// with no link of its MAC is keyed `eth<index>`, with a warning.
pub fn netplan(net: &Network, links: &Links, warnings: &mut Vec<String>) -> Netplan {
    let mut ethernets = BTreeMap::new();
    if !net.configure {
        return Netplan {
            version: 2,
            ethernets,
        };
    }
    for nic in net.nics.iter().filter(|n| n.method != Method::Skip) {
        let name = match links.by_mac(nic.mac) {
            Some(link) => link.name.clone(),
            None => {
                let mut name = format!("eth{}", nic.index);
                // Never the name of a link the machine has: that one may be another NIC's.
                if links.iter().any(|l| l.name == name) {
                    name.push_str("-absent");
                }
                warnings.push(format!(
                    "ETH{} ({}) matches no link on this machine; planned as {name}",
                    nic.index, nic.mac
                ));
                name
            }
        };
        if ethernets.contains_key(&name) {
            warnings.push(format!(
                "ETH{}: link {name} is already configured by another NIC; skipped",
                nic.index
            ));
            continue;
        }
        ethernets.insert(name, ethernet(nic));
    }
    if net.derive_all_prefixed {
        for link in links.iter() {
            if let Ok(ip) = derive::mac_to_ipv4(link.mac, net.mac_prefix) {
                let legacy = legacy_ethernet(
                    link.mac,
                    Cidr {
                        addr: ip.into(),
                        prefix: 24,
                    },
                    net,
                );
                ethernets.entry(link.name.clone()).or_insert(legacy);
            }
        }
    }
    Netplan {
        version: 2,
        ethernets,
    }
}

fn ethernet(nic: &Nic) -> Ethernet {
    let mut routes = Vec::new();
    if let Some(gw) = nic.gateway {
        routes.push(RouteOut {
            to: "default".into(),
            via: gw.into(),
            metric: nic.metric,
        });
    }
    if let Some(gw) = nic.gateway6 {
        routes.push(RouteOut {
            to: "default".into(),
            via: gw.into(),
            metric: nic.metric6,
        });
    }
    for r in &nic.routes {
        let metric = if r.to.addr.is_ipv4() {
            nic.metric
        } else {
            nic.metric6
        };
        routes.push(RouteOut {
            to: r.to.to_string(),
            via: r.via,
            metric,
        });
    }
    let (dhcp6, accept_ra) = match nic.ip6_method {
        Ip6Method::Static | Ip6Method::Disable => (false, Some(false)),
        Ip6Method::Auto => (false, Some(true)),
        Ip6Method::Dhcp => (true, Some(true)),
        Ip6Method::Skip => (false, None),
    };
    Ethernet {
        match_: Match {
            macaddress: nic.mac,
        },
        addresses: nic.addresses.clone(),
        routes,
        nameservers: Nameservers {
            addresses: nic.dns.clone(),
            search: nic.search.clone(),
        },
        mtu: nic.mtu,
        dhcp4: nic.method == Method::Dhcp,
        dhcp6,
        accept_ra,
    }
}

/// A NIC of a context without any `ETHx_*`: its MAC-derived /24 and the global resolvers.
fn legacy_ethernet(mac: MacAddr, addr: Cidr, net: &Network) -> Ethernet {
    Ethernet {
        match_: Match { macaddress: mac },
        addresses: vec![addr],
        routes: Vec::new(),
        nameservers: Nameservers {
            addresses: net.dns.clone(),
            search: net.search.clone(),
        },
        mtu: None,
        dhcp4: false,
        dhcp6: false,
        accept_ra: None,
    }
}
