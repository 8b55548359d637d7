//! Shared test fixtures: identities and trust on both sides, a test service, and listeners on
//! 127.0.0.1:0.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use octo_comms::endpoint::{self, Connected, DialTarget};
use octo_comms::identity::Identity;
use octo_comms::rpc::body::{self, RpcBody};
use octo_comms::rpc::{H2Options, RpcService};
use octo_comms::tls::{PeerInfo, TlsClient, TlsServer};
use octo_comms::trust::TrustStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A generous bound for things that must happen, so a broken test fails instead of hanging.
/// Not a timing assertion.
pub const LIVENESS: Duration = Duration::from_secs(20);

pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIVENESS, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {LIVENESS:?}"))
}

/// The server (`octo`) and a tentacle, each with an identity and a trust store that pins the
/// other.
pub struct Sides {
    pub octo: Identity,
    pub tentacle: Identity,
    pub octo_trust: TrustStore,
    pub tentacle_trust: TrustStore,
}

impl Sides {
    pub fn new() -> Self {
        let octo = Identity::generate("octo-server").unwrap();
        let tentacle = Identity::generate("tentacle-1").unwrap();
        let octo_trust = TrustStore::from_thumbprints([tentacle.thumbprint()]);
        let tentacle_trust = TrustStore::from_thumbprints([octo.thumbprint()]);
        Self {
            octo,
            tentacle,
            octo_trust,
            tentacle_trust,
        }
    }

    pub fn octo_client(&self) -> TlsClient {
        TlsClient::new(&self.octo, self.octo_trust.clone())
            .unwrap()
            .with_handshake_timeout(Duration::from_secs(5))
    }

    pub fn octo_server(&self) -> TlsServer {
        TlsServer::new(&self.octo, self.octo_trust.clone())
            .unwrap()
            .with_handshake_timeout(Duration::from_secs(5))
    }

    pub fn tentacle_client(&self) -> TlsClient {
        TlsClient::new(&self.tentacle, self.tentacle_trust.clone())
            .unwrap()
            .with_handshake_timeout(Duration::from_secs(5))
    }

    pub fn tentacle_server(&self) -> TlsServer {
        TlsServer::new(&self.tentacle, self.tentacle_trust.clone())
            .unwrap()
            .with_handshake_timeout(Duration::from_secs(5))
    }

    /// Starts a listening tentacle serving [`TestService`]; returns its port and the token
    /// that stops it.
    pub async fn start_listening_tentacle(&self) -> (u16, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        tokio::spawn(endpoint::serve_listening(
            listener,
            self.tentacle_server(),
            Arc::new(TestService::default()),
            H2Options::default(),
            shutdown.clone(),
        ));
        (port, shutdown)
    }

    /// Starts a listening tentacle and connects the server to it.
    pub async fn listening_pair(&self) -> (Connected, CancellationToken) {
        let (port, shutdown) = self.start_listening_tentacle().await;
        let connected = endpoint::connect_listening(
            &DialTarget::new("127.0.0.1", port),
            &self.octo_client(),
            Some(self.tentacle.thumbprint()),
            &H2Options::default(),
        )
        .await
        .unwrap();
        (connected, shutdown)
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Echo {
    pub n: u64,
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct WhoAmI {
    pub thumbprint: String,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UploadReceipt {
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DownloadRequest {
    pub size: u64,
}

/// Deterministic content for streaming tests.
pub fn pattern(size: u64) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Limit for `/echo` bodies.
pub const ECHO_LIMIT: usize = 64 * 1024;

/// The service used by the tests: `/echo`, `/whoami`, `/upload`, `/download`, `/barrier`,
/// `/panic`.
pub struct TestService {
    pub barrier: Arc<tokio::sync::Barrier>,
}

impl Default for TestService {
    fn default() -> Self {
        Self {
            barrier: Arc::new(tokio::sync::Barrier::new(100)),
        }
    }
}

impl RpcService for TestService {
    async fn call(&self, peer: PeerInfo, request: Request<Incoming>) -> Response<RpcBody> {
        let path = request.uri().path().to_owned();
        let body = request.into_body();
        match path.as_str() {
            "/echo" => match body::read_json::<Echo, _>(body, ECHO_LIMIT).await {
                Ok(echo) => body::json_response(StatusCode::OK, &echo),
                Err(e) => e.into_response(),
            },
            "/barrier" => match body::read_json::<Echo, _>(body, ECHO_LIMIT).await {
                Ok(echo) => {
                    // Completes only once 100 calls are in flight at the same time.
                    self.barrier.wait().await;
                    body::json_response(StatusCode::OK, &echo)
                }
                Err(e) => e.into_response(),
            },
            "/whoami" => body::json_response(
                StatusCode::OK,
                &WhoAmI {
                    thumbprint: peer.thumbprint.to_string(),
                    name: peer.name,
                },
            ),
            "/upload" => {
                let mut reader = body::body_reader(body, Some(64 * 1024 * 1024));
                let mut hasher = Sha256::new();
                let mut total = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            hasher.update(&buf[..n]);
                            total += n as u64;
                        }
                        Err(e) => {
                            return body::text_response(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                e.to_string(),
                            );
                        }
                    }
                }
                let sha256 = hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect();
                body::json_response(
                    StatusCode::OK,
                    &UploadReceipt {
                        bytes: total,
                        sha256,
                    },
                )
            }
            "/download" => match body::read_json::<DownloadRequest, _>(body, 1024).await {
                Ok(req) => {
                    body::stream_response(std::io::Cursor::new(Bytes::from(pattern(req.size))))
                }
                Err(e) => e.into_response(),
            },
            "/panic" => panic!("the handler panicked on purpose"),
            _ => body::text_response(StatusCode::NOT_FOUND, format!("no such call: {path}")),
        }
    }
}
