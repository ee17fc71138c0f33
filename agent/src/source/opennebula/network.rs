//! `ETHx_*`, `DNS`, `SEARCH_DOMAIN`, `NETWORK`, `MAC_PREFIX` → [`Network`].

use super::Reader;
use crate::context::{Cidr, HeldNic, Ip6Method, MacAddr, Method, Network, Nic, Route};
use crate::derive;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(super) fn network(r: &mut Reader) -> Network {
    let configure = r.flag("NETWORK", true);
    let mac_prefix = r
        .parse_with("MAC_PREFIX", derive::parse_mac_prefix)
        .unwrap_or(derive::DEFAULT_MAC_PREFIX);
    let dns = ip_list(r, "DNS");
    let search = domain_list(r, "SEARCH_DOMAIN");
    let mut net = Network {
        configure,
        nics: Vec::new(),
        dns,
        search,
        derive_all_prefixed: false,
        mac_prefix,
        dhcp_default_route: false,
        ..Network::default()
    };
    if !configure {
        return net;
    }

    let indices = nic_indices(r);
    // A legacy context with no ETHx_* variables at all: OpenNebula's original rule applies to
    // every NIC whose MAC carries the prefix (resolved against the live links by the plan).
    net.derive_all_prefixed = indices.is_empty();

    let mut seen_macs = BTreeSet::new();
    let mut no_mac = 0usize;
    for (idx, keys) in indices {
        if r.get(&format!("ETH{idx}_MAC")).is_none() && by_order_only(r, idx) {
            // Proxmox writes no ETHx_MAC for a DHCP or SLAAC NIC: matched by NIC order.
            let placeholder = MacAddr([0; 6]);
            match nic(r, idx, mac_prefix, &keys.aliases, Some(placeholder)) {
                Some(Ok(nic)) => net.by_order.push(nic),
                // No MAC of its own to remember it by: held by its index.
                Some(Err(_)) => net.held.push(HeldNic {
                    index: idx,
                    mac: None,
                }),
                None => {}
            }
            continue;
        }
        if r.get(&format!("ETH{idx}_MAC")).is_none() && r.get(&format!("ETH{idx}_MAC6")).is_none() {
            // B13: an empty MAC must never match some NIC; say so only if the NIC was meant.
            if keys.meant {
                no_mac += 1;
                if no_mac <= MAX_NO_MAC_WARNINGS {
                    r.warn(format!(
                        "ETH{idx} has variables but no ETH{idx}_MAC; skipped"
                    ));
                }
            }
            continue;
        }
        let mut nic = match nic(r, idx, mac_prefix, &keys.aliases, None) {
            Some(Ok(nic)) => nic,
            Some(Err(held)) => {
                net.held.push(held);
                continue;
            }
            None => continue,
        };
        if !seen_macs.insert(nic.mac) {
            r.warn(format!(
                "ETH{idx}_MAC {} is the MAC of an earlier NIC; ETH{idx} skipped",
                nic.mac
            ));
            continue;
        }
        for d in &net.dns {
            push_unique(&mut nic.dns, *d);
        }
        for s in &net.search {
            push_unique(&mut nic.search, s.clone());
        }
        net.nics.push(nic);
    }
    if no_mac > MAX_NO_MAC_WARNINGS {
        r.warn(format!(
            "{} more NICs have variables but no ETHx_MAC; skipped",
            no_mac - MAX_NO_MAC_WARNINGS
        ));
    }
    // Global resolvers: DNS first, then each NIC's own, in numeric NIC order (B14).
    for nic in &net.nics {
        if nic.method == Method::Skip {
            continue;
        }
        for d in nic.dns.clone() {
            push_unique(&mut net.dns, d);
        }
        for s in nic.search.clone() {
            push_unique(&mut net.search, s);
        }
    }
    net
}

/// Warnings for NICs without a MAC beyond these are summed up in one line.
const MAX_NO_MAC_WARNINGS: usize = 20;

/// What the `ETHx_*` keys say about one NIC index.
#[derive(Default)]
struct NicKeys {
    aliases: BTreeSet<u32>,
    /// A non-alias key has a value: the NIC was meant, even without a MAC.
    meant: bool,
}

/// The `ETHx_*` keys grouped by NIC index (numeric order), in one pass over the variables
/// (a pass per NIC was quadratic in hostile contexts). Any `ETHx_` key at all marks the
/// context as a current (non-legacy) one.
fn nic_indices(r: &Reader) -> BTreeMap<u32, NicKeys> {
    let mut nics: BTreeMap<u32, NicKeys> = BTreeMap::new();
    for (key, value) in r.vars.iter() {
        let Some((idx, rest)) = split_index(key, "ETH") else {
            continue;
        };
        let keys = nics.entry(idx).or_default();
        match split_index(rest, "ALIAS") {
            Some((alias, _)) => {
                keys.aliases.insert(alias);
            }
            None => keys.meant |= !value.trim().is_empty(),
        }
    }
    nics
}

/// `ETH12_IP` with prefix `ETH` → (12, `IP`).
fn split_index<'k>(key: &'k str, prefix: &str) -> Option<(u32, &'k str)> {
    let rest = key.strip_prefix(prefix)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (num, rest) = rest.split_at(digits);
    let rest = rest.strip_prefix('_')?;
    // No leading zeros: `ETH01` is not `ETH1`.
    if num.is_empty() || (num.len() > 1 && num.starts_with('0')) {
        return None;
    }
    Some((num.parse().ok()?, rest))
}

/// The variables of a NIC's identity and address: one invalid leaves the NIC as it is. The
/// others (routes, aliases, DNS, MTU, ...) only drop themselves.
const IDENTITY: [&str; 12] = [
    "MAC",
    "MAC6",
    "MASK6",
    "IP",
    "MASK",
    "GATEWAY",
    "IP6",
    "IPV6",
    "IP6_PREFIX_LENGTH",
    "IP6_ULA",
    "IP6_GATEWAY",
    "GATEWAY6",
];

/// A NIC with no MAC at all whose only settings are Proxmox's `ETHx_DHCP`, `ETHx_DHCP6`,
/// `ETHx_AUTO6` (and `ETHx_MTU`): nothing to match it by but its position.
fn by_order_only(r: &Reader, idx: u32) -> bool {
    let p = format!("ETH{idx}_");
    r.get(&format!("{p}MAC6")).is_none()
        && ["DHCP", "DHCP6", "AUTO6"]
            .iter()
            .any(|k| r.get(&format!("{p}{k}")).is_some())
}

/// The NIC of `ETH<idx>_*`: None without a MAC, Err when an [`IDENTITY`] value is invalid.
/// `mac`: a placeholder for a NIC matched by order; else `ETHx_MAC` (or Proxmox's `ETHx_MAC6`).
fn nic(
    r: &mut Reader,
    idx: u32,
    prefix: [u8; 2],
    aliases: &BTreeSet<u32>,
    mac: Option<MacAddr>,
) -> Option<Result<Nic, HeldNic>> {
    let p = format!("ETH{idx}_");
    let mac = match mac {
        Some(m) => m,
        None => {
            let name = if r.get(&format!("{p}MAC")).is_some() {
                format!("{p}MAC")
            } else {
                format!("{p}MAC6")
            };
            match r.get(&name)?.parse() {
                Ok(m) => m,
                Err(e) => {
                    r.error(&name, e);
                    return Some(Err(HeldNic {
                        index: idx,
                        mac: None,
                    }));
                }
            }
        }
    };
    let before = r.errors.len();
    let nic = nic_of(r, idx, mac, prefix, aliases);
    let identity_bad = r.errors[before..]
        .iter()
        .any(|e| IDENTITY.iter().any(|v| e.starts_with(&format!("{p}{v}: "))));
    if identity_bad {
        return Some(Err(HeldNic {
            index: idx,
            mac: Some(mac),
        }));
    }
    Some(Ok(nic))
}

fn nic_of(r: &mut Reader, idx: u32, mac: MacAddr, prefix: [u8; 2], aliases: &BTreeSet<u32>) -> Nic {
    let p = format!("ETH{idx}_");
    let var = |s: &str| format!("{p}{s}");
    // Proxmox's `ETHx_DHCP=YES` (no METHOD) asks for DHCPv4 only.
    let proxmox_dhcp = r.flag(&var("DHCP"), false);
    let method = method(r, idx, proxmox_dhcp);
    let ip6_method = ip6_method(r, idx, method, proxmox_dhcp);
    let mut nic = Nic::new(idx, mac, method, ip6_method);
    if method == Method::Skip {
        return nic;
    }

    let v6 = matches!(
        ip6_method,
        Ip6Method::Static | Ip6Method::Auto | Ip6Method::Dhcp
    );
    let own6 = if v6 {
        ipv6_addresses(r, &p)
    } else {
        Vec::new()
    };
    let mut alias4 = Vec::new();
    let mut alias6 = Vec::new();
    for a in aliases {
        let ap = format!("{p}ALIAS{a}_");
        if r.flag(&format!("{ap}EXTERNAL"), false) || r.get(&format!("{ap}DETACH")).is_some() {
            continue; // NATed outside the guest, or being detached: not an address of ours.
        }
        if method == Method::Static {
            alias4.extend(ipv4_address(r, &ap));
        }
        if v6 {
            alias6.extend(ipv6_addresses(r, &ap));
        }
    }

    if method == Method::Static {
        let ip_var = var("IP");
        if let Some(a) = ipv4_address(r, &p) {
            nic.addresses.push(a);
        } else if !r.vars.has_key(&ip_var) && own6.is_empty() {
            // The MAC rule, only when ETHx_IP is absent (an empty one means "no IPv4": the MAC
            // of an Ethernet-only range is the prefix plus random bytes) and nothing else
            // addresses this NIC.
            if let Ok(ip) = derive::mac_to_ipv4(mac, prefix) {
                let plen = r
                    .parse_with(&var("MASK"), derive::mask_to_prefix)
                    .unwrap_or(24);
                nic.addresses.push(Cidr {
                    addr: ip.into(),
                    prefix: plen,
                });
                nic.ipv4_from_mac = true;
            }
        }
        let has_v4 = !nic.addresses.is_empty() || !alias4.is_empty();
        if let Some(gw) = r.parse::<Ipv4Addr>(&var("GATEWAY")) {
            if has_v4 {
                nic.gateway = Some(gw);
            } else {
                r.warn(format!(
                    "ETH{idx}_GATEWAY {gw} ignored: ETH{idx} has no IPv4 address"
                ));
            }
        }
        nic.metric = r.parse(&var("METRIC"));
        nic.routes = routes(r, &var("ROUTES"));
    }
    nic.addresses.extend(alias4);
    if v6 {
        nic.addresses.extend(own6);
        nic.addresses.extend(alias6);
        nic.gateway6 = ipv6_gateway(r, &p);
        nic.metric6 = r.parse(&var("IP6_METRIC")).or(nic.metric);
    }
    nic.dns = ip_list(r, &var("DNS"));
    nic.search = domain_list(r, &var("SEARCH_DOMAIN"));
    nic.mtu = r.parse_with(&var("MTU"), |v| match v.parse::<u32>() {
        Ok(m) if (68..=65535).contains(&m) => Ok(m),
        _ => Err("MTU must be an integer from 68 to 65535".into()),
    });
    nic
}

/// `ETHx_METHOD`: static (also when unset, unless Proxmox's `ETHx_DHCP`), dhcp or skip.
fn method(r: &mut Reader, idx: u32, proxmox_dhcp: bool) -> Method {
    match r
        .get(&format!("ETH{idx}_METHOD"))
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None if proxmox_dhcp => Method::Dhcp,
        None | Some("static") => Method::Static,
        Some("dhcp") => Method::Dhcp,
        Some("skip") => Method::Skip,
        Some(_) => {
            // OpenNebula/one#7648: the server has leaked NIC models (`virtio`) into METHOD.
            r.warn(format!(
                "ETH{idx}_METHOD is not static, dhcp or skip; taken as static"
            ));
            Method::Static
        }
    }
}

/// `ETHx_IP6_METHOD`; unset, Proxmox's `ETHx_DHCP6`/`ETHx_AUTO6`, else it follows `ETHx_METHOD`.
fn ip6_method(r: &mut Reader, idx: u32, method: Method, proxmox_dhcp: bool) -> Ip6Method {
    match r
        .get(&format!("ETH{idx}_IP6_METHOD"))
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None if r.flag(&format!("ETH{idx}_DHCP6"), false) => Ip6Method::Dhcp,
        None if r.flag(&format!("ETH{idx}_AUTO6"), false) => Ip6Method::Auto,
        // Proxmox's DHCP asks for IPv4 only (it writes ETHx_DHCP6 or ETHx_AUTO6 for IPv6).
        None if proxmox_dhcp => Ip6Method::Static,
        None => match method {
            Method::Static => Ip6Method::Static,
            Method::Dhcp => Ip6Method::Dhcp,
            Method::Skip => Ip6Method::Skip,
        },
        Some("static") => Ip6Method::Static,
        Some("auto") => Ip6Method::Auto,
        Some("dhcp") => Ip6Method::Dhcp,
        Some("disable") => Ip6Method::Disable,
        Some("skip") => Ip6Method::Skip,
        Some(_) => {
            r.warn(format!(
                "ETH{idx}_IP6_METHOD is not static, auto, dhcp, disable or skip; taken as static"
            ));
            Ip6Method::Static
        }
    }
}

/// `<p>IP` with `<p>MASK` (default /24), if set and valid.
fn ipv4_address(r: &mut Reader, p: &str) -> Option<Cidr> {
    let ip = r.parse::<Ipv4Addr>(&format!("{p}IP"))?;
    let prefix = r
        .parse_with(&format!("{p}MASK"), derive::mask_to_prefix)
        .unwrap_or(24);
    Some(Cidr {
        addr: ip.into(),
        prefix,
    })
}

/// `<p>IP6` (legacy `<p>IPV6`) with `<p>IP6_PREFIX_LENGTH` (default 64), and `<p>IP6_ULA` as a
/// /64 — even alone (one-context drops a lone ULA; cloud-init keeps it).
fn ipv6_addresses(r: &mut Reader, p: &str) -> Vec<Cidr> {
    let mut out = Vec::new();
    // Proxmox writes the prefix length as `ETHx_MASK6`.
    let len_var = if r.get(&format!("{p}IP6_PREFIX_LENGTH")).is_none()
        && r.get(&format!("{p}MASK6")).is_some()
    {
        format!("{p}MASK6")
    } else {
        format!("{p}IP6_PREFIX_LENGTH")
    };
    let prefix = r
        .parse_with(&len_var, |v| match v.parse::<u8>() {
            Ok(n) if n <= 128 => Ok(n),
            _ => Err("prefix length must be 0..128".into()),
        })
        .unwrap_or(64);
    let ip6_var = if r.get(&format!("{p}IP6")).is_some() {
        format!("{p}IP6")
    } else {
        format!("{p}IPV6")
    };
    if let Some(ip) = r.parse::<Ipv6Addr>(&ip6_var) {
        out.push(Cidr {
            addr: ip.into(),
            prefix,
        });
    }
    if let Some(ip) = r.parse::<Ipv6Addr>(&format!("{p}IP6_ULA")) {
        out.push(Cidr {
            addr: ip.into(),
            prefix: 64,
        });
    }
    out
}

/// `ETHx_IP6_GATEWAY` (OpenNebula ≥ 6.2), else the older `ETHx_GATEWAY6`.
fn ipv6_gateway(r: &mut Reader, p: &str) -> Option<Ipv6Addr> {
    let new = format!("{p}IP6_GATEWAY");
    let old = format!("{p}GATEWAY6");
    let name = if r.get(&new).is_some() { new } else { old };
    r.parse(&name)
}

/// `NET via GW, NET via GW`; a bad entry is an error and left out, the others kept.
fn routes(r: &mut Reader, name: &str) -> Vec<Route> {
    let Some(value) = r.get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
    for (i, entry) in entries.enumerate() {
        match parse_route(entry) {
            Ok(route) => out.push(route),
            Err(e) => r.error(name, format_args!("entry {}: {e}", i + 1)),
        }
    }
    out
}

fn parse_route(entry: &str) -> Result<Route, String> {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let [to, via_kw, via] = words[..] else {
        return Err("expected `NETWORK/PREFIX via GATEWAY`".into());
    };
    if via_kw != "via" {
        return Err("expected `NETWORK/PREFIX via GATEWAY`".into());
    }
    let to: Cidr = to.parse()?;
    let via: IpAddr = via
        .parse()
        .map_err(|_| "the gateway is not an IP address".to_string())?;
    if to.addr.is_ipv4() != via.is_ipv4() {
        return Err("network and gateway are of different IP versions".into());
    }
    Ok(Route { to, via })
}

/// A space- or comma-separated list of IP addresses; bad entries are errors.
fn ip_list(r: &mut Reader, name: &str) -> Vec<IpAddr> {
    let Some(value) = r.get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let words = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty());
    for (i, w) in words.enumerate() {
        match w.parse() {
            Ok(ip) => push_unique(&mut out, ip),
            Err(_) => r.error(name, format_args!("entry {}: not an IP address", i + 1)),
        }
    }
    out
}

fn domain_list(r: &mut Reader, name: &str) -> Vec<String> {
    let Some(value) = r.get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let words = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty());
    for (i, w) in words.enumerate() {
        let ok = w.len() <= 253
            && w.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if ok {
            push_unique(&mut out, w.to_ascii_lowercase());
        } else {
            r.error(name, format_args!("entry {}: not a domain name", i + 1));
        }
    }
    out
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
