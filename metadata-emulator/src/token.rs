//! IMDSv2 session tokens without a token table: each token is AES-256-GCM over its own expiry
//! (milliseconds on this process's monotonic clock), with the tree's token scope as associated
//! data (the instance id for a single tree; the VM's address and instance id in a host map), so
//! a token proves itself and is bound to the tree it was issued for.
//!
//! The nonce is a random per-key salt plus a per-key counter, so no nonce repeats under a key;
//! the key is replaced before the counter reaches 2^32, which invalidates every outstanding
//! token (clients answer a 401 by fetching a new one). The key is random per process: a restart
//! invalidates tokens too.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub const MIN_TTL_SECS: u64 = 1;
pub const MAX_TTL_SECS: u64 = 21600;
/// Longer tokens are refused before any decoding (ours are 48 characters).
pub const MAX_TOKEN_LEN: usize = 70;
/// Tokens issued under one key before it is replaced (below GCM's 2^32 random-nonce bound).
pub const ROTATE_AFTER: u64 = (1 << 32) - 1;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SEALED_LEN: usize = NONCE_LEN + 8 + TAG_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is longer than {MAX_TOKEN_LEN} characters")]
    TooLong,
    #[error("the token is not one this service issued")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the TTL must be {MIN_TTL_SECS}..={MAX_TTL_SECS} seconds")]
    BadTtl,
    #[error("the system random source failed")]
    Random,
}

struct Key {
    cipher: Aes256Gcm,
    salt: [u8; 4],
    /// Tokens issued under this key.
    issued: AtomicU64,
}

impl Key {
    fn new() -> Result<Key, TokenError> {
        let mut k = [0u8; 32];
        let mut salt = [0u8; 4];
        getrandom::fill(&mut k).map_err(|_| TokenError::Random)?;
        getrandom::fill(&mut salt).map_err(|_| TokenError::Random)?;
        Ok(Key {
            cipher: Aes256Gcm::new(&k.into()),
            salt,
            issued: AtomicU64::new(0),
        })
    }
}

pub struct TokenAuthority {
    key: RwLock<Key>,
    epoch: Instant,
    rotate_after: u64,
}

impl TokenAuthority {
    pub fn new() -> Result<TokenAuthority, TokenError> {
        Self::with_rotation(ROTATE_AFTER)
    }

    /// An authority that replaces its key after `rotate_after` tokens (tests use small values).
    pub fn with_rotation(rotate_after: u64) -> Result<TokenAuthority, TokenError> {
        Ok(TokenAuthority {
            key: RwLock::new(Key::new()?),
            epoch: Instant::now(),
            rotate_after: rotate_after.clamp(1, ROTATE_AFTER),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Parses the `X-aws-ec2-metadata-token-ttl-seconds` value: digits only, 1..=21600.
    pub fn parse_ttl(value: &[u8]) -> Result<u64, TokenError> {
        if value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit) {
            return Err(TokenError::BadTtl);
        }
        let ttl: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(TokenError::BadTtl)?;
        if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
            Ok(ttl)
        } else {
            Err(TokenError::BadTtl)
        }
    }

    /// A token for `scope` valid for `ttl` (already checked by [`Self::parse_ttl`]).
    pub fn issue(&self, scope: &str, ttl: Duration) -> Result<String, TokenError> {
        let expiry = self.now_ms().saturating_add(ttl.as_millis() as u64);
        loop {
            {
                let key = self.key.read().unwrap_or_else(|e| e.into_inner());
                let n = key.issued.fetch_add(1, Ordering::Relaxed);
                if n < self.rotate_after {
                    let mut nonce = [0u8; NONCE_LEN];
                    nonce[..4].copy_from_slice(&key.salt);
                    nonce[4..].copy_from_slice(&n.to_be_bytes());
                    let sealed = key
                        .cipher
                        .encrypt(
                            Nonce::from_slice(&nonce),
                            Payload {
                                msg: &expiry.to_be_bytes(),
                                aad: scope.as_bytes(),
                            },
                        )
                        .map_err(|_| TokenError::Invalid)?;
                    let mut out = Vec::with_capacity(SEALED_LEN);
                    out.extend_from_slice(&nonce);
                    out.extend_from_slice(&sealed);
                    return Ok(B64.encode(out));
                }
            }
            self.rotate(self.rotate_after)?;
        }
    }

    /// Replaces the key if it has issued at least `at_least` tokens (one thread wins the race).
    fn rotate(&self, at_least: u64) -> Result<(), TokenError> {
        let mut key = self.key.write().unwrap_or_else(|e| e.into_inner());
        if key.issued.load(Ordering::Relaxed) >= at_least {
            *key = Key::new()?;
            tracing::info!("IMDS token key replaced: tokens issued before now are no longer valid");
        }
        Ok(())
    }

    /// Checks a token presented for `scope`.
    pub fn validate(&self, token: &[u8], scope: &str) -> Result<(), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let mut raw = [0u8; MAX_TOKEN_LEN];
        let n = B64
            .decode_slice(token, &mut raw)
            .map_err(|_| TokenError::Invalid)?;
        if n != SEALED_LEN {
            return Err(TokenError::Invalid);
        }
        let (nonce, sealed) = raw[..n].split_at(NONCE_LEN);
        let key = self.key.read().unwrap_or_else(|e| e.into_inner());
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: scope.as_bytes(),
                },
            )
            .map_err(|_| TokenError::Invalid)?;
        let expiry = u64::from_be_bytes(plain.try_into().map_err(|_| TokenError::Invalid)?);
        if self.now_ms() < expiry {
            Ok(())
        } else {
            Err(TokenError::Expired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "i-0a1b2c3d4e5f60718";

    #[test]
    fn ttl_bounds() {
        assert_eq!(TokenAuthority::parse_ttl(b"1"), Ok(1));
        assert_eq!(TokenAuthority::parse_ttl(b"21600"), Ok(21600));
        for bad in [
            &b""[..],
            b"0",
            b"21601",
            b"-1",
            b"+5",
            b" 5",
            b"5s",
            b"1e3",
            b"99999999999999999999",
        ] {
            assert_eq!(
                TokenAuthority::parse_ttl(bad),
                Err(TokenError::BadTtl),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn issued_tokens_validate_for_their_instance_only() {
        let a = TokenAuthority::new().unwrap();
        let t = a.issue(ID, Duration::from_secs(60)).unwrap();
        assert!(t.len() <= MAX_TOKEN_LEN, "{}", t.len());
        assert_eq!(t.len(), 48);
        assert_eq!(a.validate(t.as_bytes(), ID), Ok(()));
        assert_eq!(
            a.validate(t.as_bytes(), "i-other"),
            Err(TokenError::Invalid)
        );
        // Another process (key) does not accept it.
        let b = TokenAuthority::new().unwrap();
        assert_eq!(b.validate(t.as_bytes(), ID), Err(TokenError::Invalid));
        // Two tokens differ (distinct nonces).
        assert_ne!(t, a.issue(ID, Duration::from_secs(60)).unwrap());
    }

    #[test]
    fn tampered_garbage_and_long_tokens_are_refused() {
        let a = TokenAuthority::new().unwrap();
        let t = a.issue(ID, Duration::from_secs(60)).unwrap();
        let mut bytes = t.clone().into_bytes();
        bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.validate(&bytes, ID), Err(TokenError::Invalid));
        assert_eq!(a.validate(b"", ID), Err(TokenError::Invalid));
        assert_eq!(
            a.validate(b"not base64 at all!", ID),
            Err(TokenError::Invalid)
        );
        assert_eq!(a.validate(&[b'A'; 71], ID), Err(TokenError::TooLong));
        assert_eq!(
            a.validate(&t.as_bytes()[..44], ID),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_expire() {
        let a = TokenAuthority::new().unwrap();
        let t = a.issue(ID, Duration::from_millis(30)).unwrap();
        assert_eq!(a.validate(t.as_bytes(), ID), Ok(()));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(a.validate(t.as_bytes(), ID), Err(TokenError::Expired));
    }

    #[test]
    fn key_rotation_invalidates_earlier_tokens() {
        let a = TokenAuthority::with_rotation(3).unwrap();
        let first: Vec<String> = (0..3)
            .map(|_| a.issue(ID, Duration::from_secs(60)).unwrap())
            .collect();
        for t in &first {
            assert_eq!(a.validate(t.as_bytes(), ID), Ok(()));
        }
        let fourth = a.issue(ID, Duration::from_secs(60)).unwrap();
        assert_eq!(a.validate(fourth.as_bytes(), ID), Ok(()));
        for t in &first {
            assert_eq!(a.validate(t.as_bytes(), ID), Err(TokenError::Invalid));
        }
    }
}
