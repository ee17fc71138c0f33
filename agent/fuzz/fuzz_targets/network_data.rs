//! Any byte string as OpenStack's network_data.json beside a minimal meta_data.json, mapped
//! into a context (links, networks, routes, services).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmctx::source::openstack::{map, Metadata};

fuzz_target!(|data: &[u8]| {
    let md = Metadata {
        version: "openstack/latest".into(),
        meta_data: br#"{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "fuzz"}"#
            .to_vec(),
        network_data: Some(data.to_vec()),
        ..Metadata::default()
    };
    let _ = map::to_context(&md, &"configdrive:fuzz".parse().unwrap());
});
