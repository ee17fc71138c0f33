//! Knobs the environment may turn (operators, tests), read once at the edge (`main.rs` hands
//! [`Settings::from_lookup`] the environment) and passed down: the library itself reads no
//! environment variable.

use crate::retry::Backoff;
use std::time::Duration;

/// Where `--source auto`, `vmctx detect` and `ec2` without a URL look for the IMDS.
pub const ENV_IMDS_URL: &str = "VMCTX_IMDS_URL";
/// The whole read of a metadata service, in seconds (fractions allowed).
pub const ENV_IMDS_TIMEOUT: &str = "VMCTX_IMDS_TIMEOUT";
/// Requests in flight at once while crawling a metadata service (1 crawls serially).
pub const ENV_IMDS_CONCURRENCY: &str = "VMCTX_IMDS_CONCURRENCY";
/// The first pause between OneGate tries, in milliseconds.
pub const ENV_ONEGATE_BACKOFF_MS: &str = "VMCTX_ONEGATE_BACKOFF_MS";

/// OneGate's READY=YES: 5 tries, pauses from 1 s doubling.
pub const ONEGATE_BACKOFF: Backoff = Backoff {
    tries: 5,
    first: Duration::from_secs(1),
    max_pause: Duration::MAX,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub imds: Imds,
    /// How OneGate's READY=YES report is retried.
    pub onegate: Backoff,
}

/// Overrides for reading a metadata service (EC2's IMDS, OpenStack's); `None`: the source's
/// own default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imds {
    /// The base URL when the source names none.
    pub url: Option<String>,
    /// The whole read (token, crawl, retries) must fit in this.
    pub budget: Option<Duration>,
    pub concurrency: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            imds: Imds::default(),
            onegate: ONEGATE_BACKOFF,
        }
    }
}

impl Settings {
    /// From variables looked up by `get` (the binary passes the environment); unusable values
    /// are ignored, as if unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Settings {
        let imds = Imds {
            url: get(ENV_IMDS_URL).filter(|u| !u.is_empty()),
            budget: get(ENV_IMDS_TIMEOUT)
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64),
            concurrency: get(ENV_IMDS_CONCURRENCY)
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|n| (1..=64).contains(n)),
        };
        let mut onegate = ONEGATE_BACKOFF;
        if let Some(ms) = get(ENV_ONEGATE_BACKOFF_MS).and_then(|v| v.trim().parse().ok()) {
            onegate.first = Duration::from_millis(ms);
        }
        Settings { imds, onegate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_are_read_and_bad_values_ignored() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = Settings::from_lookup(env(&[
            (ENV_IMDS_URL, "http://127.0.0.1:8080"),
            (ENV_IMDS_TIMEOUT, "0.5"),
            (ENV_IMDS_CONCURRENCY, "1"),
            (ENV_ONEGATE_BACKOFF_MS, "50"),
        ]));
        assert_eq!(s.imds.url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(s.imds.budget, Some(Duration::from_millis(500)));
        assert_eq!(s.imds.concurrency, Some(1));
        assert_eq!(s.onegate.first, Duration::from_millis(50));
        assert_eq!(s.onegate.tries, 5);
        let s = Settings::from_lookup(env(&[
            (ENV_IMDS_URL, ""),
            (ENV_IMDS_TIMEOUT, "-1"),
            (ENV_IMDS_CONCURRENCY, "500"),
            (ENV_ONEGATE_BACKOFF_MS, "soon"),
        ]));
        assert_eq!(s, Settings::default());
    }
}
