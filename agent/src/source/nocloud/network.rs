//! `network-config` → [`Network`]: the version dispatch and what v1 and v2 share — one
//! [`Nic`] per interface (its subnets, addresses, routes and DNS), bonds, VLANs and bridges
//! typed in the context's model (not applied yet: each is a warning).

use super::yaml::{self, At};
use super::NETWORK_CONFIG;
use crate::context::{Bond, Bridge, Cidr, Ip6Method, MacAddr, Method, Network, Nic, Route, Vlan};
use serde_norway::Value;
use std::net::IpAddr;

pub fn parse(bytes: &[u8], warnings: &mut Vec<String>) -> Result<Network, String> {
    let at = At::new(NETWORK_CONFIG);
    let doc = yaml::parse(NETWORK_CONFIG, bytes)?;
    if doc.is_null() {
        return Err(at.err("empty (no version)"));
    }
    let mut m = yaml::mapping(&doc, &at)?;
    // netplan files and cloud-init's own docs wrap it in `network:`.
    if let Some(inner) = yaml::get(m, "network") {
        m = yaml::mapping(inner, &at.key("network"))?;
    }
    if yaml::get(m, "config").and_then(yaml::text).as_deref() == Some("disabled") {
        warnings.push(format!(
            "{NETWORK_CONFIG}: config: disabled: the network is left alone"
        ));
        return Ok(Network::default());
    }
    let mut b = Builder::new(warnings);
    match yaml::number(m, "version", &at)? {
        Some(1) => super::network_v1::read(m, &at, &mut b)?,
        Some(2) => super::network_v2::read(m, &at, &mut b)?,
        Some(v) => {
            return Err(at
                .key("version")
                .err(format!("version {v} is not supported (1 or 2)")))
        }
        None => return Err(at.key("version").err("missing (1 or 2)")),
    }
    Ok(b.finish())
}

/// What an interface name of the document stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Nic(usize),
    ByOrder(usize),
    Bond(usize),
    Vlan(usize),
    Bridge(usize),
}

pub struct Builder<'w> {
    pub net: Network,
    pub names: Vec<(String, Target)>,
    pub warnings: &'w mut Vec<String>,
}

impl<'w> Builder<'w> {
    pub fn new(warnings: &'w mut Vec<String>) -> Self {
        Builder {
            net: Network {
                configure: true,
                ..Network::default()
            },
            names: Vec::new(),
            warnings,
        }
    }

    pub fn target(&self, name: &str) -> Option<Target> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    pub fn config(&mut self, t: Target) -> &mut Nic {
        match t {
            Target::Nic(i) => &mut self.net.nics[i],
            Target::ByOrder(i) => &mut self.net.by_order[i],
            Target::Bond(i) => &mut self.net.bonds[i].config,
            Target::Vlan(i) => &mut self.net.vlans[i].config,
            Target::Bridge(i) => &mut self.net.bridges[i].config,
        }
    }

    pub fn config_ref(&self, t: Target) -> &Nic {
        match t {
            Target::Nic(i) => &self.net.nics[i],
            Target::ByOrder(i) => &self.net.by_order[i],
            Target::Bond(i) => &self.net.bonds[i].config,
            Target::Vlan(i) => &self.net.vlans[i].config,
            Target::Bridge(i) => &self.net.bridges[i].config,
        }
    }

    /// A physical NIC: by MAC; without one, by position when its name is `ethN`.
    pub fn nic(&mut self, name: &str, mac: Option<MacAddr>, at: &At) -> Option<Target> {
        let t = match mac {
            Some(mac) if self.net.nics.iter().any(|n| n.mac == mac) => {
                self.warnings.push(at.err(format!(
                    "{name}: MAC {mac} is an earlier interface's; skipped"
                )));
                return None;
            }
            Some(mac) => {
                let idx = self.net.nics.len() as u32;
                self.net
                    .nics
                    .push(Nic::new(idx, mac, Method::Skip, Ip6Method::Skip));
                Target::Nic(self.net.nics.len() - 1)
            }
            None => match name.strip_prefix("eth").and_then(|n| n.parse::<u32>().ok()) {
                Some(pos) => {
                    let nic = Nic::new(pos, MacAddr([0; 6]), Method::Skip, Ip6Method::Skip);
                    self.net.by_order.push(nic);
                    Target::ByOrder(self.net.by_order.len() - 1)
                }
                None => {
                    self.warnings.push(at.err(format!(
                        "{name}: no MAC address to match (vmctx finds NICs by MAC); skipped"
                    )));
                    return None;
                }
            },
        };
        self.names.push((name.to_string(), t));
        Some(t)
    }

    /// The members' MACs, where the document gave them.
    pub fn member_macs(&self, names: &[String]) -> Vec<MacAddr> {
        names
            .iter()
            .filter_map(|n| match self.target(n) {
                Some(Target::Nic(i)) => Some(self.net.nics[i].mac),
                _ => None,
            })
            .collect()
    }

    pub fn bond(&mut self, mut bond: Bond) {
        bond.members = self.member_macs(&bond.interfaces);
        bond.config.index = self.net.bonds.len() as u32;
        self.names
            .push((bond.name.clone(), Target::Bond(self.net.bonds.len())));
        self.net.bonds.push(bond);
    }

    pub fn vlan(&mut self, mut vlan: Vlan) {
        vlan.link_mac = self
            .member_macs(std::slice::from_ref(&vlan.link))
            .first()
            .copied();
        vlan.config.index = self.net.vlans.len() as u32;
        self.names
            .push((vlan.name.clone(), Target::Vlan(self.net.vlans.len())));
        self.net.vlans.push(vlan);
    }

    pub fn bridge(&mut self, mut br: Bridge) {
        br.members = self.member_macs(&br.interfaces);
        br.config.index = self.net.bridges.len() as u32;
        self.names
            .push((br.name.clone(), Target::Bridge(self.net.bridges.len())));
        self.net.bridges.push(br);
    }

    /// A static address with its gateway; the first gateway of each family wins.
    pub fn address(&mut self, t: Target, addr: Cidr, gateway: Option<IpAddr>, at: &At) {
        let nic = self.config(t);
        if addr.addr.is_ipv4() {
            nic.method = Method::Static;
        } else {
            nic.ip6_method = Ip6Method::Static;
        }
        if !nic.addresses.contains(&addr) {
            nic.addresses.push(addr);
        }
        if let Some(gw) = gateway {
            self.default_route(t, gw, at);
        }
    }

    pub fn default_route(&mut self, t: Target, gw: IpAddr, at: &At) {
        let nic = self.config(t);
        match gw {
            IpAddr::V4(g) if nic.gateway.is_none() => nic.gateway = Some(g),
            IpAddr::V6(g) if nic.gateway6.is_none() => nic.gateway6 = Some(g),
            _ => self
                .warnings
                .push(at.err(format!("a second default route (via {gw}) is ignored"))),
        }
    }

    pub fn route(&mut self, t: Target, to: Cidr, via: IpAddr, at: &At) {
        if to.addr.is_ipv4() != via.is_ipv4() {
            self.warnings
                .push(at.err("network and gateway are of different IP versions; route skipped"));
        } else if to.prefix == 0 {
            self.default_route(t, via, at);
        } else {
            let to = to.network();
            let nic = self.config(t);
            if !nic.routes.iter().any(|r| r.to == to && r.via == via) {
                nic.routes.push(Route { to, via });
            }
        }
    }

    pub fn dns(&mut self, t: Option<Target>, servers: &[IpAddr], search: &[String]) {
        for d in servers {
            push_unique(&mut self.net.dns, *d);
        }
        for s in search {
            push_unique(&mut self.net.search, s.to_ascii_lowercase());
        }
        if let Some(t) = t {
            let nic = self.config(t);
            for d in servers {
                push_unique(&mut nic.dns, *d);
            }
            for s in search {
                push_unique(&mut nic.search, s.to_ascii_lowercase());
            }
        }
    }

    /// IPv6-only, MTU-only or `manual` interfaces are configured too (IPv4 left off), and
    /// the global resolvers go to every statically addressed interface.
    pub fn finish(mut self) -> Network {
        let (dns, search) = (self.net.dns.clone(), self.net.search.clone());
        let net = &mut self.net;
        let all = net
            .nics
            .iter_mut()
            .chain(net.by_order.iter_mut())
            .chain(net.bonds.iter_mut().map(|b| &mut b.config))
            .chain(net.vlans.iter_mut().map(|v| &mut v.config))
            .chain(net.bridges.iter_mut().map(|b| &mut b.config));
        for nic in all {
            if nic.method == Method::Skip && nic.ip6_method != Ip6Method::Skip {
                nic.method = Method::Static;
            }
            if nic.method == Method::Static {
                for d in &dns {
                    push_unique(&mut nic.dns, *d);
                }
                for s in &search {
                    push_unique(&mut nic.search, s.clone());
                }
            }
        }
        self.net
    }
}

/// An empty L3 configuration for a bond, VLAN or bridge.
pub fn blank(mac: Option<MacAddr>) -> Nic {
    Nic::new(
        0,
        mac.unwrap_or(MacAddr([0; 6])),
        Method::Skip,
        Ip6Method::Skip,
    )
}

/// `addr`, `addr/prefix`, with an optional netmask (dotted, IPv6 mask or prefix length).
pub fn cidr(addr: &str, netmask: Option<&str>, at: &At) -> Result<Cidr, String> {
    let v6 = addr.contains(':');
    crate::source::openstack::map::address(addr, netmask, v6).map_err(|e| at.err(e))
}

pub fn ip(s: &str, at: &At) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| at.err(format!("{s:?} is not an IP address")))
}

pub fn ips(list: &[String], at: &At) -> Result<Vec<IpAddr>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| ip(s, &at.index(i)))
        .collect()
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// Unknown entries are skipped with a warning, never the whole document.
pub fn unknown(b: &mut Builder, at: &At, what: &str) {
    b.warnings
        .push(at.err(format!("{what} is not something vmctx configures; skipped")));
}

pub fn value_text(v: &Value) -> String {
    yaml::text(v).unwrap_or_default()
}
