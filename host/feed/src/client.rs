//! Fetching from a feed over HTTP(S): the signed index, and blobs streamed to disk with verification.
//!
//! One request per connection (HTTP/1.1), which keeps the connection logic simple and lets every
//! connection go through the [`Connector`] hook — the place where a later change routes through an HTTP
//! CONNECT proxy, with TLS still end to end (the connector returns the tunnel; TLS runs over it).
//!
//! Failures that may be transient (connect errors, timeouts, 5xx/408/429, a body cut short) are retried
//! up to [`ClientConfig::attempts`] times with full-jitter exponential backoff. Failures that will not
//! improve (4xx, TLS certificate errors, a digest or size mismatch) are not.

use crate::index::{Entry, FeedIndex};
use crate::signature::{self, FeedPublicKey};
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Why a fetch failed. Variants that can be retried carry how many attempts were made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be fetched (not http/https, no host, ...).
    #[error("invalid feed URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trusted certificate could not be read, or TLS could not be set up.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The TCP connection could not be made (refused, unreachable, reset during the TLS handshake...).
    #[error("cannot connect to {url} (after {attempts} attempt(s)): {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// The server's certificate is not trusted, or the TLS handshake failed for a reason retries won't fix.
    #[error(
        "TLS with {url} failed: {message}; if the server uses a self-signed certificate, add it as a trusted certificate"
    )]
    Tls {
        /// The URL.
        url: String,
        /// The TLS error.
        message: String,
    },
    /// No answer (or no further bytes) within the timeout.
    #[error("timed out {phase} {url} (after {attempts} attempt(s), {timeout:?} each)")]
    Timeout {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// What it was doing: "connecting to", "waiting for an answer from", "reading from".
        phase: &'static str,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The server answered with a non-success status.
    #[error("{url} answered {status} (after {attempts} attempt(s))")]
    Status {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The status.
        status: StatusCode,
        /// The `WWW-Authenticate` header of a 401, if any (what an OCI registry's token flow needs).
        challenge: Option<String>,
    },
    /// Too many redirects, or a redirect without a usable `Location`.
    #[error("{url}: {reason}")]
    Redirect {
        /// The URL that answered with the redirect.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// An HTTP protocol error (the connection closed before an answer, a malformed response...).
    #[error("HTTP error from {url} (after {attempts} attempt(s)): {message}")]
    Http {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The error.
        message: String,
    },
    /// The body stopped before its announced end.
    #[error(
        "download of {url} was cut short: expected {expected} bytes, received {received} (after {attempts} attempt(s))"
    )]
    Truncated {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Bytes expected.
        expected: u64,
        /// Bytes received before the connection ended.
        received: u64,
    },
    /// The blob has another size than the index says.
    #[error("{url} has the wrong size: expected {expected} bytes, the server sent {actual}")]
    SizeMismatch {
        /// The URL.
        url: String,
        /// Size from the index.
        expected: u64,
        /// Size announced or received (for an oversized body: at least this many).
        actual: u64,
    },
    /// The blob's sha256 is not the one the index says.
    #[error(
        "{url} has the wrong sha256: expected {expected}, got {actual}; the download was discarded"
    )]
    DigestMismatch {
        /// The URL.
        url: String,
        /// Digest from the index.
        expected: String,
        /// Digest of what was received.
        actual: String,
    },
    /// A document (index, signature) is larger than [`ClientConfig::max_document_size`].
    #[error("{url} is larger than {limit} bytes; refusing it")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Writing the download to disk failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The index signature did not verify.
    #[error(transparent)]
    Signature(#[from] signature::SignatureError),
    /// The index did not parse.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

/// A byte stream a [`Connector`] returns: a TCP connection, or a tunnel through a proxy.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxedIo = Box<dyn Io>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the client opens a byte stream to `(host, port)`. TLS, if any, is done by the client on top.
///
/// The default is [`DirectConnector`]. Any `Fn(String, u16) -> impl Future<Output = io::Result<BoxedIo>>`
/// is a connector too, e.g. one that sends `CONNECT host:port` to a proxy and returns the tunnel.
pub trait Connector: Send + Sync {
    /// Opens a stream to `host:port` (`host` is a name or an IP address, without brackets).
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxedIo>>;
}

/// Plain TCP (`TcpStream::connect`), no proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectConnector;

impl Connector for DirectConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxedIo>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

impl<F, Fut> Connector for F
where
    F: Fn(String, u16) -> Fut + Send + Sync,
    Fut: Future<Output = io::Result<BoxedIo>> + Send + 'static,
{
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxedIo>> {
        Box::pin(self(host.to_string(), port))
    }
}

/// How a [`FeedClient`] connects, trusts and retries.
#[derive(Clone)]
pub struct ClientConfig {
    /// Attempts per request, including the first (at least 1). Default 3.
    pub attempts: u32,
    /// Limit for opening the connection, TLS handshake included. Default 10 s.
    pub connect_timeout: Duration,
    /// Limit for waiting on the response headers, and between two chunks of a body. Default 30 s.
    pub idle_timeout: Duration,
    /// First backoff ceiling; each retry doubles it up to `backoff_max`, and the actual wait is uniformly
    /// random below the ceiling ("full jitter"). Default 250 ms.
    pub backoff_base: Duration,
    /// Largest backoff ceiling. Default 5 s.
    pub backoff_max: Duration,
    /// Trust the public web PKI roots (Mozilla's, from `webpki-roots`). Default true.
    pub webpki_roots: bool,
    /// Extra trusted certificates (e.g. registry-mock's self-signed one), DER.
    pub trusted_certificates: Vec<CertificateDer<'static>>,
    /// How connections are opened. Default [`DirectConnector`].
    pub connector: Arc<dyn Connector>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Largest index or signature document accepted. Default 32 MiB.
    pub max_document_size: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            attempts: 3,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            webpki_roots: true,
            trusted_certificates: Vec::new(),
            connector: Arc::new(DirectConnector),
            user_agent: concat!("octo/", env!("CARGO_PKG_VERSION")).to_string(),
            max_document_size: 32 << 20,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("attempts", &self.attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("webpki_roots", &self.webpki_roots)
            .field("trusted_certificates", &self.trusted_certificates.len())
            .field("user_agent", &self.user_agent)
            .field("max_document_size", &self.max_document_size)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Adds every certificate in `pem` (one or more `BEGIN CERTIFICATE` blocks) as trusted.
    pub fn trust_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                ClientError::TlsConfig(format!("cannot read the trusted certificate: {e}"))
            })?;
            self.trusted_certificates.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(ClientError::TlsConfig(
                "the trusted certificate file has no PEM certificate in it".into(),
            ));
        }
        Ok(self)
    }

    /// [`ClientConfig::trust_pem`] with the contents of a file.
    pub fn trust_pem_file(self, path: &Path) -> Result<Self, ClientError> {
        let pem = std::fs::read(path).map_err(|source| ClientError::Io {
            action: "read the trusted certificate",
            path: path.to_path_buf(),
            source,
        })?;
        self.trust_pem(&pem)
    }
}

/// The verified, parsed index of a feed.
#[derive(Debug, Clone)]
pub struct FetchedIndex {
    /// The parsed index.
    pub index: FeedIndex,
    /// The exact bytes that were verified (keep them to export an air-gap bundle).
    pub bytes: Vec<u8>,
    /// The signature file as fetched.
    pub signature: Vec<u8>,
    /// The feed's base URL (blob paths are relative to it).
    pub base_url: String,
}

impl FetchedIndex {
    /// The absolute URL of an entry's blob.
    pub fn blob_url(&self, entry: &Entry) -> String {
        entry.blob_url(&self.base_url)
    }
}

/// A fetched document: headers and the whole body.
#[derive(Debug, Clone)]
pub struct Document {
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP(S) client for feeds. Cheap to clone.
#[derive(Clone)]
pub struct FeedClient {
    config: Arc<ClientConfig>,
    tls: tokio_rustls::TlsConnector,
}

impl fmt::Debug for FeedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A failure of one attempt, and whether another attempt may help.
struct Failure {
    retry: bool,
    error: ClientError,
}

impl Failure {
    fn retry(error: ClientError) -> Self {
        Failure { retry: true, error }
    }
    fn fatal(error: ClientError) -> Self {
        Failure {
            retry: false,
            error,
        }
    }
}

#[derive(Clone)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

impl Target {
    /// `scheme://host:port`, host lowercase, port explicit: what credentials are scoped to.
    fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = self.host.to_ascii_lowercase();
        if host.contains(':') {
            format!("{scheme}://[{host}]:{}", self.port)
        } else {
            format!("{scheme}://{host}:{}", self.port)
        }
    }
}

/// The origin (`scheme://host:port`, host lowercase, port explicit) of an http(s) URL.
pub fn origin_of(url: &str) -> Result<String, ClientError> {
    Ok(parse_url(url)?.origin())
}

/// An `Authorization` header value bound to one origin: [`FeedClient`] sends it to that origin only, so
/// a redirect to another origin is followed without it. Its `Debug` shows the origin, never the value.
#[derive(Clone)]
pub struct Authorization {
    origin: String,
    value: header::HeaderValue,
}

impl Authorization {
    /// `value` for the origin of `url` (marked sensitive, so hyper never logs it).
    pub fn new(url: &str, mut value: header::HeaderValue) -> Result<Self, ClientError> {
        value.set_sensitive(true);
        Ok(Authorization {
            origin: origin_of(url)?,
            value,
        })
    }

    /// The origin it is sent to.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("origin", &self.origin)
            .field("value", &"********")
            .finish()
    }
}

/// Headers, credentials and redirect policy of one request, beyond `Host` and `User-Agent`.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Extra headers (e.g. `Accept`).
    pub headers: Vec<(header::HeaderName, header::HeaderValue)>,
    /// Sent as `Authorization`, only while the request goes to its origin.
    pub authorization: Option<Authorization>,
    /// How many redirects (301, 302, 303, 307, 308 with a `Location`) are followed. 0, the default, makes a
    /// redirect an error status, as for the steps feed.
    pub max_redirects: u32,
}

/// What a download must be; what is `None` is not checked (but is reported in [`Downloaded`]).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Lowercase hex sha256.
    pub sha256: Option<String>,
    /// Exact size in bytes.
    pub size: Option<u64>,
    /// The most bytes accepted: a larger `Content-Length` is refused before the body is read, a body
    /// that grows past it is cut off ([`ClientError::TooLarge`]).
    pub max_size: Option<u64>,
}

/// A complete, fsynced, verified download in a temporary file that the caller renames or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The temporary file.
    pub path: PathBuf,
    /// Lowercase hex sha256 of its bytes.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

fn parse_url(url: &str) -> Result<Target, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => {
            return Err(invalid(&format!(
                "scheme {other}: is not supported; use http or https"
            )));
        }
        None => return Err(invalid("it is not an absolute URL")),
    };
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not supported"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        authority: authority.as_str().to_string(),
        host,
        path_and_query: uri
            .path_and_query()
            .map_or("/".into(), |p| p.as_str().to_string()),
    })
}

impl FeedClient {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        if config.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &config.trusted_certificates {
            roots.add(cert.clone()).map_err(|e| {
                ClientError::TlsConfig(format!("cannot trust the certificate: {e}"))
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsConfig(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(FeedClient {
            config: Arc::new(config),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Fetches `BASE/index.json` and `BASE/index.json.sig`, verifies the signature with `pinned`, parses.
    pub async fn fetch_index(
        &self,
        base_url: &str,
        pinned: &FeedPublicKey,
    ) -> Result<FetchedIndex, ClientError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let bytes = self.get_bytes(&format!("{base_url}/index.json")).await?;
        let signature = match self.get_bytes(&format!("{base_url}/index.json.sig")).await {
            Ok(sig) => Some(sig),
            Err(ClientError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => None,
            Err(e) => return Err(e),
        };
        signature::verify(&bytes, signature.as_deref(), pinned)?;
        let index = FeedIndex::parse(&bytes)?;
        tracing::debug!(
            base_url,
            plugins = index.plugins.len(),
            "fetched and verified the feed index"
        );
        Ok(FetchedIndex {
            index,
            bytes,
            signature: signature.unwrap_or_default(),
            base_url,
        })
    }

    /// GETs `url` into memory (at most [`ClientConfig::max_document_size`] bytes), with retries.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, ClientError> {
        Ok(self.get_document(url).await?.body)
    }

    /// GETs `url` into memory with its headers (e.g. to read a signature header), with retries.
    pub async fn get_document(&self, url: &str) -> Result<Document, ClientError> {
        self.get_document_with(url, &RequestOptions::default())
            .await
    }

    /// [`FeedClient::get_document`] with extra headers, origin-bound credentials and redirects.
    pub async fn get_document_with(
        &self,
        url: &str,
        options: &RequestOptions,
    ) -> Result<Document, ClientError> {
        let target = parse_url(url)?;
        self.with_retries(async || self.get_document_once(url, &target, options).await)
            .await
    }

    /// Downloads `url` into a new temporary file in `dest_dir`, checking size and sha256 as it streams,
    /// and returns the temporary file's path once it is complete, fsynced and verified. The caller renames
    /// it (e.g. [`crate::Store::install_blob`]). On any failure the temporary file is removed.
    pub async fn download_verified(
        &self,
        url: &str,
        expected_sha256: &str,
        expected_size: u64,
        dest_dir: &Path,
    ) -> Result<PathBuf, ClientError> {
        self.download_verified_with_progress(
            url,
            expected_sha256,
            expected_size,
            dest_dir,
            &|_, _| {},
        )
        .await
    }

    /// [`FeedClient::download_verified`], calling `progress(bytes_so_far, total)` as bytes arrive (it
    /// starts again from 0 when an attempt is retried).
    pub async fn download_verified_with_progress(
        &self,
        url: &str,
        expected_sha256: &str,
        expected_size: u64,
        dest_dir: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<PathBuf, ClientError> {
        let expected = Expected {
            sha256: Some(expected_sha256.to_string()),
            size: Some(expected_size),
            max_size: None,
        };
        let downloaded = self
            .download_with(
                url,
                &RequestOptions::default(),
                &expected,
                dest_dir,
                progress,
            )
            .await?;
        Ok(downloaded.path)
    }

    /// Downloads `url` into a new temporary file in `dest_dir`, with `options` (headers, origin-bound
    /// credentials, redirects), checking what `expected` says as it streams; returns the file, its sha256
    /// and size once it is complete, fsynced and verified. On any failure the temporary file is removed.
    /// `progress(bytes_so_far, total)` gets 0 as total when the size is not known.
    pub async fn download_with(
        &self,
        url: &str,
        options: &RequestOptions,
        expected: &Expected,
        dest_dir: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Downloaded, ClientError> {
        let target = parse_url(url)?;
        let expected = Expected {
            sha256: expected.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            ..expected.clone()
        };
        let (path, std_file) = create_temp(dest_dir)?;
        let mut file = tokio::fs::File::from_std(std_file);
        let result = self
            .with_retries(async || {
                self.download_once(url, &target, options, &expected, &path, &mut file, progress)
                    .await
            })
            .await;
        drop(file);
        match result {
            Ok((sha256, size)) => Ok(Downloaded { path, sha256, size }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        }
    }

    async fn with_retries<T>(
        &self,
        mut attempt_fn: impl AsyncFnMut() -> Result<T, Failure>,
    ) -> Result<T, ClientError> {
        let attempts = self.config.attempts.max(1);
        let mut attempt = 1;
        loop {
            match attempt_fn().await {
                Ok(value) => return Ok(value),
                Err(failure) if failure.retry && attempt < attempts => {
                    let delay = self.backoff(attempt);
                    tracing::debug!(error = %failure.error, attempt, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(failure) => return Err(with_attempts(failure.error, attempt)),
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.config.backoff_max);
        let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        let random = getrandom::u64().unwrap_or(nanos / 2);
        Duration::from_nanos(random % (nanos + 1))
    }

    /// Connects, sends a GET, follows redirects as `options` allow, and returns the response once its
    /// headers are in, if its status is 2xx. Errors name `url`, the URL asked for (a redirect target may
    /// carry a signed query string).
    async fn request(
        &self,
        url: &str,
        target: &Target,
        options: &RequestOptions,
    ) -> Result<http::Response<Incoming>, Failure> {
        let mut current_url = url.to_string();
        let mut current = target.clone();
        let mut redirects = 0;
        loop {
            let response = self.request_once(url, &current, options).await?;
            let status = response.status();
            let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            if is_redirect && options.max_redirects > 0 {
                let redirect_err = |reason: String| {
                    Failure::fatal(ClientError::Redirect {
                        url: url.into(),
                        reason,
                    })
                };
                if redirects >= options.max_redirects {
                    return Err(redirect_err(format!(
                        "more than {} redirects; not following further",
                        options.max_redirects
                    )));
                }
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| redirect_err(format!("{status} without a Location header")))?;
                let next = url::Url::parse(&current_url)
                    .and_then(|base| base.join(location))
                    .map_err(|e| redirect_err(format!("redirect to an invalid Location: {e}")))?
                    .to_string();
                let next_target = parse_url(&next).map_err(|e| redirect_err(e.to_string()))?;
                tracing::debug!(
                    from = %current.origin(),
                    to = %next_target.origin(),
                    "following a redirect"
                );
                current_url = next;
                current = next_target;
                redirects += 1;
                continue;
            }
            return Ok(response);
        }
    }

    /// One GET to `target`; a non-2xx status (other than a redirect, which the caller handles) is an error.
    async fn request_once(
        &self,
        url: &str,
        target: &Target,
        options: &RequestOptions,
    ) -> Result<http::Response<Incoming>, Failure> {
        let connect_timeout = self.config.connect_timeout;
        let io = tokio::time::timeout(connect_timeout, self.connect(url, target))
            .await
            .map_err(|_| {
                Failure::retry(ClientError::Timeout {
                    url: url.into(),
                    attempts: 1,
                    phase: "connecting to",
                    timeout: connect_timeout,
                })
            })??;
        let http_err = |e: hyper::Error| {
            Failure::retry(ClientError::Http {
                url: url.into(),
                attempts: 1,
                message: e.to_string(),
            })
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(http_err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "feed connection ended");
            }
        });
        let mut builder = Request::get(target.path_and_query.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(header::USER_AGENT, self.config.user_agent.as_str());
        for (name, value) in &options.headers {
            builder = builder.header(name, value);
        }
        if let Some(auth) = &options.authorization
            && auth.origin == target.origin()
        {
            builder = builder.header(header::AUTHORIZATION, auth.value.clone());
        }
        let request = builder.body(Empty::<Bytes>::new()).map_err(|e| {
            Failure::fatal(ClientError::InvalidUrl {
                url: url.into(),
                reason: e.to_string(),
            })
        })?;
        let idle = self.config.idle_timeout;
        let response = tokio::time::timeout(idle, sender.send_request(request))
            .await
            .map_err(|_| {
                Failure::retry(ClientError::Timeout {
                    url: url.into(),
                    attempts: 1,
                    phase: "waiting for an answer from",
                    timeout: idle,
                })
            })?
            .map_err(http_err)?;
        let status = response.status();
        let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
        if !(status.is_success() || (is_redirect && options.max_redirects > 0)) {
            let retry = status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS;
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(Failure {
                retry,
                error: ClientError::Status {
                    url: url.into(),
                    attempts: 1,
                    status,
                    challenge,
                },
            });
        }
        Ok(response)
    }

    async fn connect(&self, url: &str, target: &Target) -> Result<BoxedIo, Failure> {
        let connect_err = |source: io::Error| {
            Failure::retry(ClientError::Connect {
                url: url.into(),
                attempts: 1,
                source,
            })
        };
        let tcp = self
            .config
            .connector
            .connect(&target.host, target.port)
            .await
            .map_err(connect_err)?;
        if !target.https {
            return Ok(tcp);
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|e| {
            Failure::fatal(ClientError::InvalidUrl {
                url: url.into(),
                reason: format!("not a valid TLS server name: {e}"),
            })
        })?;
        match self.tls.connect(name, tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls_error) => Err(Failure::fatal(ClientError::Tls {
                    url: url.into(),
                    message: tls_error.to_string(),
                })),
                None => Err(connect_err(e)),
            },
        }
    }

    /// The next body frame's data, with the idle timeout. `Ok(None)` at the end of the body.
    async fn next_chunk(&self, url: &str, body: &mut Incoming) -> Result<Option<Bytes>, Failure> {
        loop {
            let idle = self.config.idle_timeout;
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| {
                    Failure::retry(ClientError::Timeout {
                        url: url.into(),
                        attempts: 1,
                        phase: "reading from",
                        timeout: idle,
                    })
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(Failure::retry(ClientError::Http {
                        url: url.into(),
                        attempts: 1,
                        message: e.to_string(),
                    }));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    async fn get_document_once(
        &self,
        url: &str,
        target: &Target,
        options: &RequestOptions,
    ) -> Result<Document, Failure> {
        let response = self.request(url, target, options).await?;
        let limit = self.config.max_document_size;
        let too_large = || {
            Failure::fatal(ClientError::TooLarge {
                url: url.into(),
                limit,
            })
        };
        if content_length(&response).is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        let (parts, mut body) = response.into_parts();
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(url, &mut body).await? {
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Document {
            headers: parts.headers,
            body: out,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn download_once(
        &self,
        url: &str,
        target: &Target,
        options: &RequestOptions,
        expected: &Expected,
        path: &Path,
        file: &mut tokio::fs::File,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(String, u64), Failure> {
        let io_failure = |action: &'static str| {
            move |source: io::Error| {
                Failure::fatal(ClientError::Io {
                    action,
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        // A retry starts from an empty file.
        file.set_len(0).await.map_err(io_failure("truncate"))?;
        tokio::io::AsyncSeekExt::seek(file, io::SeekFrom::Start(0))
            .await
            .map_err(io_failure("seek in"))?;
        progress(0, expected.size.unwrap_or(0));

        let response = self.request(url, target, options).await?;
        let size_mismatch = |expected_size, actual| {
            Failure::fatal(ClientError::SizeMismatch {
                url: url.into(),
                expected: expected_size,
                actual,
            })
        };
        let too_large = |limit| {
            Failure::fatal(ClientError::TooLarge {
                url: url.into(),
                limit,
            })
        };
        let announced = content_length(&response);
        if let (Some(announced), Some(expected_size)) = (announced, expected.size)
            && announced != expected_size
        {
            return Err(size_mismatch(expected_size, announced));
        }
        if let (Some(announced), Some(limit)) = (announced, expected.max_size)
            && announced > limit
        {
            return Err(too_large(limit));
        }
        let total = expected.size.or(announced);
        let mut body = response.into_body();
        let mut hasher = octo_fsutil::Sha256Hasher::new();
        let mut received: u64 = 0;
        loop {
            let chunk = match self.next_chunk(url, &mut body).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(Failure {
                    error: ClientError::Http { .. },
                    ..
                }) => {
                    return Err(Failure::retry(ClientError::Truncated {
                        url: url.into(),
                        attempts: 1,
                        expected: total.unwrap_or(received),
                        received,
                    }));
                }
                Err(other) => return Err(other),
            };
            received += chunk.len() as u64;
            if let Some(expected_size) = expected.size
                && received > expected_size
            {
                return Err(size_mismatch(expected_size, received));
            }
            if let Some(limit) = expected.max_size
                && received > limit
            {
                return Err(too_large(limit));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_failure("write"))?;
            progress(received, total.unwrap_or(0));
        }
        if let Some(expected_size) = expected.size
            && received != expected_size
        {
            return Err(size_mismatch(expected_size, received));
        }
        if let Some(announced) = announced
            && received < announced
        {
            return Err(Failure::retry(ClientError::Truncated {
                url: url.into(),
                attempts: 1,
                expected: announced,
                received,
            }));
        }
        file.flush().await.map_err(io_failure("write"))?;
        file.sync_all().await.map_err(io_failure("fsync"))?;
        let actual = hasher.finish_hex();
        if let Some(expected_sha256) = &expected.sha256
            && &actual != expected_sha256
        {
            return Err(Failure::fatal(ClientError::DigestMismatch {
                url: url.into(),
                expected: expected_sha256.clone(),
                actual,
            }));
        }
        Ok((actual, received))
    }
}

fn content_length<B>(response: &http::Response<B>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn with_attempts(mut error: ClientError, made: u32) -> ClientError {
    match &mut error {
        ClientError::Connect { attempts, .. }
        | ClientError::Timeout { attempts, .. }
        | ClientError::Status { attempts, .. }
        | ClientError::Http { attempts, .. }
        | ClientError::Truncated { attempts, .. } => *attempts = made,
        _ => {}
    }
    error
}

/// A new temporary file in `dir`, named like the store's temporary files (`.tmp-*`) so that the store
/// cleans it up if the process dies mid-download.
fn create_temp(dir: &Path) -> Result<(PathBuf, std::fs::File), ClientError> {
    loop {
        let random = getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()));
        let path = dir.join(format!(
            ".tmp-{}-{random:016x}.download",
            std::process::id()
        ));
        match std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(ClientError::Io {
                    action: "create a temporary file in",
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = parse_url("https://feed.example/steps/index.json?x=1").unwrap();
        assert!(t.https);
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("feed.example", 443, "/steps/index.json?x=1")
        );
        let t = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.port, t.path_and_query.as_str(), t.authority.as_str()),
            (8080, "/", "127.0.0.1:8080")
        );
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!(t.host, "::1");
        for bad in [
            "ftp://x/y",
            "/relative",
            "http://user:pw@host/",
            "not a url",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let client = FeedClient::new(ClientConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..ClientConfig::default()
        })
        .unwrap();
        for attempt in 1..40 {
            let ceiling = Duration::from_millis(if attempt == 1 {
                100
            } else if attempt == 2 {
                200
            } else {
                300
            });
            assert!(client.backoff(attempt) <= ceiling);
        }
    }

    #[test]
    fn trust_pem_needs_a_certificate() {
        assert!(matches!(
            ClientConfig::default().trust_pem(b"nothing here"),
            Err(ClientError::TlsConfig(_))
        ));
    }
}
