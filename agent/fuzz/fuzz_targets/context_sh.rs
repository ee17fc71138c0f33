//! Any byte string as a `context.sh`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmctx::source::context_sh::parse(data);
});
