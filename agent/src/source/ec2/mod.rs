//! The EC2 instance metadata service as a context source (also any cloud with an EC2-style
//! IMDS, and vmctx's own emulator): token first, a pruned parallel crawl of the tree, then the
//! mapping to the context model ([`map`]).

pub(crate) mod client;
mod crawl;
pub mod map;

pub use crawl::Metadata;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// EC2's endpoint; `[fd00:ec2::254]` is the IPv6 one on Nitro hosts.
pub const DEFAULT_URL: &str = "http://169.254.169.254";
/// The whole read (token, crawl, retries) must fit in this unless told otherwise.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);
/// Requests in flight at once: enough for the tree's width, few enough not to be throttled.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// `--source auto`'s probe: short, so a machine without an IMDS is not held up.
pub const PROBE_BUDGET: Duration = Duration::from_millis(400);

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("{url:?} is not an IMDS URL: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("{url}: the token PUT was refused with {status}; not falling back to IMDSv1")]
    TokenRefused { url: String, status: String },
    #[error("{url}: 401 Unauthorized again with a fresh token")]
    Unauthorized { url: String },
    #[error("{url}: 401 Unauthorized without a token, and the token PUT had failed")]
    TokenRequired { url: String },
    #[error("{url}: {status}")]
    Status { url: String, status: String },
    #[error("{url}: still failing after {attempts} attempts (last: {last})")]
    Retries {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("{url}: no complete answer within the {budget_ms} ms budget (last: {last})")]
    Budget {
        url: String,
        budget_ms: u64,
        last: String,
    },
    #[error("{url}: listed in {parent} but answers 404 Not Found")]
    ListedMissing { url: String, parent: String },
    #[error("{url}: {what}")]
    Invalid { url: String, what: String },
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where the IMDS is: an IP literal and port, and a path prefix (usually empty).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Prefix of every request path, no trailing slash (`""` for EC2).
    pub path: String,
    /// The base URL as given, no trailing slash (for messages).
    pub url: String,
}

impl Endpoint {
    /// `http://IP[:PORT][/prefix]`, IPv6 in brackets. Names are refused: resolving one would
    /// mean NSS in a static binary, and the IMDS has a fixed address anyway.
    pub fn parse(url: &str) -> Result<Endpoint, Ec2Error> {
        let bad = |why| Ec2Error::BadUrl {
            url: url.to_string(),
            why,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// (the IMDS has no TLS)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let addr = if let Ok(sa) = authority.parse::<SocketAddr>() {
            sa
        } else {
            let ip = authority
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(authority);
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| bad("the host must be an IP literal (no DNS lookups)"))?;
            SocketAddr::new(ip, 80)
        };
        Ok(Endpoint {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            url: format!("http://{authority}{path}"),
        })
    }
}

/// How to read: where, within what time, how many requests at once.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: Endpoint,
    pub budget: Duration,
    pub concurrency: usize,
}

impl Options {
    /// `url` (from `--source ec2:URL`), else the settings' URL (`VMCTX_IMDS_URL`), else EC2's
    /// address; the budget and concurrency from the settings, else `default_budget` and
    /// [`DEFAULT_CONCURRENCY`].
    pub fn new(
        url: Option<&str>,
        default_budget: Duration,
        imds: &crate::settings::Imds,
    ) -> Result<Options, Ec2Error> {
        let url = url.or(imds.url.as_deref()).unwrap_or(DEFAULT_URL);
        Ok(Options {
            endpoint: Endpoint::parse(url)?,
            budget: imds.budget.unwrap_or(default_budget),
            concurrency: imds.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        })
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Ec2Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Ec2Error::Runtime)
}

/// Reads the metadata vmctx uses. Any failure — after retries, within the budget — is an
/// error: a partial tree is never taken for the whole one.
pub fn read(opts: &Options) -> Result<Metadata, Ec2Error> {
    let client = client::Client::new(opts.endpoint.clone(), opts.budget, opts.concurrency);
    let mut md = runtime()?.block_on(crawl::crawl(&client))?;
    md.notes = std::mem::take(&mut *client.notes.lock().expect("notes lock"));
    md.requests = client.requests.load(std::sync::atomic::Ordering::Relaxed);
    Ok(md)
}

/// A short check that an IMDS answers at `endpoint`: the instance id, or why not.
pub fn probe(endpoint: &Endpoint, budget: Duration) -> Result<String, Ec2Error> {
    let client = client::Client::new(endpoint.clone(), budget, 1);
    runtime()?.block_on(async {
        const PATH: &str = "latest/meta-data/instance-id";
        match client.get(PATH).await? {
            Some(b) => Ok(String::from_utf8_lossy(&b).trim().to_string()),
            None => Err(Ec2Error::Status {
                url: format!("{}/{PATH}", endpoint.url),
                status: "404 Not Found".into(),
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://169.254.169.254").unwrap();
        assert_eq!(e.addr.to_string(), "169.254.169.254:80");
        assert_eq!((e.path.as_str(), e.host.as_str()), ("", "169.254.169.254"));
        let e = Endpoint::parse("http://[fd00:ec2::254]").unwrap();
        assert_eq!(e.addr.to_string(), "[fd00:ec2::254]:80");
        let e = Endpoint::parse("http://127.0.0.1:8080/prefix/").unwrap();
        assert_eq!((e.addr.port(), e.path.as_str()), (8080, "/prefix"));
        assert_eq!(e.url, "http://127.0.0.1:8080/prefix");
        for bad in [
            "https://169.254.169.254",
            "http://instance-data:8773",
            "169.254.169.254",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
