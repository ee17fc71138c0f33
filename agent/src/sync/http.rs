//! The HTTP transport: hyper's pooled client over rustls (ring; the system CA store plus an
//! optional CA file) with names resolved by hickory, never by glibc's getaddrinfo (the release
//! binary is static; NSS would load the guest's libraries). IP literals resolve nothing.

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::OnceCell;

pub type Connector = hyper_rustls::HttpsConnector<HttpConnector<Resolve>>;
pub type HttpClient = Client<Connector, UploadBody>;

/// DNS through hickory, built on first use from the system's resolv.conf and hosts file.
#[derive(Clone, Default)]
pub struct Resolve(Arc<OnceCell<TokioResolver>>);

impl tower_service::Service<Name> for Resolve {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let cell = self.0.clone();
        Box::pin(async move {
            let resolver = cell
                .get_or_try_init(|| async {
                    TokioResolver::builder_tokio()
                        .map(|b| b.build())
                        .map_err(|e| io::Error::other(format!("resolver configuration: {e}")))
                })
                .await?;
            let ips = resolver
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| io::Error::other(format!("resolving {}: {e}", name.as_str())))?;
            // The port is filled in by the connector.
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// A client trusting the system CAs and, when given, the certificates of `ca_file` (PEM).
pub fn client(ca_file: Option<&Path>) -> Result<HttpClient, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a private CA file may be all there is.
    for cert in rustls_native_certs_load() {
        let _ = roots.add(cert);
    }
    if let Some(p) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let bad = |why: String| TlsError::CaFile {
            path: p.display().to_string(),
            why,
        };
        let mut n = 0;
        for cert in
            rustls_pki_types::CertificateDer::pem_file_iter(p).map_err(|e| bad(e.to_string()))?
        {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("no certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(Resolve::default());
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(16)
        .build(https))
}

fn rustls_native_certs_load() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// A request body: nothing, bytes, or a file streamed in 256 KiB reads (a 5 GiB upload
/// needs no 5 GiB of memory).
pub enum UploadBody {
    Bytes(Option<Bytes>),
    File {
        file: std::fs::File,
        left: u64,
        /// Counts what is read into the cycle's progress.
        sent: Option<super::progress::Transfer>,
    },
}

impl UploadBody {
    pub fn empty() -> Self {
        UploadBody::Bytes(None)
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match self.get_mut() {
            UploadBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UploadBody::File { file, left, sent } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let mut buf = vec![0; (*left).min(256 << 10) as usize];
                // A local disk read: short enough to do in place.
                match file.read(&mut buf) {
                    Ok(0) => Poll::Ready(Some(Err(io::Error::other(
                        "the file shrank while uploading",
                    )))),
                    Ok(n) => {
                        buf.truncate(n);
                        *left -= n as u64;
                        if let Some(s) = sent {
                            s.add(n as u64);
                        }
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
                    }
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UploadBody::Bytes(b) => b.is_none(),
            UploadBody::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UploadBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            UploadBody::File { left, .. } => SizeHint::with_exact(*left),
        }
    }
}
