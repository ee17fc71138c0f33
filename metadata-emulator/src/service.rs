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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The echoed TTL header, spelled as EC2 sends it.
const TTL_HEADER_OUT: &str = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds";

/// The trees served: one for every client, or one per client address (a host serving its VMs).
#[derive(Debug, Clone)]
pub enum Trees {
    /// Every client sees this tree, under [`Imds::policy`].
    Single(Arc<Tree>),
    /// A host map: each VM's entry by its address. Connections from any other address are
    /// refused before they take a connection slot.
    ByAddr(HashMap<IpAddr, Vm>),
}

/// One VM of a host map.
#[derive(Debug, Clone)]
pub enum Vm {
    /// Its tree is being built: requests get 503 (clients retry) until it is ready.
    Building,
    Ready(Served),
}

/// A VM's tree with its own IMDSv2 policy, the scope its tokens are sealed to, and its
/// counters (kept across rebuilds of its tree by whoever builds it).
#[derive(Debug, Clone)]
pub struct Served {
    pub tree: Arc<Tree>,
    pub policy: Policy,
    scope: String,
    pub stats: Arc<VmStats>,
    /// When this tree was built.
    pub built: Instant,
}

/// What one VM of a host map asked, and what it got that it should look into.
#[derive(Debug, Default)]
pub struct VmStats {
    pub requests: AtomicU64,
    /// 401: no valid token where tokens are required.
    pub unauthorized: AtomicU64,
    pub not_found: AtomicU64,
}

impl VmStats {
    /// (requests, 401s, 404s)
    pub fn get(&self) -> (u64, u64, u64) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (g(&self.requests), g(&self.unauthorized), g(&self.not_found))
    }

    fn count(&self, status: StatusCode) {
        Counters::bump(&self.requests);
        match status {
            StatusCode::UNAUTHORIZED => Counters::bump(&self.unauthorized),
            StatusCode::NOT_FOUND => Counters::bump(&self.not_found),
            _ => {}
        }
    }
}

impl Served {
    /// The entry for the VM at `addr`. Its tokens are bound to the address and the instance
    /// id together: a token minted by one VM is never valid for another, even one whose tree
    /// has the same instance id, and a new VM at an old address gets none of the old tokens
    /// unless it is the same instance.
    pub fn new(addr: IpAddr, tree: Arc<Tree>, policy: Policy) -> Served {
        let scope = format!("{}/{}", addr.to_canonical(), tree.instance_id());
        Served {
            tree,
            policy,
            scope,
            stats: Arc::default(),
            built: Instant::now(),
        }
    }

    /// The same, for a VM served under several addresses: its tokens are bound to `vm` (a
    /// name unique to the VM on this host) and the instance id, so a token minted at one of
    /// its addresses is good at the others and at no other VM's.
    pub fn for_vm(vm: &str, tree: Arc<Tree>, policy: Policy) -> Served {
        let scope = format!("vm:{vm}/{}", tree.instance_id());
        Served {
            scope,
            ..Served::new(IpAddr::from([0, 0, 0, 0]), tree, policy)
        }
    }

    /// Counts into `stats` (a VM's counters outlive each of its trees).
    pub fn counting(mut self, stats: Arc<VmStats>) -> Served {
        self.stats = stats;
        self
    }

    /// What this VM's tokens are bound to.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

/// What one request is answered from: a tree, its policy, its token scope.
struct View<'a> {
    tree: &'a Tree,
    policy: Policy,
    scope: &'a str,
}

impl Trees {
    /// Whether connections from `peer` are taken at all: a single tree takes anyone, a host map
    /// only its VMs' addresses (a v4 client on a dual-stack socket shows as ::ffff:a.b.c.d).
    pub fn knows(&self, peer: IpAddr) -> bool {
        match self {
            Trees::Single(_) => true,
            Trees::ByAddr(m) => m.contains_key(&peer.to_canonical()),
        }
    }

    /// The served tree for `peer` (none for a VM still building or an unknown address).
    pub fn for_peer(&self, peer: IpAddr) -> Option<&Arc<Tree>> {
        match self {
            Trees::Single(t) => Some(t),
            Trees::ByAddr(m) => match m.get(&peer.to_canonical()) {
                Some(Vm::Ready(s)) => Some(&s.tree),
                _ => None,
            },
        }
    }

    /// How many VMs a host map holds (1 for a single tree).
    pub fn len(&self) -> usize {
        match self {
            Trees::Single(_) => 1,
            Trees::ByAddr(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Trees::ByAddr(m) if m.is_empty())
    }
}

/// The state every connection shares.
pub struct Imds {
    trees: RwLock<Arc<Trees>>,
    /// The policy of a single tree; each VM of a host map carries its own ([`Served`]).
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
        let view = match &*trees {
            Trees::Single(t) => View {
                tree: t,
                policy: self.policy,
                scope: t.instance_id(),
            },
            Trees::ByAddr(m) => match m.get(&peer.to_canonical()) {
                Some(Vm::Ready(s)) => {
                    let view = View {
                        tree: &s.tree,
                        policy: s.policy,
                        scope: &s.scope,
                    };
                    let answer = self.answer(&view, method, path, headers);
                    s.stats.count(answer.0.status());
                    return answer;
                }
                Some(Vm::Building) => {
                    return (error(StatusCode::SERVICE_UNAVAILABLE), After::Nothing)
                }
                None => {
                    // Not one of ours: nothing is served to it.
                    Counters::bump(&self.counters.refused);
                    return (error(StatusCode::NOT_FOUND), After::Nothing);
                }
            },
        };
        self.answer(&view, method, path, headers)
    }

    /// The answer from one VM's (or the single) tree.
    fn answer(
        &self,
        view: &View<'_>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> (Response<Full<Bytes>>, After) {
        let normal = match path::normalise(path) {
            Ok(n) => n,
            Err(_) => return (error(StatusCode::BAD_REQUEST), After::Nothing),
        };
        let route = path::route(&normal);
        let read = *method == Method::GET || *method == Method::HEAD;
        match (&route, method) {
            (Route::Token, &Method::PUT) => return self.put_token(view, headers),
            (Route::Token, _) => return (not_allowed("PUT"), After::Nothing),
            (Route::VersionedToken, &Method::PUT) => {
                return (error(StatusCode::FORBIDDEN), After::Nothing)
            }
            _ if !read => return (not_allowed("GET, HEAD"), After::Nothing),
            _ => {}
        }
        if let Some(denied) = self.check_token(view, headers) {
            return (denied, After::Nothing);
        }
        let tree = view.tree;
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

    fn put_token(&self, view: &View<'_>, headers: &HeaderMap) -> (Response<Full<Bytes>>, After) {
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
        let token = match self.tokens.issue(view.scope, Duration::from_secs(ttl)) {
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
        (r, After::HopLimit(view.policy.hop_limit))
    }

    /// `None` when the GET may go ahead; counts what it carried either way.
    fn check_token(&self, view: &View<'_>, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        let ok = match headers.get(TOKEN_HEADER) {
            None => {
                Counters::bump(&self.counters.no_token);
                false
            }
            Some(t) => match self.tokens.validate(t.as_bytes(), view.scope) {
                Ok(()) => true,
                Err(_) => {
                    Counters::bump(&self.counters.bad_token);
                    false
                }
            },
        };
        (!ok && view.policy.tokens_required).then(|| error(StatusCode::UNAUTHORIZED))
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
