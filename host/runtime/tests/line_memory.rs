//! A command that prints a gigabyte without a newline costs the host a bounded amount of memory
//! (issue 11, finding 3). Alone in its test binary: the peak RSS it reads is this process's.

use octo_runtime::{LogLine, Runtime, RuntimeConfig, StepRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Peak resident set size of this process so far, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_without_a_newline_is_cut_in_bounded_memory() {
    let rt = Runtime::new(RuntimeConfig {
        step_deadline: Duration::from_secs(600),
        max_instances: 4,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let bytes = std::fs::read(
        std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join("run_script.wasm"),
    )
    .unwrap();
    let plugin = rt.load_step(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<LogLine>::new()));
    let sink = lines.clone();
    let request = StepRequest {
        arguments: BTreeMap::from([(
            "ScriptBody".to_string(),
            "head -c 1000000000 /dev/zero | tr '\\0' y\necho\necho after the long line\n"
                .to_string(),
        )]),
        log: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l)),
        ..StepRequest::new(dir.path())
    };
    // Warm up (compile, first instance) so the baseline includes what every run costs.
    let warm = StepRequest {
        arguments: BTreeMap::from([("ScriptBody".to_string(), "echo warm".to_string())]),
        ..StepRequest::new(dir.path())
    };
    assert_eq!(plugin.run(&rt, warm).await.result, Ok(()));
    let before = peak_rss();
    let outcome = plugin.run(&rt, request).await;
    let growth = peak_rss().saturating_sub(before);
    assert_eq!(outcome.result, Ok(()));
    let lines = lines.lock().unwrap();
    let long = lines
        .iter()
        .find(|l| l.message.starts_with("yyyy"))
        .expect("the long line is logged, cut");
    assert!(
        long.message.ends_with("(line truncated)"),
        "{}",
        long.message.len()
    );
    assert!(long.message.len() < 64 * 1024, "{}", long.message.len());
    assert!(lines.iter().any(|l| l.message == "after the long line"));
    assert!(
        growth < 200 * 1024 * 1024,
        "peak RSS grew by {} MiB while reading a 1 GB line",
        growth >> 20
    );
    eprintln!(
        "peak RSS growth while reading 1 GB without a newline: {} MiB",
        growth >> 20
    );
}
