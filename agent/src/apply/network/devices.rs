//! Bonds, bridges and VLANs of the plan over rtnetlink: each device created when missing
//! (with its kind's parameters), its MAC set, its members enslaved, then its L3 settings as
//! for a NIC. vmctx records the devices it configured by name, and deletes only those it
//! created once the plan no longer has them.

use super::{act, converge_link, remove_unwanted, Added, Keys, REMOVED};
use crate::apply::Apply;
use crate::netlink::{self, LiveLink, Netlink, RuleKey};
use crate::plan::{BondParameters, Device, Kind, Netplan, BOND_MODES, HASH_POLICIES};
use rtnetlink::packet_route::link::{BondMode, BondXmitHashPolicy, InfoBond, LinkMessage};
use rtnetlink::packet_route::rule::RuleMessage;
use rtnetlink::{LinkBond, LinkBridge, LinkVlan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A device vmctx configured, persisted in the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// vmctx made it (it deletes it when the plan drops it); otherwise it was there before and
    /// only what vmctx added to it is taken back.
    pub created: bool,
    #[serde(flatten)]
    pub added: Added,
}

type Rules = Vec<(RuleKey, RuleMessage)>;

/// Every planned device, in the order they can be made: bonds, bridges, then VLANs (which may
/// sit on a bond or bridge).
fn planned(plan: &Netplan) -> impl Iterator<Item = (&String, &Device)> {
    plan.bonds.iter().chain(&plan.bridges).chain(&plan.vlans)
}

pub(super) async fn converge(
    ap: &mut Apply,
    nl: &Netlink,
    plan: &Netplan,
    owned: &mut BTreeMap<String, Owned>,
    rules: &mut Rules,
) -> netlink::Result<()> {
    // Devices the plan dropped first: a new device may take the name or the members.
    let gone: Vec<String> = owned
        .keys()
        .filter(|n| !planned(plan).any(|(p, _)| p == *n))
        .cloned()
        .collect();
    for name in gone {
        let mine = owned.remove(&name).expect("listed above");
        if let Some(kept) = release(ap, nl, &name, mine, rules).await? {
            owned.insert(name, kept);
        }
    }
    for (name, dev) in planned(plan) {
        let live = nl.links().await?;
        let Some(link) = ensure(ap, nl, name, dev, &live, owned).await? else {
            continue;
        };
        if let Kind::Bond { parameters, .. } = &dev.kind {
            bond_settings(ap, nl, name, dev, parameters, &link).await?;
        }
        let mine = owned.entry(name.clone()).or_default();
        if let Some(mac) = dev.macaddress.filter(|m| *m != link.current_mac) {
            let what = format!("{name} mac {mac}");
            act(ap, "link", &what, "set", nl.set_mac(link.index, mac)).await;
        }
        members(ap, nl, name, dev, &link, &live, mine.created).await;
        // As it is now: its parameters, MAC or members may have changed its state.
        let fresh = nl.links().await?.into_iter().find(|l| l.name == *name);
        let link = fresh.unwrap_or(link);
        let want = Keys::of(&dev.l3);
        converge_link(ap, nl, &link, (&dev.l3, &want), &mut mine.added, rules).await?;
    }
    Ok(())
}

/// The live device named `name`, created when missing (None: in a dry run, or it failed).
async fn ensure(
    ap: &mut Apply,
    nl: &Netlink,
    name: &str,
    dev: &Device,
    live: &[LiveLink],
    owned: &mut BTreeMap<String, Owned>,
) -> netlink::Result<Option<LiveLink>> {
    if let Some(l) = live.iter().find(|l| l.name == name) {
        return Ok(Some(l.clone()));
    }
    let parent = match &dev.kind {
        Kind::Vlan { link, .. } => match live.iter().find(|l| l.name == *link) {
            Some(p) => Some(p.index),
            // In a dry run its parent bond may be still to make.
            None if ap.dry_run => Some(0),
            None => {
                ap.failed(
                    "link",
                    name,
                    format!("its link {link} is not on this machine"),
                );
                return Ok(None);
            }
        },
        _ => None,
    };
    let msg = message(name, dev, parent.unwrap_or(0));
    if !act(ap, "link", name, &describe(dev), nl.add_link(msg)).await {
        return Ok(None);
    }
    if ap.dry_run {
        for m in interfaces(dev) {
            ap.changed("link", &format!("{m} master {name}"), "enslaved");
        }
        return Ok(None);
    }
    owned.entry(name.to_string()).or_default().created = true;
    let live = nl.links().await?;
    Ok(live.into_iter().find(|l| l.name == name))
}

fn interfaces(dev: &Device) -> &[String] {
    match &dev.kind {
        Kind::Bond { interfaces, .. } | Kind::Bridge { interfaces } => interfaces,
        Kind::Vlan { .. } => &[],
    }
}

fn describe(dev: &Device) -> String {
    match &dev.kind {
        Kind::Bond { parameters, .. } => format!(
            "created (bond {})",
            parameters.mode.as_deref().unwrap_or("balance-rr")
        ),
        Kind::Bridge { .. } => "created (bridge)".into(),
        Kind::Vlan { id, link } => format!("created (vlan {id} on {link})"),
    }
}

/// The request that creates the device: its kind and the kind's parameters (`parent`: the
/// VLAN's link index).
pub fn message(name: &str, dev: &Device, parent: u32) -> LinkMessage {
    match &dev.kind {
        Kind::Bond { parameters: p, .. } => {
            let mut b = LinkBond::new(name);
            let pos = |list: &[&str], v: &str| list.iter().position(|x| *x == v);
            // The plan holds only known names; their position is the kernel's number.
            if let Some(m) = p.mode.as_deref().and_then(|m| pos(&BOND_MODES, m)) {
                b = b.mode(BondMode::from(m as u8));
            }
            if let Some(ms) = p.mii_monitor_interval {
                b = b.miimon(ms);
            }
            let hash = p.transmit_hash_policy.as_deref();
            if let Some(h) = hash.and_then(|h| pos(&HASH_POLICIES, h)) {
                b = b.xmit_hash_policy(BondXmitHashPolicy::from(h as u8));
            }
            b.build()
        }
        Kind::Bridge { .. } => LinkBridge::new(name).build(),
        Kind::Vlan { id, .. } => LinkVlan::new(name, parent, *id).build(),
    }
}

/// An existing bond (one the bonding module made on load, or an earlier apply's) gets the
/// planned parameters; a new mode needs it down (and without members).
async fn bond_settings(
    ap: &mut Apply,
    nl: &Netlink,
    name: &str,
    dev: &Device,
    p: &BondParameters,
    link: &LiveLink,
) -> netlink::Result<()> {
    let live = nl.bond_settings(link.index).await?;
    let want = netlink::bond_data(message(name, dev, 0).attributes);
    if want.iter().all(|w| live.contains(w)) {
        return Ok(());
    }
    let mode_differs = want
        .iter()
        .any(|w| matches!(w, InfoBond::Mode(_)) && !live.contains(w));
    let what = format!("{name} parameters");
    let detail = format!(
        "mode {}, mii-monitor-interval {}, transmit-hash-policy {}",
        p.mode.as_deref().unwrap_or("-"),
        p.mii_monitor_interval.map_or("-".into(), |m| m.to_string()),
        p.transmit_hash_policy.as_deref().unwrap_or("-")
    );
    let change = async {
        if mode_differs && link.up {
            nl.set_down(link.index).await?;
        }
        nl.change_link(message(name, dev, 0)).await
    };
    act(ap, "link", &what, &detail, change).await;
    Ok(())
}

/// Enslaves the planned members; releases the members of a device vmctx created that the plan
/// no longer lists.
async fn members(
    ap: &mut Apply,
    nl: &Netlink,
    name: &str,
    dev: &Device,
    link: &LiveLink,
    live: &[LiveLink],
    created: bool,
) {
    let bond = matches!(dev.kind, Kind::Bond { .. });
    let want = interfaces(dev);
    for m in want {
        let what = format!("{m} master {name}");
        match live.iter().find(|l| l.name == *m) {
            Some(l) if l.master == Some(link.index) => ap.unchanged("link", &what, "enslaved"),
            Some(l) => {
                let op = nl.set_master(l.index, Some(link.index), bond);
                act(ap, "link", &what, "enslaved", op).await;
            }
            None => ap.failed("link", &what, "no such link"),
        }
    }
    if !created {
        return;
    }
    for l in live.iter().filter(|l| l.master == Some(link.index)) {
        if !want.contains(&l.name) {
            let what = format!("{} master {name}", l.name);
            act(
                ap,
                "link",
                &what,
                REMOVED,
                nl.set_master(l.index, None, false),
            )
            .await;
        }
    }
}

/// A device the plan dropped: deleted when vmctx created it (its addresses and routes go with
/// it; its rules are removed), else stripped of what vmctx added. Returns what is still to
/// remove later.
async fn release(
    ap: &mut Apply,
    nl: &Netlink,
    name: &str,
    mut mine: Owned,
    rules: &mut Rules,
) -> netlink::Result<Option<Owned>> {
    let live = nl.links().await?;
    let link = live.iter().find(|l| l.name == name);
    if let (Some(link), false) = (link, mine.created) {
        remove_unwanted(ap, nl, link, &Keys::default(), &mut mine.added, rules).await?;
        return Ok((!mine.added.is_empty()).then_some(mine));
    }
    let deleted = match link {
        Some(l) => act(ap, "link", name, REMOVED, nl.del_link(l.index)).await,
        None => true,
    };
    if !deleted {
        return Ok(Some(mine));
    }
    // The link is gone: its addresses and routes went with it, its rules did not.
    mine.added.addresses.clear();
    mine.added.routes.clear();
    for r in std::mem::take(&mut mine.added.rules) {
        let what = format!("from {} lookup {}", r.from, r.table);
        if let Some(pos) = rules.iter().position(|(l, _)| *l == r) {
            let (_, msg) = rules.remove(pos);
            if !act(ap, "rule", &what, REMOVED, nl.del_rule(msg)).await {
                mine.added.rules.push(r);
            }
        }
    }
    Ok((!mine.added.rules.is_empty()).then_some(mine))
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
