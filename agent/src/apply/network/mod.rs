//! Executes the network part of the plan over rtnetlink: links found by MAC, MTU and up,
//! sysctls, addresses, routes and rules, each as the plan lists it. vmctx records what it added
//! (by MAC) and, when the plan changes, removes what it added and no longer wants — never an
//! address, route or rule it did not add, and nothing of a NIC the plan leaves alone.

mod devices;

pub use devices::Owned;

use super::Apply;
use crate::context::{Cidr, MacAddr};
use crate::netlink::{self, same_route, LiveLink, Netlink, RouteKey, RuleKey};
use crate::plan::{Ethernet, Netplan, Route, Rule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What vmctx added to one link, persisted in the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// The context's NIC (x of `ETHx`) it was added for: kept while that NIC is left alone,
    /// even when its MAC is the invalid value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<u32>,
    pub addresses: Vec<Cidr>,
    pub routes: Vec<RouteKey>,
    pub rules: Vec<RuleKey>,
}

/// What one link should carry, in the kernel's terms (nothing: a link vmctx releases).
#[derive(Default)]
struct Keys<'p> {
    addresses: &'p [Cidr],
    routes: Vec<RouteKey>,
    rules: Vec<RuleKey>,
}

impl<'p> Keys<'p> {
    fn of(plan: &'p Ethernet) -> Self {
        Keys {
            addresses: &plan.addresses,
            routes: plan.routes.iter().map(route_key).collect(),
            rules: plan.routing_policy.iter().map(rule_key).collect(),
        }
    }
}

fn route_key(r: &Route) -> RouteKey {
    RouteKey {
        to: r.to,
        via: r.via,
        src: r.src,
        table: r.table,
        metric: r.metric,
    }
}

fn rule_key(r: &Rule) -> RuleKey {
    RuleKey {
        from: r.from,
        table: r.table,
        priority: r.priority,
    }
}

impl Added {
    fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }
}

/// Brings the links to the plan; `added` (NICs) and `owned` (bonds, bridges, VLANs) are
/// updated to what vmctx now owns.
pub fn apply(
    ap: &mut Apply,
    plan: &Netplan,
    added: &mut BTreeMap<MacAddr, Added>,
    owned: &mut BTreeMap<String, Owned>,
) {
    let done = netlink::Shared::run(|nl| async {
        let mut rules = nl.rules().await?;
        converge(ap, nl, plan, added, &mut rules).await?;
        devices::converge(ap, nl, plan, owned, &mut rules).await
    });
    if let Err(e) = done.and_then(|r| r) {
        ap.failed("network", "netlink", e);
    }
}

/// Whether what vmctx added under `mac` belongs to a NIC the plan leaves alone.
fn held(plan: &Netplan, mac: MacAddr, mine: &Added) -> bool {
    plan.left_alone
        .iter()
        .any(|h| h.mac == Some(mac) || (h.mac.is_none() && mine.nic == Some(h.index)))
}

async fn converge(
    ap: &mut Apply,
    nl: &Netlink,
    plan: &Netplan,
    added: &mut BTreeMap<MacAddr, Added>,
    rules: &mut Vec<(RuleKey, rtnetlink::packet_route::rule::RuleMessage)>,
) -> netlink::Result<()> {
    let live = nl.links().await?;
    for (name, e) in &plan.ethernets {
        let mac = e.match_.macaddress;
        let want = Keys::of(e);
        let Some(link) = live.iter().find(|l| l.mac == mac) else {
            if let Some(mine) = added.remove(&mac) {
                forget_gone(ap, nl, mac, &e.label, mine, added, rules).await;
            }
            ap.unchanged(
                "link",
                &e.label,
                format!("no link with MAC {mac} (not attached), planned as {name}; configured when it appears"),
            );
            continue;
        };
        let mine = added.entry(mac).or_default();
        mine.nic = e.index;
        converge_link(ap, nl, link, (e, &want), mine, rules).await?;
    }
    // Links vmctx configured before that the plan no longer configures: take back what vmctx
    // added (their other settings are left as they are). NICs left alone keep it all.
    let gone: Vec<MacAddr> = added
        .iter()
        .filter(|(m, a)| {
            !plan.ethernets.values().any(|e| e.match_.macaddress == **m) && !held(plan, **m, a)
        })
        .map(|(m, _)| *m)
        .collect();
    for mac in gone {
        if let Some(link) = live.iter().find(|l| l.mac == mac) {
            let mine = added.get_mut(&mac).expect("listed above");
            remove_unwanted(ap, nl, link, &Keys::default(), mine, rules).await?;
            added.remove(&mac);
        } else if let Some(mine) = added.remove(&mac) {
            forget_gone(ap, nl, mac, &mac.to_string(), mine, added, rules).await;
        }
    }
    added.retain(|_, a| !a.is_empty());
    Ok(())
}

async fn converge_link(
    ap: &mut Apply,
    nl: &Netlink,
    link: &LiveLink,
    (plan, want): (&Ethernet, &Keys<'_>),
    mine: &mut Added,
    rules: &mut Vec<(RuleKey, rtnetlink::packet_route::rule::RuleMessage)>,
) -> netlink::Result<()> {
    let target = format!("{} ({})", link.name, plan.label);
    let mtu = plan.mtu.filter(|m| *m != link.mtu);
    if mtu.is_some() || !link.up {
        let detail = match mtu {
            Some(m) => format!("mtu {} → {m}, up", link.mtu),
            None => "up".into(),
        };
        if !act(
            ap,
            "link",
            &target,
            &detail,
            nl.set_link(link.index, mtu, true),
        )
        .await
        {
            return Ok(());
        }
    } else {
        ap.unchanged("link", &target, "up");
    }

    ipv6_sysctls(ap, link, plan, &target);
    remove_unwanted(ap, nl, link, want, mine, rules).await?;

    let live_addrs = nl.addresses(link.index).await?;
    for a in &plan.addresses {
        let what = format!("{target} {a}");
        if live_addrs.iter().any(|(l, _)| l == a) {
            ap.unchanged("address", &what, "present");
            continue;
        }
        if act(
            ap,
            "address",
            &what,
            "added",
            nl.add_address(link.index, *a),
        )
        .await
        {
            push_unique(&mut mine.addresses, *a);
        }
    }

    let live_routes = nl.routes(link.index).await?;
    for r in &want.routes {
        let what = format!(
            "{target} {} via {} table {}",
            r.to,
            r.via.map_or("link".into(), |v| v.to_string()),
            r.table
        );
        if live_routes.iter().any(|(l, _)| same_route(l, r)) {
            ap.unchanged("route", &what, "present");
            continue;
        }
        if act(ap, "route", &what, "added", nl.add_route(link.index, r)).await {
            push_unique(&mut mine.routes, r.clone());
        }
    }

    for r in &want.rules {
        let what = format!("from {} lookup {} priority {}", r.from, r.table, r.priority);
        if rules.iter().any(|(l, _)| l == r) {
            ap.unchanged("rule", &what, "present");
            continue;
        }
        if act(ap, "rule", &what, "added", nl.add_rule(r)).await {
            push_unique(&mut mine.rules, r.clone());
        }
    }
    Ok(())
}

/// `accept_ra` and `disable_ipv6` of the link, in the current network namespace's /proc.
fn ipv6_sysctls(ap: &mut Apply, link: &LiveLink, plan: &Ethernet, target: &str) {
    let dir = std::path::Path::new("/proc/sys/net/ipv6/conf").join(&link.name);
    // Planned with IPv6 off (a fact): no IPv6 sysctl is in the plan. A link without the tree
    // when the kernel has IPv6 is one IPv6 does not run on (it has no MAC-layer support).
    if !dir.exists() {
        return;
    }
    let settings = [
        ("disable_ipv6", Some(plan.disable_ipv6)),
        ("accept_ra", plan.accept_ra),
    ];
    for (key, value) in settings {
        let Some(on) = value else { continue };
        let path = dir.join(key);
        let want_v = if on { "1" } else { "0" };
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let what = format!("{target} {key}");
        // accept_ra 2 (accept even when forwarding) also counts as on.
        let same = match current.trim() {
            "0" => !on,
            "" => true,
            _ => on,
        };
        if same {
            ap.unchanged("sysctl", &what, current.trim().to_string());
        } else if ap.dry_run {
            ap.changed("sysctl", &what, want_v);
        } else {
            match std::fs::write(&path, want_v) {
                Ok(()) => ap.changed("sysctl", &what, want_v),
                Err(e) => ap.failed("sysctl", &what, e),
            }
        }
    }
}

/// A link vmctx configured is gone (detached): its addresses and routes went with it, and are
/// forgotten; its `from` rules name no link and stay in the kernel, so they are removed (one
/// that cannot be is kept in the state, to be removed later).
async fn forget_gone(
    ap: &mut Apply,
    nl: &Netlink,
    mac: MacAddr,
    label: &str,
    mine: Added,
    added: &mut BTreeMap<MacAddr, Added>,
    rules: &mut Vec<(RuleKey, rtnetlink::packet_route::rule::RuleMessage)>,
) {
    let mut kept = Vec::new();
    for r in mine.rules {
        let what = format!("from {} lookup {}", r.from, r.table);
        if let Some(pos) = rules.iter().position(|(l, _)| *l == r) {
            let (_, msg) = rules.remove(pos);
            if !act(
                ap,
                "rule",
                &what,
                "removed (its link is gone)",
                nl.del_rule(msg),
            )
            .await
            {
                kept.push(r);
            }
        }
    }
    if !mine.addresses.is_empty() || !mine.routes.is_empty() {
        let list: Vec<String> = mine.addresses.iter().map(|a| a.to_string()).collect();
        ap.unchanged(
            "link",
            label,
            format!(
                "gone: forgot the {} address(es) ({}) and {} route(s) vmctx had added",
                mine.addresses.len(),
                list.join(", "),
                mine.routes.len()
            ),
        );
    }
    if !kept.is_empty() {
        added.insert(
            mac,
            Added {
                rules: kept,
                ..Added::default()
            },
        );
    }
}

/// Deletes what vmctx added to `link` that `want` no longer has: rules, routes, then addresses.
async fn remove_unwanted(
    ap: &mut Apply,
    nl: &Netlink,
    link: &LiveLink,
    want: &Keys<'_>,
    mine: &mut Added,
    rules: &mut Vec<(RuleKey, rtnetlink::packet_route::rule::RuleMessage)>,
) -> netlink::Result<()> {
    for r in mine
        .rules
        .clone()
        .into_iter()
        .filter(|r| !want.rules.contains(r))
    {
        let what = format!("from {} lookup {}", r.from, r.table);
        if let Some(pos) = rules.iter().position(|(l, _)| *l == r) {
            let (_, msg) = rules.remove(pos);
            if !act(ap, "rule", &what, REMOVED, nl.del_rule(msg)).await {
                continue;
            }
        }
        mine.rules.retain(|x| *x != r);
    }
    let live_routes = nl.routes(link.index).await?;
    for r in mine
        .routes
        .clone()
        .into_iter()
        .filter(|r| !want.routes.contains(r))
    {
        let what = format!("{} {} table {}", link.name, r.to, r.table);
        if let Some((_, msg)) = live_routes.iter().find(|(l, _)| same_route(l, &r)) {
            if !act(ap, "route", &what, REMOVED, nl.del_route(msg.clone())).await {
                continue;
            }
        }
        mine.routes.retain(|x| *x != r);
    }
    let live_addrs = nl.addresses(link.index).await?;
    for a in mine
        .addresses
        .clone()
        .into_iter()
        .filter(|a| !want.addresses.contains(a))
    {
        let what = format!("{} {a}", link.name);
        if let Some((_, msg)) = live_addrs.iter().find(|(l, _)| *l == a) {
            if !act(ap, "address", &what, REMOVED, nl.del_address(msg.clone())).await {
                continue;
            }
        }
        mine.addresses.retain(|x| *x != a);
    }
    Ok(())
}

const REMOVED: &str = "removed (no longer in the context)";

/// Runs a netlink change (not in a dry run: the future is dropped unpolled) and reports it.
async fn act(
    ap: &mut Apply,
    kind: &'static str,
    what: &str,
    done: &str,
    op: impl std::future::Future<Output = netlink::Result<()>>,
) -> bool {
    let result = if ap.dry_run { Ok(()) } else { op.await };
    match result {
        Ok(()) => {
            ap.changed(kind, what, done);
            true
        }
        Err(e) => {
            ap.failed(kind, what, e);
            false
        }
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}
