//! The network part of a plan, in netplan version-2 form (comparable with cloud-init's output):
//! per link the addresses, routes with their table, `routing-policy` rules, MTU and IPv6
//! settings, exactly as apply installs them.

use super::devices::{self, Device};
use super::routes::{self, MainDefaults, Route, Rule};
use crate::context::{Cidr, HeldNic, Ip6Method, MacAddr, Method, Network, Nic};
use crate::derive;
use crate::facts::Facts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Netplan {
    pub version: u8,
    pub ethernets: BTreeMap<String, Ethernet>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bonds: BTreeMap<String, Device>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bridges: BTreeMap<String, Device>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vlans: BTreeMap<String, Device>,
    /// NICs whose identity or address is invalid (see the plan's errors): vmctx neither
    /// configures them nor removes what it added to them before.
    #[serde(rename = "left-alone", skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<HeldNic>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ethernet {
    /// Unset (zero) for a bond, VLAN or bridge: those are known by name.
    #[serde(rename = "match", skip_serializing_if = "Match::is_unset")]
    pub match_: Match,
    /// `ETHx` (the link's name for a legacy context), for the report.
    #[serde(skip)]
    pub label: String,
    #[serde(skip)]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Cidr>,
    /// In the order apply adds them: on-link first, default routes last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(rename = "routing-policy", skip_serializing_if = "Vec::is_empty")]
    pub routing_policy: Vec<Rule>,
    #[serde(skip_serializing_if = "Nameservers::is_empty")]
    pub nameservers: Nameservers,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// DHCP NICs are only brought up: their addresses belong to the system's DHCP client.
    pub dhcp4: bool,
    pub dhcp6: bool,
    /// The link's `accept_ra` sysctl: off for static addressing (so a stray RA cannot add an
    /// address the context did not ask for), on for SLAAC and DHCPv6, untouched when unset.
    #[serde(rename = "accept-ra", skip_serializing_if = "Option::is_none")]
    pub accept_ra: Option<bool>,
    /// `IP6_METHOD=disable`: the link's `disable_ipv6` sysctl set (vmctx's own key: netplan
    /// has none).
    #[serde(rename = "disable-ipv6", skip_serializing_if = "std::ops::Not::not")]
    pub disable_ipv6: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Match {
    pub macaddress: MacAddr,
}

impl Match {
    fn is_unset(&self) -> bool {
        self.macaddress == MacAddr([0; 6])
    }
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
pub fn netplan(
    net: &Network,
    facts: &Facts,
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> Netplan {
    let mut plan = Netplan {
        version: 2,
        ethernets: BTreeMap::new(),
        bonds: BTreeMap::new(),
        bridges: BTreeMap::new(),
        vlans: BTreeMap::new(),
        left_alone: Vec::new(),
    };
    if !net.configure {
        return plan;
    }
    plan.left_alone = net.held.clone();
    // On EC2 the primary NIC's DHCP lease holds the main default route already.
    let mut main = MainDefaults {
        v4: net.dhcp_default_route,
        v6: net.dhcp_default_route,
    };
    // A NIC left alone keeps the main table's default routes it may hold: the NICs after it
    // get their own tables, as when it is valid (a `replace` would take its route over).
    let first_held = net.held.iter().map(|h| h.index).min();
    let members = devices::member_macs(net);
    for nic in net.nics.iter().filter(|n| n.method != Method::Skip) {
        if members.contains(&nic.mac) {
            if !nic.addresses.is_empty() || nic.method == Method::Dhcp {
                warnings.push(format!(
                    "ETH{} ({}): a bond or bridge member keeps no addresses; its own are left out",
                    nic.index, nic.mac
                ));
            }
            continue;
        }
        if first_held.is_some_and(|h| h < nic.index) {
            main.v4 = true;
            main.v6 = true;
        }
        let name = match facts.links.by_mac(nic.mac) {
            Some(link) => link.name.clone(),
            None => {
                let mut name = format!("eth{}", nic.index);
                // Never the name of a link the machine has: that one may be another NIC's.
                if facts.links.iter().any(|l| l.name == name) {
                    name.push_str("-absent");
                }
                warnings.push(format!(
                    "ETH{} ({}) matches no link on this machine; planned as {name}",
                    nic.index, nic.mac
                ));
                name
            }
        };
        if plan.ethernets.contains_key(&name) {
            warnings.push(format!(
                "ETH{}: link {name} is already configured by another NIC; skipped",
                nic.index
            ));
            continue;
        }
        plan.ethernets.insert(name, ethernet(nic, &mut main));
    }
    if net.derive_all_prefixed {
        for link in facts.links.iter() {
            if let Ok(ip) = derive::mac_to_ipv4(link.mac, net.mac_prefix) {
                let addr = Cidr {
                    addr: ip.into(),
                    prefix: 24,
                };
                let legacy = legacy_ethernet(link.mac, &link.name, addr, net);
                plan.ethernets.entry(link.name.clone()).or_insert(legacy);
            }
        }
    }
    devices::plan(net, facts, &mut main, &mut plan, (warnings, errors));
    if facts.ipv6_disabled {
        without_ipv6(&mut plan, warnings);
    }
    plan
}

pub(super) fn ethernet(nic: &Nic, main: &mut MainDefaults) -> Ethernet {
    let (routes, routing_policy) = routes::of_nic(nic, main);
    let (dhcp6, accept_ra) = match nic.ip6_method {
        Ip6Method::Static => (false, Some(false)),
        Ip6Method::Disable => (false, None),
        Ip6Method::Auto => (false, Some(true)),
        Ip6Method::Dhcp => (true, Some(true)),
        Ip6Method::Skip => (false, None),
    };
    Ethernet {
        match_: Match {
            macaddress: nic.mac,
        },
        label: format!("ETH{}", nic.index),
        index: Some(nic.index),
        addresses: nic.addresses.clone(),
        routes,
        routing_policy,
        nameservers: Nameservers {
            addresses: nic.dns.clone(),
            search: nic.search.clone(),
        },
        mtu: nic.mtu,
        dhcp4: nic.method == Method::Dhcp,
        dhcp6,
        accept_ra,
        disable_ipv6: nic.ip6_method == Ip6Method::Disable,
    }
}

/// A NIC of a context without any `ETHx_*`: its MAC-derived /24 and the global resolvers.
fn legacy_ethernet(mac: MacAddr, name: &str, addr: Cidr, net: &Network) -> Ethernet {
    Ethernet {
        match_: Match { macaddress: mac },
        label: name.to_string(),
        index: None,
        addresses: vec![addr],
        routes: Vec::new(),
        routing_policy: Vec::new(),
        nameservers: Nameservers {
            addresses: net.dns.clone(),
            search: net.search.clone(),
        },
        mtu: None,
        dhcp4: false,
        dhcp6: false,
        accept_ra: None,
        disable_ipv6: false,
    }
}

/// The kernel has no IPv6 (`ipv6.disable=1`): no IPv6 address, route, rule or sysctl is planned.
fn without_ipv6(plan: &mut Netplan, warnings: &mut Vec<String>) {
    let devices = plan.bonds.iter_mut().chain(plan.bridges.iter_mut());
    let devices = devices
        .chain(plan.vlans.iter_mut())
        .map(|(n, d)| (n, &mut d.l3));
    for (name, e) in plan.ethernets.iter_mut().chain(devices) {
        let before = e.addresses.len() + e.routes.len();
        e.addresses.retain(|a| a.addr.is_ipv4());
        e.routes.retain(|r| r.to.addr.is_ipv4());
        e.routing_policy.retain(|r| r.from.addr.is_ipv4());
        e.accept_ra = None;
        e.disable_ipv6 = false;
        if e.addresses.len() + e.routes.len() < before {
            warnings.push(format!(
                "{} ({name}): IPv6 is disabled on this system; its IPv6 addresses and routes are left out",
                e.label
            ));
        }
    }
}
