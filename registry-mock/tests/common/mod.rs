//! Helpers shared by the integration tests: start the built binary, build small components, speak HTTP.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_registry-mock");

/// A running `registry-mock serve`, killed on drop.
pub struct MockProcess {
    child: Child,
    pub ready: Value,
    pub url: String,
    pub feed_url: String,
    pub public_key: String,
    pub cert: Option<PathBuf>,
    pub state: tempfile::TempDir,
}

impl MockProcess {
    /// Starts `registry-mock serve --port 0 --state-dir TMP ARGS...` and waits (bounded) for its ready line.
    pub fn start(args: &[&str]) -> MockProcess {
        let state = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(state.path().join("stderr.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0", "--state-dir"])
            .arg(state.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(state.path().join("stderr.log")).unwrap_or_default();
                panic!("registry-mock did not get ready ({other:?}); stderr:\n{log}");
            }
        };
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        MockProcess {
            child,
            url: ready["url"].as_str().unwrap().to_string(),
            feed_url: ready["feedUrl"].as_str().unwrap().to_string(),
            public_key: ready["feedPublicKey"].as_str().unwrap().to_string(),
            cert: ready["tlsCertificate"].as_str().map(PathBuf::from),
            ready,
            state,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.state.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal component carrying a manifest; `filler` makes the contents unique.
pub fn component(id: &str, version: &str, kind: &str, filler: &str) -> Vec<u8> {
    let manifest = octo_manifest::Manifest::from_json(
        format!(r#"{{"id":"{id}","version":"{version}","kind":"{kind}","apiVersion":"0.1.0","description":"test plugin"}}"#)
            .as_bytes(),
    )
    .unwrap();
    let mut base = b"\0asm\x0d\0\x01\0".to_vec();
    // An unrelated custom section named "x", so that components differ in more than the manifest.
    base.push(0);
    let mut size = 2 + filler.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            base.push(byte);
            break;
        }
        base.push(byte | 0x80);
    }
    base.push(1);
    base.push(b'x');
    base.extend_from_slice(filler.as_bytes());
    octo_manifest::embed_manifest(&base, &manifest).unwrap()
}

/// Runs `registry-mock publish ARGS...`; returns (success, stdout, stderr).
pub fn publish(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("publish")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes components into `dir` as `<id>-<version>.wasm`.
pub fn write_components(dir: &Path, components: &[(&str, &str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (id, version, filler) in components {
        std::fs::write(
            dir.join(format!("{id}-{version}.wasm")),
            component(id, version, "step", filler),
        )
        .unwrap();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One plain-HTTP request (for methods the feed client does not send).
pub async fn http(method: &str, url: &str, body: Option<&str>) -> HttpResponse {
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().clone();
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", authority.as_str())
        .header("user-agent", "registry-mock-tests");
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    HttpResponse {
        status,
        headers,
        body,
    }
}

pub async fn set_faults(mock: &MockProcess, faults: &str) {
    let response = http("POST", &format!("{}/_mock/faults", mock.url), Some(faults)).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}
