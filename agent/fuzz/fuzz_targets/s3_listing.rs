//! Any byte string as an S3 answer: a ListObjectsV2 page and an error document.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmctx::sync::xml::list_page(data);
    let _ = vmctx::sync::xml::error(data);
});
