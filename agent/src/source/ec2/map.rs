//! EC2 metadata → [`Context`]: the one place that reads EC2's names.
//!
//! NICs come from `network/interfaces/macs/*`, ordered by `device-number`. The primary NIC
//! stays on DHCP as on EC2 (its lease holds the default route); each secondary NIC gets its
//! private IPs with its subnet's prefix, the subnet's router (the subnet's first address) as a
//! gateway in a table of its own and `from` rules — the multi-NIC setup ec2-net-utils makes.

use super::Metadata;
use crate::context::{
    Cidr, Context, Ec2Settings, Hostname, Ip6Method, MacAddr, Method, Network, Nic, Origin,
    Scripts, User,
};
use crate::derive;
use std::net::{IpAddr, Ipv4Addr};

/// The user the metadata's keys go to (EC2 names none; as OpenNebula's default, root).
pub const DEFAULT_USER: &str = "root";

pub fn to_context(md: &Metadata, origin: &Origin) -> Result<Context, String> {
    let mut warnings: Vec<String> = md.notes.clone();
    let mut errors = Vec::new();
    let instance_id = md.get("instance-id").unwrap_or_default().to_string();
    if !crate::context::valid_instance_id(&instance_id) {
        return Err(format!(
            "meta-data/instance-id {instance_id:?} is not an instance id"
        ));
    }
    let hostname = ["local-hostname", "hostname"].iter().find_map(|k| {
        let raw = md.get(k)?;
        let (name, domain) = derive::sanitize_hostname(raw)?;
        Some(Hostname {
            name,
            domain,
            from: format!("meta-data/{k}"),
        })
    });
    let ssh_keys = keys(md, &mut warnings);
    let network = network(md, &mut warnings, &mut errors);
    let az = md.get("placement/availability-zone").map(str::to_string);
    let region = md.get("placement/region").map(str::to_string).or_else(|| {
        az.as_ref()
            .filter(|a| a.len() > 1)
            .map(|a| a[..a.len() - 1].to_string())
    });
    let user_data = md
        .user_data
        .clone()
        .and_then(crate::source::userdata::user_data);
    Ok(Context {
        instance_id: instance_id.clone(),
        source: origin.clone(),
        hostname,
        network,
        ssh_keys,
        user: Some(User {
            name: DEFAULT_USER.into(),
            sudo: false,
            shell: "/bin/bash".into(),
            password: None,
            lock_password: false,
        }),
        scripts: Scripts {
            start: None,
            init: Vec::new(),
            user_data,
        },
        update: None,
        sync: None,
        ec2: Some(Ec2Settings {
            metadata: false,
            instance_id: Some(instance_id.clone()),
            ami_id: md.get("ami-id").map(str::to_string),
            instance_type: md.get("instance-type").map(str::to_string),
            region,
            availability_zone: az,
            tokens_required: false,
            hop_limit: 1,
            iam: None,
        }),
        onegate: None,
        system: crate::context::System::default(),
        cloud_config: None,
        warnings,
        errors,
        files: Vec::new(),
        env: vec![("INSTANCE_ID".into(), instance_id)],
    })
}

/// `public-keys/<n>/openssh-key` in numeric order, each checked as a bare key
/// ([`crate::ssh_keys::from_values`]): a value that hides a second line is left out.
fn keys(md: &Metadata, warnings: &mut Vec<String>) -> Vec<String> {
    let mut found: Vec<(u32, &str)> = md
        .leaves
        .iter()
        .filter_map(|(k, v)| {
            let n = k
                .strip_prefix("public-keys/")?
                .strip_suffix("/openssh-key")?;
            Some((n.parse().ok()?, v.as_str()))
        })
        .collect();
    found.sort();
    let values = found
        .into_iter()
        .map(|(n, v)| (format!("meta-data/public-keys/{n}/openssh-key"), v));
    crate::ssh_keys::from_values(values, warnings)
}

fn network(md: &Metadata, warnings: &mut Vec<String>, errors: &mut Vec<String>) -> Network {
    const MACS: &str = "network/interfaces/macs/";
    let mut macs: Vec<&str> = md
        .leaves
        .keys()
        .filter_map(|k| k.strip_prefix(MACS)?.split_once('/').map(|(m, _)| m))
        .collect();
    macs.dedup();
    let mut nics = Vec::new();
    for m in macs {
        let get = |leaf: &str| md.get(&format!("{MACS}{m}/{leaf}")).map(str::to_string);
        let mac: MacAddr = match m.parse() {
            Ok(mac) => mac,
            Err(e) => {
                errors.push(format!("{MACS}{m}: {e}"));
                continue;
            }
        };
        let Some(index) = get("device-number").and_then(|d| d.parse::<u32>().ok()) else {
            errors.push(format!("{MACS}{m}/device-number: missing or not a number"));
            continue;
        };
        nics.push(nic(mac, index, &get, warnings, errors));
    }
    nics.sort_by_key(|n| n.index);
    for pair in nics.windows(2) {
        if pair[0].index == pair[1].index {
            errors.push(format!(
                "{} and {} both have device-number {}",
                pair[0].mac, pair[1].mac, pair[0].index
            ));
        }
    }
    // The primary NIC (lowest device number, normally 0) is left to the DHCP client.
    if let Some(first) = nics.first_mut() {
        first.method = Method::Dhcp;
        first.addresses.clear();
        first.gateway = None;
    }
    Network {
        configure: true,
        nics,
        dns: Vec::new(),
        search: Vec::new(),
        derive_all_prefixed: false,
        mac_prefix: derive::DEFAULT_MAC_PREFIX,
        dhcp_default_route: true,
        ..Network::default()
    }
}

fn nic(
    mac: MacAddr,
    index: u32,
    get: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> Nic {
    let mut addresses = Vec::new();
    let mut gateway = None;
    let subnet = get("subnet-ipv4-cidr-block").map(|s| s.parse::<Cidr>());
    let ips = get("local-ipv4s").unwrap_or_default();
    match subnet {
        Some(Ok(net)) if net.addr.is_ipv4() => {
            for ip in ips.lines().map(str::trim).filter(|l| !l.is_empty()) {
                match ip.parse::<Ipv4Addr>() {
                    Ok(a) if net.contains(a.into()) => addresses.push(Cidr {
                        addr: a.into(),
                        prefix: net.prefix,
                    }),
                    _ => errors.push(format!(
                        "{mac} local-ipv4s: {ip:?} is not an address in {net}"
                    )),
                }
            }
            // The VPC router is the subnet's first address.
            if let IpAddr::V4(base) = net.network().addr {
                gateway = Some(Ipv4Addr::from(u32::from(base) + 1));
            }
        }
        Some(_) => errors.push(format!("{mac} subnet-ipv4-cidr-block: not an IPv4 CIDR")),
        None if !ips.is_empty() => warnings.push(format!(
            "{mac}: no subnet-ipv4-cidr-block; its addresses are left out"
        )),
        None => {}
    }
    let prefix6 = get("subnet-ipv6-cidr-blocks")
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<Cidr>().ok()))
        .map_or(64, |c| c.prefix);
    for ip in get("ipv6s")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match ip.parse::<std::net::Ipv6Addr>() {
            Ok(a) => addresses.push(Cidr {
                addr: a.into(),
                prefix: prefix6,
            }),
            Err(_) => errors.push(format!("{mac} ipv6s: {ip:?} is not an IPv6 address")),
        }
    }
    Nic {
        addresses,
        gateway,
        ..Nic::new(index, mac, Method::Static, Ip6Method::Auto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        Metadata {
            leaves: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Metadata::default()
        }
    }

    #[test]
    fn two_nics_ordered_by_device_number() {
        let m = md(&[
            ("instance-id", "i-0123456789abcdef0"),
            ("local-hostname", "ip-10-0-1-10.ec2.internal"),
            ("placement/availability-zone", "eu-west-1b"),
            ("public-keys/1/openssh-key", "ssh-ed25519 BBBBC3NzaC1lZDI1NTE5 b\n"),
            (
                "public-keys/0/openssh-key",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 a\nssh-ed25519 BBBBC3NzaC1lZDI1NTE5 b",
            ),
            (
                "public-keys/2/openssh-key",
                "ssh-ed25519 CCCCC3NzaC1lZDI1NTE5 c\ncommand=\"/bin/evil\" ssh-ed25519 CCCCC3NzaC1lZDI1NTE5 c",
            ),
            (
                "network/interfaces/macs/0e:00:00:00:00:02/device-number",
                "1",
            ),
            (
                "network/interfaces/macs/0e:00:00:00:00:02/local-ipv4s",
                "10.0.2.20\n10.0.2.21",
            ),
            (
                "network/interfaces/macs/0e:00:00:00:00:02/subnet-ipv4-cidr-block",
                "10.0.2.0/24",
            ),
            (
                "network/interfaces/macs/0e:00:00:00:00:01/device-number",
                "0",
            ),
            (
                "network/interfaces/macs/0e:00:00:00:00:01/local-ipv4s",
                "10.0.1.10",
            ),
            (
                "network/interfaces/macs/0e:00:00:00:00:01/subnet-ipv4-cidr-block",
                "10.0.1.0/24",
            ),
        ]);
        let c = to_context(&m, &Origin::Ec2("test".into())).unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let h = c.hostname.clone().unwrap();
        assert_eq!(
            (h.name.as_str(), h.domain.as_deref()),
            ("ip-10-0-1-10", Some("ec2.internal"))
        );
        assert_eq!(
            c.ssh_keys,
            [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 a",
                "ssh-ed25519 BBBBC3NzaC1lZDI1NTE5 b"
            ],
            "the value with a smuggled command= line is left out whole"
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with("meta-data/public-keys/2/openssh-key:")),
            "{:?}",
            c.warnings
        );
        let ec2 = c.ec2.clone().unwrap();
        assert_eq!(ec2.region.as_deref(), Some("eu-west-1"));
        let n = &c.network.nics;
        assert_eq!((n[0].index, n[0].method), (0, Method::Dhcp));
        assert!(n[0].addresses.is_empty());
        assert_eq!(n[1].method, Method::Static);
        let a: Vec<String> = n[1].addresses.iter().map(ToString::to_string).collect();
        assert_eq!(a, ["10.0.2.20/24", "10.0.2.21/24"]);
        assert_eq!(n[1].gateway, Some("10.0.2.1".parse().unwrap()));
        // Reuses the multi-gateway rules: the secondary NIC's gateway goes to table 101.
        let plan = crate::plan::build(&c, &Default::default());
        let e = &plan.network.ethernets;
        assert!(e["eth0"].dhcp4 && e["eth0"].routes.is_empty());
        assert!(
            e["eth1"].routes.iter().all(|r| r.table == 101),
            "{:?}",
            e["eth1"].routes
        );
        assert_eq!(e["eth1"].routing_policy.len(), 2);
    }

    #[test]
    fn a_bad_instance_id_is_refused() {
        for bad in ["", "../../etc", "i-1/2", ".hidden"] {
            assert!(
                to_context(&md(&[("instance-id", bad)]), &Origin::Ec2("test".into())).is_err(),
                "{bad}"
            );
        }
    }
}
