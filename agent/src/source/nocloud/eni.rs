//! The Debian `/etc/network/interfaces` subset that seeds carry: Proxmox's configdrive2
//! (`openstack/content/0000`) and NoCloud's legacy `network-interfaces` meta-data key.
//! `iface ethN inet static|dhcp|manual`, `inet6 static|dhcp|auto`, with `address`, `netmask`,
//! `gateway`, `dns-nameservers`/`dns_nameservers`, `dns-search`/`dns_search`, `hwaddress`,
//! `mtu`. Options under `lo` (where Proxmox writes its resolvers) are global.

use super::network::{cidr, ip, Builder, Target};
use super::yaml::At;
use crate::context::{Ip6Method, Method, Network};

struct Stanza {
    name: String,
    v6: bool,
    method: String,
    line: usize,
    opts: Vec<(String, String, usize)>,
}

pub fn to_network(text: &str, file: &str, warnings: &mut Vec<String>) -> Result<Network, String> {
    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut global: Vec<(String, String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match key {
            "auto" | "allow-hotplug" | "source" | "source-directory" => {}
            "iface" => {
                let w: Vec<&str> = rest.split_whitespace().collect();
                let [name, family, method] = w[..] else {
                    return Err(format!(
                        "{file}: line {n}: expected `iface NAME inet|inet6 METHOD`"
                    ));
                };
                stanzas.push(Stanza {
                    name: name.into(),
                    v6: family == "inet6",
                    method: method.into(),
                    line: n,
                    opts: Vec::new(),
                });
            }
            _ => {
                let opt = (key.replace('_', "-"), rest.to_string(), n);
                match stanzas.last_mut() {
                    Some(s) if s.name != "lo" => s.opts.push(opt),
                    _ => global.push(opt),
                }
            }
        }
    }
    let mut b = Builder::new(warnings);
    let at_line = |n: usize| format!("{file}: line {n}");
    for (k, v, n) in &global {
        dns(&mut b, None, k, v, &at_line(*n))?;
    }
    for s in stanzas.iter().filter(|s| s.name != "lo") {
        let file_at = at_line(s.line);
        let at = At::new(&file_at);
        let hw = s
            .opts
            .iter()
            .find(|(k, _, _)| k == "hwaddress")
            .map(|(_, v, _)| v.trim_start_matches("ether").trim().to_string());
        let mac = hw
            .map(|h| h.parse().map_err(|e| at.err(format!("hwaddress: {e}"))))
            .transpose()?;
        let t = match b.target(&s.name) {
            Some(t) => t,
            None => match b.nic(&s.name, mac, &at) {
                Some(t) => t,
                None => continue,
            },
        };
        stanza(&mut b, t, s, file)?;
    }
    Ok(b.finish())
}

fn stanza(b: &mut Builder, t: Target, s: &Stanza, file: &str) -> Result<(), String> {
    let here = format!("{file}: line {}", s.line);
    match (s.v6, s.method.as_str()) {
        (false, "dhcp") => b.config(t).method = Method::Dhcp,
        (true, "dhcp") => b.config(t).ip6_method = Ip6Method::Dhcp,
        (true, "auto") => b.config(t).ip6_method = Ip6Method::Auto,
        (false, "manual") if b.config_ref(t).method == Method::Skip => {
            b.config(t).method = Method::Static
        }
        (_, "static" | "manual") => {}
        (_, other) => b.warnings.push(format!(
            "{here}: method {other:?} is not one vmctx configures; skipped"
        )),
    }
    let get = |k: &str| s.opts.iter().find(|(o, _, _)| o == k);
    if s.method == "static" {
        let (_, a, n) = get("address").ok_or_else(|| format!("{here}: no address"))?;
        let at_s = format!("{file}: line {n}");
        let mask = get("netmask").map(|(_, m, _)| m.as_str());
        let addr = cidr(a, mask, &At::new(&at_s))?;
        if addr.addr.is_ipv6() != s.v6 {
            return Err(format!(
                "{at_s}: address {a:?} is not of the stanza's family"
            ));
        }
        let gw = get("gateway")
            .map(|(_, g, n)| ip(g, &At::new(&format!("{file}: line {n}"))))
            .transpose()?;
        b.address(t, addr, gw, &At::new(&here));
    }
    for (k, v, n) in &s.opts {
        let at = format!("{file}: line {n}");
        match k.as_str() {
            "mtu" => {
                let mtu = v
                    .parse()
                    .map_err(|_| format!("{at}: mtu {v:?} is not a number"))?;
                b.config(t).mtu = Some(mtu);
            }
            "address" | "netmask" | "gateway" | "hwaddress" => {}
            _ => dns(b, Some(t), k, v, &at)?,
        }
    }
    Ok(())
}

fn dns(b: &mut Builder, t: Option<Target>, k: &str, v: &str, at: &str) -> Result<(), String> {
    match k {
        "dns-nameservers" => {
            let servers = v
                .split_whitespace()
                .map(|s| ip(s, &At::new(at)))
                .collect::<Result<Vec<_>, _>>()?;
            b.dns(t, &servers, &[]);
        }
        "dns-search" => {
            let search: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            b.dns(t, &[], &search);
        }
        other => b.warnings.push(format!(
            "{at}: option {other:?} is not used by vmctx; ignored"
        )),
    }
    Ok(())
}
