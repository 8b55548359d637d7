//! The sockets: bind, optional TLS, hyper, and carrying out [`Reply`]s.

use crate::mock::{Mock, MockConfig, MockRequest, Reply};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

/// Largest request body read (telemetry and fault documents are small).
const MAX_REQUEST_BODY: usize = 16 << 20;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (default 127.0.0.1).
    pub host: String,
    /// Port (0: any free one).
    pub port: u16,
    /// Serve HTTPS with a generated self-signed certificate (SAN 127.0.0.1, localhost).
    pub tls: bool,
    /// Where the certificate (and, without a feed, the key) is written.
    pub state_dir: PathBuf,
    /// The feed to serve.
    pub feed_dir: Option<PathBuf>,
    /// Library-format templates to serve; `None` serves an empty library.
    pub library_dir: Option<PathBuf>,
    /// The feed signing key file (created if missing).
    pub key_path: PathBuf,
    /// What `/api/update` answers.
    pub latest_version: String,
}

/// The line printed on stdout when the server is ready.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The feed's base URL (`{url}/feed`).
    pub feed_url: String,
    /// PEM file of the self-signed certificate with `--tls`, else null.
    pub tls_certificate: Option<PathBuf>,
    /// The feed's public key (base64), to pin.
    pub feed_public_key: String,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// A running server.
pub struct Server {
    /// What to print.
    pub ready: Ready,
    /// The state, for in-process use.
    pub mock: Arc<Mock>,
    /// The accept loop.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds and starts serving; returns once the socket is listening.
pub async fn start(options: ServeOptions) -> Result<Server> {
    std::fs::create_dir_all(&options.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            options.state_dir.display()
        )
    })?;
    let (key, _) = crate::publish::load_or_create_key(&options.key_path)?;
    if let Some(feed) = &options.feed_dir
        && let (Ok(index), Ok(sig)) = (
            std::fs::read(feed.join("index.json")),
            std::fs::read(feed.join("index.json.sig")),
        )
        && octo_feed::signature::verify(&index, Some(&sig), &key.public_key()).is_err()
    {
        tracing::warn!(key = %options.key_path.display(), "the feed's index.json.sig does not verify with this key");
    }
    let library = match &options.library_dir {
        Some(dir) => crate::mock::load_library(dir)?,
        None => Vec::new(),
    };
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
        .await
        .with_context(|| format!("binding {}:{}", options.host, options.port))?;
    let address = listener.local_addr()?;
    let (tls, tls_certificate) = if options.tls {
        let (acceptor, pem) = self_signed_acceptor()?;
        let path = options.state_dir.join("tls-cert.pem");
        std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
        (Some(acceptor), Some(path))
    } else {
        (None, None)
    };
    let host = if address.ip().is_ipv6() {
        format!("[{}]", address.ip())
    } else {
        address.ip().to_string()
    };
    let url = format!(
        "{}://{host}:{}",
        if tls.is_some() { "https" } else { "http" },
        address.port()
    );
    let public_key = key.public_key().to_base64();
    let mock = Arc::new(Mock::new(MockConfig {
        feed_dir: options.feed_dir.clone(),
        library,
        key,
        latest_version: options.latest_version.clone(),
        base_url: url.clone(),
    }));
    tracing::info!(%url, templates = mock.config().library.len(), feed = ?options.feed_dir, "registry-mock listening");
    let accept_mock = mock.clone();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let mock = accept_mock.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_connection(tcp, mock).await,
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => serve_connection(stream, mock).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    },
                }
            });
        }
    });
    Ok(Server {
        ready: Ready {
            feed_url: format!("{url}/feed"),
            url,
            tls_certificate,
            feed_public_key: public_key,
            state_dir: options.state_dir,
        },
        mock,
        task,
    })
}

fn self_signed_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String)> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .context("generating the TLS certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.pem(),
    ))
}

async fn serve_connection<I>(io: I, mock: Arc<Mock>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mock = mock.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&mock, request).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended");
    }
}

async fn handle(mock: &Mock, request: hyper::Request<Incoming>) -> http::Response<MockBody> {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the request body");
            Bytes::new()
        }
    };
    let request = MockRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    mock.record(&request);
    let mut changes = mock.subscribe();
    loop {
        changes.mark_unchanged();
        let routed = mock.route(&request);
        if !routed.delay.is_zero() {
            tokio::time::sleep(routed.delay).await;
        }
        let (response, truncate) = match routed.reply {
            Reply::Hang => {
                tracing::info!(method = %request.method, path = %request.path, "hanging (fault)");
                // Until the faults change; then decide again.
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
            Reply::Full(response) => (response, false),
            Reply::Truncated(response) => (response, true),
        };
        tracing::info!(
            method = %request.method,
            path = %request.path,
            status = response.status().as_u16(),
            truncated = truncate,
            "request"
        );
        let (parts, body) = response.into_parts();
        let body = if truncate {
            let half = body.slice(..body.len() / 2);
            MockBody {
                data: Some(half),
                exact: false,
                fail_at_end: true,
                yielded: false,
            }
        } else {
            MockBody {
                data: Some(body),
                exact: true,
                fail_at_end: false,
                yielded: false,
            }
        };
        return http::Response::from_parts(parts, body);
    }
}

/// A response body: all of it, or (for truncation) part of it and then an error, which makes hyper
/// break the connection after the Content-Length it announced was not met.
pub struct MockBody {
    data: Option<Bytes>,
    exact: bool,
    fail_at_end: bool,
    yielded: bool,
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if !self.fail_at_end {
            return Poll::Ready(None);
        }
        if !self.yielded {
            // Let hyper flush the headers and the partial body before the connection breaks.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(std::io::Error::other(
            "injected fault: truncated body",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        !self.fail_at_end && self.data.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.exact) {
            (Some(data), true) => SizeHint::with_exact(data.len() as u64),
            (None, true) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
