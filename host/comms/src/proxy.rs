//! HTTP proxies: the settings ([`ProxyConfig`], parsed apart from any I/O) and the `CONNECT`
//! client every outbound connection with a proxy goes through ([`connect_via_proxy`]). Only HTTP
//! proxies are supported, and TLS runs end to end inside the tunnel.
//!
//! Errors name the proxy by `host:port`, never with its credentials.

mod config;
mod connect;
pub mod reply;
pub mod system;

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

pub use config::{
    DEFAULT_PROXY_PORT, ProxyConfig, ProxyConfigError, ProxyCredentials, ProxyPassword,
};
pub use connect::{DEFAULT_PROXY_TIMEOUT, connect_via_proxy};

use crate::stream::PrefixedStream;

/// `host:port` with IPv6 addresses in brackets.
pub(crate) fn reply_authority(host: &str, port: u16) -> String {
    config::authority(host.trim_start_matches('[').trim_end_matches(']'), port)
}

/// A TCP stream to the target through the proxy tunnel (any bytes the proxy sent after its reply
/// head are replayed first).
pub type ProxiedStream = PrefixedStream<TcpStream>;

/// Why a tunnel through a proxy could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy could not be reached.
    #[error("cannot reach the proxy {proxy}: {source}")]
    Unreachable {
        /// `host:port` of the proxy.
        proxy: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `407`: the proxy wants (other) credentials.
    #[error("{}", if *sent_credentials {
        format!("the proxy {proxy} rejected the credentials (HTTP 407 Proxy Authentication Required); check the proxy user name and password")
    } else {
        format!("the proxy {proxy} requires authentication (HTTP 407 Proxy Authentication Required); set a proxy user name and password")
    })]
    AuthenticationRequired {
        /// `host:port` of the proxy.
        proxy: String,
        /// Whether credentials were sent.
        sent_credentials: bool,
    },
    /// `403`: the proxy does not allow this tunnel.
    #[error(
        "the proxy {proxy} refused to open a tunnel to {target} (HTTP 403 Forbidden); its rules must allow CONNECT to that host and port"
    )]
    Forbidden {
        /// `host:port` of the proxy.
        proxy: String,
        /// `host:port` of the target.
        target: String,
    },
    /// `502`/`503`/`504`: the proxy could not reach the target.
    #[error("the proxy {proxy} could not reach {target} (HTTP {status} {reason})")]
    TargetUnreachable {
        /// `host:port` of the proxy.
        proxy: String,
        /// `host:port` of the target.
        target: String,
        /// The status.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// Another non-2xx status.
    #[error("the proxy {proxy} refused the tunnel to {target} with HTTP {status} {reason}")]
    Refused {
        /// `host:port` of the proxy.
        proxy: String,
        /// `host:port` of the target.
        target: String,
        /// The status.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// No complete reply within the limit.
    #[error("the proxy {proxy} did not answer the CONNECT request within {after:?}")]
    Timeout {
        /// `host:port` of the proxy.
        proxy: String,
        /// The limit.
        after: Duration,
    },
    /// The proxy closed the connection before its reply was complete.
    #[error(
        "the proxy {proxy} closed the connection {}",
        if *received == 0 { "without replying to CONNECT".to_owned() } else { format!("in the middle of its reply ({received} bytes received)") }
    )]
    ClosedMidReply {
        /// `host:port` of the proxy.
        proxy: String,
        /// Bytes received before the close.
        received: usize,
    },
    /// The reply is not HTTP.
    #[error("the proxy {proxy} sent a malformed reply to CONNECT: {detail}")]
    MalformedReply {
        /// `host:port` of the proxy.
        proxy: String,
        /// What is wrong.
        detail: String,
    },
    /// The target cannot be put in a `CONNECT` request.
    #[error("cannot ask the proxy {proxy} for a tunnel: {detail}")]
    InvalidTarget {
        /// `host:port` of the proxy.
        proxy: String,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing failed mid-exchange.
    #[error("talking to the proxy {proxy} failed: {source}")]
    Io {
        /// `host:port` of the proxy.
        proxy: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
