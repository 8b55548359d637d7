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

/// The pull benchmark (not part of the suite; it never asserts a time): a 256 MiB artifact pushed with
/// oras, pulled into a verified file directly from docker-registry and through squid (CONNECT), three
/// times each. `OCTO_BENCH_MIB` changes the size.
///
/// `cargo test --workspace --test registry -- --ignored --nocapture pull_benchmark`
#[tokio::test]
#[ignore]
async fn pull_benchmark() {
    use octo_comms::proxy::{ProxyConfig, connect_via_proxy};
    use std::sync::Arc;
    let mib: usize = std::env::var("OCTO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let registry = Registry::start(None);
    let squid = octo_test_support::Squid::start(None)
        .expect("squid is not installed: install the Debian package squid");
    let work = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; mib << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(work.path().join("big.bin"), &data).unwrap();
    drop(data);
    oras_push(
        &registry.host(),
        "bench/big:1.0.0",
        None,
        work.path(),
        &["big.bin"],
    );

    let proxy = ProxyConfig::from_fields("http", "127.0.0.1", squid.port, None, None).unwrap();
    let proxy = Arc::new(proxy);
    let via_squid = move |host: String, port: u16| {
        let proxy = proxy.clone();
        async move {
            let stream = connect_via_proxy(&proxy, &host, port, Duration::from_secs(10))
                .await
                .map_err(std::io::Error::other)?;
            Ok(Box::new(stream) as octo_feed::client::BoxedIo)
        }
    };
    let spec = FeedSpec {
        name: "bench".into(),
        kind: FeedKind::Oci,
        url: registry.url(),
        credentials: None,
    };
    let direct = PackageClient::new(
        spec.clone(),
        FeedClient::new(ClientConfig::default()).unwrap(),
    )
    .unwrap();
    let proxied = PackageClient::new(
        spec,
        FeedClient::new(ClientConfig {
            connector: Arc::new(via_squid),
            ..ClientConfig::default()
        })
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, client) in [("direct", &direct), ("squid", &proxied)] {
        let d = client.resolve("bench/big", Some("1.0.0")).await.unwrap();
        let mut rates = Vec::new();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            let done = client
                .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
                .await
                .unwrap();
            let secs = start.elapsed().as_secs_f64();
            std::fs::remove_file(&done.path).unwrap();
            rates.push(mib as f64 / secs);
        }
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        println!("pull {mib} MiB {name}: {rates:.0?} MiB/s, mean {mean:.0} MiB/s");
        results.push(mean);
    }
    println!("squid / direct: {:.2}", results[1] / results[0]);
    let needle = format!("CONNECT 127.0.0.1:{}", registry.port);
    assert!(
        squid.access_log_containing(&needle).contains(&needle),
        "the squid pulls went through squid"
    );
}
