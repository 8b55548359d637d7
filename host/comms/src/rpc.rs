//! RPC: HTTP/2 (hyper) over any byte stream, in either direction.
//!
//! Whoever dialled, the Octo server is the HTTP/2 *client* and the tentacle the HTTP/2 *server*:
//! [`serve_h2`] runs one [`RpcService`] on a stream, [`handshake_h2`] gives an [`RpcClient`] on a
//! stream. Many calls are multiplexed on one connection; bodies stream; HTTP/2 PING keeps idle
//! connections alive and detects dead ones.

pub mod body;
mod client;
mod server;

use std::time::Duration;

use hyper::StatusCode;

pub use body::{BodyError, RpcBody};
pub use client::{Download, RawAnswer, RpcClient, handshake_h2};
pub use server::{RpcService, serve_h2};

use crate::proxy::ProxyError;
use crate::tls::TlsError;

/// HTTP/2 connection settings, shared by both ends.
#[derive(Debug, Clone)]
pub struct H2Options {
    /// Interval between keep-alive PINGs; `None` disables them.
    pub keep_alive_interval: Option<Duration>,
    /// How long to wait for a PING acknowledgement before closing the connection.
    pub keep_alive_timeout: Duration,
    /// Most concurrent calls the serving side accepts on one connection.
    pub max_concurrent_streams: u32,
    /// Limit for a whole JSON call, and for the response head of streaming calls; `None` for none.
    pub call_timeout: Option<Duration>,
    /// Largest JSON response body [`RpcClient::call_json`] reads.
    pub max_json_response: usize,
    /// The `:authority` sent with requests (informational; the peer is known by its certificate).
    pub authority: String,
    /// HTTP/2 flow-control window per stream, both directions. Bulk transfers (plugins, files) stall
    /// on the 64 KiB default long before the link is full.
    pub stream_window: u32,
    /// HTTP/2 flow-control window for the whole connection.
    pub connection_window: u32,
    /// Largest HTTP/2 frame this side accepts.
    pub max_frame_size: u32,
}

impl Default for H2Options {
    fn default() -> Self {
        Self {
            keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 256,
            call_timeout: Some(Duration::from_secs(60)),
            max_json_response: 16 * 1024 * 1024,
            authority: "octo".to_owned(),
            stream_window: 8 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_frame_size: 1024 * 1024,
        }
    }
}

/// Why a connection or call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// `host:port` dialled.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The proxy could not open a tunnel.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// TLS or trust failure: the message names the thumbprint seen and the one expected.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Something did not happen in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The peer answered with a non-success HTTP status.
    #[error("{path} failed with HTTP {status}: {message}")]
    Status {
        /// The call's path.
        path: String,
        /// The status.
        status: StatusCode,
        /// The start of the answer's text.
        message: String,
    },
    /// The connection is closed (by the peer, a failed keep-alive, or trust removal).
    #[error("the connection is closed{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        /// What closed it, when known.
        reason: Option<String>,
    },
    /// An HTTP/2 protocol or connection error (including a keep-alive PING not acknowledged in
    /// time).
    #[error("HTTP/2 error: {}", error_chain(.0))]
    Http(#[source] hyper::Error),
    /// The request could not be encoded as JSON.
    #[error("cannot encode the request as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The response was not the expected JSON.
    #[error("the answer to {path} is not the expected JSON: {source}")]
    Decode {
        /// The call's path.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The response body was larger than allowed.
    #[error("the answer to {path} is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The call's path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// Reading or writing a streamed body failed.
    #[error("streaming failed: {0}")]
    Io(#[source] std::io::Error),
    /// The request could not be built (e.g. an invalid path).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// An error and its causes on one line ("a: b: c"), skipping repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

impl RpcError {
    /// Whether the peer's identity is the problem: it presented a certificate whose thumbprint is
    /// not the pinned one, or it refused this side's certificate. Retrying cannot help until someone
    /// changes the trust on either side.
    pub fn is_trust_failure(&self) -> bool {
        matches!(
            self,
            Self::Tls(TlsError::Untrusted(_) | TlsError::CertificateRejected { .. })
        )
    }

    /// Whether retrying on a new connection may help (connection-level failures), as opposed to
    /// an answer from the peer or a local mistake.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Proxy(_)
                | Self::Tls(_)
                | Self::Timeout { .. }
                | Self::Closed { .. }
                | Self::Http(_)
        )
    }
}
