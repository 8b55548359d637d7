//! The feed clients against loopback fixtures (octo-test-support's `Routed`): NuGet v3, plain HTTP and
//! an OCI registry with a token server, and each fault the issue lists — every error one line naming
//! the feed, the package and the cause, and no file left behind.

use octo_feed::{ClientConfig, FeedClient};
use octo_packages::{Cause, Credentials, FeedKind, FeedSpec, PackageClient, PackageError};
use octo_test_support::feeds::{Reply, Request, Routed};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn http() -> FeedClient {
    FeedClient::new(ClientConfig {
        attempts: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(5),
        webpki_roots: false,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn client(kind: FeedKind, url: &str, credentials: Option<(&str, &str)>) -> PackageClient {
    PackageClient::new(
        FeedSpec {
            name: "fx".into(),
            kind,
            url: url.into(),
            credentials: credentials.map(|(u, p)| Credentials {
                username: u.into(),
                password: p.into(),
            }),
        },
        http(),
    )
    .unwrap()
}

fn sha(bytes: &[u8]) -> String {
    octo_fsutil::sha256_hex(bytes)
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// "Basic ann:s3cret"
const GOOD: &str = "Basic YW5uOnMzY3JldA==";

/// A NuGet v3 feed: My.Pkg 1.0.0, 1.5.0, 2.0.0-beta; Basic auth ann/s3cret when `auth`.
fn nuget_feed(auth: bool, nupkg: Vec<u8>) -> (Routed, Arc<OnceLock<String>>) {
    let base: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let b = base.clone();
    let server = Routed::start(move |r: &Request| {
        if auth && r.header("authorization") != Some(GOOD) {
            let status = if r.header("authorization").is_some() {
                403
            } else {
                401
            };
            return Reply::status(status).with_header("www-authenticate", "Basic realm=\"nuget\"");
        }
        let base = b.get().unwrap();
        match r.path.as_str() {
            "/v3/index.json" => Reply::ok(format!(
                r#"{{"version":"3.0.0","resources":[{{"@id":"{base}/flat/","@type":"PackageBaseAddress/3.0.0"}},{{"@id":"{base}/q","@type":"SearchQueryService"}}]}}"#
            )),
            "/flat/my.pkg/index.json" => {
                Reply::ok(r#"{"versions":["1.0.0","1.5.0","2.0.0-beta"]}"#)
            }
            "/flat/my.pkg/1.5.0/my.pkg.1.5.0.nupkg" => Reply::ok(nupkg.clone()),
            "/flat/my.pkg/1.0.0/my.pkg.1.0.0.nupkg" => {
                let mut cut = Reply::ok(nupkg.clone());
                cut.cut_at = Some(nupkg.len() / 2);
                cut
            }
            _ => Reply::status(404),
        }
    });
    base.set(server.base_url.clone()).unwrap();
    (server, base)
}

#[tokio::test]
async fn nuget_resolves_case_insensitively_normalises_and_downloads() {
    let nupkg = b"PK\x03\x04 a nupkg".to_vec();
    let (server, _) = nuget_feed(true, nupkg.clone());
    let feed = client(
        FeedKind::Nuget,
        &format!("{}/v3/index.json", server.base_url),
        Some(("ann", "s3cret")),
    );
    let report = feed.test().await.unwrap();
    assert!(report.summary.contains("service index 3.0.0"), "{report:?}");
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "PackageBaseAddress/3.0.0")
    );
    assert_eq!(
        feed.versions("MY.PKG").await.unwrap(),
        ["1.0.0", "1.5.0", "2.0.0-beta"]
    );
    let d = feed.resolve("My.Pkg", Some("1.5")).await.unwrap();
    assert_eq!(d.version, "1.5.0");
    assert_eq!(d.files[0].name, "my.pkg.1.5.0.nupkg");
    assert_eq!(
        feed.resolve("My.Pkg", Some("[1.0,2.0)"))
            .await
            .unwrap()
            .version,
        "1.5.0"
    );
    assert_eq!(feed.resolve("My.Pkg", None).await.unwrap().version, "1.5.0");
    let dir = tempfile::tempdir().unwrap();
    let done = feed
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), nupkg);
    assert_eq!(done.sha256, sha(&nupkg));
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some(GOOD))
    );
}

fn cause_of(e: &PackageError) -> &Cause {
    &e.cause
}

#[tokio::test]
async fn nuget_401_403_404_and_no_matching_version() {
    let (server, _) = nuget_feed(true, b"x".to_vec());
    let url = format!("{}/v3/index.json", server.base_url);
    let anonymous = client(FeedKind::Nuget, &url, None);
    let e = anonymous.resolve("My.Pkg", None).await.unwrap_err();
    assert!(
        matches!(
            cause_of(&e),
            Cause::Unauthorized {
                status: 401,
                credentials_sent: false
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(
            "feed fx, package My.Pkg: the feed answered 401 Unauthorized and no credentials"
        ),
        "{e}"
    );

    let wrong = client(FeedKind::Nuget, &url, Some(("ann", "wrong")));
    let e = wrong.resolve("My.Pkg", Some("1.5.0")).await.unwrap_err();
    assert!(
        matches!(
            cause_of(&e),
            Cause::Unauthorized {
                status: 403,
                credentials_sent: true
            }
        ),
        "{e}"
    );
    assert!(
        !e.to_string().contains("wrong"),
        "the password is never shown: {e}"
    );

    let good = client(FeedKind::Nuget, &url, Some(("ann", "s3cret")));
    let e = good.resolve("No.Such", None).await.unwrap_err();
    assert!(matches!(cause_of(&e), Cause::NotFound { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("feed fx, package No.Such: not found"),
        "{e}"
    );

    let e = good.resolve("My.Pkg", Some("[3.0,)")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "feed fx, package My.Pkg@[3.0,): no version matches [3.0.0,) (available: 2.0.0-beta, 1.5.0, 1.0.0)"
    );
}

#[tokio::test]
async fn ids_with_path_characters_make_no_request() {
    let (server, _) = nuget_feed(false, b"x".to_vec());
    let feed = client(
        FeedKind::Nuget,
        &format!("{}/v3/index.json", server.base_url),
        None,
    );
    for bad in ["../etc/passwd", "a/b", "..", "a\\b", "%2e%2e"] {
        let e = feed.resolve(bad, None).await.unwrap_err();
        assert!(matches!(cause_of(&e), Cause::InvalidId(_)), "{bad}: {e}");
        assert!(e.to_string().starts_with("feed fx, package "), "{e}");
    }
    let http_feed = client(
        FeedKind::Http,
        &format!("{}/{{id}}/{{version}}.zip", server.base_url),
        None,
    );
    assert!(matches!(
        cause_of(&http_feed.resolve("../x", Some("1.0")).await.unwrap_err()),
        Cause::InvalidId(_)
    ));
    assert!(http_feed.resolve("x", Some("1.0/../../y")).await.is_err());
    assert_eq!(server.requests().len(), 0);
}

#[tokio::test]
async fn an_unreachable_feed_is_one_line() {
    let port = octo_test_support::free_port();
    let feed = client(
        FeedKind::Nuget,
        &format!("http://127.0.0.1:{port}/v3/index.json"),
        None,
    );
    let e = feed.resolve("My.Pkg", None).await.unwrap_err();
    let line = e.to_string();
    assert!(
        line.starts_with("feed fx, package My.Pkg: cannot connect to"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[tokio::test]
async fn truncated_downloads_and_size_limits_leave_nothing() {
    let nupkg = vec![7u8; 64 * 1024];
    let (server, _) = nuget_feed(false, nupkg);
    let feed = client(
        FeedKind::Nuget,
        &format!("{}/v3/index.json", server.base_url),
        None,
    );
    let dir = tempfile::tempdir().unwrap();

    let cut = feed.resolve("My.Pkg", Some("1.0.0")).await.unwrap();
    let e = feed
        .download_file(&cut, &cut.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("was cut short"), "{e}");
    assert!(
        e.to_string().starts_with("feed fx, package My.Pkg@1.0.0: "),
        "{e}"
    );
    assert!(empty(dir.path()));

    let whole = feed.resolve("My.Pkg", Some("1.5.0")).await.unwrap();
    let e = feed
        .download_file(&whole, &whole.files[0], dir.path(), Some(1000), &|_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is larger than 1000 bytes"), "{e}");
    assert!(empty(dir.path()));
}

#[tokio::test]
async fn credentials_are_not_forwarded_to_another_origin() {
    let blob = b"the package bytes".to_vec();
    let b2 = blob.clone();
    let storage = Routed::start(move |_| Reply::ok(b2.clone()));
    let storage_url = storage.base_url.clone();
    let feed_server = Routed::start(move |r: &Request| match r.path.as_str() {
        "/same/app/1.0/app.zip" => Reply::redirect("/files/app.zip"),
        "/files/app.zip" => Reply::ok(b"same origin".to_vec()),
        "/other/app/1.0/app.zip" => Reply::redirect(&format!("{storage_url}/blob")),
        _ => Reply::status(404),
    });
    let dir = tempfile::tempdir().unwrap();
    for (prefix, expected) in [("same", b"same origin".to_vec()), ("other", blob)] {
        let feed = client(
            FeedKind::Http,
            &format!(
                "{}/{prefix}/{{id}}/{{version}}/{{id}}.zip",
                feed_server.base_url
            ),
            Some(("ann", "s3cret")),
        );
        let d = feed.resolve("app", Some("1.0")).await.unwrap();
        assert_eq!(d.files[0].name, "app.zip");
        let done = feed
            .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(std::fs::read(&done.path).unwrap(), expected);
    }
    // The feed's own origin got the credentials on every request, the redirect target never.
    assert!(
        feed_server
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some(GOOD))
    );
    assert_eq!(storage.requests().len(), 1);
    assert_eq!(storage.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn http_feed_sidecars_verify_and_a_mismatch_is_discarded() {
    let good = b"archive".to_vec();
    let g = good.clone();
    let server = Routed::start(move |r: &Request| match r.path.as_str() {
        "/app-1.0.tgz" | "/app-2.0.tgz" => Reply::ok(g.clone()),
        "/app-1.0.tgz.sha256" => Reply::ok(format!("{}  app-1.0.tgz\n", sha(&g))),
        "/app-2.0.tgz.sha256" => Reply::ok(format!("{}  app-2.0.tgz\n", "0".repeat(64))),
        _ => Reply::status(404),
    });
    let feed = client(
        FeedKind::Http,
        &format!("{}/{{id}}-{{version}}.tgz", server.base_url),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let ok = feed.resolve("app", Some("1.0")).await.unwrap();
    assert_eq!(ok.files[0].sha256.as_deref(), Some(sha(&good).as_str()));
    feed.download_file(&ok, &ok.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    let bad = feed.resolve("app", Some("2.0")).await.unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let e = feed
        .download_file(&bad, &bad.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(cause_of(&e), Cause::DigestMismatch(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("feed fx, package app@2.0: digest mismatch"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before.len());
    let e = feed.versions("app").await.unwrap_err();
    assert!(e.to_string().contains("no version list"), "{e}");
    let e = feed.resolve("app", None).await.unwrap_err();
    assert!(e.to_string().contains("exact version"), "{e}");
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI registry fixture behind a token server: `/v2/*` wants `Bearer good-token`; the token server
/// (same host, another port) wants Basic ann:s3cret and the repository scope.
#[tokio::test]
async fn oci_bearer_flow_pagination_and_digest_checks() {
    let layer = b"layer bytes".to_vec();
    let layer_digest = format!("sha256:{}", sha(&layer));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:{}","size":2}},"layers":[{{"mediaType":"application/zip","digest":"{layer_digest}","size":{},"annotations":{{"org.opencontainers.image.title":"app.zip"}}}}]}}"#,
        sha(b"{}"),
        layer.len()
    );
    let manifest_digest = format!("sha256:{}", sha(manifest.as_bytes()));
    let tokens = Routed::start(|r: &Request| {
        if r.header("authorization") == Some(GOOD)
            && r.path.contains("scope=repository%3Ateam%2Fapp%3Apull")
        {
            Reply::ok(r#"{"token":"good-token"}"#)
        } else {
            Reply::status(401)
        }
    });
    let realm = format!("{}/token", tokens.base_url);
    let (m, md, l) = (manifest.clone(), manifest_digest.clone(), layer.clone());
    let registry = Routed::start(move |r: &Request| {
        if r.header("authorization") != Some("Bearer good-token") {
            return Reply::status(401).with_header(
                "www-authenticate",
                &format!(
                    r#"Bearer realm="{realm}",service="fixture",scope="repository:team/app:pull""#
                ),
            );
        }
        let path = r.path.as_str();
        if path.starts_with("/v2/team/app/tags/list") {
            let (tags, next) = if path.contains("last=") {
                (r#"["latest"]"#, None)
            } else {
                (
                    r#"["1.0.0","1.2.0"]"#,
                    Some("</v2/team/app/tags/list?n=2&last=1.2.0>; rel=\"next\""),
                )
            };
            let reply = Reply::ok(format!(r#"{{"name":"team/app","tags":{tags}}}"#));
            return match next {
                Some(link) => reply.with_header("link", link),
                None => reply,
            };
        }
        match path {
            "/v2/team/app/manifests/1.2.0" => Reply::ok(m.clone())
                .with_header("content-type", MANIFEST)
                .with_header("docker-content-digest", &md),
            "/v2/team/app/manifests/1.0.0" => Reply::ok(m.clone())
                .with_header("content-type", MANIFEST)
                .with_header(
                    "docker-content-digest",
                    &format!("sha256:{}", "1".repeat(64)),
                ),
            p if p == format!("/v2/team/app/blobs/sha256:{}", sha(&l)) => {
                Reply::ok(b"tampered!!!".to_vec())
            }
            _ => Reply::status(404),
        }
    });
    let feed =
        client(FeedKind::Oci, &registry.base_url, Some(("ann", "s3cret"))).with_tag_page_size(2);
    assert_eq!(
        feed.versions("team/app").await.unwrap(),
        ["1.0.0", "1.2.0", "latest"]
    );
    assert_eq!(tokens.requests().len(), 1, "one token for the repository");
    let d = feed.resolve("team/app", None).await.unwrap();
    assert_eq!(
        (d.version.as_str(), d.manifest_digest.as_deref()),
        ("1.2.0", Some(manifest_digest.as_str()))
    );
    assert_eq!(d.files[0].name, "app.zip");
    assert_eq!(d.files[0].sha256.as_deref(), Some(sha(&layer).as_str()));

    let e = feed.resolve("team/app", Some("1.0.0")).await.unwrap_err();
    assert!(matches!(cause_of(&e), Cause::DigestMismatch(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("feed fx, package team/app@1.0.0: digest mismatch: the manifest"),
        "{e}"
    );

    // The layer's bytes are not what its digest says (same length): discarded.
    let dir = tempfile::tempdir().unwrap();
    let e = feed
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(cause_of(&e), Cause::DigestMismatch(_)), "{e}");
    assert!(empty(dir.path()));

    // Without credentials the token server refuses: one line, no credentials sent.
    let anonymous = client(FeedKind::Oci, &registry.base_url, None);
    let e = anonymous.versions("team/app").await.unwrap_err();
    assert!(
        matches!(
            cause_of(&e),
            Cause::Unauthorized {
                credentials_sent: false,
                ..
            }
        ),
        "{e}"
    );
}

fn sha512_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA512, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha512_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA512, bytes).as_ref())
}

/// A NuGet v3 feed whose registration resource publishes `packageHash`: My.Pkg 1.5.0 inline in a
/// page fetched by its `@id`, 1.0.0 only in its catalog leaf (the hash of other bytes), 2.0.0
/// without any.
fn nuget_feed_with_registrations(nupkg: Vec<u8>) -> Routed {
    let base: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let b = base.clone();
    let server = Routed::start(move |r: &Request| {
        let base = b.get().unwrap();
        match r.path.as_str() {
            "/v3/index.json" => Reply::ok(format!(
                r#"{{"version":"3.0.0","resources":[{{"@id":"{base}/flat/","@type":"PackageBaseAddress/3.0.0"}},{{"@id":"{base}/reg","@type":["RegistrationsBaseUrl","RegistrationsBaseUrl/3.6.0"]}}]}}"#
            )),
            "/flat/my.pkg/index.json" => Reply::ok(r#"{"versions":["1.0.0","1.5.0","2.0.0"]}"#),
            p if p.starts_with("/flat/my.pkg/") && p.ends_with(".nupkg") => {
                Reply::ok(nupkg.clone())
            }
            "/reg/my.pkg/index.json" => Reply::ok(format!(
                r#"{{"count":1,"items":[{{"@id":"{base}/reg/my.pkg/page.json","lower":"1.0.0","upper":"2.0.0","count":3}}]}}"#
            )),
            "/reg/my.pkg/page.json" => Reply::ok(format!(
                r#"{{"@id":"{base}/reg/my.pkg/page.json","lower":"1.0.0","upper":"2.0.0","items":[
                    {{"catalogEntry":{{"@id":"{base}/catalog/my.pkg.1.0.0.json","version":"1.0.0"}}}},
                    {{"catalogEntry":{{"@id":"{base}/catalog/my.pkg.1.5.0.json","version":"1.5.0","packageHash":"{}","packageHashAlgorithm":"SHA512"}}}},
                    {{"catalogEntry":{{"version":"2.0.0"}}}}]}}"#,
                sha512_b64(&nupkg)
            )),
            "/catalog/my.pkg.1.0.0.json" => Reply::ok(format!(
                r#"{{"version":"1.0.0","packageHash":"{}","packageHashAlgorithm":"SHA512"}}"#,
                sha512_b64(b"other bytes")
            )),
            _ => Reply::status(404),
        }
    });
    base.set(server.base_url.clone()).unwrap();
    server
}

#[tokio::test]
async fn nuget_registration_hashes_verify_downloads_without_a_sha256() {
    let nupkg = b"PK\x03\x04 a nupkg with a published hash".to_vec();
    let server = nuget_feed_with_registrations(nupkg.clone());
    let feed = client(
        FeedKind::Nuget,
        &format!("{}/v3/index.json", server.base_url),
        None,
    );
    let dir = tempfile::tempdir().unwrap();

    // Inline in the registration page: the download is verified against it.
    let mut d = feed.resolve("My.Pkg", Some("[1.5.0]")).await.unwrap();
    assert!(!d.verifiable());
    feed.fill_published_hashes(&mut d).await.unwrap();
    assert_eq!(
        d.files[0].sha512.as_deref(),
        Some(sha512_hex(&nupkg).as_str())
    );
    assert!(d.verifiable() && !d.fully_pinned());
    let done = feed
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(done.sha256, sha(&nupkg));
    std::fs::remove_file(&done.path).unwrap();

    // Only in the catalog leaf, and not these bytes: refused, nothing left.
    let mut d = feed.resolve("My.Pkg", Some("[1.0.0]")).await.unwrap();
    feed.fill_published_hashes(&mut d).await.unwrap();
    assert_eq!(
        d.files[0].sha512.as_deref(),
        Some(sha512_hex(b"other bytes").as_str())
    );
    let e = feed
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(cause_of(&e), Cause::DigestMismatch(_)), "{e}");
    let line = e.to_string();
    assert!(
        line.contains("fx")
            && line.contains("My.Pkg")
            && line.contains("SHA-512")
            && !line.contains('\n'),
        "{line}"
    );
    assert!(empty(dir.path()));

    // Registered without a hash: nothing to verify against.
    let mut d = feed.resolve("My.Pkg", Some("[2.0.0]")).await.unwrap();
    feed.fill_published_hashes(&mut d).await.unwrap();
    assert!(!d.verifiable());

    // A feed without a registration resource: the same.
    let (plain, _) = nuget_feed(false, nupkg.clone());
    let feed = client(
        FeedKind::Nuget,
        &format!("{}/v3/index.json", plain.base_url),
        None,
    );
    let mut d = feed.resolve("My.Pkg", Some("1.5")).await.unwrap();
    feed.fill_published_hashes(&mut d).await.unwrap();
    assert!(!d.verifiable());
}
