//! The OCI client against a real registry: Debian's docker-registry (distribution 2.8) with htpasswd
//! Basic auth, artifacts pushed with oras (the PyPI oras library, `oras_push`) and a Docker v2 image
//! pushed over the registry API. A missing peer fails the test naming its package.

use octo_feed::{ClientConfig, FeedClient};
use octo_packages::{Cause, Credentials, FeedKind, FeedSpec, PackageClient};
use octo_test_support::feeds::{Registry, oras_push, push_docker_image};
use std::time::Duration;

fn client(url: &str, credentials: Option<(&str, &str)>) -> PackageClient {
    let http = FeedClient::new(ClientConfig {
        attempts: 2,
        backoff_base: Duration::from_millis(5),
        webpki_roots: false,
        ..ClientConfig::default()
    })
    .unwrap();
    PackageClient::new(
        FeedSpec {
            name: "registry".into(),
            kind: FeedKind::Oci,
            url: url.into(),
            credentials: credentials.map(|(u, p)| Credentials {
                username: u.into(),
                password: p.into(),
            }),
        },
        http,
    )
    .unwrap()
}

#[tokio::test]
async fn docker_registry_with_basic_auth_oras_artifacts_and_image_layers() {
    let registry = Registry::start(Some(("ann", "s3cret")));
    let work = tempfile::tempdir().unwrap();
    let auth = Some(("ann", "s3cret"));
    for (tag, text) in [("1.0.0", "one"), ("1.1.0", "one one"), ("latest", "newest")] {
        std::fs::write(work.path().join("app.txt"), text).unwrap();
        oras_push(
            &registry.host(),
            &format!("team/app:{tag}"),
            auth,
            work.path(),
            &["app.txt"],
        );
    }
    std::fs::write(work.path().join("a.tar.gz"), b"first layer").unwrap();
    std::fs::write(work.path().join("b.tar.gz"), b"second layer").unwrap();
    push_docker_image(
        &registry.host(),
        "team/image",
        "7",
        auth,
        work.path(),
        &["a.tar.gz", "b.tar.gz"],
    );

    // No credentials, then wrong ones: 401, each said as such.
    let e = client(&registry.url(), None)
        .versions("team/app")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.cause,
            Cause::Unauthorized {
                status: 401,
                credentials_sent: false
            }
        ),
        "{e}"
    );
    let e = client(&registry.url(), Some(("ann", "nope")))
        .resolve("team/app", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.cause,
            Cause::Unauthorized {
                status: 401,
                credentials_sent: true
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("nope"));

    let feed = client(&registry.url(), auth).with_tag_page_size(2);
    let report = feed.test().await.unwrap();
    assert!(report.summary.contains("401, basic"), "{report:?}");
    // Two pages of two tags (Link: rel="next").
    assert_eq!(
        feed.versions("team/app").await.unwrap(),
        ["1.0.0", "1.1.0", "latest"]
    );

    let dir = tempfile::tempdir().unwrap();
    let d = feed.resolve("team/app", None).await.unwrap();
    assert_eq!(d.version, "1.1.0", "the highest version tag, not `latest`");
    assert_eq!(d.files.len(), 1);
    assert_eq!(
        d.files[0].name, "app.txt",
        "from org.opencontainers.image.title"
    );
    let done = feed
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), b"one one");
    assert_eq!(Some(done.sha256.as_str()), d.files[0].sha256.as_deref());

    // A tag that is not a version, and a manifest by digest.
    let latest = feed.resolve("team/app", Some("latest")).await.unwrap();
    let by_digest = feed
        .resolve("team/app", latest.manifest_digest.as_deref())
        .await
        .unwrap();
    assert_eq!(by_digest.files, latest.files);

    // A Docker v2 image: one file per layer, named by digest.
    let image = feed.resolve("team/image", Some("7")).await.unwrap();
    assert_eq!(image.files.len(), 2);
    for (file, bytes) in image
        .files
        .iter()
        .zip([&b"first layer"[..], &b"second layer"[..]])
    {
        assert!(
            file.name.ends_with(".tar.gz") && file.name.len() == 64 + 7,
            "{}",
            file.name
        );
        let done = feed
            .download_file(&image, file, dir.path(), None, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(std::fs::read(&done.path).unwrap(), bytes);
    }

    let e = feed.resolve("team/app", Some("9.9.9")).await.unwrap_err();
    assert!(matches!(e.cause, Cause::NoMatchingVersion { .. }), "{e}");
    let e = feed.resolve("team/none", None).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("feed registry, package team/none"),
        "{e}"
    );
}
