//! The feed client against an in-test hyper server on 127.0.0.1:0.

use bytes::Bytes;
use http::{Response, StatusCode};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use octo_feed::client::{BoxedIo, ClientConfig, ClientError, DirectConnector, FeedClient};
use octo_feed::index::{Entry, FeedIndex};
use octo_feed::signature::{self, SignatureError};
use octo_feed::store::Store;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// What the test server answers to the n-th request (0-based) for a path.
#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// Announce `Content-Length: body.len()`, send the first half, then break the connection.
    Truncated(Vec<u8>),
    /// Chunked transfer encoding: no Content-Length.
    Chunked(Vec<u8>),
    Hang,
}

struct TestBody {
    chunks: VecDeque<Bytes>,
    fail_at_end: bool,
    yielded: bool,
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            // Return Pending once before failing, so hyper flushes what it has (headers and the half body).
            None if self.fail_at_end && !self.yielded => {
                self.yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None if self.fail_at_end => Poll::Ready(Some(Err(std::io::Error::other("cut")))),
            None => Poll::Ready(None),
        }
    }
}

type Handler = Arc<dyn Fn(usize, &str) -> Reply + Send + Sync>;

struct TestServer {
    base: String,
    requests: Arc<AtomicUsize>,
}

async fn respond(reply: Reply) -> Response<TestBody> {
    let body = |chunks: Vec<Bytes>, fail_at_end| TestBody {
        chunks: chunks.into(),
        fail_at_end,
        yielded: false,
    };
    match reply {
        Reply::Body(bytes) => {
            // Several chunks, so progress is reported more than once.
            let chunks = bytes.chunks(7).map(Bytes::copy_from_slice).collect();
            Response::builder()
                .header("content-length", bytes.len())
                .body(body(chunks, false))
                .unwrap()
        }
        Reply::Status(code) => Response::builder()
            .status(code)
            .body(body(vec![Bytes::from("{}")], false))
            .unwrap(),
        Reply::Truncated(bytes) => Response::builder()
            .header("content-length", bytes.len())
            .body(body(
                vec![Bytes::copy_from_slice(&bytes[..bytes.len() / 2])],
                true,
            ))
            .unwrap(),
        Reply::Chunked(bytes) => Response::builder()
            .body(body(vec![Bytes::from(bytes)], false))
            .unwrap(),
        Reply::Hang => std::future::pending().await,
    }
}

async fn serve_conn<I>(
    io: I,
    handler: Handler,
    requests: Arc<AtomicUsize>,
    per_path: Arc<Mutex<Vec<String>>>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let handler = handler.clone();
        let path = req.uri().path().to_string();
        requests.fetch_add(1, Ordering::SeqCst);
        let n = {
            let mut seen = per_path.lock().unwrap();
            seen.push(path.clone());
            seen.iter().filter(|p| **p == path).count() - 1
        };
        async move { Ok::<_, std::convert::Infallible>(respond(handler(n, &path)).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn start(handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> TestServer {
    start_with_tls(handler, None).await
}

async fn start_with_tls(
    handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler: Handler = Arc::new(handler);
    let requests = Arc::new(AtomicUsize::new(0));
    let per_path = Arc::new(Mutex::new(Vec::new()));
    let counter = requests.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (handler, counter, per_path, tls) = (
                handler.clone(),
                counter.clone(),
                per_path.clone(),
                tls.clone(),
            );
            tokio::spawn(async move {
                match tls {
                    None => serve_conn(tcp, handler, counter, per_path).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve_conn(stream, handler, counter, per_path).await
                        }
                    }
                }
            });
        }
    });
    TestServer {
        base: format!("{scheme}://127.0.0.1:{port}"),
        requests,
    }
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        attempts: 3,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ClientConfig::default()
    }
}

fn client() -> FeedClient {
    FeedClient::new(fast_config()).unwrap()
}

const BLOB: &[u8] = b"\0asm\x0d\0\x01\0 pretend this is a component with some bytes in it";

fn sha(bytes: &[u8]) -> String {
    octo_feed::sha256_hex(bytes)
}

fn dir_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test]
async fn downloads_verifies_and_reports_progress() {
    let server = start(|_, _| Reply::Body(BLOB.to_vec())).await;
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let progress = move |done: u64, total: u64| seen2.lock().unwrap().push((done, total));
    let path = client()
        .download_verified_with_progress(
            &format!("{}/blob", server.base),
            &sha(BLOB),
            BLOB.len() as u64,
            dir.path(),
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), BLOB);
    assert_eq!(path.parent().unwrap(), dir.path());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.first(), Some(&(0, BLOB.len() as u64)));
    assert_eq!(seen.last(), Some(&(BLOB.len() as u64, BLOB.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[tokio::test]
async fn wrong_digest_is_discarded() {
    let mut other = BLOB.to_vec();
    other[10] ^= 0xff;
    let server = start(move |_, _| Reply::Body(other.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let err = client()
        .download_verified(
            &format!("{}/blob", server.base),
            &sha(BLOB),
            BLOB.len() as u64,
            dir.path(),
        )
        .await
        .unwrap_err();
    match &err {
        ClientError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &sha(BLOB));
            assert_ne!(actual, expected);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("expected") && err.to_string().contains("got"),
        "{err}"
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "a digest mismatch is not retried"
    );
    assert!(dir_is_empty(dir.path()), "the temporary file is removed");
}

#[tokio::test]
async fn truncated_body_is_retried_then_reported() {
    let server = start(|_, _| Reply::Truncated(BLOB.to_vec())).await;
    let dir = tempfile::tempdir().unwrap();
    let err = client()
        .download_verified(
            &format!("{}/blob", server.base),
            &sha(BLOB),
            BLOB.len() as u64,
            dir.path(),
        )
        .await
        .unwrap_err();
    match &err {
        ClientError::Truncated {
            expected,
            received,
            attempts,
            ..
        } => {
            assert_eq!(*expected, BLOB.len() as u64);
            assert!(*received < *expected);
            assert_eq!(*attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    assert!(dir_is_empty(dir.path()));
}

#[tokio::test]
async fn truncated_once_then_complete_succeeds() {
    let server = start(|n, _| {
        if n == 0 {
            Reply::Truncated(BLOB.to_vec())
        } else {
            Reply::Body(BLOB.to_vec())
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = client()
        .download_verified(
            &format!("{}/blob", server.base),
            &sha(BLOB),
            BLOB.len() as u64,
            dir.path(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(path).unwrap(),
        BLOB,
        "the retry starts from an empty file"
    );
}

#[tokio::test]
async fn size_mismatch_is_reported_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    // Announced size differs from the index.
    let server = start(|_, _| Reply::Body(b"short".to_vec())).await;
    let err = client()
        .download_verified(&format!("{}/b", server.base), &sha(BLOB), 99, dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::SizeMismatch {
                expected: 99,
                actual: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    // Without Content-Length: more bytes than expected stop the download as soon as they arrive...
    let server = start(|_, _| Reply::Chunked(b"longer than five".to_vec())).await;
    let err = client()
        .download_verified(&format!("{}/b", server.base), &sha(b"longe"), 5, dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::SizeMismatch {
                expected: 5,
                actual: 16,
                ..
            }
        ),
        "{err:?}"
    );
    // ...and fewer, cleanly ended, are a size mismatch too.
    let server = start(|_, _| Reply::Chunked(b"abc".to_vec())).await;
    let err = client()
        .download_verified(&format!("{}/b", server.base), &sha(b"abcde"), 5, dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::SizeMismatch {
                expected: 5,
                actual: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("expected 5 bytes"), "{err}");
    assert!(dir_is_empty(dir.path()));
}

#[tokio::test]
async fn status_500_then_success() {
    let server = start(|n, _| {
        if n == 0 {
            Reply::Status(500)
        } else {
            Reply::Body(BLOB.to_vec())
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = client()
        .download_verified(
            &format!("{}/blob", server.base),
            &sha(BLOB),
            BLOB.len() as u64,
            dir.path(),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), BLOB);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_configured_attempts() {
    let server = start(|_, _| Reply::Status(503)).await;
    let config = ClientConfig {
        attempts: 4,
        ..fast_config()
    };
    let err = FeedClient::new(config)
        .unwrap()
        .get_bytes(&format!("{}/x", server.base))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = start(|_, _| Reply::Status(404)).await;
    let err = client()
        .get_bytes(&format!("{}/x", server.base))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Status {
                status: StatusCode::NOT_FOUND,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn hanging_server_times_out() {
    let server = start(|_, _| Reply::Hang).await;
    let config = ClientConfig {
        attempts: 2,
        idle_timeout: Duration::from_millis(200),
        ..fast_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = FeedClient::new(config)
        .unwrap()
        .download_verified(
            &format!("{}/blob", server.base),
            &sha(BLOB),
            BLOB.len() as u64,
            dir.path(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                attempts: 2,
                phase: "waiting for an answer from",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert!(dir_is_empty(dir.path()));
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = client()
        .get_bytes(&format!("http://127.0.0.1:{port}/x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Connect { attempts: 3, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn documents_over_the_limit_are_refused() {
    let server = start(|_, _| Reply::Body(vec![b'x'; 1000])).await;
    let config = ClientConfig {
        max_document_size: 100,
        ..fast_config()
    };
    let err = FeedClient::new(config)
        .unwrap()
        .get_bytes(&format!("{}/x", server.base))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TooLarge { limit: 100, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn connector_hook_is_used_for_every_connection() {
    let server = start(|_, _| Reply::Body(b"hello".to_vec())).await;
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let calls2 = calls.clone();
    // A connector that sends the made-up host "feed.internal" to the test server, as a proxy would.
    let connector = move |host: String, p: u16| {
        calls2.lock().unwrap().push((host.clone(), p));
        async move {
            use octo_feed::client::Connector;
            let host = if host == "feed.internal" {
                "127.0.0.1".to_string()
            } else {
                host
            };
            DirectConnector
                .connect(&host, port)
                .await
                .map(|io| io as BoxedIo)
        }
    };
    let config = ClientConfig {
        connector: Arc::new(connector),
        ..fast_config()
    };
    let body = FeedClient::new(config)
        .unwrap()
        .get_bytes("http://feed.internal:1234/x")
        .await
        .unwrap();
    assert_eq!(body, b"hello");
    assert_eq!(
        *calls.lock().unwrap(),
        vec![("feed.internal".to_string(), 1234)]
    );
}

fn signed_feed(blob: &[u8]) -> (FeedIndex, Vec<u8>, signature::FeedSigningKey) {
    let manifest = octo_manifest::Manifest::from_json(
        br#"{"id":"run-script","version":"0.1.0","kind":"step","apiVersion":"0.1.0"}"#,
    )
    .unwrap();
    let digest = sha(blob);
    let mut index = FeedIndex::empty();
    index
        .add(Entry {
            version: manifest.version.clone(),
            blob: format!("blobs/sha256/{digest}"),
            sha256: digest,
            size: blob.len() as u64,
            yanked: false,
            manifest,
        })
        .unwrap();
    let (key, _) = signature::generate_keypair().unwrap();
    let bytes = index.to_json();
    (index, bytes, key)
}

#[tokio::test]
async fn fetch_index_then_install_into_the_store() {
    let (index, bytes, key) = signed_feed(BLOB);
    let sig = signature::sign(&key, &bytes);
    let server = start(move |_, path| match path {
        "/feed/index.json" => Reply::Body(bytes.clone()),
        "/feed/index.json.sig" => Reply::Body(sig.clone().into_bytes()),
        p if p.starts_with("/feed/blobs/sha256/") => Reply::Body(BLOB.to_vec()),
        _ => Reply::Status(404),
    })
    .await;
    let client = client();
    let fetched = client
        .fetch_index(&format!("{}/feed/", server.base), &key.public_key())
        .await
        .unwrap();
    assert_eq!(fetched.index, index);
    let entry = fetched
        .index
        .resolve("run-script", &"^0.1".parse().unwrap())
        .unwrap();
    let url = fetched.blob_url(entry);
    assert_eq!(
        url,
        format!("{}/feed/blobs/sha256/{}", server.base, entry.sha256)
    );

    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let temp = client
        .download_verified(&url, &entry.sha256, entry.size, &store.download_dir())
        .await
        .unwrap();
    store.install_blob(&temp, &entry.sha256).unwrap();
    store
        .set_entry(
            "run-script",
            octo_feed::NewEntry {
                requirement: "^0.1".parse().unwrap(),
                version: entry.version.clone(),
                sha256: entry.sha256.clone(),
                source: octo_feed::Source::SignedFeed { url, key: None },
                kind: entry.manifest.kind,
            },
        )
        .unwrap();
    assert_eq!(store.read_blob(&entry.sha256).unwrap(), BLOB);
    assert!(store.verify().unwrap().is_ok());
}

#[tokio::test]
async fn index_signature_problems_are_distinct_errors() {
    let (_, bytes, key) = signed_feed(BLOB);
    let (other_key, _) = signature::generate_keypair().unwrap();
    type Case = (Option<Vec<u8>>, Vec<u8>, fn(&ClientError) -> bool);
    let cases: Vec<Case> = vec![
        (None, bytes.clone(), |e| {
            matches!(e, ClientError::Signature(SignatureError::Missing))
        }),
        (Some(b"garbage!".to_vec()), bytes.clone(), |e| {
            matches!(e, ClientError::Signature(SignatureError::Malformed(_)))
        }),
        (
            Some(signature::sign(&key, &bytes).into_bytes()),
            {
                let mut tampered = bytes.clone();
                let at = tampered.len() - 3;
                tampered[at] = b' ';
                tampered
            },
            |e| matches!(e, ClientError::Signature(SignatureError::BadSignature)),
        ),
        (
            Some(signature::sign(&other_key, &bytes).into_bytes()),
            bytes.clone(),
            |e| matches!(e, ClientError::Signature(SignatureError::WrongKey { .. })),
        ),
        (
            Some(signature::sign(&key, br#"{"schema":7}"#).into_bytes()),
            br#"{"schema":7}"#.to_vec(),
            |e| {
                matches!(
                    e,
                    ClientError::Index(octo_feed::IndexError::UnknownSchema { found: 7, .. })
                )
            },
        ),
    ];
    for (sig, served, check) in cases {
        let server = start(move |_, path| match (path, &sig) {
            ("/index.json", _) => Reply::Body(served.clone()),
            ("/index.json.sig", Some(sig)) => Reply::Body(sig.clone()),
            _ => Reply::Status(404),
        })
        .await;
        let err = client()
            .fetch_index(&server.base, &key.public_key())
            .await
            .unwrap_err();
        assert!(check(&err), "unexpected {err:?}");
    }
}

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.pem(),
    )
}

#[tokio::test]
async fn https_with_a_trusted_self_signed_certificate() {
    let (acceptor, pem) = tls_acceptor();
    let server = start_with_tls(|_, _| Reply::Body(b"secure".to_vec()), Some(acceptor)).await;
    assert!(server.base.starts_with("https://"));
    let trusting = FeedClient::new(fast_config().trust_pem(pem.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        trusting
            .get_bytes(&format!("{}/x", server.base))
            .await
            .unwrap(),
        b"secure"
    );
    let by_name = server.base.replace("127.0.0.1", "localhost");
    assert_eq!(
        trusting.get_bytes(&format!("{by_name}/x")).await.unwrap(),
        b"secure"
    );

    // Without the certificate: a TLS error, not retried.
    let err = client()
        .get_bytes(&format!("{}/x", server.base))
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("trusted certificate"), "{err}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}
