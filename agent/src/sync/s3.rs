//! The four S3 calls a sync needs — ListObjectsV2, GET, conditional PUT, DELETE — signed with
//! SigV4, retried on transient failures, and mapped to errors that name the cause.

use super::creds::Credentials;
use super::http::{HttpClient, UploadBody};
use super::sigv4::{self, Signer};
use crate::retry::{self, Backoff, GaveUp, Try};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the bucket is: a custom endpoint (path-style: `URL/bucket/key`, what Ceph RGW, MinIO
/// and moto expect) or AWS (virtual-hosted `bucket.s3.region…`, path-style for dotted names,
/// which a wildcard certificate cannot cover).
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: String,
    pub authority: String,
    /// Path before the key, with a leading `/` and no trailing one (may be empty).
    pub base: String,
}

impl Target {
    pub fn new(endpoint: Option<&str>, bucket: &str, region: &str) -> Result<Target, S3Error> {
        let Some(ep) = endpoint else {
            return Ok(if bucket.contains('.') {
                Target {
                    scheme: "https".into(),
                    authority: format!("s3.{region}.amazonaws.com"),
                    base: format!("/{bucket}"),
                }
            } else {
                Target {
                    scheme: "https".into(),
                    authority: format!("{bucket}.s3.{region}.amazonaws.com"),
                    base: String::new(),
                }
            });
        };
        let uri: http::Uri = ep
            .parse()
            .map_err(|e| S3Error::Config(format!("endpoint {ep:?}: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        if scheme != "http" && scheme != "https" {
            return Err(S3Error::Config(format!(
                "endpoint {ep:?}: not http or https"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| S3Error::Config(format!("endpoint {ep:?} has no host")))?
            .to_string();
        let path = uri.path().trim_end_matches('/');
        Ok(Target {
            scheme,
            authority,
            base: format!("{path}/{}", sigv4::uri_encode(bucket, true)),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{0}")]
    Config(String),
    #[error("endpoint {endpoint} unreachable: {why}")]
    Unreachable { endpoint: String, why: String },
    #[error("bad credentials ({code}: {message})")]
    Credentials { code: String, message: String },
    #[error("permission denied ({code}: {message})")]
    Denied { code: String, message: String },
    #[error("bucket {0:?} does not exist")]
    NoBucket(String),
    #[error("the object changed on the server (precondition failed)")]
    Precondition,
    #[error("no such key")]
    NotFound,
    #[error("server said {status} {code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the listing was refused: {0}")]
    Listing(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What one listing may take from an endpoint (see [`S3::list`]).
pub struct ListLimits {
    /// One page's body (1000 keys of 1024 bytes, escaped, fit several times).
    pub page_bytes: usize,
    pub pages: usize,
    pub keys: usize,
    pub time: Duration,
}

pub const LIST_LIMITS: ListLimits = ListLimits {
    page_bytes: 8 << 20,
    pages: 1000,
    keys: 200_000,
    time: Duration::from_secs(600),
};

impl S3Error {
    /// Errors that make the whole cycle pointless: stop, change nothing.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            S3Error::Config(_)
                | S3Error::Unreachable { .. }
                | S3Error::Credentials { .. }
                | S3Error::Denied { .. }
                | S3Error::NoBucket(_)
        )
    }
}

/// One object of a listing. The ETag is kept without its quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub list: AtomicU64,
    pub get: AtomicU64,
    pub put: AtomicU64,
    pub delete: AtomicU64,
}

pub struct S3 {
    pub http: HttpClient,
    pub target: Target,
    pub bucket: String,
    pub region: String,
    pub creds: Credentials,
    pub counters: Counters,
}

/// What a PUT may overwrite.
pub enum Condition<'a> {
    /// `If-None-Match: *`: only a new key.
    Create,
    /// `If-Match`: only the version last seen.
    Match(&'a str),
}

impl S3 {
    /// Every key under `prefix`, one request per 1000 keys, within [`LIST_LIMITS`]: an
    /// endpoint that answers without end, or with pages too big, is refused before anything
    /// changes. Objects whose key cannot be a name come back as lines in the second list.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Object>, Vec<String>), S3Error> {
        let lim = LIST_LIMITS;
        let start = std::time::Instant::now();
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        let mut token: Option<String> = None;
        for pages in 1.. {
            let mut q = vec![("list-type".to_string(), "2".to_string())];
            if !prefix.is_empty() {
                q.push(("prefix".into(), prefix.into()));
            }
            if let Some(t) = &token {
                q.push(("continuation-token".into(), t.clone()));
            }
            self.counters.list.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .send("GET", None, &q, &[], || Ok(UploadBody::empty()), None)
                .await?;
            let body = collect_at_most(resp, lim.page_bytes).await?;
            let page = super::xml::list_page(&body)
                .map_err(|e| S3Error::Listing(format!("page {pages}: {e}")))?;
            out.extend(page.objects);
            skipped.extend(page.skipped);
            if out.len() + skipped.len() > lim.keys {
                return Err(S3Error::Listing(format!(
                    "more than {} keys under the prefix",
                    lim.keys
                )));
            }
            let next = match page.next {
                _ if !page.truncated => return Ok((out, skipped)),
                Some(t) if !t.is_empty() && token.as_ref() != Some(&t) => t,
                // A truncated page that does not move on would be read forever, or end early
                // and make the missing keys look deleted.
                _ => {
                    return Err(S3Error::Listing(format!(
                        "page {pages} is truncated but gives no new continuation token"
                    )))
                }
            };
            if pages >= lim.pages || start.elapsed() > lim.time {
                return Err(S3Error::Listing(format!(
                    "still truncated after {pages} pages in {} s (at most {} pages, {} s)",
                    start.elapsed().as_secs(),
                    lim.pages,
                    lim.time.as_secs()
                )));
            }
            token = Some(next);
        }
        unreachable!("the loop returns")
    }

    /// Starts a GET: the response (status 200) whose body the caller streams.
    pub async fn get(&self, key: &str) -> Result<hyper::Response<Incoming>, S3Error> {
        self.counters.get.fetch_add(1, Ordering::Relaxed);
        self.send("GET", Some(key), &[], &[], || Ok(UploadBody::empty()), None)
            .await
    }

    /// A single PUT (S3 takes up to 5 GiB so) with `Content-MD5`: the server refuses bytes
    /// that changed on the way or on disk while being read. Returns the new ETag.
    pub async fn put(
        &self,
        key: &str,
        cond: Condition<'_>,
        md5_b64: &str,
        size: u64,
        body: impl Fn() -> std::io::Result<UploadBody>,
    ) -> Result<String, S3Error> {
        let c = match cond {
            Condition::Create => ("if-none-match".to_string(), "*".to_string()),
            Condition::Match(e) => ("if-match".to_string(), format!("\"{e}\"")),
        };
        let headers = [
            c,
            ("content-md5".to_string(), md5_b64.to_string()),
            ("content-length".to_string(), size.to_string()),
            (
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            ),
        ];
        self.counters.put.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .send("PUT", Some(key), &[], &headers, body, Some(sigv4::UNSIGNED))
            .await?;
        Ok(etag_of(&resp).unwrap_or_default())
    }

    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.counters.delete.fetch_add(1, Ordering::Relaxed);
        match self
            .send(
                "DELETE",
                Some(key),
                &[],
                &[],
                || Ok(UploadBody::empty()),
                None,
            )
            .await
        {
            Ok(_) | Err(S3Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Signs and sends, retrying connection failures, 5xx and 429 (three tries, 0.3 s then 0.6 s
    /// apart).
    async fn send(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: impl Fn() -> std::io::Result<UploadBody>,
        payload: Option<&str>,
    ) -> Result<hyper::Response<Incoming>, S3Error> {
        let path = match key {
            Some(k) => format!("{}/{}", self.target.base, sigv4::uri_encode(k, false)),
            None => format!("{}/", self.target.base),
        };
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    sigv4::uri_encode(k, true),
                    sigv4::uri_encode(v, true)
                )
            })
            .collect();
        let uri = if qs.is_empty() {
            format!("{}{path}", self.target.endpoint())
        } else {
            format!("{}{path}?{}", self.target.endpoint(), qs.join("&"))
        };
        let policy = Backoff::doubling(3, Duration::from_millis(300));
        let sent = retry::run(&policy, None, |_| async {
            let mut h = headers.to_vec();
            h.push(("host".into(), self.target.authority.clone()));
            let signer = Signer {
                access_key_id: &self.creds.access_key_id,
                secret: self.creds.secret.expose(),
                session_token: self.creds.session_token.as_ref().map(|t| t.expose()),
                region: &self.region,
            };
            let payload = payload.unwrap_or(sigv4::EMPTY_SHA256);
            h.extend(signer.sign(method, &path, query, &h, payload, sigv4::now_secs()));
            let mut req = hyper::Request::builder().method(method).uri(&uri);
            for (k, v) in &h {
                req = req.header(k.as_str(), v.as_str());
            }
            let body = match body() {
                Ok(b) => b,
                Err(e) => return Try::Fail(S3Error::from(e)),
            };
            let req = match req.body(body) {
                Ok(r) => r,
                Err(e) => return Try::Fail(S3Error::Config(format!("request: {e}"))),
            };
            let sent = tokio::time::timeout(Duration::from_secs(60), self.http.request(req)).await;
            let resp = match sent {
                Err(_) => return Try::Again(self.unreachable("no answer in 60 s".into())),
                Ok(Err(e)) => return Try::Again(self.unreachable(error_chain(&e))),
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            if status < 300 {
                return Try::Done(resp);
            }
            // An error document is small; a longer one is not read.
            let text = collect_at_most(resp, 64 << 10).await.unwrap_or_default();
            let err = self.error(status, &text);
            if status >= 500 || status == 429 {
                Try::Again(err)
            } else {
                Try::Fail(err)
            }
        })
        .await;
        sent.map_err(|e| match e {
            GaveUp::Failed(e) | GaveUp::Exhausted { last: e, .. } => e,
        })
    }

    fn unreachable(&self, why: String) -> S3Error {
        S3Error::Unreachable {
            endpoint: self.target.endpoint(),
            why,
        }
    }

    fn error(&self, status: u16, body: &[u8]) -> S3Error {
        let (code, message) = super::xml::error(body);
        match (status, code.as_str()) {
            (412, _) => S3Error::Precondition,
            (_, "NoSuchBucket") => S3Error::NoBucket(self.bucket.clone()),
            (404, _) => S3Error::NotFound,
            (
                _,
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken",
            )
            | (401, _) => S3Error::Credentials { code, message },
            (403, _) => S3Error::Denied { code, message },
            _ => S3Error::Server {
                status,
                code,
                message,
            },
        }
    }
}

/// The ETag header, without quotes.
pub fn etag_of<B>(resp: &hyper::Response<B>) -> Option<String> {
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim_matches('"').to_string())
}

/// A body, refused once longer than `max` bytes (read frame by frame, never more).
async fn collect_at_most(resp: hyper::Response<Incoming>, max: usize) -> Result<Bytes, S3Error> {
    let mut body = resp.into_body();
    let mut out = bytes::BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| S3Error::Io(std::io::Error::other(error_chain(&e))))?;
            if let Some(d) = frame.data_ref() {
                if out.len() + d.len() > max {
                    return Err(S3Error::Listing(format!("a page larger than {max} bytes")));
                }
                out.extend_from_slice(d);
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .map_err(|_| S3Error::Io(std::io::Error::other("response body: not read in 60 s")))??;
    Ok(out.freeze())
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: …").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
