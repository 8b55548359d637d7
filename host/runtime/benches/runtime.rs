//! Plugin runtime benchmarks.
//!
//! `cargo bench -p octo-runtime --bench runtime --profile dev` (the workspace's one profile: dependencies
//! at opt-level 3, this crate at opt-level 3 too, see the root Cargo.toml).
//!
//! - `warm_invocation`: a fresh instance from the InstancePre plus `describe` + `run` of a trivial step,
//!   i.e. everything `StepPlugin::run` does for one step (store, WASI context, work-dir preopen).
//! - `load/cached` vs `load/compile`: `Runtime::load_step` with the on-disk compiled-code cache warm,
//!   versus compiling the component (cache disabled).

use criterion::{Criterion, criterion_group, criterion_main};
use octo_runtime::{Runtime, RuntimeConfig, StepRequest};
use std::time::Duration;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join(format!("{name}.wasm")),
    )
    .unwrap()
}

fn warm_invocation(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let plugin = rt.load_step(&component("fixture_trivial")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    c.bench_function("warm_invocation/trivial_step", |b| {
        b.to_async(&tokio).iter(|| async {
            let outcome = plugin.run(&rt, StepRequest::new(dir.path())).await;
            assert!(outcome.result.is_ok());
        })
    });
}

fn loading(c: &mut Criterion) {
    let bytes = component("run_script");
    let cache = tempfile::tempdir().unwrap();
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    cached.load_step(&bytes).unwrap(); // fill the cache
    let uncached = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut group = c.benchmark_group("load/run-script");
    group.bench_function("cached", |b| b.iter(|| cached.load_step(&bytes).unwrap()));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("compile", |b| {
        b.iter(|| uncached.load_step(&bytes).unwrap())
    });
    group.finish();
}

criterion_group!(benches, warm_invocation, loading);
criterion_main!(benches);
