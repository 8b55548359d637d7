//! The sandbox's promises, checked with real components from plugins/ (built by octo-builtin-plugins).

use octo_manifest::{DestinationPattern, ManifestError, SectionError};
use octo_runtime::{
    Allocation, AllowList, LoadError, LogLevel, LogLine, Runtime, RuntimeConfig, StepFailure,
    StepPlugin, StepRequest, Variable,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn runtime() -> Runtime {
    runtime_with(Allocation::Pooling)
}

fn runtime_with(allocation: Allocation) -> Runtime {
    Runtime::new(RuntimeConfig {
        memory_limit: 64 * 1024 * 1024,
        step_deadline: Duration::from_secs(60),
        max_instances: 16,
        allocation,
        cache_dir: None,
        trusted_certificates: Vec::new(),
        limits: Default::default(),
    })
    .unwrap()
}

fn load(rt: &Runtime, name: &str) -> StepPlugin {
    rt.load_step(&fixture(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A request whose log lines are collected.
fn request(dir: &tempfile::TempDir) -> (StepRequest, Arc<Mutex<Vec<LogLine>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let req = StepRequest {
        log: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l)),
        ..StepRequest::new(dir.path())
    };
    (req, lines)
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An HTTP server on loopback answering 200 to everything; counts connections.
async fn http_server() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn trivial_step_succeeds() {
    let rt = runtime();
    let plugin = load(&rt, "fixture_trivial");
    let dir = tempfile::tempdir().unwrap();
    let (req, _) = request(&dir);
    let outcome = plugin.run(&rt, req).await;
    assert_eq!(outcome.result, Ok(()));
}

#[tokio::test]
async fn bad_components_are_refused_with_clear_errors() {
    let rt = runtime();
    let err = |bytes: &[u8]| rt.load_step(bytes).err().expect("must be refused");
    assert!(matches!(
        err(b"not wasm at all"),
        LoadError::Manifest(SectionError::NotWasm)
    ));
    assert!(matches!(
        err(b"\0asm\x01\0\0\0"),
        LoadError::Manifest(SectionError::CoreModule)
    ));
    assert!(matches!(
        err(&fixture("fixture_no_manifest")),
        LoadError::Manifest(SectionError::Missing)
    ));
    let wrong_kind = err(&fixture("fixture_wrong_kind"));
    assert!(
        matches!(
            wrong_kind,
            LoadError::Incompatible(ManifestError::WrongKind { .. })
        ),
        "{wrong_kind}"
    );
    let wrong_api = err(&fixture("fixture_wrong_api"));
    assert!(
        matches!(
            wrong_api,
            LoadError::Incompatible(ManifestError::UnsupportedApi { .. })
        ),
        "{wrong_api}"
    );
    for e in [wrong_kind, wrong_api] {
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }
}

#[tokio::test]
async fn a_trap_is_an_outcome_and_the_host_carries_on() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let outcome = load(&rt, "fixture_trap").run(&rt, request(&dir).0).await;
    let Err(StepFailure::Trapped(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(
        message.contains("panicked") || message.contains("unreachable"),
        "{message}"
    );
    // The same runtime still runs steps.
    assert_eq!(
        load(&rt, "fixture_trivial")
            .run(&rt, request(&dir).0)
            .await
            .result,
        Ok(())
    );
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, _) = request(&dir);
    req.deadline = Some(Duration::from_millis(500));
    let outcome = load(&rt, "fixture_loop").run(&rt, req).await;
    assert_eq!(
        outcome.result,
        Err(StepFailure::DeadlineExceeded(Duration::from_millis(500)))
    );
    assert_eq!(
        load(&rt, "fixture_trivial")
            .run(&rt, request(&dir).0)
            .await
            .result,
        Ok(())
    );
}

#[tokio::test]
async fn a_loop_can_be_cancelled() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (req, _) = request(&dir);
    let cancel = req.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let outcome = load(&rt, "fixture_loop").run(&rt, req).await;
    assert_eq!(outcome.result, Err(StepFailure::Cancelled));
}

#[tokio::test]
async fn eating_memory_hits_the_limit() {
    eating_memory_hits_the_limit_with(Allocation::Pooling).await;
}

/// A one-shot run's on-demand allocator holds the same limit (through the store's limiter).
#[tokio::test]
async fn eating_memory_hits_the_limit_without_a_pool() {
    eating_memory_hits_the_limit_with(Allocation::OnDemand).await;
}

async fn eating_memory_hits_the_limit_with(allocation: Allocation) {
    let rt = runtime_with(allocation);
    let dir = tempfile::tempdir().unwrap();
    let outcome = load(&rt, "fixture_memory_hog")
        .run(&rt, request(&dir).0)
        .await;
    // The fixture notices the failed allocation and fails politely; the host says why.
    let Err(StepFailure::Failed(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(message.contains("memory limit of 64 MiB"), "{message}");
    assert_eq!(
        load(&rt, "fixture_trivial")
            .run(&rt, request(&dir).0)
            .await
            .result,
        Ok(())
    );
}

#[tokio::test]
async fn outbound_is_denied_by_default_and_recorded() {
    let (url, hits) = http_server().await;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, lines) = request(&dir);
    req.arguments = args(&[("url", &url)]);
    let outcome = load(&rt, "fixture_denied_http").run(&rt, req).await;
    let Err(StepFailure::Failed(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(message.contains("denied"), "{message}");
    assert_eq!(outcome.outbound.len(), 1);
    assert!(!outcome.outbound[0].allowed);
    assert!(
        outcome.outbound[0].reason.contains("not enabled"),
        "{:?}",
        outcome.outbound[0]
    );
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("denied"))
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a denied request must not open a connection"
    );
}

#[tokio::test]
async fn a_granted_declared_destination_is_reached() {
    let (url, hits) = http_server().await;
    let origin = octo_manifest::Destination::from_url(&url).unwrap();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, _) = request(&dir);
    req.arguments = args(&[("url", &url)]);
    req.policy = Arc::new(AllowList::new(vec![DestinationPattern::exact(&origin)]));
    let outcome = load(&rt, "fixture_denied_http").run(&rt, req).await;
    assert_eq!(outcome.result, Ok(()), "{:?}", outcome.outbound);
    assert!(outcome.outbound[0].allowed);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn undeclared_destinations_are_denied_even_when_granted() {
    let (url, hits) = http_server().await;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, _) = request(&dir);
    req.arguments = args(&[("url", &url)]);
    req.policy = Arc::new(AllowList::new(vec![
        DestinationPattern::parse("http://*:*").unwrap(),
    ]));
    let outcome = load(&rt, "fixture_undeclared_http").run(&rt, req).await;
    assert!(outcome.result.is_err());
    assert!(
        outcome.outbound[0].reason.contains("not declared"),
        "{:?}",
        outcome.outbound
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn process_needs_the_capability() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let outcome = load(&rt, "fixture_process_ungranted")
        .run(&rt, request(&dir).0)
        .await;
    let Err(StepFailure::Failed(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(
        message.contains("not granted") || message.contains("capability"),
        "{message}"
    );
}

#[tokio::test]
async fn outputs_and_masking() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, lines) = request(&dir);
    req.variables = vec![Variable {
        name: "Secret".into(),
        value: "hunter2-secret".into(),
        sensitive: true,
    }];
    let outcome = load(&rt, "fixture_outputs").run(&rt, req).await;
    assert_eq!(outcome.result, Ok(()));
    let greeting = outcome
        .outputs
        .iter()
        .find(|o| o.name == "Greeting")
        .unwrap();
    assert_eq!(greeting.value, "hello from fixture-outputs");
    let token = outcome.outputs.iter().find(|o| o.name == "Token").unwrap();
    assert!(token.sensitive && token.display_value() == "********");
    let lines = lines.lock().unwrap();
    let all: String = lines
        .iter()
        .map(|l| format!("{:?} {}\n", l.level, l.message))
        .collect();
    assert!(all.contains("Secret is ********"), "{all}");
    assert!(all.contains("Token is ********"), "{all}");
    assert!(
        !all.contains("hunter2-secret") && !all.contains("fixture-sensitive-output-value"),
        "{all}"
    );
    for level in [
        LogLevel::Trace,
        LogLevel::Verbose,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ] {
        assert!(
            lines.iter().any(|l| l.level == level),
            "no {level:?} line in {all}"
        );
    }
}

#[tokio::test]
async fn missing_required_parameter_is_refused_before_run() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let outcome = load(&rt, "fixture_denied_http")
        .run(&rt, request(&dir).0)
        .await;
    let Err(StepFailure::InvalidArguments(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(
        message.contains("missing required parameter url"),
        "{message}"
    );
    assert!(outcome.outbound.is_empty());
}

#[tokio::test]
async fn describe_lists_parameters() {
    let rt = runtime();
    let d = load(&rt, "http_health_check").describe(&rt).await.unwrap();
    let names: Vec<&str> = d.parameters.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"url"), "{names:?}");
    assert!(
        d.parameters
            .iter()
            .find(|p| p.name == "url")
            .unwrap()
            .required
    );
}

#[tokio::test]
async fn health_check_reaches_a_granted_url() {
    let (url, hits) = http_server().await;
    let origin = octo_manifest::Destination::from_url(&url).unwrap();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, _) = request(&dir);
    req.arguments = args(&[("url", &url), ("timeoutSeconds", "10")]);
    req.policy = Arc::new(AllowList::new(vec![DestinationPattern::exact(&origin)]));
    let outcome = load(&rt, "http_health_check").run(&rt, req).await;
    assert_eq!(outcome.result, Ok(()));
    assert!(hits.load(Ordering::SeqCst) >= 1);

    // Without the grant it fails at once, naming the destination.
    let (mut req, _) = request(&dir);
    req.arguments = args(&[("url", &url), ("timeoutSeconds", "10")]);
    let outcome = load(&rt, "http_health_check").run(&rt, req).await;
    let Err(StepFailure::Failed(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(
        message.contains("denied") && message.contains("127.0.0.1"),
        "{message}"
    );
    assert_eq!(outcome.outbound.len(), 1, "a denied request is not retried");
}

#[tokio::test]
async fn run_script_runs_bash_with_helpers_and_masking() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, lines) = request(&dir);
    req.arguments = args(&[(
        "ScriptBody",
        "name=$(get_octopusvariable \"Name\")\r\necho \"hello $name from #{Name}\"\r\necho \"pw=$(get_octopusvariable Password)\"\r\nset_octopusvariable \"Result\" \"done-$name\"\r\nset_octopusvariable \"Tok\" \"tok-value-123\" -sensitive\r\necho tok-value-123\r\nwrite_verbose \"quiet\"\r\necho oops >&2\r\necho \"untouched #{Missing}\"\r\n",
    )]);
    req.variables = vec![
        Variable {
            name: "Name".into(),
            value: "Ada Lovelace".into(),
            sensitive: false,
        },
        Variable {
            name: "Password".into(),
            value: "s3cr3t-pw".into(),
            sensitive: true,
        },
    ];
    let outcome = load(&rt, "run_script").run(&rt, req).await;
    assert_eq!(outcome.result, Ok(()));
    let lines = lines.lock().unwrap();
    let find = |text: &str| lines.iter().find(|l| l.message.contains(text)).cloned();
    assert_eq!(
        find("hello Ada").unwrap().message,
        "hello Ada Lovelace from Ada Lovelace"
    );
    assert_eq!(find("pw=").unwrap().message, "pw=********");
    assert_eq!(find("quiet").unwrap().level, LogLevel::Verbose);
    assert_eq!(find("oops").unwrap().level, LogLevel::Error);
    assert!(find("untouched #{Missing}").is_some(), "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.message.contains("tok-value-123") && !l.message.contains("s3cr3t-pw"))
    );
    let result = outcome.outputs.iter().find(|o| o.name == "Result").unwrap();
    assert_eq!(result.value, "done-Ada Lovelace");
    assert!(
        outcome
            .outputs
            .iter()
            .find(|o| o.name == "Tok")
            .unwrap()
            .sensitive
    );
}

#[tokio::test]
async fn run_script_failure_message_comes_from_fail_step() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut req, _) = request(&dir);
    req.arguments = args(&[(
        "ScriptBody",
        "echo before\nfail_step \"the widget is broken\"\necho never",
    )]);
    let outcome = load(&rt, "run_script").run(&rt, req).await;
    assert_eq!(
        outcome.result,
        Err(StepFailure::Failed("the widget is broken".into()))
    );

    let (mut req, _) = request(&dir);
    req.arguments = args(&[("ScriptBody", "exit 3")]);
    let outcome = load(&rt, "run_script").run(&rt, req).await;
    let Err(StepFailure::Failed(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(message.contains('3'), "{message}");
}

#[tokio::test]
async fn a_script_past_its_deadline_is_killed_with_its_children() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child-survived");
    let (mut req, _) = request(&dir);
    req.deadline = Some(Duration::from_secs(1));
    req.arguments = args(&[(
        "ScriptBody",
        &format!("(sleep 3; touch {}) &\nsleep 30", marker.display()),
    )]);
    let outcome = load(&rt, "run_script").run(&rt, req).await;
    assert_eq!(
        outcome.result,
        Err(StepFailure::DeadlineExceeded(Duration::from_secs(1)))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !marker.exists(),
        "the script's background child outlived the deadline"
    );
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().join("compiled")),
        ..RuntimeConfig::default()
    };
    let bytes = fixture("fixture_trivial");
    let rt = Runtime::new(config.clone()).unwrap();
    assert!(!rt.is_cached(&bytes));
    rt.load_step(&bytes).unwrap();
    assert!(rt.is_cached(&bytes));
    drop(rt);
    // A corrupted entry is discarded and recompiled, not trusted.
    for entry in std::fs::read_dir(cache.path().join("compiled")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let rt = Runtime::new(config).unwrap();
    let plugin = rt.load_step(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(plugin.run(&rt, request(&dir).0).await.result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_steps_run_concurrently() {
    let rt = Arc::new(runtime());
    let plugin = load(&rt, "fixture_trivial");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (rt, plugin) = (rt.clone(), plugin.clone());
        tasks.push(tokio::spawn(async move {
            let dir = tempfile::tempdir().unwrap();
            plugin.run(&rt, StepRequest::new(dir.path())).await.result
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(()));
    }
}
