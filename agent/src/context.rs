//! The normalized model of what the instance should be: pure data, no I/O.
//!
//! Every source (OpenNebula CD, a directory, later EC2) produces a [`Context`]; the plan and
//! apply steps read nothing else. Secrets are wrapped in [`Secret`] so that serializing a
//! context (`vmctx show`, logs) can never print them.

mod links;

pub use links::{valid_ifname, Bond, Bridge, Vlan};
use serde::{Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod addr;
mod origin;

pub use addr::{parse_hex_bytes, Cidr, MacAddr};
pub use origin::Origin;

#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub instance_id: String,
    /// Where the context was read from, shown as e.g. `opennebula:/dev/sr0`.
    pub source: Origin,
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
    /// settings are merged into them): see `crate::source::userdata`.
    pub cloud_config: Option<CloudConfig>,
    /// Tolerated oddities: skipped lines, legacy forms, NICs without a MAC, …
    pub warnings: Vec<String>,
    /// Values that were set but are not valid (`NAME: reason`): the plan leaves out what they
    /// configure, apply does the rest and exits 1.
    pub errors: Vec<String>,
    /// Every variable with a value: the environment of start scripts. Never serialized.
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    /// The files the context brought beside its variables (the CD's scripts, `token.txt`), as
    /// read with them: scripts and OneGate use these, never the source again.
    #[serde(skip)]
    pub files: Vec<(String, Vec<u8>)>,
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
    /// NICs whose identity or address (MAC, IP, mask, gateway) is invalid: left exactly as they
    /// are, neither configured nor stripped of what vmctx added to them before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldNic>,
}

/// A NIC left alone for an invalid value (named in the context's errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldNic {
    /// x of `ETHx_*` (EC2: the device number).
    pub index: u32,
    /// None when the MAC itself is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
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

/// User-data decoded: its scripts and the `#cloud-config` items that have executors of their own.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CloudConfig {
    /// `#!` user-data and `text/x-shellscript` parts, run once per instance in order.
    pub scripts: Vec<UserScript>,
    pub users: Vec<CloudUser>,
    pub write_files: Vec<WriteFile>,
    /// `runcmd`, one shell line each: shown, as `vmctx plan` shows every command apply runs
    /// (user-data is the place for commands, not for secrets).
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
    /// `ONEGATE_TOKEN`, else the CD's `token.txt` as read with the context.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_serialize() {
        let p = Password::Plain(Secret::new("hunter2"));
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
