//! A real third-party TLS client (`openssl s_client`) without a certificate, or with an
//! untrusted one, never gets a successful answer. Skipped (with a note) when `openssl` is not on
//! PATH.

mod common;

use std::process::Stdio;

use common::*;
use octo_comms::identity::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

async fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("note: openssl is not on PATH; skipping the s_client test");
    }
    found
}

/// Runs `s_client` against `port`, sends an HTTP/1.1 request, returns what the server sent.
async fn s_client(port: u16, alpn: &str, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "tentacle", "-alpn", alpn, "-quiet"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin
        .write_all(b"POST /whoami HTTP/1.1\r\nHost: tentacle\r\nContent-Length: 4\r\n\r\nnull")
        .await;
    let mut stdout = child.stdout.take().unwrap();
    let mut out = Vec::new();
    within("s_client to finish", stdout.read_to_end(&mut out))
        .await
        .unwrap();
    drop(stdin);
    let _ = within("s_client to exit", child.wait()).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn openssl_s_client_without_or_with_an_untrusted_certificate_gets_no_answer() {
    if !openssl_available().await {
        return;
    }
    let sides = Sides::new();
    let (port, _stop) = sides.start_listening_tentacle().await;

    // No certificate: the short explanation, nothing else.
    let out = s_client(port, "http/1.1", &[]).await;
    assert!(out.starts_with("HTTP/1.1 403 Forbidden"), "{out}");
    assert!(
        out.contains("A trusted client certificate is required"),
        "{out}"
    );
    assert!(!out.contains("thumbprint"), "{out}");

    // No certificate, offering h2 but speaking HTTP/1.1 on it: no answer at all.
    let out = s_client(port, "h2", &[]).await;
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    assert!(!out.contains("thumbprint"), "{out}");

    // An untrusted certificate: the handshake fails, no answer.
    let dir = tempfile::tempdir().unwrap();
    let intruder = Identity::load_or_create(dir.path(), "intruder").unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let out = s_client(
        port,
        "http/1.1",
        &[
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.contains("HTTP/1.1"), "{out}");
    assert!(
        !sides
            .tentacle_trust
            .connections()
            .is_connected(&intruder.thumbprint())
    );

    // A trusted certificate over HTTP/1.1 is told to speak HTTP/2; still no RPC answer.
    let dir = tempfile::tempdir().unwrap();
    sides.octo.save(dir.path()).unwrap();
    let out = s_client(
        port,
        "http/1.1",
        &[
            "-cert",
            dir.path().join("cert.pem").to_str().unwrap(),
            "-key",
            dir.path().join("key.pem").to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request"), "{out}");
    assert!(out.contains("only speaks HTTP/2"), "{out}");
}
