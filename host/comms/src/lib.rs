//! Octo tentacle communications: the transport layer shared by the server (`octo`) and the agent
//! (`tentacle`).
//!
//! * [`identity`]: a self-signed certificate per side, stored on disk, known by its SHA-256
//!   [`Thumbprint`](identity::Thumbprint).
//! * [`trust`]: the pinned thumbprints, the rustls verifiers that accept exactly them, and the
//!   registry of live connections that trust removal closes.
//! * [`tls`]: rustls configurations and the server-side acceptor that gives anything that does not
//!   speak the protocol a short, harmless text answer.
//! * [`rpc`]: HTTP/2 (hyper) in both directions over any byte stream, one service implementation.
//! * [`endpoint`]: TCP (optionally through a proxy) + TLS + RPC wired for the listening and
//!   polling directions.
//! * [`proxy`]: the HTTP CONNECT client used by every outbound connection that has a proxy.
//! * [`backoff`]: full-jitter exponential backoff for reconnects.
//! * [`seal`]: authenticated encryption with a key derived from an identity's private key, for
//!   bytes that nodes sharing one identity pass through a database.
//! * [`stream`]: a byte stream that replays bytes that were read ahead.
#![deny(missing_docs)]

pub mod backoff;
pub mod endpoint;
pub mod identity;
pub mod proxy;
pub mod rpc;
pub mod seal;
pub mod stream;
pub mod tls;
pub mod trust;

/// The crypto provider used everywhere in this crate (rustls with *ring*).
pub(crate) fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    use std::sync::{Arc, OnceLock};
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
