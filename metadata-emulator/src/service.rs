//! One request in, one response out: EC2's answers for every method, path and token case.
//! No I/O here, so every rule is tested without a socket.

use crate::path::{self, Route, VERSIONS};
use crate::policy::{Counters, Policy};
use crate::token::{TokenAuthority, TokenError};
use crate::tree::{Node, Tree};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, SERVER};
use hyper::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The echoed TTL header, spelled as EC2 sends it.
const TTL_HEADER_OUT: &str = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds";

/// The trees served: one for every client, or one per client address (a host serving its VMs).
#[derive(Debug, Clone)]
pub enum Trees {
    Single(Arc<Tree>),
    ByAddr(HashMap<IpAddr, Arc<Tree>>),
}

impl Trees {
    pub fn for_peer(&self, peer: IpAddr) -> Option<&Arc<Tree>> {
        match self {
            Trees::Single(t) => Some(t),
            // A v4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
            Trees::ByAddr(m) => m.get(&peer.to_canonical()),
        }
    }
}

/// The state every connection shares.
pub struct Imds {
    trees: RwLock<Arc<Trees>>,
    pub policy: Policy,
    pub tokens: TokenAuthority,
    pub counters: Counters,
}

/// What the connection must do besides sending the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// A token was issued: send it with the hop limit as IP TTL (the response closes the
    /// connection, so later responses are not limited).
    HopLimit(u8),
}

impl Imds {
    pub fn new(trees: Trees, policy: Policy) -> Result<Imds, TokenError> {
        Ok(Imds {
            trees: RwLock::new(Arc::new(trees)),
            policy,
            tokens: TokenAuthority::new()?,
            counters: Counters::default(),
        })
    }

    pub fn trees(&self) -> Arc<Trees> {
        self.trees.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in new trees (SIGHUP, a changed host-map folder); requests in flight keep the old.
    pub fn replace_trees(&self, trees: Trees) {
        *self.trees.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(trees);
    }

    pub fn respond(
        &self,
        peer: IpAddr,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> (Response<Full<Bytes>>, After) {
        Counters::bump(&self.counters.requests);
        let trees = self.trees();
        let Some(tree) = trees.for_peer(peer) else {
            // Not one of ours: nothing is served to it.
            Counters::bump(&self.counters.refused);
            return (error(StatusCode::NOT_FOUND), After::Nothing);
        };
        let normal = match path::normalise(path) {
            Ok(n) => n,
            Err(_) => return (error(StatusCode::BAD_REQUEST), After::Nothing),
        };
        let route = path::route(&normal);
        let read = *method == Method::GET || *method == Method::HEAD;
        match (&route, method) {
            (Route::Token, &Method::PUT) => return self.put_token(tree, headers),
            (Route::Token, _) => return (not_allowed("PUT"), After::Nothing),
            (Route::VersionedToken, &Method::PUT) => {
                return (error(StatusCode::FORBIDDEN), After::Nothing)
            }
            _ if !read => return (not_allowed("GET, HEAD"), After::Nothing),
            _ => {}
        }
        if let Some(denied) = self.check_token(tree, headers) {
            return (denied, After::Nothing);
        }
        let body = match route {
            Route::Versions => Bytes::from(VERSIONS.join("\n")),
            Route::VersionBare => Bytes::new(),
            Route::Data(rest) if rest.is_empty() => tree.root().listing().clone(),
            Route::Data(rest) => match tree.lookup(rest.iter().copied()) {
                Some(Node::Dir(d)) => d.listing().clone(),
                Some(Node::Leaf(b)) => b.clone(),
                None => return (error(StatusCode::NOT_FOUND), After::Nothing),
            },
            Route::Token | Route::VersionedToken | Route::NotFound => {
                return (error(StatusCode::NOT_FOUND), After::Nothing)
            }
        };
        (text(StatusCode::OK, body), After::Nothing)
    }

    fn put_token(&self, tree: &Tree, headers: &HeaderMap) -> (Response<Full<Bytes>>, After) {
        // The anti-SSRF rule: a proxy forwarding a PUT says so, and gets no token.
        if headers.contains_key("x-forwarded-for") {
            Counters::bump(&self.counters.refused);
            return (error(StatusCode::BAD_REQUEST), After::Nothing);
        }
        let ttl = headers
            .get(TTL_HEADER)
            .map(|v| TokenAuthority::parse_ttl(v.as_bytes()));
        let Some(Ok(ttl)) = ttl else {
            return (error(StatusCode::BAD_REQUEST), After::Nothing);
        };
        let token = match self
            .tokens
            .issue(tree.instance_id(), Duration::from_secs(ttl))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("issuing an IMDS token: {e}");
                return (error(StatusCode::INTERNAL_SERVER_ERROR), After::Nothing);
            }
        };
        Counters::bump(&self.counters.tokens_issued);
        let mut r = text(StatusCode::OK, Bytes::from(token));
        let h = r.headers_mut();
        h.insert(TTL_HEADER_OUT, HeaderValue::from(ttl));
        h.insert(CONNECTION, HeaderValue::from_static("close"));
        (r, After::HopLimit(self.policy.hop_limit))
    }

    /// `None` when the GET may go ahead; counts what it carried either way.
    fn check_token(&self, tree: &Tree, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        let ok = match headers.get(TOKEN_HEADER) {
            None => {
                Counters::bump(&self.counters.no_token);
                false
            }
            Some(t) => match self.tokens.validate(t.as_bytes(), tree.instance_id()) {
                Ok(()) => true,
                Err(_) => {
                    Counters::bump(&self.counters.bad_token);
                    false
                }
            },
        };
        (!ok && self.policy.tokens_required).then(|| error(StatusCode::UNAUTHORIZED))
    }
}

fn text(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(SERVER, HeaderValue::from_static("EC2ws"));
    r
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// EC2's XHTML error page (clients look only at the status, but some log the body).
fn error(status: StatusCode) -> Response<Full<Bytes>> {
    let title = match status {
        StatusCode::BAD_REQUEST => "400 - Missing or Invalid Parameters".to_string(),
        s => format!(
            "{} - {}",
            s.as_u16(),
            s.canonical_reason().unwrap_or("Error")
        ),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
<head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n </body>\n</html>\n"
    );
    text(status, Bytes::from(body))
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
