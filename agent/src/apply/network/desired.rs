//! What each link should carry, from the context: addresses, routes (on-link before gateway
//! routes), and the per-NIC tables and `from` rules of a multi-gateway VM. Pure.

use crate::context::{Cidr, Ip6Method, MacAddr, Method, Network, Nic};
use crate::derive;
use crate::facts::Links;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;
/// Tables of the second and later NICs with a gateway: `TABLE_BASE + ETHx index`.
pub const TABLE_BASE: u32 = 100;
/// Priorities of the `from <address>` rules: before the main table's rule (32766).
pub const RULE_PRIORITY_BASE: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkWant {
    pub mac: MacAddr,
    /// `ETHx` for the report; the live name comes from the link found by MAC.
    pub label: String,
    /// DHCP NICs are only brought up: their addresses belong to the system's DHCP client.
    pub dhcp: bool,
    pub mtu: Option<u32>,
    /// IPv6 router advertisements: off for static addressing (so a stray RA cannot add an
    /// address the context did not ask for), on for SLAAC and DHCPv6, untouched for `skip`.
    pub accept_ra: Option<bool>,
    /// `IP6_METHOD=disable`: no IPv6 on this link at all.
    pub disable_ipv6: bool,
    pub addresses: Vec<Cidr>,
    pub routes: Vec<RouteWant>,
    pub rules: Vec<RuleWant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteWant {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    /// Preferred source (routes in a NIC's own table).
    pub src: Option<IpAddr>,
    pub table: u32,
    pub metric: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleWant {
    pub from: Cidr,
    pub table: u32,
    pub priority: u32,
}

pub fn desired(net: &Network, links: &Links) -> Vec<LinkWant> {
    if !net.configure {
        return Vec::new();
    }
    let mut out = Vec::new();
    // The first NIC with an IPv4 (IPv6) gateway owns the main table's default route; later
    // ones get their own table so replies leave by the NIC the request came in on.
    // On EC2 the primary NIC's DHCP lease holds the main default route already.
    let (mut main4, mut main6) = (net.dhcp_default_route, net.dhcp_default_route);
    for nic in net.nics.iter().filter(|n| n.method != Method::Skip) {
        let mut want = LinkWant {
            mac: nic.mac,
            label: format!("ETH{}", nic.index),
            dhcp: nic.method == Method::Dhcp,
            mtu: nic.mtu,
            accept_ra: match nic.ip6_method {
                Ip6Method::Static | Ip6Method::Disable => Some(false),
                Ip6Method::Auto | Ip6Method::Dhcp => Some(true),
                Ip6Method::Skip => None,
            },
            disable_ipv6: nic.ip6_method == Ip6Method::Disable,
            addresses: nic.addresses.clone(),
            routes: Vec::new(),
            rules: Vec::new(),
        };
        for (gw, metric, is_v4) in [
            (nic.gateway.map(IpAddr::V4), nic.metric, true),
            (nic.gateway6.map(IpAddr::V6), nic.metric6, false),
        ] {
            let Some(gw) = gw else { continue };
            let main = if is_v4 { &mut main4 } else { &mut main6 };
            if !*main {
                *main = true;
                want.routes
                    .push(default_route(gw, MAIN_TABLE, metric, None));
            } else {
                own_table(&mut want, nic, gw, metric);
            }
        }
        for r in &nic.routes {
            let metric = if r.to.addr.is_ipv4() {
                nic.metric
            } else {
                nic.metric6
            };
            want.routes.push(RouteWant {
                to: r.to.network(),
                via: Some(r.via),
                src: None,
                table: MAIN_TABLE,
                metric,
            });
        }
        order_routes(&mut want);
        out.push(want);
    }
    if net.derive_all_prefixed {
        for link in links.iter() {
            if let Ok(ip) = derive::mac_to_ipv4(link.mac, net.mac_prefix) {
                out.push(LinkWant {
                    mac: link.mac,
                    label: link.name.clone(),
                    dhcp: false,
                    mtu: None,
                    accept_ra: None,
                    disable_ipv6: false,
                    addresses: vec![Cidr {
                        addr: ip.into(),
                        prefix: 24,
                    }],
                    routes: Vec::new(),
                    rules: Vec::new(),
                });
            }
        }
    }
    out
}

fn default_route(gw: IpAddr, table: u32, metric: Option<u32>, src: Option<IpAddr>) -> RouteWant {
    let any = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    RouteWant {
        to: any.parse().expect("a literal"),
        via: Some(gw),
        src,
        table,
        metric,
    }
}

/// A table of this NIC's own: its subnets on-link, its default route, and a `from` rule per
/// address of the gateway's family.
fn own_table(want: &mut LinkWant, nic: &Nic, gw: IpAddr, metric: Option<u32>) {
    let table = TABLE_BASE + nic.index;
    let mine: Vec<Cidr> = nic
        .addresses
        .iter()
        .filter(|a| a.addr.is_ipv4() == gw.is_ipv4())
        .copied()
        .collect();
    for a in &mine {
        // One on-link route per subnet: a second address there (EC2's secondary private IPs)
        // must not replace it with its own src on every apply.
        if !want
            .routes
            .iter()
            .any(|r| r.table == table && r.to == a.network())
        {
            want.routes.push(RouteWant {
                to: a.network(),
                via: None,
                src: Some(a.addr),
                table,
                metric: None,
            });
        }
        let host = if a.addr.is_ipv4() { 32 } else { 128 };
        want.rules.push(RuleWant {
            from: Cidr {
                addr: a.addr,
                prefix: host,
            },
            table,
            priority: RULE_PRIORITY_BASE + nic.index,
        });
    }
    want.routes.push(default_route(
        gw,
        table,
        metric,
        mine.first().map(|a| a.addr),
    ));
}

/// On-link routes first, then routes via a gateway on this link's subnets, then the rest
/// (whose gateways those routes make reachable), default routes last.
fn order_routes(want: &mut LinkWant) {
    let subnets: Vec<Cidr> = want.addresses.iter().map(Cidr::network).collect();
    let rank = |r: &RouteWant| match r.via {
        None => 0,
        Some(_) if r.to.prefix == 0 => 3,
        Some(gw) if subnets.iter().any(|s| s.contains(gw)) => 1,
        Some(_) => 2,
    };
    want.routes.sort_by_key(|r| rank(r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::opennebula::ctx;

    fn want(text: &str) -> Vec<LinkWant> {
        desired(&ctx(text).network, &Links::default())
    }

    fn routes(w: &LinkWant) -> Vec<String> {
        w.routes
            .iter()
            .map(|r| {
                format!(
                    "{} via {:?} table {} src {:?}",
                    r.to,
                    r.via.map(|v| v.to_string()),
                    r.table,
                    r.src.map(|v| v.to_string())
                )
            })
            .collect()
    }

    #[test]
    fn single_gateway_uses_the_main_table() {
        let w = want("ETH0_MAC='02:00:0a:00:03:28'\nETH0_GATEWAY='10.0.3.1'\nETH0_ROUTES='10.9.0.0/16 via 10.0.3.254'\n");
        assert_eq!(w[0].addresses[0].to_string(), "10.0.3.40/24");
        assert_eq!(
            routes(&w[0]),
            [
                "10.9.0.0/16 via Some(\"10.0.3.254\") table 254 src None",
                "0.0.0.0/0 via Some(\"10.0.3.1\") table 254 src None"
            ]
        );
        assert!(w[0].rules.is_empty());
    }

    #[test]
    fn second_gateway_gets_its_own_table_and_rule() {
        let w = want(
            "ETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH1_MAC='02:00:0a:00:03:05'\nETH1_IP='10.0.3.5'\nETH1_GATEWAY='10.0.3.1'\nETH1_METRIC='10'\n",
        );
        assert!(w[0].rules.is_empty());
        assert_eq!(
            routes(&w[1]),
            [
                "10.0.3.0/24 via None table 101 src Some(\"10.0.3.5\")",
                "0.0.0.0/0 via Some(\"10.0.3.1\") table 101 src Some(\"10.0.3.5\")"
            ]
        );
        assert_eq!(
            w[1].rules,
            [RuleWant {
                from: "10.0.3.5/32".parse().unwrap(),
                table: 101,
                priority: 1001
            }]
        );
    }

    #[test]
    fn gateway_routes_come_after_their_on_link_path() {
        let w = want("ETH0_MAC='02:00:0a:00:03:28'\nETH0_ROUTES='10.20.0.0/16 via 10.9.0.1, 10.9.0.0/16 via 10.0.3.254'\n");
        let order: Vec<String> = w[0].routes.iter().map(|r| r.to.to_string()).collect();
        assert_eq!(order, ["10.9.0.0/16", "10.20.0.0/16"]);
    }

    #[test]
    fn dhcp_and_skip() {
        let w = want("ETH0_MAC='02:00:0a:00:03:28'\nETH0_METHOD='dhcp'\nETH1_MAC='02:00:0a:00:03:29'\nETH1_METHOD='skip'\n");
        assert_eq!(w.len(), 1);
        assert!(w[0].dhcp && w[0].addresses.is_empty());
    }
}
