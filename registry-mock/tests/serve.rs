//! The built binary: `publish` on the command line, `serve` on loopback, every route, TLS.

mod common;

use common::*;
use octo_feed::client::{ClientConfig, ClientError, FeedClient};
use octo_feed::signature::{self, FeedPublicKey};
use std::time::Duration;

fn client_config() -> ClientConfig {
    ClientConfig {
        attempts: 2,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        webpki_roots: false,
        ..ClientConfig::default()
    }
}

#[test]
fn publish_writes_a_signed_content_addressed_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    write_components(
        &plugins,
        &[
            ("run-script", "0.1.0", "a"),
            ("http-health-check", "0.1.0", "b"),
        ],
    );
    let feed = tmp.path().join("feed");
    let (ok, stdout, stderr) = publish(&[
        "--plugins",
        plugins.to_str().unwrap(),
        "--out",
        feed.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let key = FeedPublicKey::from_base64(stdout.trim()).expect("stdout is the public key");
    assert!(
        stderr.contains("run-script 0.1.0") && stderr.contains("(added)"),
        "{stderr}"
    );

    let index = std::fs::read(feed.join("index.json")).unwrap();
    signature::verify(
        &index,
        Some(&std::fs::read(feed.join("index.json.sig")).unwrap()),
        &key,
    )
    .unwrap();
    let parsed = octo_feed::FeedIndex::parse(&index).unwrap();
    assert_eq!(parsed.plugins.len(), 2);
    for plugin in &parsed.plugins {
        for entry in &plugin.versions {
            let blob = std::fs::read(feed.join(&entry.blob)).unwrap();
            assert_eq!(entry.blob, format!("blobs/sha256/{}", entry.sha256));
            assert_eq!(octo_feed::sha256_hex(&blob), entry.sha256);
            assert_eq!(octo_manifest::read_manifest(&blob).unwrap(), entry.manifest);
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("feed.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }

    // Merge a new version (a single file, explicit key path) and yank the old one.
    let newer = tmp.path().join("run-script-0.2.0.wasm");
    std::fs::write(&newer, component("run-script", "0.2.0", "step", "c")).unwrap();
    let (ok, stdout2, stderr) = publish(&[
        "--plugins",
        newer.to_str().unwrap(),
        "--out",
        feed.to_str().unwrap(),
        "--key",
        tmp.path().join("feed.key").to_str().unwrap(),
        "--yank",
        "run-script@0.1.0",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout2, stdout, "same key");
    let parsed =
        octo_feed::FeedIndex::parse(&std::fs::read(feed.join("index.json")).unwrap()).unwrap();
    let resolved = parsed.resolve("run-script", &"*".parse().unwrap()).unwrap();
    assert_eq!(resolved.version.to_string(), "0.2.0");
    assert!(
        parsed
            .plugin("run-script")
            .unwrap()
            .versions
            .iter()
            .any(|e| e.yanked && e.version.to_string() == "0.1.0")
    );
    assert!(
        parsed
            .resolve("http-health-check", &"*".parse().unwrap())
            .is_ok()
    );
}

#[test]
fn publish_refuses_components_without_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    write_components(&plugins, &[("run-script", "0.1.0", "a")]);
    std::fs::write(plugins.join("bare.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let feed = tmp.path().join("feed");
    let (ok, stdout, stderr) = publish(&[
        "--plugins",
        plugins.to_str().unwrap(),
        "--out",
        feed.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("bare.wasm") && stderr.contains("no octo:manifest section"),
        "{stderr}"
    );
    assert!(!feed.join("index.json").exists(), "nothing is written");
    let core = tmp.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (ok, _, stderr) = publish(&[
        "--plugins",
        core.to_str().unwrap(),
        "--out",
        feed.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("core WebAssembly module"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_answers_every_route() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    write_components(&plugins, &[("run-script", "0.1.0", "a")]);
    let feed = tmp.path().join("feed");
    let (ok, key, stderr) = publish(&[
        "--plugins",
        plugins.to_str().unwrap(),
        "--out",
        feed.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let mock = MockProcess::start(&[
        "--feed",
        feed.to_str().unwrap(),
        "--latest-version",
        "9.9.9",
    ]);
    assert!(mock.url.starts_with("http://127.0.0.1:"));
    assert_eq!(mock.public_key, key.trim(), "serve uses the feed's key");
    assert!(mock.ready["tlsCertificate"].is_null());
    let url = |path: &str| format!("{}{path}", mock.url);

    // Feed files.
    let index = http("GET", &url("/feed/index.json"), None).await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body, std::fs::read(feed.join("index.json")).unwrap());
    let sig = http("GET", &url("/feed/index.json.sig"), None).await;
    signature::verify(
        &index.body,
        Some(&sig.body),
        &FeedPublicKey::from_base64(&mock.public_key).unwrap(),
    )
    .unwrap();
    let entry = octo_feed::FeedIndex::parse(&index.body).unwrap().plugins[0].versions[0].clone();
    let blob = http("GET", &url(&format!("/feed/{}", entry.blob)), None).await;
    assert_eq!(
        (blob.status, octo_feed::sha256_hex(&blob.body)),
        (200, entry.sha256.clone())
    );
    assert_eq!(
        http(
            "GET",
            &url(&format!("/feed/blobs/sha256/{}", "0".repeat(64))),
            None
        )
        .await
        .status,
        404
    );

    // The community library (default: ../shared/library).
    let list = http("GET", &url("/api/step-templates"), None).await;
    assert_eq!(list.status, 200);
    let templates = list.json();
    let templates = templates.as_array().unwrap();
    assert!(
        !templates.is_empty(),
        "the shared library is served by default: is {} there?",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/library")
            .display()
    );
    for t in templates {
        // Served unchanged: the real data has every field, though some Descriptions are null.
        for field in ["Id", "Name", "Description", "Version"] {
            assert!(t.as_object().unwrap().contains_key(field), "{field} in {t}");
        }
        assert!(t["Id"].is_string() && t["Name"].is_string());
    }
    let id = templates[0]["Id"].as_str().unwrap();
    let one = http("GET", &url(&format!("/api/step-templates/{id}")), None).await;
    assert_eq!((one.status, &one.json()), (200, &templates[0]));
    let missing = http("GET", &url("/api/step-templates/does-not-exist"), None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());

    // Update check.
    let update = http(
        "GET",
        &url("/api/update?version=0.1.0&installationId=inst-1"),
        None,
    )
    .await;
    assert_eq!(update.status, 200);
    assert_eq!(update.json()["latestVersion"], "9.9.9");
    assert!(
        update.json()["url"]
            .as_str()
            .unwrap()
            .starts_with(&mock.url)
    );

    // Telemetry.
    const TELEMETRY: &str = r#"{"installationId":"inst-1","deployments":2}"#;
    let posted = http("POST", &url("/api/telemetry"), Some(TELEMETRY)).await;
    assert_eq!(posted.status, 202);
    assert_eq!(
        http("POST", &url("/api/telemetry"), Some("nope"))
            .await
            .status,
        400
    );
    let received = http("GET", &url("/_mock/telemetry"), None).await.json();
    assert_eq!(
        received,
        serde_json::json!([{"installationId": "inst-1", "deployments": 2}])
    );

    // Experiences.
    let experiences = http("GET", &url("/api/experiences?version=0.1.0"), None)
        .await
        .json();
    for message in experiences.as_array().unwrap() {
        for field in ["id", "title", "body", "url"] {
            assert!(message[field].is_string());
        }
    }

    // Dynamic extensions: signed with the feed key.
    let extensions = http("GET", &url("/api/dynamic-extensions"), None).await;
    let toggles = extensions.json();
    assert!(
        toggles
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"].is_string() && t["enabled"].is_boolean())
    );
    let header = extensions
        .headers
        .get("x-octo-signature")
        .expect("signature header");
    signature::verify(
        &extensions.body,
        Some(header.as_bytes()),
        &FeedPublicKey::from_base64(&mock.public_key).unwrap(),
    )
    .unwrap();

    // Unknown routes and methods.
    let unknown = http("GET", &url("/nothing/here"), None).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
    assert_eq!(http("DELETE", &url("/api/update"), None).await.status, 405);

    // The request log saw all of it, with query and headers, and can be cleared.
    let log = http("GET", &url("/_mock/requests"), None).await.json();
    let log = log.as_array().unwrap();
    let update_call = log
        .iter()
        .find(|r| r["path"] == "/api/update" && r["method"] == "GET")
        .unwrap();
    assert_eq!(update_call["query"], "version=0.1.0&installationId=inst-1");
    assert_eq!(update_call["headers"]["user-agent"], "registry-mock-tests");
    assert!(update_call["time"].is_string());
    let telemetry_call = log.iter().find(|r| r["path"] == "/api/telemetry").unwrap();
    assert_eq!(telemetry_call["bodySize"], TELEMETRY.len());
    assert!(
        log.iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("/_mock/"))
    );
    assert_eq!(
        http("DELETE", &url("/_mock/requests"), None).await.status,
        200
    );
    assert_eq!(
        http("GET", &url("/_mock/requests"), None).await.json(),
        serde_json::json!([])
    );

    // Faults are readable and resettable.
    set_faults(&mock, r#"{"status500":2,"delayMs":1}"#).await;
    let faults = http("GET", &url("/_mock/faults"), None).await.json();
    assert_eq!(
        (faults["status500"].as_u64(), faults["delayMs"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        http("GET", &url("/feed/index.json"), None).await.status,
        500
    );
    assert_eq!(
        http("GET", &url("/api/experiences?version=1"), None)
            .await
            .status,
        200,
        "faults hit the feed only"
    );
    assert_eq!(
        http("POST", &url("/_mock/faults"), Some(r#"{"explode":true}"#))
            .await
            .status,
        400
    );
    assert_eq!(
        http("DELETE", &url("/_mock/faults"), None).await.status,
        200
    );
    assert_eq!(
        http("GET", &url("/feed/index.json"), None).await.status,
        200
    );
    assert!(
        mock.stderr().contains("/feed/index.json"),
        "logs go to stderr"
    );
}

#[tokio::test]
async fn library_dir_and_no_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let library = tmp.path().join("library");
    std::fs::create_dir(&library).unwrap();
    std::fs::write(
        library.join("a.json"),
        r#"{"Id":"id-a","Name":"A","Description":"d","Version":2,"Category":"bash"}"#,
    )
    .unwrap();
    std::fs::write(library.join("notes.json"), "not json").unwrap();
    let mock = MockProcess::start(&["--library", library.to_str().unwrap()]);
    let list = http("GET", &format!("{}/api/step-templates", mock.url), None)
        .await
        .json();
    assert_eq!(
        list,
        serde_json::json!([{"Id":"id-a","Name":"A","Description":"d","Version":2,"Category":"bash"}])
    );
    assert_eq!(
        http("GET", &format!("{}/feed/index.json", mock.url), None)
            .await
            .status,
        404
    );
    // Without a feed the key lives in the state dir, and signs the dynamic extensions.
    assert!(mock.state.path().join("feed.key").exists());
}

#[tokio::test]
async fn tls_mode_serves_https_with_the_printed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    write_components(&plugins, &[("run-script", "0.1.0", "a")]);
    let feed = tmp.path().join("feed");
    assert!(
        publish(&[
            "--plugins",
            plugins.to_str().unwrap(),
            "--out",
            feed.to_str().unwrap()
        ])
        .0
    );
    let mock = MockProcess::start(&["--feed", feed.to_str().unwrap(), "--tls"]);
    assert!(mock.url.starts_with("https://127.0.0.1:"), "{}", mock.url);
    let cert = mock.cert.clone().expect("tlsCertificate in the ready line");
    assert!(cert.starts_with(mock.state.path()));

    let key = FeedPublicKey::from_base64(&mock.public_key).unwrap();
    let trusting = FeedClient::new(client_config().trust_pem_file(&cert).unwrap()).unwrap();
    let fetched = trusting.fetch_index(&mock.feed_url, &key).await.unwrap();
    assert_eq!(fetched.index.plugins[0].id, "run-script");
    let by_name = mock.feed_url.replace("127.0.0.1", "localhost");
    assert!(
        trusting.fetch_index(&by_name, &key).await.is_ok(),
        "SAN localhost"
    );

    let untrusting = FeedClient::new(client_config()).unwrap();
    let err = untrusting
        .fetch_index(&mock.feed_url, &key)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
}
