//! `vmctx imds host-rules`: the nftables rules that bring a guest's `169.254.169.254:80` to
//! the host's metadata sidecar with the guest's source address intact. Everything lives in
//! vmctx's own tables (`ip vmctx_imds`, and `bridge vmctx_imds` for a plain L2 bridge), which
//! are replaced whole in one `nft -f` transaction: applying twice changes nothing, and
//! removing touches no other table.
//!
//! - The host is the guests' gateway: their packets for 169.254.169.254 reach its IP stack
//!   already; an `ip` family DNAT (`redirect`) sends them to the sidecar's port.
//! - A plain L2 bridge, gateway elsewhere (`--l2`): the `bridge` family takes the frames for
//!   169.254.169.254:80 off the bridge and up to the host (their destination MAC becomes the
//!   bridge's, as ebtables' `redirect` did), where the same DNAT applies. The frames are
//!   picked by bridge (`meta ibrname`), or, on kernels without nftables' bridge meta
//!   (`nft_meta_bridge`), by the name of the port they came in on (`--ports one-*`: the taps
//!   OpenNebula makes). The host may have
//!   no route to the guests: the sidecar then listens with `--device BRIDGE`, so its replies
//!   leave by the bridge.

use crate::context::valid_ifname;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

pub const TABLE: &str = "vmctx_imds";
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The sidecar's port in the unit and the rules' default.
pub const DEFAULT_PORT: u16 = 8775;
const NFT: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

/// Where the guests' requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `:PORT`: this port of the address the packet arrived at (the bridge's own).
    Port(u16),
    /// `ADDR:PORT`: one of the host's addresses.
    Addr(SocketAddrV4),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .map(Target::Port)
                .ok_or_else(|| format!("{s:?}: not a port")),
            None => s
                .parse()
                .map(Target::Addr)
                .map_err(|_| format!("{s:?}: not :PORT or IPV4:PORT")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The guests' bridge (any interface without one; required with `l2`).
    pub bridge: Option<String>,
    /// The bridge's MAC address, with `l2`.
    pub bridge_mac: Option<String>,
    pub l2: bool,
    /// With `l2`: the bridge ports whose frames are taken (`one-*`), instead of the bridge.
    pub ports: Option<String>,
    pub to: Target,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0}")]
    Usage(String),
    #[error("{bridge}: {why}")]
    Bridge { bridge: String, why: String },
    #[error("nft: {0}")]
    Nft(String),
}

/// An interface name, or a prefix of one followed by `*`.
fn valid_ports(pattern: &str) -> bool {
    valid_ifname(pattern.strip_suffix('*').unwrap_or(pattern))
}

impl Rules {
    /// The rules for `bridge` (its MAC read from `sys`, the sysfs mount, with `l2`).
    pub fn new(
        sys: &std::path::Path,
        bridge: Option<String>,
        l2: bool,
        ports: Option<String>,
        to: Target,
    ) -> Result<Rules, RulesError> {
        if let Some(b) = &bridge {
            if !valid_ifname(b) {
                return Err(RulesError::Usage(format!("{b:?} is not an interface name")));
            }
        }
        match &ports {
            Some(p) if !valid_ports(p) => {
                return Err(RulesError::Usage(format!(
                    "{p:?} is not an interface name or NAME*"
                )))
            }
            Some(_) if !l2 => return Err(RulesError::Usage("--ports needs --l2".into())),
            _ => {}
        }
        let bridge_mac = match (&bridge, l2) {
            (None, true) => return Err(RulesError::Usage("--l2 needs --bridge".into())),
            (Some(b), true) => Some(bridge_mac(sys, b)?),
            _ => None,
        };
        Ok(Rules {
            bridge,
            bridge_mac,
            l2,
            ports,
            to,
        })
    }

    /// The whole `nft -f` script: vmctx's tables made empty (created first, so that deleting
    /// them cannot fail), then filled, in one transaction.
    pub fn script(&self) -> String {
        let to = match self.to {
            Target::Port(p) => format!("redirect to :{p}"),
            Target::Addr(a) => format!("dnat to {a}"),
        };
        let iif = self
            .bridge
            .as_ref()
            .map_or(String::new(), |b| format!("iifname \"{b}\" "));
        let mut s = format!(
            "# vmctx imds host-rules: guests' {METADATA_ADDR}:80 to the metadata sidecar\n\
             {}\
             table ip {TABLE} {{\n\
             \tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\t{iif}ip daddr {METADATA_ADDR} tcp dport 80 {to}\n\
             \t}}\n\
             }}\n",
            clear()
        );
        if let (true, Some(b), Some(mac)) = (self.l2, &self.bridge, &self.bridge_mac) {
            let from = match &self.ports {
                Some(p) => format!("iifname \"{p}\""),
                None => format!("meta ibrname \"{b}\""),
            };
            s.push_str(&format!(
                "table bridge {TABLE} {{\n\
                 \tchain prerouting {{\n\
                 \t\ttype filter hook prerouting priority -300; policy accept;\n\
                 \t\t{from} ip daddr {METADATA_ADDR} tcp dport 80 \
                 meta pkttype set host ether daddr set {mac}\n\
                 \t}}\n\
                 }}\n"
            ));
        }
        s
    }
}

/// Both of vmctx's tables created if missing, then deleted: nothing else is named.
fn clear() -> String {
    format!(
        "add table ip {TABLE}\ndelete table ip {TABLE}\n\
         add table bridge {TABLE}\ndelete table bridge {TABLE}\n"
    )
}

/// The bridge's MAC, which the L2 rule names. A bridge whose MAC was never set takes its
/// lowest port's, and changes when ports come and go: refused, with the fix.
fn bridge_mac(sys: &std::path::Path, bridge: &str) -> Result<String, RulesError> {
    let fail = |why: String| RulesError::Bridge {
        bridge: bridge.to_string(),
        why,
    };
    let dir = sys.join("class/net").join(bridge);
    if !dir.join("bridge").is_dir() {
        return Err(fail("not a bridge on this host".into()));
    }
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map(|s| s.trim().to_string())
            .map_err(|e| fail(format!("reading its {f}: {e}")))
    };
    let mac = read("address")?;
    // 3: NET_ADDR_SET, the address was set and stays.
    if read("addr_assign_type")? != "3" {
        return Err(fail(format!(
            "its MAC address follows its ports; fix it first (ip link set {bridge} address \
             {mac})"
        )));
    }
    Ok(mac)
}

fn nft() -> Result<&'static str, RulesError> {
    NFT.into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| RulesError::Nft("not found (package nftables)".into()))
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<String, RulesError> {
    let mut child = Command::new(nft()?)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .map_err(|e| RulesError::Nft(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| RulesError::Nft(e.to_string()))?;
    }
    let o = child
        .wait_with_output()
        .map_err(|e| RulesError::Nft(e.to_string()))?;
    if !o.status.success() {
        return Err(RulesError::Nft(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// vmctx's tables as the kernel has them now (empty when there are none).
pub fn current() -> Result<String, RulesError> {
    let mut out = String::new();
    for family in ["ip", "bridge"] {
        let listed = run_nft(&["list", "tables", family], None)?;
        if listed
            .lines()
            .any(|l| l.trim() == format!("table {family} {TABLE}"))
        {
            out.push_str(&run_nft(&["list", "table", family, TABLE], None)?);
        }
    }
    Ok(out)
}

/// Loads the rules; whether that changed what the kernel had.
pub fn apply(rules: &Rules) -> Result<bool, RulesError> {
    let before = current()?;
    run_nft(&["-f", "-"], Some(&rules.script()))?;
    Ok(current()? != before)
}

/// Removes vmctx's tables; whether there were any.
pub fn remove() -> Result<bool, RulesError> {
    let before = current()?;
    run_nft(&["-f", "-"], Some(&clear()))?;
    Ok(!before.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn targets_and_names() {
        let sys = Path::new("/sys");
        assert_eq!(":8775".parse(), Ok(Target::Port(8775)));
        assert_eq!(
            "192.0.2.1:8775".parse(),
            Ok(Target::Addr("192.0.2.1:8775".parse().unwrap()))
        );
        for bad in [":0", ":x", "8775", "[::1]:80", ""] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        assert!(valid_ifname("br0") && valid_ifname("onebr.10"));
        for bad in ["", "..", "br0\"; flush ruleset", "a/b", "abcdefghijklmnop"] {
            assert!(!valid_ifname(bad), "{bad}");
            assert!(Rules::new(sys, Some(bad.into()), false, None, Target::Port(1)).is_err());
        }
        assert!(Rules::new(sys, None, true, None, Target::Port(1)).is_err());
        assert!(valid_ports("one-*") && !valid_ports("*one") && !valid_ports("a**"));
    }

    #[test]
    fn gateway_and_l2_scripts() {
        let gw = Rules::new(
            Path::new("/sys"),
            Some("br0".into()),
            false,
            None,
            Target::Port(8775),
        )
        .unwrap();
        let s = gw.script();
        assert!(
            s.contains("iifname \"br0\" ip daddr 169.254.169.254 tcp dport 80 redirect to :8775")
        );
        assert!(!s.contains("table bridge vmctx_imds {"), "{s}");
        // Only vmctx's own tables are named, and deleted only after being made.
        for line in s.lines().filter(|l| !l.starts_with(['#', '\t', '}'])) {
            assert!(line.contains(TABLE), "{line}");
        }
        let mut l2 = Rules {
            bridge: Some("br0".into()),
            bridge_mac: Some("02:00:00:00:00:01".into()),
            l2: true,
            ports: None,
            to: Target::Addr("198.51.100.1:8775".parse().unwrap()),
        };
        let s = l2.script();
        assert!(s.contains("dnat to 198.51.100.1:8775"), "{s}");
        assert!(
            s.contains(
                "meta ibrname \"br0\" ip daddr 169.254.169.254 tcp dport 80 meta pkttype set \
                 host ether daddr set 02:00:00:00:00:01"
            ),
            "{s}"
        );
        l2.ports = Some("one-*".into());
        assert!(s.contains("table bridge vmctx_imds {"), "{s}");
        assert!(
            l2.script().contains("\t\tiifname \"one-*\" ip daddr"),
            "{}",
            l2.script()
        );
    }
}

#[cfg(test)]
mod sysfs_tests {
    use super::*;

    /// The L2 rule names the bridge's MAC, read under `--root`; a MAC that follows the ports
    /// is refused with the fix.
    #[test]
    fn the_l2_rule_names_a_fixed_bridge_mac() {
        let d = tempfile::tempdir().unwrap();
        let br = d.path().join("class/net/br0");
        std::fs::create_dir_all(br.join("bridge")).unwrap();
        std::fs::write(br.join("address"), "02:00:00:00:fe:01\n").unwrap();
        std::fs::write(br.join("addr_assign_type"), "3\n").unwrap();
        let r = Rules::new(d.path(), Some("br0".into()), true, None, Target::Port(8775)).unwrap();
        assert!(r.script().contains("ether daddr set 02:00:00:00:fe:01"));
        std::fs::write(br.join("addr_assign_type"), "0\n").unwrap();
        let e = Rules::new(d.path(), Some("br0".into()), true, None, Target::Port(8775));
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("ip link set br0 address 02:00:00:00:fe:01"),
            "{e}"
        );
        let e = Rules::new(d.path(), Some("br1".into()), true, None, Target::Port(1));
        assert!(e.unwrap_err().to_string().contains("not a bridge"));
    }
}
