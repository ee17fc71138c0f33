//! The emulator's path normaliser and router: any request path, no panic, and what comes out
//! holds no empty, `.` or `..` segment and never more than the segment bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmctx_imds::path::{normalise, route, Route, MAX_SEGMENTS};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let Ok(n) = normalise(&s) else {
        return;
    };
    assert!(n.segments.len() <= MAX_SEGMENTS);
    for seg in &n.segments {
        assert!(!seg.is_empty() && *seg != "." && *seg != ".." && !seg.contains('/'));
    }
    if let Route::Data(rest) = route(&n) {
        assert!(rest.len() < n.segments.len());
    }
});
