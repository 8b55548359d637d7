//! A third-party TLS client (`openssl s_client`) against a real `tentacle agent`: without a
//! certificate it is told one is required; with an untrusted one it gets nothing. Skipped (with a
//! note) when `openssl` is not on PATH.

mod common;

use std::process::Stdio;

use common::*;
use octo_comms::identity::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

async fn s_client(port: u16, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "tentacle", "-alpn", "http/1.1", "-quiet"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin
        .write_all(
            b"POST /v1/capabilities HTTP/1.1\r\nHost: tentacle\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().unwrap();
    tokio::time::timeout(LIVENESS, stdout.read_to_end(&mut out))
        .await
        .expect("s_client did not finish")
        .unwrap();
    drop(stdin);
    let _ = child.wait().await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_without_or_with_an_untrusted_certificate_gets_no_service() {
    let available = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !available {
        eprintln!("note: openssl is not on PATH; skipping");
        return;
    }
    let server = Server::new();
    let (tentacle, _home) = Tentacle::listening(server.thumbprint()).await;
    let port = tentacle.address().port();

    let out = s_client(port, &[]).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(!out.contains("protocolVersion"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path(), "intruder").unwrap();
    let out = s_client(
        port,
        &[
            "-cert",
            dir.path().join("cert.pem").to_str().unwrap(),
            "-key",
            dir.path().join("key.pem").to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.contains("HTTP/1.1"), "{out}");

    // The tentacle still serves its server afterwards.
    let client = server.connect(&tentacle).await;
    let _: octo_protocol::Capabilities = client
        .call_json(octo_protocol::paths::CAPABILITIES, &octo_protocol::Empty {})
        .await
        .unwrap();
}
