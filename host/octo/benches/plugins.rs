//! Plugin lifecycle benchmarks.
//!
//! - `install/*`: installing one plugin (run-script, ~170 KB) from a warm feed served by registry-mock on
//!   loopback into an empty store: `cli` is the whole `octo plugins install run-script@=0.1.1` process
//!   (start, settings, signed index fetch + verify, streamed download + sha256, manifest checks, atomic
//!   install); `in_process` is the same pipeline through octo-feed without the process.
//! - `verify/*`: re-hashing a store with 100 installed versions (100 plugins of ~170 KB each):
//!   `store` is `Store::verify`, `cli` is `octo plugins verify`.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p octo --bench plugins --profile dev` (criterion reports the
//! median as the middle of the `time:` line).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use octo_feed::store::NewEntry;
use octo_feed::{ClientConfig, FeedClient, FeedPublicKey, Source, Store};
use std::time::Duration;

fn install(c: &mut Criterion) {
    let mut feed = Feed::new();
    feed.publish(
        &[
            ("rs-0.1.0.wasm", run_script("0.1.0")),
            ("rs-0.1.1.wasm", run_script("0.1.1")),
        ],
        &[],
    );
    let mock = Mock::start(Some(&feed));
    // Warm the feed (page cache, the mock's first connections) and check the setup once.
    let warm = Home::new();
    warm.configure(&mock, &feed.public_key, true, false);
    warm.octo(&["plugins", "install", "run-script@=0.1.1"])
        .success();

    let mut group = c.benchmark_group("install");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("cli", |b| {
        b.iter_batched(
            || {
                let home = Home::new();
                home.configure(&mock, &feed.public_key, true, false);
                home
            },
            |home| {
                let run = home.octo(&["plugins", "install", "run-script@=0.1.1"]);
                assert!(run.ok(), "{run:?}");
                home
            },
            BatchSize::PerIteration,
        )
    });

    let client = FeedClient::new(ClientConfig {
        webpki_roots: false,
        ..ClientConfig::default()
    })
    .unwrap();
    let key = FeedPublicKey::from_base64(&feed.public_key).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    group.bench_function("in_process", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                runtime.block_on(async {
                    let store = Store::open(dir.path()).unwrap();
                    let fetched = client.fetch_index(&mock.feed_url, &key).await.unwrap();
                    let requirement: semver::VersionReq = "=0.1.1".parse().unwrap();
                    let entry = fetched.index.resolve("run-script", &requirement).unwrap();
                    let temp = client
                        .download_verified(
                            &fetched.blob_url(entry),
                            &entry.sha256,
                            entry.size,
                            &store.download_dir(),
                        )
                        .await
                        .unwrap();
                    let manifest =
                        octo_manifest::read_manifest(&std::fs::read(&temp).unwrap()).unwrap();
                    entry.check_manifest(&manifest).unwrap();
                    manifest.check_api_version().unwrap();
                    store.install_blob(&temp, &entry.sha256).unwrap();
                    store
                        .set_entry(
                            "run-script",
                            NewEntry {
                                requirement,
                                version: entry.version.clone(),
                                sha256: entry.sha256.clone(),
                                source: Source::SignedFeed {
                                    url: fetched.blob_url(entry),
                                    key: None,
                                },
                                kind: entry.manifest.kind,
                            },
                        )
                        .unwrap();
                });
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn verify(c: &mut Criterion) {
    let home = Home::new();
    let store = Store::open(home.path().join("plugins")).unwrap();
    let base = built("run_script.wasm");
    for i in 0..100 {
        let bytes = repack(&base, |m| {
            m.id = format!("bench-{i:03}");
            m.version = format!("0.1.{i}").parse().unwrap();
        });
        let sha256 = store.add_blob(&bytes).unwrap();
        store
            .set_entry(
                &format!("bench-{i:03}"),
                NewEntry {
                    requirement: "*".parse().unwrap(),
                    version: format!("0.1.{i}").parse().unwrap(),
                    sha256,
                    source: Source::LocalFile {
                        path: "bench".into(),
                    },
                    kind: octo_manifest::PluginKind::Step,
                },
            )
            .unwrap();
    }
    let report = store.verify().unwrap();
    assert_eq!((report.checked, report.is_ok()), (100, true));

    let mut group = c.benchmark_group("verify_100_versions");
    group.sample_size(30);
    group.bench_function("store", |b| {
        b.iter(|| {
            let report = store.verify().unwrap();
            assert!(report.is_ok());
        })
    });
    group.bench_function("cli", |b| {
        b.iter(|| {
            let run = home.octo(&["plugins", "verify"]);
            assert!(run.ok(), "{run:?}");
        })
    });
    group.finish();
}

criterion_group!(benches, install, verify);
criterion_main!(benches);
