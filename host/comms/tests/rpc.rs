//! RPC over HTTP/2 in both directions: one service, many concurrent calls, streaming bodies,
//! limits, and failures reported as matchable errors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::{Method, StatusCode, header};
use octo_comms::backoff::Backoff;
use octo_comms::endpoint::{self, DialTarget};
use octo_comms::identity::Thumbprint;
use octo_comms::rpc::body;
use octo_comms::rpc::{H2Options, RpcError, handshake_h2, serve_h2};
use octo_comms::tls::PeerInfo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn polling_direction_the_dialler_serves_h2() {
    let sides = Sides::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    // The server accepts polling tentacles and is the HTTP/2 client on their connections.
    tokio::spawn(endpoint::accept_polling(
        listener,
        sides.octo_server(),
        H2Options::default(),
        tx,
        stop.clone(),
    ));
    // The tentacle dials the server, then serves the same service on that connection.
    tokio::spawn(endpoint::run_polling(
        DialTarget::new("127.0.0.1", port),
        sides.tentacle_client(),
        Some(sides.octo.thumbprint()),
        Arc::new(TestService::default()),
        H2Options::default(),
        Backoff::new(Duration::from_millis(10), Duration::from_millis(200)),
        stop.clone(),
    ));
    let connected = within("the polling tentacle to connect", rx.recv())
        .await
        .unwrap();
    assert_eq!(connected.peer.thumbprint, sides.tentacle.thumbprint());
    let who: WhoAmI = connected.client.call_json("/whoami", &()).await.unwrap();
    assert_eq!(who.thumbprint, sides.octo.thumbprint().to_string());
    let echo: Echo = connected
        .client
        .call_json(
            "/echo",
            &Echo {
                n: 1,
                text: "polled".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.text, "polled");

    // Revoking the tentacle closes the connection; the tentacle reconnects (with backoff) and is
    // refused until trusted again.
    sides.octo_trust.revoke(&sides.tentacle.thumbprint());
    within("the connection closing", connected.client.closed()).await;
    sides.octo_trust.trust(sides.tentacle.thumbprint());
    let again = within("the tentacle to reconnect", rx.recv())
        .await
        .unwrap();
    let _: WhoAmI = again.client.call_json("/whoami", &()).await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn a_hundred_concurrent_calls_share_one_connection() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    let mut calls = Vec::new();
    for n in 0..100u64 {
        let client = connected.client.clone();
        calls.push(tokio::spawn(async move {
            // `/barrier` answers only once all 100 calls are in flight together.
            client
                .call_json::<_, Echo>(
                    "/barrier",
                    &Echo {
                        n,
                        text: format!("call {n}"),
                    },
                )
                .await
        }));
    }
    for (n, call) in calls.into_iter().enumerate() {
        let echo = within("the calls", call).await.unwrap().unwrap();
        assert_eq!(echo.n, n as u64);
        assert_eq!(echo.text, format!("call {n}"));
    }
    assert_eq!(sides.octo_trust.connections().connections().len(), 1);
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_413_and_400() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    let client = &connected.client;

    let big = Echo {
        n: 1,
        text: "x".repeat(ECHO_LIMIT + 1),
    };
    match client
        .call_json::<_, Echo>("/echo", &big)
        .await
        .unwrap_err()
    {
        RpcError::Status {
            status,
            message,
            path,
        } => {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(path, "/echo");
            assert!(message.contains("larger than the limit"), "{message}");
        }
        other => panic!("unexpected: {other}"),
    }

    // Streamed without a length: refused once the limit is crossed.
    let err = client
        .upload::<_, Echo>("/echo", std::io::Cursor::new(vec![b'{'; 200_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Status {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..
            }
        ),
        "{err}"
    );

    for bad in [&b"{not json"[..], b"{\"n\": \"seven\"}", b""] {
        let request = client
            .request_builder(Method::POST, "/echo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body::full(bad.to_vec()))
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let text = body::read_limited(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("not valid JSON"), "{text}");
    }

    // The connection is still fine afterwards.
    let ok: Echo = client
        .call_json(
            "/echo",
            &Echo {
                n: 2,
                text: "fine".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.n, 2);
}

#[tokio::test]
async fn streaming_upload_and_download() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    let data = pattern(3 * 1024 * 1024 + 17);
    let receipt: UploadReceipt = connected
        .client
        .upload("/upload", std::io::Cursor::new(data.clone()))
        .await
        .unwrap();
    assert_eq!(receipt.bytes, data.len() as u64);
    assert_eq!(receipt.sha256, sha256_hex(&data));

    let download = connected
        .client
        .download(
            "/download",
            &DownloadRequest {
                size: data.len() as u64,
            },
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let copied = download.copy_to(&mut out).await.unwrap();
    assert_eq!(copied, data.len() as u64);
    assert!(out == data);

    let download = connected
        .client
        .download("/download", &DownloadRequest { size: 100_000 })
        .await
        .unwrap();
    let mut reader = download.into_reader();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
        .await
        .unwrap();
    assert!(out == pattern(100_000));
}

#[tokio::test]
async fn statuses_and_handler_panics_are_errors_not_crashes() {
    let sides = Sides::new();
    let (connected, _stop) = sides.listening_pair().await;
    let err = connected
        .client
        .call_json::<_, Echo>("/nope", &())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nope failed with HTTP 404"),
        "{err}"
    );

    let err = connected
        .client
        .call_json::<_, Echo>("/panic", &())
        .await
        .unwrap_err();
    match err {
        RpcError::Status {
            status, message, ..
        } => {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!message.contains("panicked"), "{message}");
        }
        other => panic!("unexpected: {other}"),
    }
    // The wrong answer type is a decode error naming the call.
    let err = connected
        .client
        .call_json::<_, Echo>("/whoami", &())
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Decode { .. }), "{err}");
    let _: WhoAmI = connected.client.call_json("/whoami", &()).await.unwrap();
}

fn test_peer() -> PeerInfo {
    PeerInfo {
        thumbprint: Thumbprint::from_bytes([9; 32]),
        name: None,
        remote: None,
    }
}

#[tokio::test]
async fn works_over_any_byte_stream() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let options = H2Options::default();
    let stop = CancellationToken::new();
    let server_options = options.clone();
    let server_stop = stop.clone();
    tokio::spawn(async move {
        serve_h2(
            b,
            Arc::new(TestService::default()),
            test_peer(),
            &server_options,
            server_stop,
        )
        .await
    });
    let client = handshake_h2(a, &options, CancellationToken::new())
        .await
        .unwrap();
    let who: WhoAmI = client.call_json("/whoami", &()).await.unwrap();
    assert_eq!(who.thumbprint, test_peer().thumbprint.to_string());
    stop.cancel();
    within("the connection closing", client.closed()).await;
    let err = client
        .call_json::<_, WhoAmI>("/whoami", &())
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Closed { .. }), "{err}");
}

#[tokio::test]
async fn keep_alive_ping_detects_a_silent_peer() {
    // The peer accepts the bytes but never answers: no SETTINGS, no PING acknowledgement.
    let (a, mut b) = tokio::io::duplex(1024 * 1024);
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink).await;
    });
    let options = H2Options {
        keep_alive_interval: Some(Duration::from_millis(50)),
        keep_alive_timeout: Duration::from_millis(100),
        ..H2Options::default()
    };
    let client = handshake_h2(a, &options, CancellationToken::new())
        .await
        .unwrap();
    let _keep = client.clone();
    within("the keep-alive to give up", client.closed()).await;
    let reason = client.close_reason().unwrap_or_default();
    assert!(
        reason.to_lowercase().contains("keep-alive") || reason.contains("timed out"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_call_that_does_not_answer_times_out() {
    let (a, mut b) = tokio::io::duplex(1024 * 1024);
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink).await;
    });
    let options = H2Options {
        keep_alive_interval: None,
        call_timeout: Some(Duration::from_millis(100)),
        ..H2Options::default()
    };
    let client = handshake_h2(a, &options, CancellationToken::new())
        .await
        .unwrap();
    let err = client.call_json::<_, Echo>("/echo", &()).await.unwrap_err();
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("call to /echo timed out"), "{err}");
}

#[tokio::test]
async fn connect_failure_is_its_own_error() {
    let sides = Sides::new();
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let err = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", port),
        &sides.octo_client(),
        None,
        &H2Options::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.is_connection_failure());
}
