//! Which peers are trusted: a shared set of pinned thumbprints, the rustls verifiers that accept
//! exactly those certificates, and the [`ConnectionRegistry`] that trust removal closes.
//!
//! The verifiers ignore CA chains, names and validity dates (each side's certificate is
//! self-signed and known by its thumbprint alone) but do verify the handshake signatures, so a
//! peer must hold the private key of the pinned certificate.

mod registry;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::DistinguishedName;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

pub use registry::{ConnectionGuard, ConnectionInfo, ConnectionRegistry, Direction};

use crate::identity::Thumbprint;

struct Inner {
    pinned: RwLock<BTreeSet<Thumbprint>>,
    connections: ConnectionRegistry,
}

/// The shared, mutable set of trusted peer thumbprints, with the registry of live connections to
/// those peers. Cloning shares it.
#[derive(Clone)]
pub struct TrustStore {
    inner: Arc<Inner>,
}

impl Default for TrustStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("pinned", &self.thumbprints())
            .field("connections", &self.inner.connections)
            .finish()
    }
}

impl TrustStore {
    /// A store that trusts nobody yet.
    pub fn new() -> Self {
        Self::from_thumbprints([])
    }

    /// A store that trusts exactly `thumbprints`.
    pub fn from_thumbprints(thumbprints: impl IntoIterator<Item = Thumbprint>) -> Self {
        Self {
            inner: Arc::new(Inner {
                pinned: RwLock::new(thumbprints.into_iter().collect()),
                connections: ConnectionRegistry::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<Thumbprint>> {
        self.inner.pinned.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<Thumbprint>> {
        self.inner.pinned.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Trusts `thumbprint`; returns whether it was new.
    pub fn trust(&self, thumbprint: Thumbprint) -> bool {
        self.write().insert(thumbprint)
    }

    /// Stops trusting `thumbprint` and closes its live connections; returns whether it was
    /// trusted.
    pub fn revoke(&self, thumbprint: &Thumbprint) -> bool {
        let mut pinned = self.write();
        let was = pinned.remove(thumbprint);
        // Closed while the write lock is held, so no handshake can register in between.
        self.inner.connections.close_peer(thumbprint);
        was
    }

    /// Replaces the whole set (e.g. after settings were reloaded); live connections of peers no
    /// longer in it are closed.
    pub fn replace_all(&self, thumbprints: impl IntoIterator<Item = Thumbprint>) {
        let mut pinned = self.write();
        let new: BTreeSet<_> = thumbprints.into_iter().collect();
        for gone in pinned.difference(&new) {
            self.inner.connections.close_peer(gone);
        }
        *pinned = new;
    }

    /// Whether `thumbprint` is trusted.
    pub fn is_trusted(&self, thumbprint: &Thumbprint) -> bool {
        self.read().contains(thumbprint)
    }

    /// The trusted thumbprints, sorted.
    pub fn thumbprints(&self) -> Vec<Thumbprint> {
        self.read().iter().copied().collect()
    }

    /// Accepts `seen` if it is trusted.
    pub fn check(&self, seen: Thumbprint) -> Result<(), UntrustedPeer> {
        let pinned = self.read();
        if pinned.contains(&seen) {
            Ok(())
        } else {
            Err(UntrustedPeer::new(seen, pinned.iter().copied()))
        }
    }

    /// The registry of live connections to peers of this store.
    pub fn connections(&self) -> &ConnectionRegistry {
        &self.inner.connections
    }

    /// Registers a live connection to `peer` if (still) trusted. Checked under the same lock that
    /// [`TrustStore::revoke`] takes, so a connection whose handshake raced with a revocation is
    /// refused here rather than left open.
    pub fn register_connection(
        &self,
        peer: Thumbprint,
        remote: Option<SocketAddr>,
        direction: Direction,
    ) -> Result<ConnectionGuard, UntrustedPeer> {
        let pinned = self.read();
        if !pinned.contains(&peer) {
            return Err(UntrustedPeer::new(peer, pinned.iter().copied()));
        }
        Ok(self.inner.connections.register(peer, remote, direction))
    }
}

/// A peer presented a certificate whose thumbprint is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedPeer {
    /// The thumbprint the peer presented.
    pub seen: Thumbprint,
    /// The thumbprints that would have been accepted (at most [`UntrustedPeer::LISTED`]).
    pub expected: Vec<Thumbprint>,
    /// How many trusted thumbprints there were in all.
    pub expected_count: usize,
}

impl UntrustedPeer {
    /// How many expected thumbprints are kept for the message.
    pub const LISTED: usize = 5;

    /// Builds the error from the seen and the trusted thumbprints.
    pub fn new(seen: Thumbprint, expected: impl IntoIterator<Item = Thumbprint>) -> Self {
        let mut expected_count = 0;
        let mut listed = Vec::new();
        for t in expected {
            expected_count += 1;
            if listed.len() < Self::LISTED {
                listed.push(t);
            }
        }
        Self {
            seen,
            expected: listed,
            expected_count,
        }
    }

    /// Finds an `UntrustedPeer` carried inside a rustls error.
    pub fn from_rustls(error: &rustls::Error) -> Option<&Self> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Self>()
            }
            _ => None,
        }
    }
}

impl fmt::Display for UntrustedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the peer's certificate thumbprint {} is not trusted; ",
            self.seen
        )?;
        match self.expected_count {
            0 => write!(f, "no thumbprint is trusted yet"),
            1 => write!(f, "expected {}", self.expected[0]),
            n => {
                let list: Vec<String> = self.expected.iter().map(|t| t.to_string()).collect();
                write!(f, "expected one of {}", list.join(", "))?;
                if n > self.expected.len() {
                    write!(f, " and {} more", n - self.expected.len())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for UntrustedPeer {}

/// The verification shared by both directions.
#[derive(Clone)]
struct Pinned {
    trust: TrustStore,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(trust: TrustStore) -> Self {
        Self {
            trust,
            algorithms: crate::crypto_provider().signature_verification_algorithms,
        }
    }

    fn verify(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let seen = Thumbprint::of_der(end_entity);
        self.trust.check(seen).map_err(|untrusted| {
            tracing::debug!(%untrusted, "refusing a TLS peer");
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                untrusted,
            ))))
        })
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Client side: accepts a server whose certificate thumbprint is trusted.
#[derive(Clone)]
pub struct PinnedServerVerifier(Pinned);

impl PinnedServerVerifier {
    /// A verifier backed by `trust` (changes to the store apply to later handshakes).
    pub fn new(trust: TrustStore) -> Self {
        Self(Pinned::new(trust))
    }
}

impl fmt::Debug for PinnedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PinnedServerVerifier")
            .field(&self.0.trust)
            .finish()
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verify(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// Server side: asks for a client certificate without requiring one (so a client without one can
/// be given a short explanation), and accepts a presented certificate only if its thumbprint is
/// trusted. Whether a certificate was presented at all is checked after the handshake.
#[derive(Clone)]
pub struct PinnedClientVerifier(Pinned);

impl PinnedClientVerifier {
    /// A verifier backed by `trust` (changes to the store apply to later handshakes).
    pub fn new(trust: TrustStore) -> Self {
        Self(Pinned::new(trust))
    }
}

impl fmt::Debug for PinnedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PinnedClientVerifier")
            .field(&self.0.trust)
            .finish()
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(n: u8) -> Thumbprint {
        Thumbprint::from_bytes([n; 32])
    }

    #[test]
    fn trust_revoke_and_check() {
        let store = TrustStore::new();
        assert!(store.trust(tp(1)));
        assert!(!store.trust(tp(1)));
        assert!(store.check(tp(1)).is_ok());
        let err = store.check(tp(2)).unwrap_err();
        assert_eq!(err.seen, tp(2));
        assert_eq!(err.expected, vec![tp(1)]);
        assert!(err.to_string().contains(&tp(2).to_string()));
        assert!(err.to_string().contains(&format!("expected {}", tp(1))));
        assert!(store.revoke(&tp(1)));
        assert!(!store.is_trusted(&tp(1)));
        assert!(
            store
                .check(tp(1))
                .unwrap_err()
                .to_string()
                .contains("no thumbprint")
        );
    }

    #[test]
    fn long_expected_lists_are_shortened() {
        let err = UntrustedPeer::new(tp(0), (1..=9).map(tp));
        assert_eq!(err.expected.len(), UntrustedPeer::LISTED);
        assert!(err.to_string().ends_with("and 4 more"), "{err}");
    }

    #[test]
    fn revoke_and_replace_close_live_connections() {
        let store = TrustStore::from_thumbprints([tp(1), tp(2)]);
        let g1 = store
            .register_connection(tp(1), None, Direction::Inbound)
            .unwrap();
        let g2 = store
            .register_connection(tp(2), None, Direction::Outbound)
            .unwrap();
        assert!(
            store
                .register_connection(tp(3), None, Direction::Inbound)
                .is_err()
        );
        store.revoke(&tp(1));
        assert!(g1.token().is_cancelled());
        assert!(!g2.token().is_cancelled());
        assert!(
            store
                .register_connection(tp(1), None, Direction::Inbound)
                .is_err()
        );
        store.replace_all([tp(3)]);
        assert!(g2.token().is_cancelled());
        assert_eq!(store.thumbprints(), vec![tp(3)]);
    }

    #[test]
    fn untrusted_peer_round_trips_through_a_rustls_error() {
        let store = TrustStore::from_thumbprints([tp(1)]);
        let err = Pinned::new(store).verify(&CertificateDer::from(vec![1, 2, 3]));
        let err = err.unwrap_err();
        let untrusted = UntrustedPeer::from_rustls(&err).unwrap();
        assert_eq!(untrusted.seen, Thumbprint::of_der(&[1, 2, 3]));
    }
}
