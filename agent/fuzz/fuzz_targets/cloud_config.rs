//! Any byte string as user-data, through the whole user-data path: gzip, MIME, each
//! `#cloud-config` document (YAML, after the nesting pre-scan) folded into a context.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmctx::source::context_sh::Vars;

fuzz_target!(|data: &[u8]| {
    let mut ctx =
        vmctx::source::opennebula::to_context(&Vars::default(), &[], &"dir:fuzz".parse().unwrap());
    ctx.scripts.user_data = vmctx::source::userdata::user_data(data.to_vec());
    vmctx::source::userdata::merge(&mut ctx);
});
