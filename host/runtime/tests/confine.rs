//! Scripts confined like plugins: nothing a step starts outlives it, and its traffic goes through the
//! step's egress proxy, decided by the step's policy and recorded in its audit. Real processes, real
//! loopback listeners.

use octo_manifest::{Destination, DestinationPattern};
use octo_runtime::{
    AllowList, LogLine, RequestSource, Runtime, RuntimeConfig, ScriptNetwork, StepFailure,
    StepOutcome, StepRequest,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        step_deadline: Duration::from_secs(60),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn run_script_component() -> Vec<u8> {
    std::fs::read(std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join("run_script.wasm"))
        .unwrap()
}

struct Run {
    outcome: StepOutcome,
    log: String,
}

/// Runs `script` with run-script under `network`, `policy` and an optional deadline.
async fn run(
    script: &str,
    network: ScriptNetwork,
    grants: Vec<DestinationPattern>,
    deadline: Option<Duration>,
) -> Run {
    let rt = runtime();
    let plugin = rt.load_step(&run_script_component()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<LogLine>::new()));
    let sink = lines.clone();
    let request = StepRequest {
        arguments: BTreeMap::from([("ScriptBody".to_string(), script.to_string())]),
        policy: Arc::new(AllowList::new(grants)),
        log: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l)),
        deadline,
        script_network: network,
        ..StepRequest::new(dir.path())
    };
    let outcome = plugin.run(&rt, request).await;
    let log = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.message.clone())
        .collect::<Vec<_>>()
        .join("\n");
    Run { outcome, log }
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{}: {cmdline}", name.to_string_lossy()));
            }
        }
    }
    found
}

fn unique_marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("octo-{name}-{}-{nanos}", std::process::id())
}

/// The four ways a script leaves something running: a background job, nohup, setsid, a double
/// fork. Each runs `sleep 600` under a name carrying `marker`; the script waits until all four run.
fn escape_script(marker: &str, then: &str) -> String {
    format!(
        r#"M={marker}
(exec -a "$M-bg" sleep 600) &
nohup bash -c "exec -a $M-nohup sleep 600" >/dev/null 2>&1 &
setsid bash -c "exec -a $M-setsid sleep 600" >/dev/null 2>&1 </dev/null &
( (exec -a "$M-double" sleep 600 >/dev/null 2>&1 </dev/null &) )
for i in $(seq 200); do
  n=0
  for f in /proc/[0-9]*/cmdline; do
    case "$(tr '\0' ' ' < "$f" 2>/dev/null)" in "$M"-*) n=$((n+1));; esac
  done
  [ "$n" -ge 4 ] && break
  sleep 0.05
done
echo "running: $n"
{then}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_successful_step() {
    for network in [ScriptNetwork::Audited, ScriptNetwork::Confined] {
        let marker = unique_marker("escape-ok");
        let run = run(
            &escape_script(&marker, "echo done"),
            network,
            Vec::new(),
            None,
        )
        .await;
        assert_eq!(run.outcome.result, Ok(()), "{network}: {}", run.log);
        assert!(run.log.contains("running: 4"), "{network}: {}", run.log);
        let left = processes_with(&marker);
        assert!(left.is_empty(), "{network}: left running: {left:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_failed_step() {
    let marker = unique_marker("escape-fail");
    let run = run(
        &escape_script(&marker, "exit 3"),
        ScriptNetwork::Audited,
        Vec::new(),
        None,
    )
    .await;
    assert!(
        matches!(run.outcome.result, Err(StepFailure::Failed(_))),
        "{:?}",
        run.outcome.result
    );
    assert!(run.log.contains("running: 4"), "{}", run.log);
    let left = processes_with(&marker);
    assert!(left.is_empty(), "left running: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_step_stopped_at_its_deadline() {
    for network in [ScriptNetwork::Audited, ScriptNetwork::Confined] {
        let marker = unique_marker("escape-deadline");
        let run = run(
            &escape_script(&marker, "sleep 600"),
            network,
            Vec::new(),
            Some(Duration::from_secs(5)),
        )
        .await;
        assert_eq!(
            run.outcome.result,
            Err(StepFailure::DeadlineExceeded(Duration::from_secs(5))),
            "{network}: {}",
            run.log
        );
        assert!(run.log.contains("running: 4"), "{network}: {}", run.log);
        let left = processes_with(&marker);
        assert!(left.is_empty(), "{network}: left running: {left:#?}");
    }
}

/// A loopback listener that counts connections and bytes, answering HTTP 200.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

async fn listener() -> Listener {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let (c, b) = (connections.clone(), bytes.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = socket.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                if let Ok(n) = stream.read(&mut buf).await {
                    b.fetch_add(n, Ordering::SeqCst);
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello\n",
                    )
                    .await;
            });
        }
    });
    Listener {
        port,
        connections,
        bytes,
    }
}

fn script_attempts(outcome: &StepOutcome, destination: &str) -> Vec<(bool, String)> {
    outcome
        .outbound
        .iter()
        .filter(|a| a.source == RequestSource::Script && a.destination == destination)
        .map(|a| (a.allowed, a.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn air_gapped_confined_script_reaches_nothing_and_is_audited() {
    let target = listener().await;
    let port = target.port;
    let script = format!(
        "curl -sS -m 10 http://127.0.0.1:{port}/secret; echo \"curl=$?\"\n\
         if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo leak >&3; echo tcp=open; else echo tcp=refused; fi\n\
         curl -sS -m 10 --noproxy '*' http://127.0.0.1:{port}/direct; echo \"direct=$?\"\n"
    );
    // Air-gapped: the policy grants nothing.
    let run = run(&script, ScriptNetwork::Confined, Vec::new(), None).await;
    assert_eq!(run.outcome.result, Ok(()), "{}", run.log);
    assert_eq!(target.connections.load(Ordering::SeqCst), 0, "{}", run.log);
    assert_eq!(target.bytes.load(Ordering::SeqCst), 0);
    assert!(run.log.contains("tcp=refused"), "{}", run.log);
    assert!(!run.log.contains("direct=0"), "{}", run.log);
    // The proxy answered curl with a one-line reason.
    assert!(
        run.log
            .lines()
            .any(|l| l.starts_with("octo egress proxy: http://127.0.0.1:") && l.contains("denied")),
        "{}",
        run.log
    );
    let http = script_attempts(&run.outcome, &format!("http://127.0.0.1:{port}"));
    assert!(
        !http.is_empty() && http.iter().all(|(allowed, _)| !allowed),
        "{http:?}"
    );
    let tcp = script_attempts(&run.outcome, &format!("tcp://127.0.0.1:{port}"));
    assert_eq!(
        tcp.len(),
        2,
        "/dev/tcp and curl --noproxy: {:#?}",
        run.outcome.outbound
    );
    assert!(
        tcp.iter()
            .all(|(allowed, reason)| !allowed && reason.contains("egress proxy"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_destination_is_reached_through_the_egress_proxy() {
    for network in [ScriptNetwork::Audited, ScriptNetwork::Confined] {
        let target = listener().await;
        let origin = format!("http://127.0.0.1:{}", target.port);
        let grant = DestinationPattern::exact(&Destination::from_url(&origin).unwrap());
        let script = format!(
            "curl -sS -m 10 {origin}/granted; echo \"curl=$?\"\necho \"proxy=$HTTP_PROXY\""
        );
        let run = run(&script, network, vec![grant], None).await;
        assert_eq!(run.outcome.result, Ok(()), "{network}: {}", run.log);
        assert!(
            run.log.contains("hello") && run.log.contains("curl=0"),
            "{network}: {}",
            run.log
        );
        assert_eq!(target.connections.load(Ordering::SeqCst), 1, "{network}");
        let attempts = script_attempts(&run.outcome, &origin);
        assert_eq!(attempts, vec![(true, String::new())], "{network}");
        // The script's proxy is the step's own egress proxy on loopback.
        assert!(
            run.log.contains("proxy=http://127.0.0.1:"),
            "{network}: {}",
            run.log
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_mode_denies_through_the_proxy_and_keeps_direct_reach() {
    let target = listener().await;
    let port = target.port;
    let script = format!(
        "curl -sS -m 10 http://127.0.0.1:{port}/x; echo \"curl=$?\"\n\
         curl -sS -m 10 --noproxy '*' http://127.0.0.1:{port}/direct; echo \"direct=$?\""
    );
    let run = run(&script, ScriptNetwork::Audited, Vec::new(), None).await;
    assert_eq!(run.outcome.result, Ok(()), "{}", run.log);
    // Through the proxy: denied with a reason, nothing reached the listener for it.
    assert!(run.log.contains("denied"), "{}", run.log);
    // Audited mode keeps today's reach for tools that ignore the proxy.
    assert!(run.log.contains("direct=0"), "{}", run.log);
    assert_eq!(target.connections.load(Ordering::SeqCst), 1);
    let http = script_attempts(&run.outcome, &format!("http://127.0.0.1:{port}"));
    assert_eq!(http.len(), 1, "{:#?}", run.outcome.outbound);
    assert!(!http[0].0);
}
