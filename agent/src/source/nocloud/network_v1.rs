//! cloud-init's network config version 1: a `config` list of `physical`, `bond`, `vlan`,
//! `bridge`, `nameserver` and `route` entries; interfaces carry `subnets`.

use super::network::{blank, cidr, ip, ips, unknown, Builder, Target};
use super::yaml::{self, At};
use crate::context::{Bond, Bridge, Ip6Method, Method, Vlan};
use serde_norway::{Mapping, Value};

pub fn read(m: &Mapping, at: &At, b: &mut Builder) -> Result<(), String> {
    let at = at.key("config");
    let entries = match yaml::get(m, "config") {
        None => return Ok(()),
        Some(Value::Sequence(s)) => s,
        Some(_) => return Err(at.err("expected a list")),
    };
    // Interfaces first, so routes and members can name any of them.
    let mut later = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = at.index(i);
        let e = yaml::mapping(e, &at)?;
        let kind = yaml::string(e, "type", &at)?.unwrap_or_default();
        let name = yaml::string(e, "name", &at)?.unwrap_or_default();
        let target = match kind.as_str() {
            "physical" => {
                let mac = yaml::mac(e, "mac_address", &at)?;
                b.nic(&name, mac, &at)
            }
            "bond" => {
                b.bond(bond(e, &name, &at)?);
                b.target(&name)
            }
            "vlan" => {
                let id = yaml::number(e, "vlan_id", &at)?
                    .filter(|id| (1..4095).contains(id))
                    .ok_or_else(|| at.key("vlan_id").err("missing or not 1..4094"))?;
                b.vlan(Vlan {
                    name: name.clone(),
                    id: id as u16,
                    link: yaml::string(e, "vlan_link", &at)?.unwrap_or_default(),
                    link_mac: None,
                    config: blank(yaml::mac(e, "mac_address", &at)?),
                });
                b.target(&name)
            }
            "bridge" => {
                b.bridge(Bridge {
                    name: name.clone(),
                    interfaces: yaml::strings(e, "bridge_interfaces", &at)?,
                    members: Vec::new(),
                    config: blank(yaml::mac(e, "mac_address", &at)?),
                });
                b.target(&name)
            }
            "nameserver" | "route" => {
                later.push((i, e, kind));
                continue;
            }
            other => {
                unknown(b, &at, &format!("type {other:?}"));
                continue;
            }
        };
        if let Some(t) = target {
            if let Some(mtu) = yaml::number(e, "mtu", &at)? {
                b.config(t).mtu = Some(mtu);
            }
            if let Some(Value::Sequence(subnets)) = yaml::get(e, "subnets") {
                for (j, s) in subnets.iter().enumerate() {
                    let at = at.key("subnets").index(j);
                    subnet(b, t, yaml::mapping(s, &at)?, &at)?;
                }
            }
        }
    }
    for (i, e, kind) in later {
        let at = at.index(i);
        if kind == "nameserver" {
            let servers = ips(&yaml::strings(e, "address", &at)?, &at.key("address"))?;
            b.dns(None, &servers, &yaml::strings(e, "search", &at)?);
        } else {
            global_route(b, e, &at)?;
        }
    }
    Ok(())
}

/// A `bond` entry: `bond_interfaces` and its `params` (`bond-mode`, `bond-miimon`,
/// `bond-xmit-hash-policy`, or the same with `_`).
fn bond(e: &Mapping, name: &str, at: &At) -> Result<Bond, String> {
    let params = yaml::get(e, "params").map(|p| yaml::mapping(p, &at.key("params")));
    let p = params.transpose()?;
    let pat = at.key("params");
    // `params: {bond-mode: …}`, or the same keys on the entry itself.
    let param = |k: &str, alt: &str| -> Result<Option<String>, String> {
        let (m, at) = match p {
            Some(p) => (p, &pat),
            None => (e, at),
        };
        Ok(yaml::string(m, k, at)?.or(yaml::string(m, alt, at)?))
    };
    let miimon = param("bond-miimon", "bond_miimon")?
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| pat.err("bond-miimon: not a number"))
        })
        .transpose()?;
    Ok(Bond {
        name: name.to_string(),
        interfaces: yaml::strings(e, "bond_interfaces", at)?,
        members: Vec::new(),
        mode: param("bond-mode", "bond_mode")?,
        mii_monitor_interval: miimon,
        transmit_hash_policy: param("bond-xmit-hash-policy", "bond_xmit_hash_policy")?,
        config: blank(yaml::mac(e, "mac_address", at)?),
    })
}

/// One subnet of an interface.
fn subnet(b: &mut Builder, t: Target, s: &Mapping, at: &At) -> Result<(), String> {
    let kind = yaml::string(s, "type", at)?.unwrap_or_default();
    let nic = b.config(t);
    match kind.as_str() {
        "static" | "static6" => {}
        "dhcp" | "dhcp4" => {
            nic.method = Method::Dhcp;
            return Ok(());
        }
        "dhcp6" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6-stateless" => {
            nic.ip6_method = Ip6Method::Dhcp;
            return Ok(());
        }
        "ipv6_slaac" => {
            nic.ip6_method = Ip6Method::Auto;
            return Ok(());
        }
        "manual" => {
            // Up, with no address: the link is configured, IPv4 left off.
            if nic.method == Method::Skip {
                nic.method = Method::Static;
            }
            return Ok(());
        }
        other => {
            unknown(b, at, &format!("subnet type {other:?}"));
            return Ok(());
        }
    }
    let addr = yaml::string(s, "address", at)?
        .ok_or_else(|| at.key("address").err("missing for a static subnet"))?;
    let mask = yaml::string(s, "netmask", at)?.or(yaml::string(s, "prefix", at)?);
    let addr = cidr(&addr, mask.as_deref(), &at.key("address"))?;
    let gw = yaml::string(s, "gateway", at)?
        .map(|g| ip(&g, &at.key("gateway")))
        .transpose()?;
    b.address(t, addr, gw, at);
    let servers = ips(
        &yaml::strings(s, "dns_nameservers", at)?,
        &at.key("dns_nameservers"),
    )?;
    b.dns(Some(t), &servers, &yaml::strings(s, "dns_search", at)?);
    if let Some(Value::Sequence(routes)) = yaml::get(s, "routes") {
        for (k, r) in routes.iter().enumerate() {
            let at = at.key("routes").index(k);
            let (to, via) = route_of(yaml::mapping(r, &at)?, &at)?;
            b.route(t, to, via, &at);
        }
    }
    Ok(())
}

/// `network`/`destination` with `netmask` or a prefix, and `gateway`.
fn route_of(r: &Mapping, at: &At) -> Result<(crate::context::Cidr, std::net::IpAddr), String> {
    let net = yaml::string(r, "network", at)?
        .or(yaml::string(r, "destination", at)?)
        .ok_or_else(|| at.key("network").err("missing"))?;
    let mask = yaml::string(r, "netmask", at)?.or(yaml::string(r, "prefix", at)?);
    let to = cidr(&net, mask.as_deref(), &at.key("network"))?;
    let gw = yaml::string(r, "gateway", at)?.ok_or_else(|| at.key("gateway").err("missing"))?;
    Ok((to, ip(&gw, &at.key("gateway"))?))
}

/// A top-level `route`: on the interface whose network holds its gateway.
fn global_route(b: &mut Builder, e: &Mapping, at: &At) -> Result<(), String> {
    let (to, via) = route_of(e, at)?;
    let owner = b
        .names
        .iter()
        .map(|(_, t)| *t)
        .find(|t| b.config_ref(*t).addresses.iter().any(|a| a.contains(via)));
    match owner {
        Some(t) => b.route(t, to, via, at),
        None => b.warnings.push(at.err(format!(
            "no interface has an address in the network of gateway {via}; route skipped"
        ))),
    }
    Ok(())
}
