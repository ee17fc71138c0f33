//! The normalized model of what the instance should be: pure data, no I/O.
//!
//! Every source (OpenNebula CD, a directory, later EC2) produces a [`Context`]; the plan and
//! apply steps read nothing else. Secrets are wrapped in [`Secret`] so that serializing a
//! context (`vmctx show`, logs) can never print them.

mod links;

pub use links::{Bond, Bridge, Vlan};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub instance_id: String,
    /// Where the context was read from, e.g. `opennebula:/dev/sr0`.
    pub source: String,
    pub hostname: Option<Hostname>,
    pub network: Network,
    pub ssh_keys: Vec<String>,
    pub user: Option<User>,
    pub scripts: Scripts,
    pub update: Option<UpdateSchedule>,
    pub sync: Option<SyncSettings>,
    pub ec2: Option<Ec2Settings>,
    /// `REPORT_READY`, `ONEGATE_ENDPOINT` and the OneGate token: tell OpenNebula when the
    /// final stage is done.
    pub onegate: Option<OneGate>,
    /// Disks, time zone and SSH host keys: the image made this instance's own.
    pub system: System,
    /// What user-data asks for beyond the fields above (its hostname, keys and `vmctx:`
    /// settings are merged into them): see `crate::userdata`.
    pub cloud_config: Option<CloudConfig>,
    /// Tolerated oddities: skipped lines, legacy forms, NICs without a MAC, …
    pub warnings: Vec<String>,
    /// Values that were set but are not valid: `plan` leaves out what they configure and exits
    /// 1; `apply` refuses the whole context and changes nothing.
    pub errors: Vec<String>,
    /// Every variable with a value: the environment of start scripts. Never serialized.
    #[serde(skip)]
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hostname {
    /// The host label (what `sethostname` gets).
    pub name: String,
    /// The rest of an FQDN, if one was given.
    pub domain: Option<String>,
    /// The variable it came from.
    pub from: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Network {
    /// `NETWORK='NO'`: vmctx configures no network at all.
    pub configure: bool,
    /// NICs in ETHx index order (numeric: ETH2 before ETH10).
    pub nics: Vec<Nic>,
    /// Global resolvers: `DNS`, then every NIC's `ETHx_DNS`, de-duplicated, order kept.
    pub dns: Vec<IpAddr>,
    pub search: Vec<String>,
    /// A legacy context with no `ETHx_*` variables at all: every live NIC whose MAC carries the
    /// prefix gets its MAC-derived /24 (OpenNebula's original behaviour). Resolved against the
    /// live links by the plan.
    pub derive_all_prefixed: bool,
    pub mac_prefix: [u8; 2],
    /// The DHCP NICs' leases own the main table's default route (EC2's primary NIC): every
    /// static NIC's gateway then goes into that NIC's own table, with `from` rules.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dhcp_default_route: bool,
    /// NICs the source names only by position (`ETHx_DHCP` without `ETHx_MAC`, an ENI
    /// `ethN`): the plan gives each the MAC of the live NIC at position `index`
    /// ([`Network::with_nic_order`]). Their `mac` is a placeholder until then.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_order: Vec<Nic>,
    /// Bonds, VLANs and bridges the source asks for (NoCloud, OpenStack), in netplan v2 terms.
    /// Not applied yet: the source warns about each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bonds: Vec<Bond>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<Vlan>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<Bridge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    /// x of `ETHx_*`.
    pub index: u32,
    pub mac: MacAddr,
    pub method: Method,
    pub ip6_method: Ip6Method,
    /// IPv4 then IPv6 addresses, the NIC's own first, then its aliases.
    pub addresses: Vec<Cidr>,
    /// The IPv4 address was computed from the MAC (legacy context), not given.
    pub ipv4_from_mac: bool,
    pub gateway: Option<Ipv4Addr>,
    pub metric: Option<u32>,
    pub gateway6: Option<Ipv6Addr>,
    pub metric6: Option<u32>,
    pub routes: Vec<Route>,
    /// `ETHx_DNS` then the global `DNS`, de-duplicated.
    pub dns: Vec<IpAddr>,
    pub search: Vec<String>,
    pub mtu: Option<u32>,
}

impl Nic {
    /// A NIC with no addressing yet.
    pub fn new(index: u32, mac: MacAddr, method: Method, ip6_method: Ip6Method) -> Nic {
        Nic {
            index,
            mac,
            method,
            ip6_method,
            addresses: Vec::new(),
            ipv4_from_mac: false,
            gateway: None,
            metric: None,
            gateway6: None,
            metric6: None,
            routes: Vec::new(),
            dns: Vec::new(),
            search: Vec::new(),
            mtu: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Static,
    Dhcp,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ip6Method {
    Static,
    Auto,
    Dhcp,
    Disable,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub to: Cidr,
    pub via: IpAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub sudo: bool,
    pub shell: String,
    pub password: Option<Password>,
    /// `USERNAME_PASSWORD_RESET=YES` with no password: lock the password.
    pub lock_password: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Password {
    Crypted(Secret),
    Plain(Secret),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scripts {
    pub start: Option<StartScript>,
    /// `INIT_SCRIPTS`: file names on the context CD, run in order.
    pub init: Vec<String>,
    pub user_data: Option<UserData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartScript {
    #[serde(skip)]
    pub body: Vec<u8>,
    pub bytes: usize,
    pub from: String,
    pub mode: ScriptMode,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptMode {
    Once,
    Always,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserData {
    #[serde(skip)]
    pub body: Vec<u8>,
    pub bytes: usize,
    /// The first line, as far as it tells the kind (`#!/bin/sh`, `#cloud-config`, …).
    pub kind: String,
}

impl UserData {
    /// User-data as a source delivered it; `None` when it is empty.
    pub fn from_body(body: Vec<u8>) -> Option<UserData> {
        (!body.is_empty()).then(|| UserData {
            bytes: body.len(),
            kind: crate::userdata::kind(&body),
            body,
        })
    }
}

/// User-data decoded: its scripts and the `#cloud-config` items that have executors of their own.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CloudConfig {
    /// `#!` user-data and `text/x-shellscript` parts, run once per instance in order.
    pub scripts: Vec<UserScript>,
    pub users: Vec<CloudUser>,
    pub write_files: Vec<WriteFile>,
    /// `runcmd`, one shell line each; not shown (they may carry secrets), only counted.
    #[serde(skip)]
    pub runcmd: Vec<String>,
    pub runcmd_lines: usize,
    pub package_update: bool,
    pub package_upgrade: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserScript {
    /// `user-data`, or the MIME part's file name.
    pub name: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudUser {
    pub name: String,
    /// A sudoers rule such as `ALL=(ALL) NOPASSWD:ALL`.
    pub sudo: Option<String>,
    pub shell: Option<String>,
    pub groups: Vec<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub lock_passwd: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriteFile {
    pub path: String,
    /// Decoded (b64/gzip undone); not shown.
    #[serde(skip)]
    pub content: Vec<u8>,
    pub bytes: usize,
    pub permissions: u32,
    /// `user:group`, default `root:root`.
    pub owner: String,
    pub append: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateSchedule {
    pub schedule: Schedule,
    pub command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "spec", rename_all = "lowercase")]
pub enum Schedule {
    Cron(String),
    Calendar(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncSettings {
    pub bucket: String,
    pub prefix: String,
    pub dir: String,
    pub mode: SyncMode,
    pub interval: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub ca_file: Option<String>,
    pub credentials: Option<AwsCredentials>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Pull,
    Push,
    Both,
}

#[derive(Debug, Clone, Serialize)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ec2Settings {
    /// `EC2_METADATA=YES`: serve an emulated metadata service.
    pub metadata: bool,
    pub instance_id: Option<String>,
    pub ami_id: Option<String>,
    pub instance_type: Option<String>,
    pub region: Option<String>,
    pub availability_zone: Option<String>,
    pub tokens_required: bool,
    pub hop_limit: u8,
    pub iam: Option<IamRole>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IamRole {
    pub name: String,
    pub credentials: Option<AwsCredentials>,
}

/// What makes a copied image this instance's own, beyond network and users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct System {
    /// `GROW_ROOTFS` (default yes): grow `/`'s partition and filesystem to the disk.
    pub grow_rootfs: bool,
    /// `GROW_FS`: other mount points to grow, in order.
    pub grow_fs: Vec<String>,
    /// `TIMEZONE`, a name under `/usr/share/zoneinfo` such as `Europe/Prague`.
    pub timezone: Option<String>,
    /// `SSH_HOST_KEYS`: what a new instance does with the image's SSH host keys.
    pub ssh_host_keys: HostKeys,
}

impl Default for System {
    fn default() -> Self {
        System {
            grow_rootfs: true,
            grow_fs: Vec::new(),
            timezone: None,
            ssh_host_keys: HostKeys::Regenerate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKeys {
    /// Remove the image's keys and make new ones, once per instance (the default: every copy
    /// of an image must not share one host identity).
    Regenerate,
    /// Keep the image's keys; only missing ones are made.
    Keep,
}

/// OneGate (OpenNebula's in-guest API), for `REPORT_READY=YES`.
#[derive(Debug, Clone, Serialize)]
pub struct OneGate {
    /// `ONEGATE_ENDPOINT`, e.g. `http://192.168.0.1:5030` (no trailing `/`).
    pub endpoint: String,
    pub vmid: String,
    /// `ONEGATE_TOKEN`; else the CD's `token.txt` is read when the report is sent.
    pub token: Option<Secret>,
    /// The context CD has a `token.txt` (`TOKEN=YES` in the template).
    pub token_file: bool,
}

/// An instance id names a folder under `/var/lib/vmctx/instances`: nothing that could leave
/// it, nothing odd in a path.
pub fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !id.starts_with('.')
}

/// A portable user name (`useradd`'s default rule): lower-case, digits, `_` and `-`.
pub fn valid_username(n: &str) -> bool {
    let mut chars = n.chars();
    n.len() <= 32
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A value that must never be printed or logged. It serializes as `"<redacted>"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

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

    #[test]
    fn secrets_never_serialize() {
        let p = Password::Plain(Secret::new("hunter2"));
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
