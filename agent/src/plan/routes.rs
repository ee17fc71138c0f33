//! Routes and policy rules of the network plan, in netplan version-2 terms: which table each
//! gateway goes into, the `from` rules of a multi-gateway VM, and the order apply adds them in.
//! The only place these rules live: apply installs what this plans.

use crate::context::{Cidr, Nic};
use serde::{Deserialize, Serialize, Serializer};
use std::net::IpAddr;

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;
/// Tables of the second and later NICs with a gateway: `TABLE_BASE + ETHx index`.
pub const TABLE_BASE: u32 = 100;
/// Priorities of the `from <address>` rules: before the main table's rule (32766).
pub const RULE_PRIORITY_BASE: u32 = 1000;

/// One route as netplan writes it (`to`, `via`, `from`, `scope`, `metric`, `table`) and apply
/// installs it. `from` is the preferred source; a route without `via` is on-link (`scope: link`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// `default` for a /0, else the network.
    #[serde(serialize_with = "netplan_to")]
    pub to: Cidr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    #[serde(rename = "from", skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// Left out for the main table, as netplan does.
    #[serde(skip_serializing_if = "is_main")]
    pub table: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Link,
}

/// A `routing-policy` entry: traffic from `from` looks up `table`. Also the form vmctx records
/// the rules it added in (its state), so the field names are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub from: Cidr,
    pub table: u32,
    pub priority: u32,
}

fn is_main(t: &u32) -> bool {
    *t == MAIN_TABLE
}

fn netplan_to<S: Serializer>(to: &Cidr, s: S) -> Result<S::Ok, S::Error> {
    if to.prefix == 0 {
        s.serialize_str("default")
    } else {
        s.serialize_str(&to.to_string())
    }
}

impl Route {
    fn default_via(gw: IpAddr, table: u32, metric: Option<u32>, src: Option<IpAddr>) -> Route {
        let any = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        Route {
            to: any.parse().expect("a literal"),
            via: Some(gw),
            src,
            scope: None,
            metric,
            table,
        }
    }
}

/// Which family's main-table default route is taken already.
#[derive(Debug, Clone, Copy)]
pub struct MainDefaults {
    pub v4: bool,
    pub v6: bool,
}

/// The routes and rules of one NIC. The first NIC with an IPv4 (IPv6) gateway owns the main
/// table's default route; later ones get a table of their own so replies leave by the NIC the
/// request came in on (`main` says which are taken, and is updated).
pub fn of_nic(nic: &Nic, main: &mut MainDefaults) -> (Vec<Route>, Vec<Rule>) {
    let (mut routes, mut rules) = (Vec::new(), Vec::new());
    for (gw, metric) in [
        (nic.gateway.map(IpAddr::V4), nic.metric),
        (nic.gateway6.map(IpAddr::V6), nic.metric6),
    ] {
        let Some(gw) = gw else { continue };
        let taken = if gw.is_ipv4() {
            &mut main.v4
        } else {
            &mut main.v6
        };
        if !*taken {
            *taken = true;
            routes.push(Route::default_via(gw, MAIN_TABLE, metric, None));
        } else {
            own_table(&mut routes, &mut rules, nic, gw, metric);
        }
    }
    for r in &nic.routes {
        let metric = if r.to.addr.is_ipv4() {
            nic.metric
        } else {
            nic.metric6
        };
        routes.push(Route {
            to: r.to.network(),
            via: Some(r.via),
            src: None,
            scope: None,
            metric,
            table: MAIN_TABLE,
        });
    }
    order(&mut routes, &nic.addresses);
    (routes, rules)
}

/// A table of this NIC's own: its subnets on-link, its default route, and a `from` rule per
/// address of the gateway's family.
fn own_table(
    routes: &mut Vec<Route>,
    rules: &mut Vec<Rule>,
    nic: &Nic,
    gw: IpAddr,
    metric: Option<u32>,
) {
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
        if !routes
            .iter()
            .any(|r| r.table == table && r.to == a.network())
        {
            routes.push(Route {
                to: a.network(),
                via: None,
                src: Some(a.addr),
                scope: Some(Scope::Link),
                metric: None,
                table,
            });
        }
        let host = if a.addr.is_ipv4() { 32 } else { 128 };
        rules.push(Rule {
            from: Cidr {
                addr: a.addr,
                prefix: host,
            },
            table,
            priority: RULE_PRIORITY_BASE + nic.index,
        });
    }
    routes.push(Route::default_via(
        gw,
        table,
        metric,
        mine.first().map(|a| a.addr),
    ));
}

/// On-link routes first, then routes via a gateway on this link's subnets, then the rest
/// (whose gateways those routes make reachable), default routes last.
fn order(routes: &mut [Route], addresses: &[Cidr]) {
    let subnets: Vec<Cidr> = addresses.iter().map(Cidr::network).collect();
    let rank = |r: &Route| match r.via {
        None => 0,
        Some(_) if r.to.prefix == 0 => 3,
        Some(gw) if subnets.iter().any(|s| s.contains(gw)) => 1,
        Some(_) => 2,
    };
    routes.sort_by_key(|r| rank(r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::opennebula::ctx;

    fn plan(text: &str) -> Vec<(Vec<Route>, Vec<Rule>)> {
        let c = ctx(text);
        let mut main = MainDefaults {
            v4: c.network.dhcp_default_route,
            v6: c.network.dhcp_default_route,
        };
        c.network
            .nics
            .iter()
            .map(|n| of_nic(n, &mut main))
            .collect()
    }

    fn show(routes: &[Route]) -> Vec<String> {
        routes
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
        let p = plan("ETH0_MAC='02:00:0a:00:03:28'\nETH0_GATEWAY='10.0.3.1'\nETH0_ROUTES='10.9.0.0/16 via 10.0.3.254'\n");
        assert_eq!(
            show(&p[0].0),
            [
                "10.9.0.0/16 via Some(\"10.0.3.254\") table 254 src None",
                "0.0.0.0/0 via Some(\"10.0.3.1\") table 254 src None"
            ]
        );
        assert!(p[0].1.is_empty());
    }

    #[test]
    fn second_gateway_gets_its_own_table_and_rule() {
        let p = plan(
            "ETH0_MAC='02:00:0a:00:01:0a'\nETH0_IP='10.0.1.10'\nETH0_GATEWAY='10.0.1.1'\n\
ETH1_MAC='02:00:0a:00:03:05'\nETH1_IP='10.0.3.5'\nETH1_GATEWAY='10.0.3.1'\nETH1_METRIC='10'\n",
        );
        assert!(p[0].1.is_empty());
        assert_eq!(
            show(&p[1].0),
            [
                "10.0.3.0/24 via None table 101 src Some(\"10.0.3.5\")",
                "0.0.0.0/0 via Some(\"10.0.3.1\") table 101 src Some(\"10.0.3.5\")"
            ]
        );
        assert_eq!(
            p[1].1,
            [Rule {
                from: "10.0.3.5/32".parse().unwrap(),
                table: 101,
                priority: 1001
            }]
        );
    }

    #[test]
    fn gateway_routes_come_after_their_on_link_path() {
        let p = plan("ETH0_MAC='02:00:0a:00:03:28'\nETH0_ROUTES='10.20.0.0/16 via 10.9.0.1, 10.9.0.0/16 via 10.0.3.254'\n");
        let order: Vec<String> = p[0].0.iter().map(|r| r.to.to_string()).collect();
        assert_eq!(order, ["10.9.0.0/16", "10.20.0.0/16"]);
    }
}
