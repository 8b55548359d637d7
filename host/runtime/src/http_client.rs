//! Sending a plugin's HTTP request once the outbound gate has allowed it: directly, or through the web
//! request proxy. `https` goes through a CONNECT tunnel with TLS end to end (the proxy never sees the
//! plaintext); plain `http` is sent to the proxy in absolute form, as curl does, so proxies that only
//! allow CONNECT to port 443 still carry it.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use octo_comms::proxy::connect_via_proxy;
pub(crate) use octo_web_proxy::WebProxy;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// TLS trust and proxy choice for plugins' requests.
#[derive(Clone)]
pub(crate) struct HttpSender {
    tls: tokio_rustls::TlsConnector,
    proxy: Option<Arc<WebProxy>>,
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl HttpSender {
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>, proxy: Option<Arc<WebProxy>>) -> Self {
        HttpSender {
            tls: tokio_rustls::TlsConnector::from(tls),
            proxy,
        }
    }

    /// A byte stream to `host:port` for a script's CONNECT: directly, or through a CONNECT tunnel of the
    /// web request proxy. The error is one line for the step's log.
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Box<dyn Io>, String> {
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let proxy = match &self.proxy {
            Some(p) => p
                .proxy_for(true, bare_host)
                .map_err(|e| format!("web request proxy setting is not usable: {e}"))?,
            None => None,
        };
        match proxy {
            Some(proxy) => connect_via_proxy(&proxy, bare_host, port, timeout)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>)
                .map_err(|e| format!("via web request proxy: {e}")),
            None => connect_direct(bare_host, port, timeout)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>)
                .map_err(|e| format!("cannot connect to {host}:{port}: {e}")),
        }
    }

    /// Sends `request`; `warn` receives a line for the step's log when something on the way fails
    /// (so a proxy's 407 is explained, not just reported as a refused connection).
    pub(crate) async fn send(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        warn: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(Response<WasiBody>, IoFuture), Error> {
        let uri = request.uri().clone();
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let first_byte_timeout = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let between_bytes = options
            .and_then(|o| o.between_bytes_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);

        let proxy = match &self.proxy {
            Some(p) => p.proxy_for(https, &bare_host).map_err(|e| {
                warn(format!("web request proxy setting is not usable: {e}"));
                Error::ConfigurationError
            })?,
            None => None,
        };
        let mut absolute_form = false;
        let stream: Box<dyn Io> = match (&proxy, https) {
            (None, _) => Box::new(connect_direct(&bare_host, port, connect_timeout).await?),
            (Some(proxy), true) => {
                let tunnel = connect_via_proxy(proxy, &bare_host, port, connect_timeout)
                    .await
                    .map_err(|e| {
                        warn(format!("via web request proxy: {e}"));
                        Error::Connect(std::io::Error::other(e.to_string()))
                    })?;
                Box::new(tunnel)
            }
            (Some(proxy), false) => {
                absolute_form = true;
                if let Some(auth) = proxy.basic_authorization() {
                    let value = http::HeaderValue::from_str(&auth)
                        .map_err(|_| Error::ConfigurationError)?;
                    request
                        .headers_mut()
                        .insert(http::header::PROXY_AUTHORIZATION, value);
                }
                let tcp = connect_direct(proxy.host(), proxy.port(), connect_timeout)
                    .await
                    .inspect_err(|_| {
                        warn(format!(
                            "cannot reach web request proxy {}",
                            proxy.authority()
                        ))
                    })?;
                Box::new(tcp)
            }
        };
        let stream: Box<dyn Io> = if https {
            let name = rustls::pki_types::ServerName::try_from(bare_host.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let tls = tokio::time::timeout(connect_timeout, self.tls.connect(name, stream))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(|e| {
                    warn(format!("TLS with {host}:{port} failed: {e}"));
                    Error::Tls(e)
                })?;
            Box::new(tls)
        } else {
            stream
        };
        if !absolute_form {
            // Origin form on a direct connection or inside a tunnel.
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            *request.uri_mut() = http::Uri::builder()
                .path_and_query(path)
                .build()
                .map_err(|_| Error::HttpRequestUriInvalid)?;
        }
        let (mut sender, conn) = tokio::time::timeout(
            connect_timeout,
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = done_tx.send(conn.await);
        });
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        let between_bytes = between_bytes.max(Duration::from_nanos(1));
        let response = response.map(|incoming| {
            let mut timer = tokio::time::interval(between_bytes);
            timer.reset();
            http_body_util::BodyExt::boxed_unsync(TimedBody { incoming, timer })
        });
        let io: IoFuture = Box::new(async move {
            match done_rx.await {
                Ok(Err(e)) if e.is_timeout() => Err(Error::HttpResponseTimeout),
                Ok(Err(e)) => Err(Error::from(e)),
                _ => Ok(()),
            }
        });
        Ok((response, io))
    }
}

async fn connect_direct(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, Error> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Error::Connect(e)),
        Err(_) => Err(Error::ConnectionTimeout),
    }
}

/// The response body with the between-bytes timeout applied.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timer: tokio::time::Interval,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// Web PKI roots plus the administrator's extra trusted certificates (PEM), e.g. an internal CA or
/// registry-mock's self-signed certificate.
pub(crate) fn client_tls(extra_pem: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in extra_pem {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("a trusted certificate is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("cannot trust certificate: {e}"))?;
            found = true;
        }
        if !found {
            return Err("a trusted certificate file has no PEM certificate in it".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
