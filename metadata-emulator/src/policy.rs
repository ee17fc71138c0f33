//! The IMDSv2 policy (tokens optional or required, the hop limit of token responses) and the
//! counters that let an operator see who still speaks v1 before requiring tokens.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub const DEFAULT_HOP_LIMIT: u8 = 1;
pub const MAX_HOP_LIMIT: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `HttpTokens=required`: a GET without a valid token gets 401. Optional by default, since
    /// cloud-init speaks only v1 on a machine whose DMI does not say AWS.
    pub tokens_required: bool,
    /// IP TTL (IPv6 hop limit) of token responses: 1 keeps tokens from crossing a forward hop.
    pub hop_limit: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tokens_required: false,
            hop_limit: DEFAULT_HOP_LIMIT,
        }
    }
}

impl Policy {
    /// The stricter of two policies: tokens required if either requires them, the lower hop
    /// limit. A host serving many VMs combines its own flags with each VM's context this way,
    /// so neither side can loosen what the other asks for.
    pub fn stricter(self, other: Policy) -> Policy {
        Policy {
            tokens_required: self.tokens_required || other.tokens_required,
            hop_limit: self.hop_limit.min(other.hop_limit),
        }
    }
}

/// `1..=64`, as EC2's `HttpPutResponseHopLimit`.
pub fn parse_hop_limit(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(n) if (1..=MAX_HOP_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("hop limit {s:?} is not in 1..={MAX_HOP_LIMIT}")),
    }
}

/// What GETs carried, counted whatever the policy (Firecracker's `rx_no_token`, AWS's
/// `MetadataNoToken`).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub no_token: AtomicU64,
    pub bad_token: AtomicU64,
    pub refused: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "requests={} tokens_issued={} no_token={} bad_token={} refused={}",
            g(&self.requests),
            g(&self.tokens_issued),
            g(&self.no_token),
            g(&self.bad_token),
            g(&self.refused)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_limit_bounds() {
        assert_eq!(parse_hop_limit("1"), Ok(1));
        assert_eq!(parse_hop_limit("64"), Ok(64));
        for bad in ["0", "65", "-1", "", "two", "256"] {
            assert!(parse_hop_limit(bad).is_err(), "{bad}");
        }
        assert_eq!(Policy::default().hop_limit, 1);
        assert!(!Policy::default().tokens_required);
    }

    #[test]
    fn stricter_takes_each_side_s_stricter_setting() {
        let loose = Policy {
            tokens_required: false,
            hop_limit: 5,
        };
        let strict = Policy {
            tokens_required: true,
            hop_limit: 2,
        };
        assert_eq!(loose.stricter(strict), strict);
        assert_eq!(strict.stricter(loose), strict);
        let mixed = Policy {
            tokens_required: true,
            hop_limit: 9,
        };
        assert_eq!(
            mixed.stricter(loose),
            Policy {
                tokens_required: true,
                hop_limit: 5
            }
        );
    }

    #[test]
    fn counters_print() {
        let c = Counters::default();
        Counters::bump(&c.no_token);
        Counters::bump(&c.no_token);
        assert_eq!(
            c.to_string(),
            "requests=0 tokens_issued=0 no_token=2 bad_token=0 refused=0"
        );
    }
}
