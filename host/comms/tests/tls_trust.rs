//! Mutual TLS with pinned thumbprints, in both directions, and what everyone else gets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use octo_comms::endpoint::{self, DialTarget};
use octo_comms::identity::{Identity, Thumbprint};
use octo_comms::rpc::{H2Options, RpcError, handshake_h2};
use octo_comms::tls::{AcceptError, TlsError};
use octo_comms::trust::{PinnedServerVerifier, TrustStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn mutual_tls_round_trip_with_pinned_thumbprints() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    assert_eq!(connected.peer.thumbprint, sides.tentacle.thumbprint());
    assert_eq!(connected.peer.name.as_deref(), Some("tentacle-1"));
    let echo: Echo = connected
        .client
        .call_json(
            "/echo",
            &Echo {
                n: 7,
                text: "hello".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.text, "hello");
    // The tentacle's service sees the server's thumbprint and name.
    let who: WhoAmI = connected.client.call_json("/whoami", &()).await.unwrap();
    assert_eq!(who.thumbprint, sides.octo.thumbprint().to_string());
    assert_eq!(who.name.as_deref(), Some("octo-server"));
    // Both sides list the live connection.
    assert_eq!(
        sides.octo_trust.connections().peers(),
        vec![sides.tentacle.thumbprint()]
    );
    assert_eq!(
        sides.tentacle_trust.connections().peers(),
        vec![sides.octo.thumbprint()]
    );
}

#[tokio::test]
async fn server_refuses_a_tentacle_with_the_wrong_thumbprint() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    let expected = Thumbprint::from_bytes([0xAB; 32]);
    // The store trusts the tentacle, but this target is pinned to another thumbprint.
    let err = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", port),
        &sides.octo_client(),
        Some(expected),
        &H2Options::default(),
    )
    .await
    .unwrap_err();
    match &err {
        RpcError::Tls(TlsError::Untrusted(untrusted)) => {
            assert_eq!(untrusted.seen, sides.tentacle.thumbprint());
            assert_eq!(untrusted.expected, vec![expected]);
        }
        other => panic!("unexpected error: {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&sides.tentacle.thumbprint().to_string()),
        "{message}"
    );
    assert!(message.contains(&expected.to_string()), "{message}");

    // A tentacle the store does not trust at all fails inside the handshake, same message.
    sides.octo_trust.revoke(&sides.tentacle.thumbprint());
    let err = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", port),
        &sides.octo_client(),
        None,
        &H2Options::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, RpcError::Tls(TlsError::Untrusted(u)) if u.seen == sides.tentacle.thumbprint()),
        "{err}"
    );
    assert!(
        err.to_string().contains("no thumbprint is trusted"),
        "{err}"
    );
}

#[tokio::test]
async fn tentacle_refuses_an_untrusted_server_certificate() {
    let sides = Sides::new();
    let intruder = Identity::generate("intruder").unwrap();
    let intruder_trust = TrustStore::from_thumbprints([sides.tentacle.thumbprint()]);
    let intruder_client = octo_comms::tls::TlsClient::new(&intruder, intruder_trust).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls_server = sides.tentacle_server();
    let accepted = tokio::spawn(async move {
        let (tcp, remote) = listener.accept().await.unwrap();
        tls_server.accept(tcp, Some(remote)).await
    });

    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let err = intruder_client
        .connect("127.0.0.1", tcp, None, None)
        .await
        .unwrap_err();
    match &err {
        TlsError::CertificateRejected { ours, .. } => assert_eq!(*ours, intruder.thumbprint()),
        other => panic!("unexpected client error: {other}"),
    }
    assert!(
        err.to_string().contains(&intruder.thumbprint().to_string()),
        "{err}"
    );

    match within("the server-side refusal", accepted).await.unwrap() {
        Err(AcceptError::UntrustedClient(untrusted)) => {
            assert_eq!(untrusted.seen, intruder.thumbprint());
            assert_eq!(untrusted.expected, vec![sides.octo.thumbprint()]);
        }
        other => panic!("unexpected server result: {:?}", other.map(|c| c.peer)),
    }
    assert!(sides.tentacle_trust.connections().connections().is_empty());
}

#[tokio::test]
async fn untrusted_client_certificate_never_gets_an_rpc_answer() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    let intruder = Identity::generate("intruder").unwrap();
    let intruder_trust = TrustStore::from_thumbprints([sides.tentacle.thumbprint()]);
    let client = octo_comms::tls::TlsClient::new(&intruder, intruder_trust).unwrap();
    let err = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", port),
        &client,
        None,
        &H2Options::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RpcError::Tls(TlsError::CertificateRejected { .. })),
        "{err}"
    );
}

/// A rustls client that presents no certificate (like a browser or curl).
fn anonymous_client(server: Thumbprint, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(
            TrustStore::from_thumbprints([server]),
        )))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn no_client_certificate_over_h2_gets_a_short_text_answer() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = anonymous_client(sides.tentacle.thumbprint(), &[b"h2"])
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let client = handshake_h2(tls, &H2Options::default(), CancellationToken::new())
        .await
        .unwrap();
    let err = client
        .call_json::<_, serde_json::Value>("/whoami", &())
        .await
        .unwrap_err();
    match err {
        RpcError::Status {
            status, message, ..
        } => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(message.contains("Octo communications port"), "{message}");
            assert!(
                message.contains("trusted client certificate is required"),
                "{message}"
            );
            assert!(message.len() < 300, "{message}");
        }
        other => panic!("unexpected: {other}"),
    }
}

#[tokio::test]
async fn no_client_certificate_over_http1_gets_a_short_text_answer() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = anonymous_client(sides.tentacle.thumbprint(), alpn)
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: tentacle\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        within("the answer", tls.read_to_end(&mut answer))
            .await
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain"), "{answer}");
        assert!(
            answer.contains("A trusted client certificate is required"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_a_400_text() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the answer", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Content-Type: text/plain"), "{answer}");
    assert!(
        answer.contains("This is an Octo communications port"),
        "{answer}"
    );
    assert!(answer.len() < 500, "{answer}");
}

#[tokio::test]
async fn revoking_trust_on_the_tentacle_closes_the_live_connection() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    let _: WhoAmI = connected.client.call_json("/whoami", &()).await.unwrap();
    assert!(
        sides
            .tentacle_trust
            .connections()
            .is_connected(&sides.octo.thumbprint())
    );

    assert!(sides.tentacle_trust.revoke(&sides.octo.thumbprint()));
    within("the connection closing", connected.client.closed()).await;
    let err = connected
        .client
        .call_json::<_, WhoAmI>("/whoami", &())
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Closed { .. }), "{err}");
    within("the registry emptying", async {
        while !sides.tentacle_trust.connections().peers().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn revoking_trust_on_the_server_closes_the_live_connection() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    let _: WhoAmI = connected.client.call_json("/whoami", &()).await.unwrap();
    assert_eq!(
        sides.octo_trust.connections().peers(),
        vec![sides.tentacle.thumbprint()]
    );
    sides.octo_trust.revoke(&sides.tentacle.thumbprint());
    within("the connection closing", connected.client.closed()).await;
    assert!(connected.client.is_closed());
    within("the registry emptying", async {
        while !sides.octo_trust.connections().peers().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
