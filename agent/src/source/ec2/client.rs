//! The IMDS HTTP client: plain HTTP/1.1 over hyper to an IP literal (no getaddrinfo in a
//! static binary), one connection per request (EC2 answers `Connection: close` anyway).
//!
//! Token rules (spec §3, §6): `PUT /latest/api/token` (TTL 21600, short timeout) first; only a
//! PUT that fails outright — a timeout, 403, 404 or 405 — falls back to IMDSv1; a 400 is an
//! error. A 401 on a GET gets one fresh token for the whole read. Transient failures (connect
//! errors, timeouts, 5xx, 429, 408) are retried with backoff inside the total budget, and never
//! read as "no data".

use super::{Ec2Error, Endpoint};
use crate::retry::{self, Backoff, GaveUp, Try};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest response read (user-data is at most 16 KiB on EC2; leave room for other clouds).
const MAX_BODY: usize = 4 << 20;
pub const TOKEN_TTL: &str = "21600";
/// The token PUT's own timeout: a PUT swallowed by the hop limit must not eat the budget.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(1);
/// One GET attempt's timeout (the budget caps it further).
const GET_TIMEOUT: Duration = Duration::from_secs(2);
/// 6 tries, pauses from 50 ms doubling up to 1.6 s, all inside the budget.
const BACKOFF: Backoff = Backoff {
    tries: 6,
    first: Duration::from_millis(50),
    max_pause: Duration::from_millis(1600),
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Not asked yet.
    Unknown,
    /// IMDSv2 with this token; `gen` counts the tokens fetched.
    V2 { token: String, gen: u32 },
    /// The PUT failed outright: token-less GETs.
    V1,
}

/// What one attempt ended with.
enum Outcome {
    Status(StatusCode, Bytes),
    /// Connect or I/O error: worth another try.
    Transport(String),
    TimedOut,
}

pub struct Client {
    pub endpoint: Endpoint,
    deadline: Instant,
    budget: Duration,
    token: tokio::sync::Mutex<Token>,
    refreshed: Mutex<bool>,
    permits: tokio::sync::Semaphore,
    backoff: Backoff,
    /// Said once per read: a fallback to IMDSv1, a token refresh.
    pub notes: Mutex<Vec<String>>,
    pub requests: AtomicU32,
}

impl Client {
    pub fn new(endpoint: Endpoint, budget: Duration, concurrency: usize) -> Client {
        Client {
            endpoint,
            deadline: Instant::now() + budget,
            budget,
            token: tokio::sync::Mutex::new(Token::Unknown),
            refreshed: Mutex::new(false),
            permits: tokio::sync::Semaphore::new(concurrency.max(1)),
            backoff: BACKOFF,
            notes: Mutex::new(Vec::new()),
            requests: AtomicU32::new(0),
        }
    }

    /// For a service without IMDSv2 tokens (OpenStack's): plain GETs, and as many retries as
    /// the budget holds (such a service is often slow to answer early in boot).
    pub fn tokenless(endpoint: Endpoint, budget: Duration, concurrency: usize) -> Client {
        Client {
            token: tokio::sync::Mutex::new(Token::V1),
            backoff: Backoff {
                tries: u32::MAX,
                ..BACKOFF
            },
            ..Client::new(endpoint, budget, concurrency)
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint.url)
    }

    fn note(&self, s: String) {
        tracing::debug!("{s}");
        self.notes.lock().expect("notes lock").push(s);
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn out_of_time(&self, path: &str, last: &str) -> Ec2Error {
        Ec2Error::Budget {
            url: self.url(path),
            budget_ms: self.budget.as_millis() as u64,
            last: last.to_string(),
        }
    }

    /// One request, bounded by `timeout`.
    async fn attempt(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Outcome {
        let _permit = self.permits.acquire().await.expect("never closed");
        self.requests.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let stream = tokio::net::TcpStream::connect(self.endpoint.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}/{path}", self.endpoint.path))
                .header(hyper::header::HOST, self.endpoint.host.as_str());
            if let Some((k, v)) = header {
                req = req.header(k, v);
            }
            let req = req
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok((s, b))) => Outcome::Status(s, b),
            Ok(Err(e)) => Outcome::Transport(e),
            Err(_) => Outcome::TimedOut,
        }
    }

    /// Fetches a token, or decides on IMDSv1. Called with the token lock held.
    async fn fetch_token(&self, gen: u32) -> Result<Token, Ec2Error> {
        const PATH: &str = "latest/api/token";
        let got = retry::run(&self.backoff, Some(self.deadline), |_| async move {
            let timeout = TOKEN_TIMEOUT.min(self.remaining());
            let ttl = Some(("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL));
            match self.attempt(Method::PUT, PATH, ttl, timeout).await {
                Outcome::Status(s, body) if s == StatusCode::OK => {
                    let token = String::from_utf8(body.to_vec()).unwrap_or_default();
                    let token = token.trim();
                    if token.is_empty()
                        || token.len() > 4096
                        || !token.bytes().all(|b| b.is_ascii_graphic())
                    {
                        return Try::Fail(Ec2Error::Invalid {
                            url: self.url(PATH),
                            what: "the token PUT answered 200 without a usable token".into(),
                        });
                    }
                    Try::Done(Token::V2 {
                        token: token.to_string(),
                        gen: gen + 1,
                    })
                }
                Outcome::Status(s, _) if (403..=405).contains(&s.as_u16()) => {
                    self.note(format!(
                        "{}: token PUT answered {s}: no IMDSv2 here, using IMDSv1",
                        self.url(PATH)
                    ));
                    Try::Done(Token::V1)
                }
                Outcome::TimedOut if self.remaining() > Duration::ZERO => {
                    self.note(format!(
                        "{}: token PUT timed out after {} ms (a hop limit in the way?): using IMDSv1",
                        self.url(PATH),
                        timeout.as_millis()
                    ));
                    Try::Done(Token::V1)
                }
                Outcome::Status(s, _) if is_transient(s) => Try::Again(s.to_string()),
                // A 400 (a bad TTL) among them: not worth another try, and no IMDSv1 either.
                Outcome::Status(s, _) => Try::Fail(Ec2Error::TokenRefused {
                    url: self.url(PATH),
                    status: s.to_string(),
                }),
                Outcome::Transport(e) => Try::Again(e),
                Outcome::TimedOut => Try::Again("timed out".into()),
            }
        })
        .await;
        got.map_err(|e| match e {
            GaveUp::Failed(e) => e,
            GaveUp::Exhausted { last, .. } => self.out_of_time(PATH, &last),
        })
    }

    /// The token to send, fetching the first one if needed.
    async fn current(&self) -> Result<Token, Ec2Error> {
        let mut t = self.token.lock().await;
        if *t == Token::Unknown {
            *t = self.fetch_token(0).await?;
        }
        Ok(t.clone())
    }

    /// After a 401 with token generation `seen`: a new token, once per read.
    async fn refresh(&self, seen: u32, path: &str) -> Result<(), Ec2Error> {
        let mut t = self.token.lock().await;
        if matches!(&*t, Token::V2 { gen, .. } if *gen != seen) {
            return Ok(()); // another request already refreshed it
        }
        {
            let mut done = self.refreshed.lock().expect("refresh lock");
            if *done {
                return Err(Ec2Error::Unauthorized {
                    url: self.url(path),
                });
            }
            *done = true;
        }
        self.note(format!(
            "{}: 401 Unauthorized: fetching a new token",
            self.url(path)
        ));
        *t = self.fetch_token(seen).await?;
        Ok(())
    }

    /// GETs `path` (relative to the endpoint, e.g. `latest/meta-data/`): the body, or None on
    /// 404. Anything else that is not a 200 after the retries is an error.
    pub async fn get(&self, path: &str) -> Result<Option<Bytes>, Ec2Error> {
        let got = retry::run(&self.backoff, Some(self.deadline), |_| self.get_once(path)).await;
        got.map_err(|e| match e {
            GaveUp::Failed(e) => e,
            GaveUp::Exhausted { last, tries } if self.remaining() > Duration::ZERO => {
                Ec2Error::Retries {
                    url: self.url(path),
                    attempts: tries,
                    last,
                }
            }
            GaveUp::Exhausted { last, .. } => self.out_of_time(path, &last),
        })
    }

    /// One try of a GET; a 401 gets a fresh token (once per read) and is asked again.
    async fn get_once(&self, path: &str) -> Try<Option<Bytes>, String, Ec2Error> {
        loop {
            let token = match self.current().await {
                Ok(t) => t,
                Err(e) => return Try::Fail(e),
            };
            let header = match &token {
                Token::V2 { token, .. } => Some(("x-aws-ec2-metadata-token", token.as_str())),
                _ => None,
            };
            let timeout = GET_TIMEOUT.min(self.remaining());
            if timeout.is_zero() {
                return Try::Fail(self.out_of_time(path, "no time left"));
            }
            return match self.attempt(Method::GET, path, header, timeout).await {
                Outcome::Status(s, body) if s == StatusCode::OK => Try::Done(Some(body)),
                Outcome::Status(s, _) if s == StatusCode::NOT_FOUND => Try::Done(None),
                Outcome::Status(s, _) if s == StatusCode::UNAUTHORIZED => match token {
                    Token::V2 { gen, .. } => match self.refresh(gen, path).await {
                        Ok(()) => continue,
                        Err(e) => Try::Fail(e),
                    },
                    _ => Try::Fail(Ec2Error::TokenRequired {
                        url: self.url(path),
                    }),
                },
                Outcome::Status(s, _) if is_transient(s) => Try::Again(s.to_string()),
                Outcome::Status(s, _) => Try::Fail(Ec2Error::Status {
                    url: self.url(path),
                    status: s.to_string(),
                }),
                Outcome::Transport(e) => Try::Again(e),
                Outcome::TimedOut => Try::Again(format!("no answer in {} ms", timeout.as_millis())),
            };
        }
    }
}

fn is_transient(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT
}
