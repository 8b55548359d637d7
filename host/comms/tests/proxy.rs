//! The HTTP CONNECT client against an in-test fake proxy, and TLS + HTTP/2 RPC end to end
//! through its tunnel.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use octo_comms::endpoint::{self, DialTarget};
use octo_comms::proxy::{ProxyConfig, ProxyError, connect_via_proxy};
use octo_comms::rpc::{H2Options, RpcError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "pa:ss w0rd";

#[derive(Clone, Copy)]
enum Behaviour {
    /// `200`, then a real tunnel to the requested target.
    Tunnel,
    /// `200` followed at once by tunnel bytes, in one write, then close.
    ReplyWithEarlyData,
    /// The reply one byte per write, then a real tunnel.
    SplitReplyThenTunnel,
    /// A status line and close.
    Status(u16, &'static str),
    /// Read the request, never answer.
    Hang,
    /// Half a reply, then close.
    CloseMidReply,
    /// Close without a reply.
    CloseAtOnce,
    /// Not HTTP.
    Garbage,
}

struct FakeProxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeProxy {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, behaviour, seen.clone()));
            }
        });
        Self { port, requests }
    }

    fn config(&self) -> ProxyConfig {
        ProxyConfig::new("127.0.0.1", self.port).unwrap()
    }

    fn config_with_credentials(&self) -> ProxyConfig {
        self.config().with_credentials("octo", PASSWORD)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut client: TcpStream, behaviour: Behaviour, seen: Arc<Mutex<Vec<String>>>) {
    client.set_nodelay(true).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let target = head.split_whitespace().nth(1).unwrap().to_owned();
    seen.lock().unwrap().push(head);
    const OK: &[u8] = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 fake-proxy\r\n\r\n";
    match behaviour {
        Behaviour::Tunnel => {
            client.write_all(OK).await.unwrap();
            tunnel(client, &target).await;
        }
        Behaviour::ReplyWithEarlyData => {
            client
                .write_all(b"HTTP/1.0 200 OK\r\n\r\nEARLY TUNNEL BYTES")
                .await
                .unwrap();
        }
        Behaviour::SplitReplyThenTunnel => {
            for b in OK {
                client.write_all(&[*b]).await.unwrap();
                client.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tunnel(client, &target).await;
        }
        Behaviour::Status(code, reason) => {
            let reply = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\noops!"
            );
            client.write_all(reply.as_bytes()).await.unwrap();
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Behaviour::CloseMidReply => {
            client.write_all(b"HTTP/1.1 200 Conn").await.unwrap();
        }
        Behaviour::CloseAtOnce => {}
        Behaviour::Garbage => {
            client
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                .await
                .unwrap();
        }
    }
}

async fn tunnel(mut client: TcpStream, target: &str) {
    let mut upstream = TcpStream::connect(target).await.unwrap();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

const SHORT: Duration = Duration::from_secs(5);

async fn connect_err(proxy: &ProxyConfig, timeout: Duration) -> ProxyError {
    let err = connect_via_proxy(proxy, "tentacle.example", 10933, timeout)
        .await
        .expect_err("the tunnel must not open");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
    assert!(
        shown.contains(&format!("127.0.0.1:{}", proxy.port())),
        "the proxy is not named: {shown}"
    );
    err
}

#[tokio::test]
async fn tls_rpc_end_to_end_through_the_tunnel_with_credentials() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    let proxy = FakeProxy::start(Behaviour::Tunnel).await;
    let target =
        DialTarget::new("127.0.0.1", port).with_proxy(Some(proxy.config_with_credentials()));
    let connected = endpoint::connect_listening(
        &target,
        &sides.octo_client(),
        Some(sides.tentacle.thumbprint()),
        &H2Options::default(),
    )
    .await
    .unwrap();
    // TLS ran end to end: the tentacle sees the server's own certificate through the proxy.
    let who: WhoAmI = connected.client.call_json("/whoami", &()).await.unwrap();
    assert_eq!(who.thumbprint, sides.octo.thumbprint().to_string());
    assert_eq!(connected.peer.remote, None);

    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(
        request.starts_with(&format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n")),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{request}"
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("octo:{PASSWORD}"));
    assert!(
        request.contains(&format!("\r\nProxy-Authorization: Basic {expected}\r\n")),
        "{request}"
    );
}

#[tokio::test]
async fn no_credentials_no_authorization_header() {
    let proxy = FakeProxy::start(Behaviour::ReplyWithEarlyData).await;
    connect_via_proxy(&proxy.config(), "tentacle.example", 10933, SHORT)
        .await
        .unwrap();
    let request = &proxy.requests()[0];
    assert!(
        request.starts_with("CONNECT tentacle.example:10933 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("\r\nHost: tentacle.example:10933\r\n"),
        "{request}"
    );
    assert!(!request.contains("Proxy-Authorization"), "{request}");
}

#[tokio::test]
async fn bytes_after_the_reply_head_are_not_lost() {
    let proxy = FakeProxy::start(Behaviour::ReplyWithEarlyData).await;
    let mut stream = connect_via_proxy(&proxy.config(), "tentacle.example", 10933, SHORT)
        .await
        .unwrap();
    let mut data = String::new();
    stream.read_to_string(&mut data).await.unwrap();
    assert_eq!(data, "EARLY TUNNEL BYTES");
}

#[tokio::test]
async fn reply_split_into_one_byte_writes_then_rpc_through_the_tunnel() {
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;
    let proxy = FakeProxy::start(Behaviour::SplitReplyThenTunnel).await;
    let target = DialTarget::new("127.0.0.1", port).with_proxy(Some(proxy.config()));
    let connected = endpoint::connect_listening(
        &target,
        &sides.octo_client(),
        Some(sides.tentacle.thumbprint()),
        &H2Options::default(),
    )
    .await
    .unwrap();
    let echo: Echo = connected
        .client
        .call_json(
            "/echo",
            &Echo {
                n: 3,
                text: "split".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.n, 3);
}

#[tokio::test]
async fn status_407_means_credentials() {
    let proxy = FakeProxy::start(Behaviour::Status(407, "Proxy Authentication Required")).await;
    let err = connect_err(&proxy.config_with_credentials(), SHORT).await;
    assert!(
        matches!(
            err,
            ProxyError::AuthenticationRequired {
                sent_credentials: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("rejected the credentials"),
        "{err}"
    );
    let err = connect_err(&proxy.config(), SHORT).await;
    assert!(
        matches!(
            err,
            ProxyError::AuthenticationRequired {
                sent_credentials: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("requires authentication"), "{err}");
}

#[tokio::test]
async fn status_403_is_forbidden() {
    let proxy = FakeProxy::start(Behaviour::Status(403, "Forbidden")).await;
    let err = connect_err(&proxy.config_with_credentials(), SHORT).await;
    assert!(matches!(err, ProxyError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("tentacle.example:10933"), "{err}");
}

#[tokio::test]
async fn status_502_and_504_mean_the_target_is_unreachable() {
    for (code, reason) in [(502, "Bad Gateway"), (504, "Gateway Timeout")] {
        let proxy = FakeProxy::start(Behaviour::Status(code, reason)).await;
        let err = connect_err(&proxy.config(), SHORT).await;
        assert!(
            matches!(&err, ProxyError::TargetUnreachable { status, .. } if *status == code),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("HTTP {code} {reason}")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn other_statuses_are_refusals() {
    let proxy = FakeProxy::start(Behaviour::Status(500, "Internal Server Error")).await;
    let err = connect_err(&proxy.config(), SHORT).await;
    assert!(
        matches!(err, ProxyError::Refused { status: 500, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_proxy_that_never_replies_times_out() {
    let proxy = FakeProxy::start(Behaviour::Hang).await;
    let err = connect_err(&proxy.config_with_credentials(), Duration::from_millis(200)).await;
    assert!(matches!(err, ProxyError::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("did not answer the CONNECT request"),
        "{err}"
    );
}

#[tokio::test]
async fn a_proxy_that_closes_mid_reply() {
    let proxy = FakeProxy::start(Behaviour::CloseMidReply).await;
    let err = connect_err(&proxy.config(), SHORT).await;
    assert!(
        matches!(err, ProxyError::ClosedMidReply { received, .. } if received > 0),
        "{err}"
    );
    assert!(
        err.to_string().contains("in the middle of its reply"),
        "{err}"
    );
    let proxy = FakeProxy::start(Behaviour::CloseAtOnce).await;
    let err = connect_err(&proxy.config(), SHORT).await;
    assert!(
        matches!(err, ProxyError::ClosedMidReply { received: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_reply_that_is_not_http_is_malformed() {
    let proxy = FakeProxy::start(Behaviour::Garbage).await;
    let err = connect_err(&proxy.config(), SHORT).await;
    assert!(matches!(err, ProxyError::MalformedReply { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_proxy_is_named_without_its_password() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = ProxyConfig::new("127.0.0.1", port)
        .unwrap()
        .with_credentials("octo", PASSWORD);
    let err = connect_err(&proxy, SHORT).await;
    assert!(matches!(err, ProxyError::Unreachable { .. }), "{err}");

    // Through the endpoint the same cause is an RpcError::Proxy.
    let sides = Sides::new();
    let err = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", 10933).with_proxy(Some(proxy)),
        &sides.octo_client(),
        None,
        &H2Options::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RpcError::Proxy(ProxyError::Unreachable { .. })),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains(PASSWORD));
}
