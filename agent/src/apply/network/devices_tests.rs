//! The requests that create bonds and VLANs (this kernel has no bonding or 8021q module to
//! run them against): built from a real plan, then encoded and decoded as the kernel would.

use super::message;
use crate::plan::devices_tests::{facts, seed_ctx, LINKS};
use rtnetlink::packet_core::{Emitable, Parseable};
use rtnetlink::packet_route::link::{
    BondMode, BondXmitHashPolicy, InfoBond, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo,
    LinkMessage,
};

/// The message as the kernel reads it: emitted to bytes and parsed back.
fn on_the_wire(m: &LinkMessage) -> LinkMessage {
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    LinkMessage::parse(buf.as_slice()).unwrap()
}

fn info(m: &LinkMessage) -> (String, Vec<LinkInfo>) {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    });
    let info = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(i) => Some(i.clone()),
        _ => None,
    });
    (name.unwrap(), info.unwrap())
}

#[test]
fn bond_request_carries_mode_miimon_and_hash_policy() {
    let p = crate::plan::build(&seed_ctx("netplan-bond-vlan"), &facts(LINKS));
    let m = on_the_wire(&message("bond0", &p.network.bonds["bond0"], 0));
    let (name, info) = info(&m);
    assert_eq!(name, "bond0");
    assert!(info.contains(&LinkInfo::Kind(InfoKind::Bond)));
    let data = info.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Bond(d)) => Some(d.clone()),
        _ => None,
    });
    let data = data.unwrap();
    assert!(
        data.contains(&InfoBond::Mode(BondMode::Ieee8023Ad)),
        "{data:?}"
    );
    assert!(data.contains(&InfoBond::MiiMon(100)));
    assert!(data.contains(&InfoBond::XmitHashPolicy(BondXmitHashPolicy::Layer34)));
    assert_eq!(data.len(), 3, "nothing the plan did not ask for: {data:?}");
}

#[test]
fn vlan_request_names_its_id_and_parent() {
    let p = crate::plan::build(&seed_ctx("netplan-bond-vlan"), &facts(LINKS));
    let m = on_the_wire(&message("bond0.42", &p.network.vlans["bond0.42"], 7));
    let (name, info) = info(&m);
    assert_eq!(name, "bond0.42");
    assert!(info.contains(&LinkInfo::Kind(InfoKind::Vlan)));
    assert!(info.contains(&LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(42)]))));
    assert!(m.attributes.contains(&LinkAttribute::Link(7)));
}

#[test]
fn bond_without_parameters_leaves_the_kernel_defaults() {
    let mut ctx = seed_ctx("netplan-bond-vlan");
    let b = &mut ctx.network.bonds[0];
    (b.mode, b.mii_monitor_interval, b.transmit_hash_policy) = (None, None, None);
    let p = crate::plan::build(&ctx, &facts(LINKS));
    let (_, info) = info(&on_the_wire(&message(
        "bond0",
        &p.network.bonds["bond0"],
        0,
    )));
    assert!(!info
        .iter()
        .any(|i| matches!(i, LinkInfo::Data(InfoData::Bond(d)) if !d.is_empty())));
}
