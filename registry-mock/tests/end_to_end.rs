//! octo-feed's client and store against the real registry-mock process: install, and every fault.

mod common;

use common::*;
use octo_feed::Source;
use octo_feed::client::{ClientConfig, ClientError, FeedClient};
use octo_feed::signature::{FeedPublicKey, SignatureError};
use octo_feed::store::{LockEntry, NewEntry, Store};
use std::time::Duration;

struct Feed {
    _tmp: tempfile::TempDir,
    mock: MockProcess,
    key: FeedPublicKey,
}

fn start_feed() -> Feed {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    // Big enough that truncation and tampering happen inside the body.
    let filler = "x".repeat(200);
    write_components(
        &plugins,
        &[
            ("run-script", "0.1.0", "one"),
            ("run-script", "0.1.1", &filler),
            ("run-script", "0.2.0", "two"),
        ],
    );
    let feed = tmp.path().join("feed");
    let (ok, stdout, stderr) = publish(&[
        "--plugins",
        plugins.to_str().unwrap(),
        "--out",
        feed.to_str().unwrap(),
        "--yank",
        "run-script@0.2.0",
    ]);
    assert!(ok, "{stderr}");
    let mock = MockProcess::start(&["--feed", feed.to_str().unwrap()]);
    let key = FeedPublicKey::from_base64(stdout.trim()).unwrap();
    Feed {
        _tmp: tmp,
        mock,
        key,
    }
}

fn client(idle: Duration) -> FeedClient {
    FeedClient::new(ClientConfig {
        attempts: 3,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: idle,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        webpki_roots: false,
        ..ClientConfig::default()
    })
    .unwrap()
}

#[derive(Debug)]
enum InstallError {
    Client(ClientError),
    #[allow(dead_code)] // shown through Debug when a test fails
    Other(String),
}

/// What `octo plugins install run-script@^0.1` will do: fetch + verify, resolve, download, check, install.
async fn install(
    client: &FeedClient,
    feed: &Feed,
    store: &Store,
) -> Result<LockEntry, InstallError> {
    let fetched = client
        .fetch_index(&feed.mock.feed_url, &feed.key)
        .await
        .map_err(InstallError::Client)?;
    let requirement: semver::VersionReq = "^0.1".parse().unwrap();
    let entry = fetched
        .index
        .resolve("run-script", &requirement)
        .map_err(|e| InstallError::Other(e.to_string()))?;
    let url = fetched.blob_url(entry);
    let temp = client
        .download_verified(&url, &entry.sha256, entry.size, &store.download_dir())
        .await
        .map_err(InstallError::Client)?;
    let manifest = octo_manifest::read_manifest(&std::fs::read(&temp).unwrap()).unwrap();
    entry
        .check_manifest(&manifest)
        .map_err(|e| InstallError::Other(e.to_string()))?;
    store
        .install_blob(&temp, &entry.sha256)
        .map_err(|e| InstallError::Other(e.to_string()))?;
    store
        .set_entry(
            "run-script",
            NewEntry {
                requirement,
                version: entry.version.clone(),
                sha256: entry.sha256.clone(),
                source: Source::SignedFeed {
                    url,
                    key: Some(feed.key.to_base64()),
                },
                kind: entry.manifest.kind,
            },
        )
        .map_err(|e| InstallError::Other(e.to_string()))
}

/// Everything on disk under the store, as (relative path, contents).
fn snapshot(store: &Store) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for item in std::fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.file_name().unwrap() != ".write-lock" {
                out.push((
                    path.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(store.root(), store.root(), &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn installs_from_the_mock_feed() {
    let feed = start_feed();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let installed = install(&client(Duration::from_secs(10)), &feed, &store)
        .await
        .unwrap();
    assert_eq!(
        installed.version.to_string(),
        "0.1.1",
        "highest ^0.1; 0.2.0 is yanked and out of range anyway"
    );
    assert!(
        matches!(&installed.source, Source::SignedFeed { url, key: Some(_) } if url.starts_with(&feed.mock.feed_url))
    );
    assert!(installed.source.is_signed());
    assert!(store.verify().unwrap().is_ok());
    let blob = store.read_blob(&installed.sha256).unwrap();
    assert_eq!(
        octo_manifest::read_manifest(&blob)
            .unwrap()
            .version
            .to_string(),
        "0.1.1"
    );
    let log = http("GET", &format!("{}/_mock/requests", feed.mock.url), None)
        .await
        .json();
    let paths: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/feed/index.json",
            "/feed/index.json.sig",
            &format!("/feed/blobs/sha256/{}", installed.sha256)
        ]
    );
}

#[tokio::test]
async fn each_fault_gives_the_right_error_and_leaves_the_store_untouched() {
    let feed = start_feed();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Start from an installed older version, so "untouched" means more than "empty".
    let older = store.add_blob(b"an older component").unwrap();
    store
        .set_entry(
            "run-script",
            NewEntry {
                requirement: "^0.1".parse().unwrap(),
                version: "0.0.9".parse().unwrap(),
                sha256: older,
                source: Source::Embedded,
                kind: octo_manifest::PluginKind::Step,
            },
        )
        .unwrap();
    let before = snapshot(&store);

    type Check = fn(&InstallError) -> bool;
    let cases: [(&str, Duration, Check); 5] = [
        (r#"{"tamperBlobs":true}"#, Duration::from_secs(10), |e| {
            matches!(e, InstallError::Client(ClientError::DigestMismatch { .. }))
        }),
        (r#"{"badSignature":true}"#, Duration::from_secs(10), |e| {
            matches!(
                e,
                InstallError::Client(ClientError::Signature(SignatureError::BadSignature))
            )
        }),
        (r#"{"truncateBlobs":true}"#, Duration::from_secs(10), |e| {
            matches!(
                e,
                InstallError::Client(ClientError::Truncated { attempts: 3, .. })
            )
        }),
        (r#"{"status500":100}"#, Duration::from_secs(10), |e| {
            matches!(
                e,
                InstallError::Client(ClientError::Status { attempts: 3, .. })
            )
        }),
        (r#"{"hang":true}"#, Duration::from_millis(300), |e| {
            matches!(
                e,
                InstallError::Client(ClientError::Timeout { attempts: 3, .. })
            )
        }),
    ];
    for (faults, idle, check) in cases {
        set_faults(&feed.mock, faults).await;
        let err = install(&client(idle), &feed, &store).await.unwrap_err();
        assert!(check(&err), "{faults}: unexpected {err:?}");
        if let InstallError::Client(e) = &err {
            let message = e.to_string();
            assert!(!message.is_empty());
            if faults.contains("tamper") || faults.contains("truncate") {
                assert!(
                    message.contains("expected"),
                    "{faults}: the error says expected vs actual: {message}"
                );
            }
        }
        assert_eq!(snapshot(&store), before, "{faults}: the store is untouched");
        assert_eq!(
            http("DELETE", &format!("{}/_mock/faults", feed.mock.url), None)
                .await
                .status,
            200
        );
    }

    // A short outage (one 500) and slow replies are absorbed.
    set_faults(&feed.mock, r#"{"status500":1,"delayMs":20}"#).await;
    http("DELETE", &format!("{}/_mock/requests", feed.mock.url), None).await;
    let installed = install(&client(Duration::from_secs(10)), &feed, &store)
        .await
        .unwrap();
    assert_eq!(installed.version.to_string(), "0.1.1");
    assert_eq!(installed.previous.unwrap().version.to_string(), "0.0.9");
    let log = http("GET", &format!("{}/_mock/requests", feed.mock.url), None)
        .await
        .json();
    let index_fetches = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/feed/index.json")
        .count();
    assert_eq!(index_fetches, 2, "the 500 was retried");
    assert!(store.verify().unwrap().is_ok());
}
