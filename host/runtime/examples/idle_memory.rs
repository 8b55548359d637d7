//! Resident memory of a runtime idling with every built-in plugin loaded (the four vendor plugins and
//! the two built-in steps), as a server holds them between jobs.
//!
//! `cargo run -p octo-runtime --example idle_memory [-- --warm]` prints VmRSS (Linux) before the
//! runtime exists, after creating it, after loading everything, and a second later. Without `--warm`
//! the components are compiled in-process (a first start); with it they come from the on-disk cache
//! (every later start).

use octo_manifest::PluginKind;
use octo_runtime::{Runtime, RuntimeConfig};
use std::time::Duration;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn kinds() -> [(octo_builtin_plugins::BuiltinPlugin, PluginKind); 4] {
    [
        (octo_builtin_plugins::UPDATE_CHECK, PluginKind::UpdateCheck),
        (octo_builtin_plugins::TELEMETRY, PluginKind::Telemetry),
        (octo_builtin_plugins::EXPERIENCES, PluginKind::Experiences),
        (
            octo_builtin_plugins::DYNAMIC_EXTENSIONS,
            PluginKind::DynamicExtensions,
        ),
    ]
}

fn main() {
    let cache = tempfile::tempdir().unwrap();
    // `--warm`: compile into the on-disk cache first (in a child process, so its memory is not
    // counted), as a server that has started before finds it.
    if std::env::args().any(|a| a == "--fill-cache") {
        let dir = std::env::args().next_back().unwrap();
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.into()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        for p in octo_builtin_plugins::STEPS {
            rt.load_step(p.bytes).unwrap();
        }
        for (p, k) in kinds() {
            rt.load_vendor(p.bytes, k).unwrap();
        }
        return;
    }
    let warm = std::env::args().any(|a| a == "--warm");
    if warm {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--fill-cache")
            .arg(cache.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let before = rss_kib();
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 100,
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let created = rss_kib();
    let vendor: Vec<_> = kinds()
        .iter()
        .map(|(p, k)| rt.load_vendor(p.bytes, *k).unwrap())
        .collect();
    let steps: Vec<_> = octo_builtin_plugins::STEPS
        .iter()
        .map(|p| rt.load_step(p.bytes).unwrap())
        .collect();
    let loaded = rss_kib();
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib();
    println!(
        "compiled code: {}",
        if warm {
            "from the on-disk cache"
        } else {
            "compiled now"
        }
    );
    println!("VmRSS before runtime:            {before} KiB");
    println!("VmRSS runtime created:           {created} KiB");
    println!(
        "VmRSS {} vendor + {} steps loaded: {loaded} KiB",
        vendor.len(),
        steps.len()
    );
    println!("VmRSS idle 1 s later:            {idle} KiB");
    println!(
        "loading all built-in plugins added {} KiB",
        loaded.saturating_sub(created)
    );
}
