//! rustls configurations built from an [`Identity`] and a [`TrustStore`], the server-side
//! acceptor, and the client-side connector.
//!
//! The acceptor reads the first byte itself: plain HTTP gets a `400` text answer; a TLS client
//! without a certificate, or that does not negotiate HTTP/2, gets a short `text/plain` answer
//! saying what this port is. Only a trusted peer speaking `h2` is handed to the caller, with its
//! thumbprint. Session resumption is disabled, so every connection is verified against the
//! current trust set.

pub mod answer;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::identity::{Identity, Thumbprint, subject_common_name};
use crate::stream::PrefixedStream;
use crate::trust::{PinnedClientVerifier, PinnedServerVerifier, TrustStore, UntrustedPeer};

/// The only application protocol spoken on a connection.
pub const ALPN_H2: &[u8] = b"h2";

/// Default limit for reading the first byte and completing a TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection that does not speak the protocol is given to send its request before
/// it is answered and closed.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// Who is at the other end of an established connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// SHA-256 thumbprint of the peer's certificate.
    pub thumbprint: Thumbprint,
    /// Subject common name of the peer's certificate (informational: trust is by thumbprint).
    pub name: Option<String>,
    /// The peer's address, when known (not for connections through a proxy).
    pub remote: Option<SocketAddr>,
}

/// An established, verified TLS connection.
#[derive(Debug)]
pub struct TlsConnection<S> {
    /// The TLS stream.
    pub stream: S,
    /// The verified peer.
    pub peer: PeerInfo,
}

/// The server-side stream type produced by [`TlsServer::accept`].
pub type ServerStream<IO> = tokio_rustls::server::TlsStream<PrefixedStream<IO>>;
/// The client-side stream type produced by [`TlsClient::connect`].
pub type ClientStream<IO> = PrefixedStream<tokio_rustls::client::TlsStream<IO>>;

/// A rustls server configuration: this side's certificate, client certificates requested (not
/// required) and accepted only if pinned in `trust`, ALPN `h2` (and `http/1.1`, only so that such
/// clients can be told what this port is).
pub fn server_config(identity: &Identity, trust: TrustStore) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crate::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier::new(trust)))
        .with_single_cert(
            vec![identity.certificate_der().clone()],
            identity.private_key_der(),
        )
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A rustls client configuration: this side's certificate as client certificate, servers
/// accepted only if pinned in `trust`, ALPN `h2`.
pub fn client_config(identity: &Identity, trust: TrustStore) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(crate::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(trust)))
        .with_client_auth_cert(
            vec![identity.certificate_der().clone()],
            identity.private_key_der(),
        )
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Accepts TLS connections from trusted peers.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    trust: TrustStore,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("trust", &self.trust)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// A server presenting `identity` and accepting the peers pinned in `trust`.
    pub fn new(identity: &Identity, trust: TrustStore) -> Result<Self, TlsError> {
        let config = server_config(identity, trust.clone())?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            trust,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets the limit for the first byte and the handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The trust store peers are checked against.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Accepts one connection. Connections that do not speak the protocol are answered with a
    /// short text and closed here, and reported as an error the caller should only log.
    pub async fn accept<IO>(
        &self,
        mut io: IO,
        remote: Option<SocketAddr>,
    ) -> Result<TlsConnection<ServerStream<IO>>, AcceptError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(self.handshake_timeout, io.read(&mut first))
            .await
            .map_err(|_| AcceptError::Timeout(self.handshake_timeout))?
            .map_err(AcceptError::Io)?;
        if n == 0 {
            return Err(AcceptError::ClosedBeforeHandshake);
        }
        if answer::classify_first_byte(first[0]) == answer::FirstByte::NotTls {
            let response =
                answer::http1_text_response(StatusCode::BAD_REQUEST, answer::PLAIN_HTTP_TEXT);
            answer::answer_http1(io, &first, &response, ANSWER_WAIT).await;
            return Err(AcceptError::NotTls);
        }
        let stream = PrefixedStream::new(Bytes::copy_from_slice(&first), io);
        let tls = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| AcceptError::Timeout(self.handshake_timeout))?
            .map_err(
                |e| match rustls_error(&e).and_then(UntrustedPeer::from_rustls) {
                    Some(untrusted) => AcceptError::UntrustedClient(untrusted.clone()),
                    None => AcceptError::Handshake(e),
                },
            )?;
        let (_, connection) = tls.get_ref();
        let h2 = connection.alpn_protocol() == Some(ALPN_H2);
        let certificate = connection
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        let Some(certificate) = certificate else {
            if h2 {
                answer::answer_h2(
                    tls,
                    StatusCode::FORBIDDEN,
                    answer::CERTIFICATE_REQUIRED_TEXT,
                    ANSWER_WAIT,
                )
                .await;
            } else {
                let response = answer::http1_text_response(
                    StatusCode::FORBIDDEN,
                    answer::CERTIFICATE_REQUIRED_TEXT,
                );
                answer::answer_http1(tls, &[], &response, ANSWER_WAIT).await;
            }
            return Err(AcceptError::NoClientCertificate);
        };
        let peer = PeerInfo {
            thumbprint: Thumbprint::of_der(&certificate),
            name: subject_common_name(&certificate),
            remote,
        };
        if !h2 {
            let response =
                answer::http1_text_response(StatusCode::BAD_REQUEST, answer::HTTP2_REQUIRED_TEXT);
            answer::answer_http1(tls, &[], &response, ANSWER_WAIT).await;
            return Err(AcceptError::NotHttp2 {
                peer: peer.thumbprint,
            });
        }
        Ok(TlsConnection { stream: tls, peer })
    }
}

/// Connects to trusted peers over TLS.
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    trust: TrustStore,
    thumbprint: Thumbprint,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("trust", &self.trust)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client presenting `identity` and accepting the servers pinned in `trust`.
    pub fn new(identity: &Identity, trust: TrustStore) -> Result<Self, TlsError> {
        let config = client_config(identity, trust.clone())?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            trust,
            thumbprint: identity.thumbprint(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets the limit for the handshake (and for the peer's first bytes, see
    /// [`TlsClient::connect`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The trust store servers are checked against.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Runs the TLS handshake over `io`. The server must present a trusted certificate and, when
    /// `expected` is given, exactly that one. `server_name` is only sent as SNI (names are not
    /// verified).
    ///
    /// With TLS 1.3 the server judges our certificate after the client considers the handshake
    /// complete, so this also waits (up to the handshake timeout) for the peer's first bytes:
    /// both protocol directions make the peer speak first-ish (HTTP/2 SETTINGS), and a refusal
    /// arrives as an alert, reported as [`TlsError::CertificateRejected`].
    pub async fn connect<IO>(
        &self,
        server_name: &str,
        io: IO,
        expected: Option<Thumbprint>,
        remote: Option<SocketAddr>,
    ) -> Result<TlsConnection<ClientStream<IO>>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name = ServerName::try_from(server_name.to_owned())
            .unwrap_or_else(|_| ServerName::try_from("octo.invalid").expect("valid DNS name"));
        let mut tls =
            tokio::time::timeout(self.handshake_timeout, self.connector.connect(name, io))
                .await
                .map_err(|_| TlsError::Timeout(self.handshake_timeout))?
                .map_err(|e| self.classify(e))?;
        let (_, connection) = tls.get_ref();
        let certificate = connection
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or_else(|| {
                TlsError::Handshake(io::Error::other("the server sent no certificate"))
            })?;
        let seen = Thumbprint::of_der(&certificate);
        if let Some(expected) = expected
            && seen != expected
        {
            return Err(TlsError::Untrusted(UntrustedPeer::new(seen, [expected])));
        }
        if connection.alpn_protocol() != Some(ALPN_H2) {
            return Err(TlsError::NotHttp2);
        }
        let peer = PeerInfo {
            thumbprint: seen,
            name: subject_common_name(&certificate),
            remote,
        };
        let mut first = vec![0u8; 4096];
        let first = match tokio::time::timeout(self.handshake_timeout, tls.read(&mut first)).await {
            Ok(Ok(0)) => return Err(TlsError::ClosedByPeer),
            Ok(Ok(n)) => {
                first.truncate(n);
                Bytes::from(first)
            }
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(_) => {
                tracing::debug!(peer = %peer.thumbprint, "the peer sent nothing after the TLS handshake; going on");
                Bytes::new()
            }
        };
        Ok(TlsConnection {
            stream: PrefixedStream::new(first, tls),
            peer,
        })
    }

    fn classify(&self, error: io::Error) -> TlsError {
        classify_client_error(error, self.thumbprint)
    }
}

/// Maps a client-side handshake (or first read) failure to a [`TlsError`].
fn classify_client_error(error: io::Error, ours: Thumbprint) -> TlsError {
    if let Some(rustls_error) = rustls_error(&error) {
        if let Some(untrusted) = UntrustedPeer::from_rustls(rustls_error) {
            return TlsError::Untrusted(untrusted.clone());
        }
        if let Some(alert) = rejection_alert(rustls_error) {
            return TlsError::CertificateRejected {
                ours,
                alert: format!("{alert:?}"),
            };
        }
    }
    TlsError::Handshake(error)
}

/// The rustls error inside an I/O error from tokio-rustls.
pub(crate) fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The alert, if `error` is the peer refusing our certificate.
pub(crate) fn rejection_alert(error: &rustls::Error) -> Option<AlertDescription> {
    match error {
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::CertificateUnknown
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::UnsupportedCertificate),
        ) => Some(*alert),
        _ => None,
    }
}

/// Walks an error's source chain for a TLS cause worth naming: an untrusted peer, or the peer
/// refusing our certificate.
pub(crate) fn find_tls_cause(
    error: &(dyn std::error::Error + 'static),
    ours: Option<Thumbprint>,
) -> Option<TlsError> {
    let mut current = Some(error);
    while let Some(e) = current {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_error {
            if let Some(untrusted) = UntrustedPeer::from_rustls(r) {
                return Some(TlsError::Untrusted(untrusted.clone()));
            }
            if let (Some(alert), Some(ours)) = (rejection_alert(r), ours) {
                return Some(TlsError::CertificateRejected {
                    ours,
                    alert: format!("{alert:?}"),
                });
            }
        }
        current = e.source();
    }
    None
}

/// Why an inbound connection was not handed over. Except for [`AcceptError::Io`] and
/// [`AcceptError::Handshake`], the connection has already been answered or closed, and the caller
/// should only log it.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Nothing arrived, or the handshake did not finish, within the limit.
    #[error("the peer did not complete a TLS handshake within {0:?}")]
    Timeout(Duration),
    /// The peer closed before sending anything.
    #[error("the peer closed the connection before a TLS handshake")]
    ClosedBeforeHandshake,
    /// The peer did not speak TLS (e.g. plain HTTP); it was answered with a 400 text.
    #[error("the peer does not speak TLS (plain HTTP?); it was answered with a 400 text")]
    NotTls,
    /// The peer presented a certificate whose thumbprint is not trusted.
    #[error("refused a client certificate: {0}")]
    UntrustedClient(UntrustedPeer),
    /// The peer presented no certificate (a browser, curl); it was told one is required.
    #[error(
        "the peer presented no client certificate (a browser or curl?); it was told one is required"
    )]
    NoClientCertificate,
    /// A trusted peer did not negotiate HTTP/2.
    #[error("trusted peer {peer} did not negotiate HTTP/2 (ALPN h2)")]
    NotHttp2 {
        /// The peer's thumbprint.
        peer: Thumbprint,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// Reading the first byte failed.
    #[error("reading from the connection failed: {0}")]
    Io(#[source] io::Error),
}

/// Why a TLS configuration could not be built or an outbound handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The identity could not be used for a TLS configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// The peer's certificate is not the trusted one.
    #[error("{0}")]
    Untrusted(UntrustedPeer),
    /// The peer refused our certificate.
    #[error(
        "the peer refused this side's certificate (thumbprint {ours}, TLS alert {alert}); the peer must trust this thumbprint"
    )]
    CertificateRejected {
        /// Our thumbprint, which the peer must pin.
        ours: Thumbprint,
        /// The TLS alert received.
        alert: String,
    },
    /// The handshake did not finish in time.
    #[error("the TLS handshake did not complete within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection right after the handshake.
    #[error("the peer closed the connection right after the TLS handshake")]
    ClosedByPeer,
    /// The peer did not negotiate HTTP/2: not an Octo endpoint.
    #[error("the peer did not negotiate HTTP/2 (ALPN h2); is this an Octo endpoint?")]
    NotHttp2,
    /// Another handshake failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
}
