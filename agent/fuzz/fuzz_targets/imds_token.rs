//! The IMDSv2 token decoder: any presented token, no panic, and nothing forged is accepted
//! (a random input passing AES-GCM authentication would be a bug, not luck).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use vmctx_imds::token::{TokenAuthority, TokenError};

static AUTHORITY: OnceLock<(TokenAuthority, String)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (a, issued) = AUTHORITY.get_or_init(|| {
        let a = TokenAuthority::new().unwrap();
        let t = a
            .issue("i-0a1b2c3d4e5f60718", Duration::from_secs(21600))
            .unwrap();
        (a, t)
    });
    let r = a.validate(data, "i-0a1b2c3d4e5f60718");
    if data == issued.as_bytes() {
        assert_eq!(r, Ok(()));
    } else {
        assert!(
            matches!(r, Err(TokenError::Invalid | TokenError::TooLong)),
            "{r:?}"
        );
    }
    let _ = TokenAuthority::parse_ttl(data);
});
