//! Network config version 2 (netplan's format): `ethernets` matched by `macaddress` (with
//! `set-name`), `bonds`, `vlans` and `bridges`, each with the same L3 keys. `renderer` is
//! ignored; other unknown sections are warnings.

use super::network::{blank, cidr, ip, ips, unknown, value_text, Builder, Target};
use super::yaml::{self, At};
use crate::context::{Bond, Bridge, Ip6Method, Method, Vlan};
use serde_norway::{Mapping, Value};

pub fn read(m: &Mapping, at: &At, b: &mut Builder) -> Result<(), String> {
    for (k, _) in m {
        match value_text(k).as_str() {
            "version" | "renderer" | "ethernets" | "bonds" | "vlans" | "bridges" => {}
            other => unknown(b, &at.key(other), "this section"),
        }
    }
    let section = |name: &str| -> Result<Vec<(String, &Mapping)>, String> {
        let at = at.key(name);
        let Some(v) = yaml::get(m, name) else {
            return Ok(Vec::new());
        };
        yaml::mapping(v, &at)?
            .iter()
            .map(|(k, v)| {
                let id = value_text(k);
                Ok((id.clone(), yaml::mapping(v, &at.key(&id))?))
            })
            .collect()
    };
    for (id, e) in section("ethernets")? {
        ethernet(b, &id, e, &at.key("ethernets").key(&id))?;
    }
    for (id, e) in section("bonds")? {
        let at = at.key("bonds").key(&id);
        let p = yaml::get(e, "parameters")
            .map(|v| yaml::mapping(v, &at.key("parameters")))
            .transpose()?;
        let pat = at.key("parameters");
        let (mode, mii, hash) = match p {
            Some(p) => (
                yaml::string(p, "mode", &pat)?,
                yaml::number(p, "mii-monitor-interval", &pat)?,
                yaml::string(p, "transmit-hash-policy", &pat)?,
            ),
            None => (None, None, None),
        };
        b.bond(Bond {
            name: id.clone(),
            interfaces: yaml::strings(e, "interfaces", &at)?,
            members: Vec::new(),
            mode,
            mii_monitor_interval: mii,
            transmit_hash_policy: hash,
            config: blank(yaml::mac(e, "macaddress", &at)?),
        });
        l3(b, Target::Bond(b.net.bonds.len() - 1), e, &at)?;
    }
    for (id, e) in section("vlans")? {
        let at = at.key("vlans").key(&id);
        let vid = yaml::number(e, "id", &at)?
            .filter(|id| (1..4095).contains(id))
            .ok_or_else(|| at.key("id").err("missing or not 1..4094"))?;
        b.vlan(Vlan {
            name: id.clone(),
            id: vid as u16,
            link: yaml::string(e, "link", &at)?.ok_or_else(|| at.key("link").err("missing"))?,
            link_mac: None,
            config: blank(yaml::mac(e, "macaddress", &at)?),
        });
        l3(b, Target::Vlan(b.net.vlans.len() - 1), e, &at)?;
    }
    for (id, e) in section("bridges")? {
        let at = at.key("bridges").key(&id);
        b.bridge(Bridge {
            name: id.clone(),
            interfaces: yaml::strings(e, "interfaces", &at)?,
            members: Vec::new(),
            config: blank(yaml::mac(e, "macaddress", &at)?),
        });
        l3(b, Target::Bridge(b.net.bridges.len() - 1), e, &at)?;
    }
    Ok(())
}

/// An `ethernets` entry: by `match.macaddress`; without one, `ethN` (the id, or `set-name`
/// when it matched by something else) is the NIC at position N.
fn ethernet(b: &mut Builder, id: &str, e: &Mapping, at: &At) -> Result<(), String> {
    let matched = yaml::get(e, "match")
        .map(|v| yaml::mapping(v, &at.key("match")))
        .transpose()?;
    let mac = match matched {
        Some(mm) => yaml::mac(mm, "macaddress", &at.key("match"))?,
        None => None,
    };
    let set_name = yaml::string(e, "set-name", at)?;
    // Unmatched, the id is the interface's name; matched, `set-name` may say eth0.
    let name = match (&mac, set_name) {
        (None, Some(n)) if matched.is_some() => n,
        _ => id.to_string(),
    };
    let Some(t) = b.nic(&name, mac, at) else {
        return Ok(());
    };
    if name != id {
        b.names.push((id.to_string(), t));
    }
    l3(b, t, e, at)
}

/// The keys every interface kind shares.
fn l3(b: &mut Builder, t: Target, e: &Mapping, at: &At) -> Result<(), String> {
    if yaml::flag(e, "dhcp4", at)? == Some(true) {
        b.config(t).method = Method::Dhcp;
    }
    if yaml::flag(e, "dhcp6", at)? == Some(true) {
        b.config(t).ip6_method = Ip6Method::Dhcp;
    }
    match yaml::flag(e, "accept-ra", at)? {
        Some(true) if b.config_ref(t).ip6_method == Ip6Method::Skip => {
            b.config(t).ip6_method = Ip6Method::Auto
        }
        Some(false) if b.config_ref(t).ip6_method == Ip6Method::Auto => {
            b.config(t).ip6_method = Ip6Method::Skip
        }
        _ => {}
    }
    if let Some(mtu) = yaml::number(e, "mtu", at)? {
        b.config(t).mtu = Some(mtu);
    }
    let gw4 = yaml::string(e, "gateway4", at)?;
    let gw6 = yaml::string(e, "gateway6", at)?;
    for (i, a) in yaml::strings(e, "addresses", at)?.iter().enumerate() {
        let addr = cidr(a, None, &at.key("addresses").index(i))?;
        b.address(t, addr, None, at);
    }
    for (k, g) in [("gateway4", gw4), ("gateway6", gw6)] {
        if let Some(g) = g {
            let gw = ip(&g, &at.key(k))?;
            b.default_route(t, gw, &at.key(k));
        }
    }
    if let Some(v) = yaml::get(e, "routes") {
        let Value::Sequence(routes) = v else {
            return Err(at.key("routes").err("expected a list"));
        };
        for (k, r) in routes.iter().enumerate() {
            let at = at.key("routes").index(k);
            let r = yaml::mapping(r, &at)?;
            let to = yaml::string(r, "to", &at)?.ok_or_else(|| at.key("to").err("missing"))?;
            let via = yaml::string(r, "via", &at)?;
            let Some(via) = via else {
                b.warnings
                    .push(at.err("a route without `via` (on-link) is not supported; skipped"));
                continue;
            };
            let via = ip(&via, &at.key("via"))?;
            let to = match to.as_str() {
                "default" if via.is_ipv4() => "0.0.0.0/0".to_string(),
                "default" => "::/0".to_string(),
                _ => to,
            };
            let to = cidr(&to, None, &at.key("to"))?;
            b.route(t, to, via, &at);
        }
    }
    if yaml::get(e, "routing-policy").is_some() {
        b.warnings.push(
            at.key("routing-policy")
                .err("policy rules are not configured by vmctx yet; skipped"),
        );
    }
    if let Some(ns) = yaml::get(e, "nameservers") {
        let nat = at.key("nameservers");
        let ns = yaml::mapping(ns, &nat)?;
        let servers = ips(
            &yaml::strings(ns, "addresses", &nat)?,
            &nat.key("addresses"),
        )?;
        b.dns(Some(t), &servers, &yaml::strings(ns, "search", &nat)?);
    }
    Ok(())
}
