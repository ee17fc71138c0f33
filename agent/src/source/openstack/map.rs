//! OpenStack metadata → [`Context`]: the one place that reads Nova's names.
//!
//! NICs are the `links` of network_data.json, matched to the guest by MAC (their `id` is a
//! host-side tap name and never names a guest NIC); each link's `networks` give its methods,
//! addresses, routes and DNS. Bond links (members by `bond_links`) and VLAN links
//! (`vlan_link`) become bonds and VLANs, named by their `name`, else `bond<n>` and
//! `vlan<id>`. Anything malformed is an error naming the file and the field: nothing is applied.

use super::schema::{self, MetaData, Net, NetworkData, Service, META_DATA, NETWORK_DATA};
use super::Metadata;
use crate::context::{
    Bond, Cidr, Context, Hostname, Ip6Method, MacAddr, Method, Network, Nic, Origin, Password,
    Route, Scripts, Secret, User, Vlan,
};
use crate::derive;
use std::net::{IpAddr, Ipv6Addr};

/// The user the keys go to, as for the other sources: root, unless meta `vmctx_user` names one.
pub const DEFAULT_USER: &str = "root";

pub fn to_context(md: &Metadata, origin: &Origin) -> Result<Context, String> {
    let at = |file: &str| format!("{}/{file}", md.version);
    let meta: MetaData = schema::parse(&at(META_DATA), &md.meta_data)?;
    let mut warnings = md.notes.clone();
    let instance_id = meta.uuid.clone().unwrap_or_default();
    if !crate::context::valid_instance_id(&instance_id) {
        return Err(format!(
            "{}: field uuid: {instance_id:?} is not an instance id",
            at(META_DATA)
        ));
    }
    let hostname = meta.hostname.as_deref().and_then(|raw| {
        let (name, domain) = derive::sanitize_hostname(raw)?;
        Some(Hostname {
            name,
            domain,
            from: format!("{} hostname", at(META_DATA)),
        })
    });
    let network = match (&md.network_data, &md.network_eni) {
        (Some(bytes), _) => {
            let nd: NetworkData = schema::parse(&at(NETWORK_DATA), bytes)?;
            network(&nd, &at(NETWORK_DATA), &mut warnings)?
        }
        // Proxmox's configdrive2: a Debian interfaces file in place of network_data.json.
        (None, Some((path, bytes))) => {
            let text = String::from_utf8_lossy(bytes);
            crate::source::nocloud::eni::to_network(&text, path, &mut warnings)?
        }
        (None, None) => {
            warnings.push(format!(
                "{}: none: the network is left to the image",
                at(NETWORK_DATA)
            ));
            Network::default()
        }
    };
    let user = user(&meta, &mut warnings)?;
    if !meta.files.is_empty() {
        warnings.push(format!(
            "{}: {} personality file(s) in files[] are not written (deprecated by Nova)",
            at(META_DATA),
            meta.files.len()
        ));
    }
    let user_data = md
        .user_data
        .clone()
        .and_then(crate::source::userdata::user_data);
    let mut env = vec![("INSTANCE_ID".to_string(), instance_id.clone())];
    if let Some(az) = &meta.availability_zone {
        env.push(("AVAILABILITY_ZONE".into(), az.clone()));
    }
    Ok(Context {
        instance_id,
        source: origin.clone(),
        hostname,
        network,
        ssh_keys: keys(&meta, &mut warnings),
        user: Some(user),
        scripts: Scripts {
            start: None,
            init: Vec::new(),
            user_data,
        },
        update: None,
        sync: None,
        ec2: None,
        onegate: None,
        system: crate::context::System::default(),
        cloud_config: None,
        warnings,
        errors: Vec::new(),
        files: Vec::new(),
        env,
    })
}

fn user(meta: &MetaData, warnings: &mut Vec<String>) -> Result<User, String> {
    let text = |k: &str| meta.meta.get(k).map(|v| v.as_text());
    let name = text("vmctx_user").unwrap_or_else(|| DEFAULT_USER.into());
    if !crate::context::valid_username(&name) {
        return Err(format!(
            "{META_DATA}: field meta.vmctx_user: {name:?} is not a user name"
        ));
    }
    // Nova generates an admin_pass for every config drive; enabling password logins with it
    // is an opt-in.
    let use_pass = text("vmctx_admin_pass")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1"));
    let password = match &meta.admin_pass {
        Some(p) if use_pass && !p.is_empty() => Some(Password::Plain(Secret::new(p.clone()))),
        Some(_) if !use_pass => {
            warnings.push(format!(
                "{META_DATA}: admin_pass is not used (meta vmctx_admin_pass=yes sets it as {name}'s password)"
            ));
            None
        }
        _ => None,
    };
    Ok(User {
        sudo: name != "root",
        name,
        shell: "/bin/bash".into(),
        password,
        lock_password: false,
    })
}

/// `public_keys` (by key name) then `keys[]` of type ssh, each checked as a bare key
/// ([`crate::ssh_keys::from_values`]): a value that hides a second line is left out.
fn keys(meta: &MetaData, warnings: &mut Vec<String>) -> Vec<String> {
    // Nova lists an x509 key pair (Windows' cloudbase-init) in public_keys too: a
    // certificate, not an SSH key.
    let x509 = |name: &str, v: &str| {
        v.trim_start().starts_with("-----BEGIN")
            || meta
                .keys
                .iter()
                .any(|k| k.name.as_deref() == Some(name) && k.kind.as_deref() == Some("x509"))
    };
    let named = meta
        .public_keys
        .iter()
        .filter(|(name, v)| !x509(name, v))
        .map(|(name, v)| (format!("{META_DATA}: public_keys.{name}"), v.as_str()));
    let listed = meta
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| matches!(k.kind.as_deref(), Some("ssh") | None))
        .filter_map(|(i, k)| Some((format!("{META_DATA}: keys[{i}].data"), k.data.as_deref()?)));
    crate::ssh_keys::from_values(named.chain(listed), warnings)
}

/// Link types of a NIC the guest sees (cloud-init's list; none or null as well).
const PHYSICAL: [&str; 14] = [
    "",
    "bgpovs",
    "bridge",
    "cascading",
    "dvs",
    "ethernet",
    "hw_veb",
    "hyperv",
    "ovs",
    "phy",
    "tap",
    "vhostuser",
    "vif",
    "macvtap",
];

/// What a link of network_data.json is to vmctx.
enum LinkKind {
    Nic(usize),
    Bond(usize),
    Vlan(usize),
    Unsupported,
}

fn network(nd: &NetworkData, file: &str, warnings: &mut Vec<String>) -> Result<Network, String> {
    let mut nics: Vec<Nic> = Vec::new();
    let mut links: Vec<(&str, LinkKind)> = Vec::new();
    let mut devices = Network::default();
    for (i, link) in nd.links.iter().enumerate() {
        let at = |f: &str| format!("{file}: field links[{i}].{f}");
        let kind = match link.kind.as_str() {
            "bond" => {
                let bond = bond(link, &links, &nics, &at)?;
                devices.bonds.push(bond);
                LinkKind::Bond(devices.bonds.len() - 1)
            }
            "vlan" => {
                let vlan = vlan(link, &links, &nics, &devices, &at)?;
                devices.vlans.push(vlan);
                LinkKind::Vlan(devices.vlans.len() - 1)
            }
            other if !PHYSICAL.contains(&other) => {
                warnings.push(format!(
                    "{file}: links[{i}] ({:?}) has type {other:?}, which vmctx does not know; skipped",
                    link.id
                ));
                LinkKind::Unsupported
            }
            _ => {
                let mac = link.ethernet_mac_address.as_deref().ok_or_else(|| {
                    format!("{file}: field links[{i}].ethernet_mac_address: missing")
                })?;
                let mac: MacAddr = mac
                    .parse()
                    .map_err(|e| format!("{file}: field links[{i}].ethernet_mac_address: {e}"))?;
                let mut nic = Nic::new(nics.len() as u32, mac, Method::Skip, Ip6Method::Skip);
                nic.mtu = link.mtu.filter(|m| *m > 0);
                nics.push(nic);
                LinkKind::Nic(nics.len() - 1)
            }
        };
        links.push((link.id.as_str(), kind));
    }
    let mut dns: Vec<IpAddr> = Vec::new();
    dns_of(&nd.services, &mut dns);
    for (j, net) in nd.networks.iter().enumerate() {
        let field = |f: &str| format!("{file}: field networks[{j}].{f}");
        let Some((_, kind)) = links.iter().find(|(id, _)| *id == net.link) else {
            return Err(format!(
                "{}: {:?} names no entry of links",
                field("link"),
                net.link
            ));
        };
        let nic = match kind {
            LinkKind::Nic(n) => &mut nics[*n],
            LinkKind::Bond(n) => &mut devices.bonds[*n].config,
            LinkKind::Vlan(n) => &mut devices.vlans[*n].config,
            LinkKind::Unsupported => {
                warnings.push(format!(
                    "{file}: networks[{j}] is on link {:?}, which is not configured",
                    net.link
                ));
                continue;
            }
        };
        network_on(nic, net, &field, warnings)?;
    }
    let mut all: Vec<&mut Nic> = nics
        .iter_mut()
        .chain(devices.bonds.iter_mut().map(|b| &mut b.config))
        .chain(devices.vlans.iter_mut().map(|v| &mut v.config))
        .collect();
    // A NIC with only IPv6 networks is configured (IPv4 left off), not dropped.
    for nic in all.iter_mut() {
        if nic.method == Method::Skip && nic.ip6_method != Ip6Method::Skip {
            nic.method = Method::Static;
        }
        for d in &nic.dns {
            if !dns.contains(d) {
                dns.push(*d);
            }
        }
    }
    for nic in all.iter_mut() {
        for d in &dns {
            if !nic.dns.contains(d) && nic.method == Method::Static {
                nic.dns.push(*d);
            }
        }
    }
    Ok(Network {
        configure: true,
        nics,
        dns,
        bonds: devices.bonds,
        vlans: devices.vlans,
        ..Network::default()
    })
}

/// A `bond` link: its members are earlier links of NICs.
fn bond(
    link: &schema::Link,
    links: &[(&str, LinkKind)],
    nics: &[Nic],
    at: &dyn Fn(&str) -> String,
) -> Result<Bond, String> {
    let mut members = Vec::new();
    for id in &link.bond_links {
        match links.iter().find(|(l, _)| l == id) {
            Some((_, LinkKind::Nic(n))) => members.push(nics[*n].mac),
            _ => return Err(format!("{}: names no NIC link before it", at("bond_links"))),
        }
    }
    let n = links
        .iter()
        .filter(|(_, k)| matches!(k, LinkKind::Bond(_)))
        .count();
    Ok(Bond {
        name: link.name.clone().unwrap_or_else(|| format!("bond{n}")),
        interfaces: link.bond_links.clone(),
        members,
        mode: link.bond_mode.clone(),
        mii_monitor_interval: link.bond_miimon,
        transmit_hash_policy: link.bond_xmit_hash_policy.clone(),
        config: device_config(
            link,
            link.ethernet_mac_address.as_deref(),
            "ethernet_mac_address",
            at,
        )?,
    })
}

/// A `vlan` link on an earlier NIC or bond link.
fn vlan(
    link: &schema::Link,
    links: &[(&str, LinkKind)],
    nics: &[Nic],
    devices: &Network,
    at: &dyn Fn(&str) -> String,
) -> Result<Vlan, String> {
    let id = link
        .vlan_id
        .filter(|id| (1..4095).contains(id))
        .ok_or_else(|| format!("{}: missing or not 1..4094", at("vlan_id")))?;
    let parent = link.vlan_link.as_deref().unwrap_or_default();
    let (name, mac) = match links.iter().find(|(l, _)| *l == parent) {
        Some((_, LinkKind::Nic(n))) => (parent.to_string(), Some(nics[*n].mac)),
        Some((_, LinkKind::Bond(n))) => (devices.bonds[*n].name.clone(), None),
        _ => {
            return Err(format!(
                "{}: names no NIC or bond link before it",
                at("vlan_link")
            ))
        }
    };
    Ok(Vlan {
        name: link.name.clone().unwrap_or_else(|| format!("vlan{id}")),
        id: id as u16,
        link: name,
        link_mac: mac,
        config: device_config(
            link,
            link.vlan_mac_address.as_deref(),
            "vlan_mac_address",
            at,
        )?,
    })
}

/// A bond's or VLAN's own L3 settings, with its MAC when the link gives one.
fn device_config(
    link: &schema::Link,
    mac: Option<&str>,
    field: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<Nic, String> {
    let mac = match mac {
        Some(m) => m.parse().map_err(|e| format!("{}: {e}", at(field)))?,
        None => MacAddr([0; 6]),
    };
    let mut nic = Nic::new(0, mac, Method::Skip, Ip6Method::Skip);
    nic.mtu = link.mtu.filter(|m| *m > 0);
    Ok(nic)
}

/// One network of a link: its method, address, routes and DNS.
fn network_on(
    nic: &mut Nic,
    net: &Net,
    field: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let v6 = match net.kind.as_str() {
        "ipv4" => false,
        "ipv6" => true,
        "ipv4_dhcp" => {
            if nic.method == Method::Skip {
                nic.method = Method::Dhcp;
            }
            return Ok(());
        }
        "ipv6_slaac" => {
            nic.ip6_method = Ip6Method::Auto;
            return Ok(());
        }
        "ipv6_dhcp" | "ipv6_dhcpv6-stateless" | "ipv6_dhcpv6-stateful" => {
            nic.ip6_method = Ip6Method::Dhcp;
            return Ok(());
        }
        other => {
            warnings.push(format!(
                "{}: {other:?} is not a network type vmctx knows; skipped",
                field("type")
            ));
            return Ok(());
        }
    };
    let ip = net
        .ip_address
        .as_deref()
        .ok_or_else(|| format!("{}: missing for a static network", field("ip_address")))?;
    let addr = address(ip, net.netmask.as_deref(), v6)
        .map_err(|e| format!("{}: {e}", field("ip_address")))?;
    if v6 {
        nic.ip6_method = Ip6Method::Static;
    } else {
        nic.method = Method::Static;
    }
    if !nic.addresses.contains(&addr) {
        nic.addresses.push(addr);
    }
    let mut default = |via: IpAddr, warnings: &mut Vec<String>| match via {
        IpAddr::V4(g) if nic.gateway.is_none() => nic.gateway = Some(g),
        IpAddr::V6(g) if nic.gateway6.is_none() => nic.gateway6 = Some(g),
        _ => warnings.push(format!(
            "{}: a second default route (via {via}) is ignored",
            field("routes")
        )),
    };
    if let Some(g) = &net.gateway {
        let via: IpAddr = g
            .parse()
            .map_err(|_| format!("{}: {g:?} is not an address", field("gateway")))?;
        default(via, warnings);
    }
    for (k, r) in net.routes.iter().enumerate() {
        let rf = |f: &str| field(&format!("routes[{k}].{f}"));
        let to = address(&r.network, Some(&r.netmask), v6)
            .map_err(|e| format!("{}: {e}", rf("network")))?
            .network();
        let via: IpAddr = r
            .gateway
            .parse()
            .map_err(|_| format!("{}: {:?} is not an address", rf("gateway"), r.gateway))?;
        if to.prefix == 0 {
            default(via, warnings);
        } else {
            nic.routes.push(Route { to, via });
        }
        dns_of(&r.services, &mut nic.dns);
    }
    dns_of(&net.services, &mut nic.dns);
    Ok(())
}

fn dns_of(services: &[Service], out: &mut Vec<IpAddr>) {
    for s in services.iter().filter(|s| s.kind == "dns") {
        if let Some(ip) = s.address.as_deref().and_then(|a| a.trim().parse().ok()) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
}

/// `ip` with `netmask` in any of the forms seen: dotted IPv4, IPv6 in mask form
/// (`ffff:ffff:ffff:ffff::`), a prefix length, or `ip/prefix` with no netmask. No netmask at
/// all means /24 or /64, as cloud-init assumes.
pub(crate) fn address(ip: &str, netmask: Option<&str>, v6: bool) -> Result<Cidr, String> {
    let (ip, inline) = match ip.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (ip.trim(), None),
    };
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an address"))?;
    if addr.is_ipv6() != v6 {
        return Err(format!(
            "{ip:?} is not an IPv{} address",
            if v6 { 6 } else { 4 }
        ));
    }
    let mask = netmask.map(str::trim).filter(|m| !m.is_empty()).or(inline);
    let prefix = match (mask, addr) {
        (None, IpAddr::V4(_)) => 24,
        (None, IpAddr::V6(_)) => 64,
        (Some(m), IpAddr::V4(_)) => derive::mask_to_prefix(m)?,
        (Some(m), IpAddr::V6(_)) => v6_prefix(m)?,
    };
    Cidr::new(addr, prefix)
}

fn v6_prefix(mask: &str) -> Result<u8, String> {
    if let Ok(n) = mask.trim_start_matches('/').parse::<u8>() {
        return if n <= 128 {
            Ok(n)
        } else {
            Err(format!("{mask:?} is not a netmask (prefix over 128)"))
        };
    }
    let m: Ipv6Addr = mask
        .parse()
        .map_err(|_| format!("{mask:?} is not a netmask"))?;
    let bits = u128::from(m);
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(format!("{mask:?} is not a contiguous netmask"));
    }
    Ok(prefix as u8)
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
