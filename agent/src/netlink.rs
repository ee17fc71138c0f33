//! The one rtnetlink layer of vmctx: the facts (live links), apply (addresses, routes, rules)
//! and the guest emulator (its address on `lo`) all go through [`Netlink`]. Live state comes
//! back as vmctx's own types; one generic path for IPv4 and IPv6.

use crate::context::{Cidr, MacAddr};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoBond, InfoData, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::packet_route::rule::{RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// A failed netlink request: what was asked and the kernel's answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {why}")]
pub struct Error {
    what: String,
    why: String,
    /// The kernel's errno, when it answered with one.
    errno: Option<i32>,
}

impl Error {
    /// The thing to add is there already.
    pub fn exists(&self) -> bool {
        self.errno == Some(nix::libc::EEXIST)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A route as the kernel holds it (and as vmctx records the routes it added, in its state).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteKey {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    /// Preferred source.
    pub src: Option<IpAddr>,
    pub table: u32,
    pub metric: Option<u32>,
}

/// A `from` policy rule as the kernel holds it (and in vmctx's state).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleKey {
    pub from: Cidr,
    pub table: u32,
    pub priority: u32,
}

#[derive(Debug, Clone)]
pub struct LiveLink {
    pub index: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub up: bool,
    /// The bond or bridge it is a member of.
    pub master: Option<u32>,
    /// Its MAC now, when a bond gave it another (`mac` is then the permanent one).
    pub current_mac: MacAddr,
}

pub struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bad(what: &str) -> impl Fn(rtnetlink::Error) -> Error + '_ {
    move |e| {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
            _ => None,
        };
        Error {
            what: what.to_string(),
            why: e.to_string(),
            errno,
        }
    }
}

/// A request vmctx could not even build (no kernel answer).
fn invalid<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error {
        what: what.to_string(),
        why: e.to_string(),
        errno: None,
    }
}

/// The process's one connection, on a runtime of its own, for callers outside tokio (the facts
/// and apply share it). Made on first use.
pub struct Shared {
    rt: tokio::runtime::Runtime,
    nl: Netlink,
}

impl Shared {
    /// Runs `f` on the shared connection, opening it on first use.
    pub fn run<F: std::future::Future>(f: impl FnOnce(&'static Netlink) -> F) -> Result<F::Output> {
        static SHARED: std::sync::OnceLock<std::result::Result<Shared, Error>> =
            std::sync::OnceLock::new();
        let shared = SHARED
            .get_or_init(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(|e| Error {
                        what: "netlink runtime".into(),
                        why: e.to_string(),
                        errno: e.raw_os_error(),
                    })?;
                let nl = rt.block_on(async { Netlink::connect() })?;
                Ok(Shared { rt, nl })
            })
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(shared.rt.block_on(f(&shared.nl)))
    }
}

impl Netlink {
    /// Must be called inside a tokio runtime.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error {
            what: "netlink socket".into(),
            why: e.to_string(),
            errno: e.raw_os_error(),
        })?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    pub async fn links(&self) -> Result<Vec<LiveLink>> {
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        while let Some(m) = s.try_next().await.map_err(bad("listing links"))? {
            if m.header.link_layer_type != LinkLayerType::Ether {
                continue;
            }
            let (mut name, mut mac, mut perm, mut mtu, mut master) = (None, None, None, 0, None);
            let six = |b: &[u8]| <[u8; 6]>::try_from(b).ok().map(MacAddr);
            for a in m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::Address(b) => mac = six(&b),
                    // A bond member takes the bond's MAC: its own stays its identity.
                    LinkAttribute::PermAddress(b) => perm = six(&b).filter(|m| m.0 != [0; 6]),
                    LinkAttribute::Mtu(v) => mtu = v,
                    LinkAttribute::Controller(i) => master = Some(i),
                    _ => {}
                }
            }
            if let (Some(name), Some(current_mac)) = (name, mac) {
                let up = m.header.flags.contains(LinkFlags::Up);
                out.push(LiveLink {
                    index: m.header.index,
                    name,
                    mac: perm.unwrap_or(current_mac),
                    mtu,
                    up,
                    master,
                    current_mac,
                });
            }
        }
        out.sort_by_key(|l| l.index);
        Ok(out)
    }

    /// The index of the link named `name` (any link type: `lo` too).
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        let what = format!("finding link {name}");
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await.map_err(bad(&what))? {
            Some(m) => Ok(m.header.index),
            None => Err(invalid(&what)("no such link")),
        }
    }

    pub async fn set_link(&self, index: u32, mtu: Option<u32>, up: bool) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        if up {
            b = b.up();
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(bad("setting link"))
    }

    /// Creates a link from a complete message (a bond, VLAN or bridge).
    pub async fn add_link(&self, m: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .add(m)
            .execute()
            .await
            .map_err(bad("creating link"))
    }

    pub async fn del_link(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(bad("deleting link"))
    }

    pub async fn set_mac(&self, index: u32, mac: MacAddr) -> Result<()> {
        let m = LinkUnspec::new_with_index(index).address(mac.0.to_vec());
        self.handle
            .link()
            .set(m.build())
            .execute()
            .await
            .map_err(bad("setting MAC"))
    }

    /// Makes link `index` a member of `master` (None: of nothing), then up. A bond takes only
    /// members that are down: `down_first` brings it down before.
    pub async fn set_master(
        &self,
        index: u32,
        master: Option<u32>,
        down_first: bool,
    ) -> Result<()> {
        let set = |m: LinkMessage| self.handle.link().set(m).execute();
        if down_first {
            let down = LinkUnspec::new_with_index(index).down().build();
            set(down).await.map_err(bad("bringing member down"))?;
        }
        let b = LinkUnspec::new_with_index(index);
        let Some(m) = master else {
            return set(b.nocontroller().build())
                .await
                .map_err(bad("releasing member"));
        };
        // Apart: the kernel sets the flags before the master, and a bond refuses a member
        // that is up.
        set(b.controller(m).build())
            .await
            .map_err(bad("setting master"))?;
        let up = LinkUnspec::new_with_index(index).up().build();
        set(up).await.map_err(bad("bringing member up"))
    }

    pub async fn set_down(&self, index: u32) -> Result<()> {
        let m = LinkUnspec::new_with_index(index).down().build();
        self.handle
            .link()
            .set(m)
            .execute()
            .await
            .map_err(bad("bringing link down"))
    }

    /// Changes an existing link's kind parameters (the message names it).
    pub async fn change_link(&self, m: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .change(m)
            .execute()
            .await
            .map_err(bad("changing link"))
    }

    /// The bond settings of link `index`, as the kernel holds them.
    pub async fn bond_settings(&self, index: u32) -> Result<Vec<InfoBond>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        let m = s.try_next().await.map_err(bad("reading bond"))?;
        Ok(bond_data(m.into_iter().flat_map(|m| m.attributes)))
    }

    pub async fn addresses(&self, index: u32) -> Result<Vec<(Cidr, AddressMessage)>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s.try_next().await.map_err(bad("listing addresses"))? {
            // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS otherwise.
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(addr) = addr {
                out.push((
                    Cidr {
                        addr,
                        prefix: m.header.prefix_len,
                    },
                    m,
                ));
            }
        }
        Ok(out)
    }

    pub async fn add_address(&self, index: u32, a: Cidr) -> Result<()> {
        let mut req = self.handle.address().add(index, a.addr, a.prefix);
        if a.addr.is_ipv6() {
            // Usable at once: a boot agent must not wait out duplicate address detection
            // before adding the routes that use it.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await.map_err(bad(&format!("adding {a}")))
    }

    pub async fn del_address(&self, m: AddressMessage) -> Result<()> {
        self.handle
            .address()
            .del(m)
            .execute()
            .await
            .map_err(bad("deleting address"))
    }

    /// The routes leaving by link `index`, in every table, as (key, message).
    pub async fn routes(&self, index: u32) -> Result<Vec<(RouteKey, RouteMessage)>> {
        let mut out = Vec::new();
        for family in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle.route().get(family).execute();
            while let Some(m) = s.try_next().await.map_err(bad("listing routes"))? {
                if let Some((oif, key)) = route_key(&m) {
                    if oif == index {
                        out.push((key, m));
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn add_route(&self, index: u32, r: &RouteKey) -> Result<()> {
        let what = format!("route {} table {}", r.to, r.table);
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.to.addr, r.to.prefix)
            .map_err(invalid(&what))?
            .output_interface(index)
            .table_id(r.table);
        if let Some(gw) = r.via {
            b = b.gateway(gw).map_err(invalid(&what))?;
        } else {
            b = b.scope(RouteScope::Link);
        }
        if let Some(src) = r.src {
            b = b.pref_source(src).map_err(invalid(&what))?;
        }
        if let Some(m) = r.metric {
            b = b.priority(m);
        }
        self.handle
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(bad(&what))
    }

    pub async fn del_route(&self, m: RouteMessage) -> Result<()> {
        self.handle
            .route()
            .del(m)
            .execute()
            .await
            .map_err(bad("deleting route"))
    }

    pub async fn rules(&self) -> Result<Vec<(RuleKey, RuleMessage)>> {
        let mut out = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let mut s = self.handle.rule().get(v).execute();
            while let Some(m) = s.try_next().await.map_err(bad("listing rules"))? {
                let mut from = None;
                let mut table = u32::from(m.header.table);
                let mut priority = 0;
                for a in &m.attributes {
                    match a {
                        RuleAttribute::Source(ip) => from = Some(*ip),
                        RuleAttribute::Table(t) => table = *t,
                        RuleAttribute::Priority(p) => priority = *p,
                        _ => {}
                    }
                }
                if let Some(addr) = from {
                    out.push((
                        RuleKey {
                            from: Cidr {
                                addr,
                                prefix: m.header.src_len,
                            },
                            table,
                            priority,
                        },
                        m,
                    ));
                }
            }
        }
        Ok(out)
    }

    pub async fn add_rule(&self, r: &RuleKey) -> Result<()> {
        let req = self
            .handle
            .rule()
            .add()
            .table_id(r.table)
            .priority(r.priority);
        let res = match r.from.addr {
            IpAddr::V4(a) => req.v4().source_prefix(a, r.from.prefix).execute().await,
            IpAddr::V6(a) => req.v6().source_prefix(a, r.from.prefix).execute().await,
        };
        res.map_err(bad(&format!("rule from {} table {}", r.from, r.table)))
    }

    pub async fn del_rule(&self, m: RuleMessage) -> Result<()> {
        self.handle
            .rule()
            .del(m)
            .execute()
            .await
            .map_err(bad("deleting rule"))
    }
}

/// The bond parameters among a link message's attributes.
pub fn bond_data(attrs: impl IntoIterator<Item = LinkAttribute>) -> Vec<InfoBond> {
    let infos = attrs.into_iter().filter_map(|a| match a {
        LinkAttribute::LinkInfo(i) => Some(i),
        _ => None,
    });
    infos
        .flatten()
        .filter_map(|i| match i {
            LinkInfo::Data(InfoData::Bond(d)) => Some(d),
            _ => None,
        })
        .flatten()
        .collect()
}

/// (output interface, key) of a route; None for routes without one (unreachable, multipath).
fn route_key(m: &RouteMessage) -> Option<(u32, RouteKey)> {
    let v4 = m.header.address_family == rtnetlink::packet_route::AddressFamily::Inet;
    let any: IpAddr = if v4 {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let (mut to, mut via, mut src, mut oif) = (any, None, None, None);
    let mut table = u32::from(m.header.table);
    let mut metric = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => to = ip_of(d)?,
            RouteAttribute::Gateway(g) => via = ip_of(g),
            RouteAttribute::PrefSource(s) => src = ip_of(s),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = Some(*p),
            _ => {}
        }
    }
    let to = Cidr {
        addr: to,
        prefix: m.header.destination_prefix_length,
    };
    Some((
        oif?,
        RouteKey {
            to,
            via,
            src,
            table,
            metric,
        },
    ))
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some((*v).into()),
        RouteAddress::Inet6(v) => Some((*v).into()),
        _ => None,
    }
}

/// Whether a live route is the one wanted. An unset metric is the kernel's default (0 for
/// IPv4, 1024 for IPv6); a wanted route without a source accepts any.
pub fn same_route(live: &RouteKey, want: &RouteKey) -> bool {
    let default = if want.to.addr.is_ipv4() { 0 } else { 1024 };
    live.to == want.to
        && live.via == want.via
        && live.table == want.table
        && live.metric.unwrap_or(default) == want.metric.unwrap_or(default)
        && (want.src.is_none() || live.src == want.src)
}
