//! Addresses in the model: MAC addresses and IP networks (`Cidr`), parsed strictly and shown
//! in one canonical form.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A MAC address; parsed case-insensitively (B13), shown lower-case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = parse_hex_bytes(s.trim()).ok_or_else(|| "not a MAC address".to_string())?;
        let arr: [u8; 6] = bytes
            .try_into()
            .map_err(|_| "not a MAC address (needs 6 bytes)".to_string())?;
        Ok(MacAddr(arr))
    }
}

/// `aa:bb:…` (or `-` separated) into bytes; each part one or two hex digits.
pub fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    let sep = if s.contains('-') { '-' } else { ':' };
    s.split(sep)
        .map(|p| {
            if p.is_empty() || p.len() > 2 {
                None
            } else {
                u8::from_str_radix(p, 16).ok()
            }
        })
        .collect()
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An address with its prefix length, `10.0.3.40/24`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is too long for {addr}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl FromStr for Cidr {
    type Err = String;
    /// `a.b.c.d/p`, or a bare address as a host route (/32, /128).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| "not an IP address".to_string())?;
        let prefix = match prefix {
            Some(p) => p.parse().map_err(|_| "bad prefix length".to_string())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Cidr {
    /// The network this address is in: `10.0.3.40/24` → `10.0.3.0/24`.
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && Cidr {
                addr: ip,
                prefix: self.prefix,
            }
            .network()
                == self.network()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_is_case_insensitive_and_strict() {
        let m: MacAddr = "02:00:0A:00:03:28".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:0a:00:03:28");
        assert_eq!("02-00-0a-00-03-28".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "02:00:0a:00:03",
            "02:00:0a:00:03:28:01",
            "zz:00:0a:00:03:28",
            "020:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_parse() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().prefix, 32);
        assert_eq!("fd00::1".parse::<Cidr>().unwrap().prefix, 128);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("banana/8".parse::<Cidr>().is_err());
        let c: Cidr = "10.0.3.40/24".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.0.3.0/24");
        assert!(c.contains("10.0.3.1".parse().unwrap()));
        assert!(!c.contains("10.0.4.1".parse().unwrap()));
        assert_eq!(
            "2001:db8::28/64"
                .parse::<Cidr>()
                .unwrap()
                .network()
                .to_string(),
            "2001:db8::/64"
        );
        assert_eq!(
            "10.1.2.3/0".parse::<Cidr>().unwrap().network().to_string(),
            "0.0.0.0/0"
        );
    }
}
