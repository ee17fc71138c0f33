//! OpenNebula's derivation rules as pure functions: MAC → IPv4, masks, EUI-64, hostnames.

use crate::context::{parse_hex_bytes, MacAddr};
use std::net::{Ipv4Addr, Ipv6Addr};

/// OpenNebula's default `MAC_PREFIX` (oned.conf).
pub const DEFAULT_MAC_PREFIX: [u8; 2] = [0x02, 0x00];

/// qemu/libvirt's OUI: such a MAC was never made from an address, whatever `MAC_PREFIX` says.
const QEMU_OUI: [u8; 3] = [0x52, 0x54, 0x00];

/// Parses a 2-byte MAC prefix such as `02:00`.
pub fn parse_mac_prefix(s: &str) -> Result<[u8; 2], String> {
    parse_hex_bytes(s.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "not a 2-byte MAC prefix like 02:00".to_string())
}

pub fn format_mac_prefix(p: [u8; 2]) -> String {
    format!("{:02x}:{:02x}", p[0], p[1])
}

/// The MAC rule: a MAC made of the network's 2-byte prefix and the 4 bytes of an IPv4
/// address gives that address (`02:00:0a:00:03:28` → `10.0.3.40`). Any other MAC gives none.
pub fn mac_to_ipv4(mac: MacAddr, prefix: [u8; 2]) -> Result<Ipv4Addr, String> {
    let b = mac.0;
    if b[..3] == QEMU_OUI {
        return Err(format!(
            "{mac} is a qemu/libvirt MAC (52:54:00): it carries no address"
        ));
    }
    if b[..2] != prefix {
        return Err(format!(
            "{mac} does not start with the MAC prefix {}: it carries no address",
            format_mac_prefix(prefix)
        ));
    }
    let ip = Ipv4Addr::new(b[2], b[3], b[4], b[5]);
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!(
            "{mac} would give {ip}, which is not a host address"
        ));
    }
    Ok(ip)
}

/// A dotted netmask (`255.255.255.0`) or a prefix length (`24`, `/24`) → prefix length.
/// Non-canonical masks (`255.0.255.0`) are refused.
pub fn mask_to_prefix(mask: &str) -> Result<u8, String> {
    let m = mask.trim();
    if let Some(n) = m
        .strip_prefix('/')
        .or(Some(m))
        .and_then(|p| p.parse::<u8>().ok())
    {
        return if n <= 32 {
            Ok(n)
        } else {
            Err("not a netmask (prefix over 32)".into())
        };
    }
    let ip: Ipv4Addr = m.parse().map_err(|_| "not a netmask".to_string())?;
    let bits = u32::from(ip);
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err("not a contiguous netmask".into());
    }
    Ok(prefix as u8)
}

/// Modified EUI-64 interface id of `mac` in a /64 (what OpenNebula puts in `ETHx_IP6` for
/// SLAAC ranges). The agent never needs this; `vmctx mac2ip --ipv6-prefix` shows it.
pub fn mac_to_ipv6(mac: MacAddr, prefix: Ipv6Addr) -> Ipv6Addr {
    let b = mac.0;
    let iid = [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
    let mut octets = prefix.octets();
    octets[8..].copy_from_slice(&iid);
    Ipv6Addr::from(octets)
}

/// Turns a requested name into a valid hostname: lower-case, `[a-z0-9-]` labels, each at most
/// 63 characters. Any other character, or run of them, becomes one `-` — one per character,
/// not per UTF-8 byte (B15: `héllo` → `h-llo`, never `h--llo`). Returns (host label, domain).
pub fn sanitize_hostname(raw: &str) -> Option<(String, Option<String>)> {
    let labels: Vec<String> = raw
        .trim()
        .trim_end_matches('.')
        .split('.')
        .map(sanitize_label)
        .filter(|l| !l.is_empty())
        .collect();
    let (host, rest) = labels.split_first()?;
    let mut domain = rest.join(".");
    // An FQDN is at most 253 characters; drop trailing labels of the domain beyond that.
    while host.len() + 1 + domain.len() > 253 {
        match domain.rfind('.') {
            Some(i) => domain.truncate(i),
            None => domain.clear(),
        }
    }
    Some((host.clone(), (!domain.is_empty()).then_some(domain)))
}

fn sanitize_label(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// EC2's name for an address: `10.0.3.40` → `ip-10-0-3-40`.
pub fn ipv4_hostname(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("ip-{}-{}-{}-{}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mac_rule() {
        let p = DEFAULT_MAC_PREFIX;
        assert_eq!(
            mac_to_ipv4(mac("02:00:0a:00:03:28"), p).unwrap(),
            Ipv4Addr::new(10, 0, 3, 40)
        );
        assert_eq!(
            mac_to_ipv4(mac("02:00:C0:A8:7A:FE"), p).unwrap(),
            Ipv4Addr::new(192, 168, 122, 254)
        );
        assert_eq!(
            mac_to_ipv4(mac("02:00:0a:00:02:0b"), p).unwrap(),
            Ipv4Addr::new(10, 0, 2, 11)
        );
    }

    #[test]
    fn mac_rule_refuses_foreign_macs() {
        // B5: a libvirt MAC gave cloud-init 0.18.52.86/24.
        assert!(mac_to_ipv4(mac("52:54:00:12:34:56"), DEFAULT_MAC_PREFIX).is_err());
        assert!(mac_to_ipv4(mac("52:54:00:12:34:56"), [0x52, 0x54]).is_err());
        assert!(mac_to_ipv4(mac("0a:00:0a:00:03:28"), DEFAULT_MAC_PREFIX).is_err());
        assert!(mac_to_ipv4(mac("02:00:00:00:00:00"), DEFAULT_MAC_PREFIX).is_err());
        assert!(mac_to_ipv4(mac("02:00:ff:ff:ff:ff"), DEFAULT_MAC_PREFIX).is_err());
        // Another prefix, when the network says so.
        assert_eq!(
            mac_to_ipv4(mac("02:ab:0a:00:03:28"), [2, 0xab]).unwrap(),
            Ipv4Addr::new(10, 0, 3, 40)
        );
    }

    #[test]
    fn mac_prefix_parse() {
        assert_eq!(parse_mac_prefix("02:00").unwrap(), [2, 0]);
        assert_eq!(parse_mac_prefix("0A:FF").unwrap(), [10, 255]);
        assert!(parse_mac_prefix("02").is_err());
        assert!(parse_mac_prefix("02:00:00").is_err());
        assert!(parse_mac_prefix("xx:00").is_err());
    }

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix("255.255.255.0").unwrap(), 24);
        assert_eq!(mask_to_prefix("255.255.240.0").unwrap(), 20);
        assert_eq!(mask_to_prefix("255.255.255.255").unwrap(), 32);
        assert_eq!(mask_to_prefix("0.0.0.0").unwrap(), 0);
        assert_eq!(mask_to_prefix("24").unwrap(), 24);
        assert_eq!(mask_to_prefix("/16").unwrap(), 16);
        assert!(mask_to_prefix("255.0.255.0").is_err());
        assert!(mask_to_prefix("255.255.255.1").is_err());
        assert!(mask_to_prefix("33").is_err());
        assert!(
            mask_to_prefix("255.255.255.0\r").is_ok(),
            "B9: CRLF residue is tolerated"
        );
        assert!(mask_to_prefix("junk").is_err());
    }

    #[test]
    fn eui64() {
        let p: Ipv6Addr = "2001:db8:1:2::".parse().unwrap();
        assert_eq!(
            mac_to_ipv6(mac("02:00:0a:00:03:28"), p),
            "2001:db8:1:2:0:aff:fe00:328".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn hostnames() {
        let s = |x: &str| sanitize_hostname(x);
        assert_eq!(s("hol02-jupyter"), Some(("hol02-jupyter".into(), None)));
        assert_eq!(
            s("Web01.Example.ORG"),
            Some(("web01".into(), Some("example.org".into())))
        );
        // B15: one dash per character, never `--`, no upper case.
        assert_eq!(s("héllo"), Some(("h-llo".into(), None)));
        assert_eq!(s("a__b  c"), Some(("a-b-c".into(), None)));
        assert_eq!(s("-edge-"), Some(("edge".into(), None)));
        assert_eq!(s("..."), None);
        assert_eq!(s("ééé"), None);
        let long = "a".repeat(80);
        assert_eq!(s(&long).unwrap().0.len(), 63);
        let dashy = format!("{}-b", "a".repeat(62));
        assert_eq!(s(&dashy).unwrap().0, "a".repeat(62));
        assert_eq!(ipv4_hostname(Ipv4Addr::new(10, 0, 3, 40)), "ip-10-0-3-40");
    }
}
