//! Bonds, VLANs and bridges of the network plan, in netplan version-2 terms: the device (its
//! kind, members by their live names, parameters, MAC) and the same L3 settings as an
//! ethernet. Members are found by MAC among the live links and keep no addresses.

use super::network::{ethernet, Ethernet, Netplan};
use super::routes::MainDefaults;
use crate::context::{valid_ifname, Bond, MacAddr, Network, Nic};
use crate::facts::Facts;
use serde::Serialize;
use std::collections::BTreeSet;

/// One bond, VLAN or bridge. `l3.match` is unset: the device is known by its name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Device {
    #[serde(flatten)]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macaddress: Option<MacAddr>,
    #[serde(flatten)]
    pub l3: Ethernet,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Kind {
    Bond {
        interfaces: Vec<String>,
        parameters: BondParameters,
    },
    Vlan {
        id: u16,
        link: String,
    },
    Bridge {
        interfaces: Vec<String>,
    },
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BondParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(
        rename = "mii-monitor-interval",
        skip_serializing_if = "Option::is_none"
    )]
    pub mii_monitor_interval: Option<u32>,
    #[serde(
        rename = "transmit-hash-policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub transmit_hash_policy: Option<String>,
}

/// The kernel's bond modes (netplan's names), in the kernel's numbering.
pub const BOND_MODES: [&str; 7] = [
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
];

/// The kernel's transmit hash policies, in its numbering.
pub const HASH_POLICIES: [&str; 6] = [
    "layer2",
    "layer3+4",
    "layer2+3",
    "encap2+3",
    "encap3+4",
    "vlan+srcmac",
];

/// Tables and rule priorities of devices start past those of the context's NICs.
const INDEX_BASE: u32 = 200;

/// The MACs of every bond's and bridge's members: they carry no L3 settings of their own.
pub fn member_macs(net: &Network) -> BTreeSet<MacAddr> {
    let bonds = net.bonds.iter().flat_map(|b| b.members.iter());
    bonds
        .chain(net.bridges.iter().flat_map(|b| b.members.iter()))
        .copied()
        .collect()
}

/// Adds the network's bonds, bridges and VLANs to `plan`. An invalid bond parameter leaves
/// that bond (and what sits on it) out, with an error.
pub fn plan(
    net: &Network,
    facts: &Facts,
    main: &mut MainDefaults,
    plan: &mut Netplan,
    (warnings, errors): (&mut Vec<String>, &mut Vec<String>),
) {
    let mut next = INDEX_BASE;
    let mut l3 = |config: &Nic, name: &str| {
        let mut c = config.clone();
        c.index = next;
        next += 1;
        let mut e = ethernet(&c, main);
        e.match_.macaddress = MacAddr([0; 6]);
        e.label = name.to_string();
        e.index = None;
        e
    };
    let mac = |c: &Nic| (c.mac != MacAddr([0; 6])).then_some(c.mac);
    let named = |kind: &str, name: &str, errors: &mut Vec<String>| {
        let ok = valid_ifname(name);
        if !ok {
            errors.push(format!(
                "{kind}: a name is not an interface name (1 to 15 letters, digits, _.-@); left out"
            ));
        }
        ok
    };
    for b in &net.bonds {
        if !named("bonds", &b.name, errors) {
            continue;
        }
        let Some(parameters) = bond_parameters(b, errors) else {
            continue;
        };
        let interfaces = members(&b.name, &b.interfaces, &b.members, facts, warnings);
        let kind = Kind::Bond {
            interfaces,
            parameters,
        };
        let dev = Device {
            kind,
            macaddress: mac(&b.config),
            l3: l3(&b.config, &b.name),
        };
        plan.bonds.insert(b.name.clone(), dev);
    }
    for b in &net.bridges {
        if !named("bridges", &b.name, errors) {
            continue;
        }
        let interfaces = members(&b.name, &b.interfaces, &b.members, facts, warnings);
        let dev = Device {
            kind: Kind::Bridge { interfaces },
            macaddress: mac(&b.config),
            l3: l3(&b.config, &b.name),
        };
        plan.bridges.insert(b.name.clone(), dev);
    }
    for v in &net.vlans {
        if !named("vlans", &v.name, errors) {
            continue;
        }
        let parent = if plan.bonds.contains_key(&v.link) || plan.bridges.contains_key(&v.link) {
            Some(v.link.clone())
        } else {
            v.link_mac
                .and_then(|m| facts.links.by_mac(m))
                .map(|l| l.name.clone())
        };
        let Some(link) = parent else {
            warnings.push(format!(
                "VLAN {} (id {}): its link {} is not on this machine; left out",
                v.name, v.id, v.link
            ));
            continue;
        };
        let dev = Device {
            kind: Kind::Vlan { id: v.id, link },
            macaddress: mac(&v.config),
            l3: l3(&v.config, &v.name),
        };
        plan.vlans.insert(v.name.clone(), dev);
    }
}

/// The bond's parameters, or None (an error) when one is not the kernel's.
fn bond_parameters(b: &Bond, errors: &mut Vec<String>) -> Option<BondParameters> {
    let what = format!("bonds.{}.parameters", b.name);
    if b.mode.as_deref().is_some_and(|m| !BOND_MODES.contains(&m)) {
        errors.push(format!("{what}.mode: not a bond mode; bond left out"));
        return None;
    }
    let hash = b.transmit_hash_policy.as_deref();
    if hash.is_some_and(|h| !HASH_POLICIES.contains(&h)) {
        errors.push(format!(
            "{what}.transmit-hash-policy: not a transmit hash policy; bond left out"
        ));
        return None;
    }
    Some(BondParameters {
        mode: b.mode.clone(),
        mii_monitor_interval: b.mii_monitor_interval,
        transmit_hash_policy: b.transmit_hash_policy.clone(),
    })
}

/// The live names of a bond's or bridge's members, each missing one a warning.
fn members(
    dev: &str,
    names: &[String],
    macs: &[MacAddr],
    facts: &Facts,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in macs {
        match facts.links.by_mac(*m) {
            Some(l) => out.push(l.name.clone()),
            None => warnings.push(format!(
                "{dev}: member {m} matches no link on this machine; left out"
            )),
        }
    }
    if macs.len() < names.len() {
        warnings.push(format!(
            "{dev}: {} of its interfaces ({}) have no MAC in the source; only members matched \
             by MAC are enslaved",
            names.len() - macs.len(),
            names.join(", ")
        ));
    }
    out
}

#[cfg(test)]
#[path = "devices_tests.rs"]
pub(crate) mod tests;
