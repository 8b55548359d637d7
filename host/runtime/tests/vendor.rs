//! Vendor plugins (update-check, telemetry, experiences, dynamic-extensions) in the sandbox: the built
//! components from plugins/ against a loopback server, with the same outbound gate as steps.

use octo_manifest::{DestinationPattern, PluginKind};
use octo_runtime::{
    AllowList, DenyAll, LoadError, Metric, RecordingSender, Runtime, RuntimeConfig, StepFailure,
    TelemetryReport, VendorRequest,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        memory_limit: 64 * 1024 * 1024,
        step_deadline: Duration::from_secs(60),
        max_instances: 8,
        allocation: octo_runtime::Allocation::Pooling,
        cache_dir: None,
        trusted_certificates: Vec::new(),
        limits: Default::default(),
    })
    .unwrap()
}

/// A loopback server that answers every request with `head` + `body` and keeps the raw requests.
async fn server(head: &'static str, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&data).to_string());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\n{head}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (origin, seen)
}

fn allow(origin: &str) -> VendorRequest {
    VendorRequest {
        policy: Arc::new(AllowList::new(vec![
            DestinationPattern::parse(origin).unwrap(),
        ])),
        ..VendorRequest::new()
    }
}

#[tokio::test]
async fn update_check_sends_version_and_installation_id_only() {
    let rt = runtime();
    let plugin = rt
        .load_vendor(
            octo_builtin_plugins::UPDATE_CHECK.bytes,
            PluginKind::UpdateCheck,
        )
        .unwrap();
    let (origin, seen) = server(
        "content-type: application/json\r\n",
        r#"{"latestVersion":"9.9.9","url":"https://example.com/r"}"#,
    )
    .await;
    let endpoint = format!("{origin}/api/update");
    let outcome = plugin
        .check(&rt, allow(&origin), &endpoint, "0.1.0", "abc-123")
        .await;
    let info = outcome.result.unwrap();
    assert_eq!(info.latest_version, "9.9.9");
    assert_eq!(info.url.as_deref(), Some("https://example.com/r"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with("GET /api/update?version=0.1.0&installationId=abc-123 HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert_eq!(outcome.outbound.len(), 1);
    assert!(outcome.outbound[0].allowed);
}

#[tokio::test]
async fn a_denied_vendor_request_opens_no_socket_and_is_recorded() {
    let rt = runtime();
    let plugin = rt
        .load_vendor(
            octo_builtin_plugins::EXPERIENCES.bytes,
            PluginKind::Experiences,
        )
        .unwrap();
    let (origin, seen) = server("", "[]").await;
    let request = VendorRequest {
        policy: Arc::new(DenyAll),
        ..VendorRequest::new()
    };
    let outcome = plugin
        .fetch_messages(&rt, request, &format!("{origin}/api/experiences"), "0.1.0")
        .await;
    let failure = outcome.result.unwrap_err();
    assert!(
        matches!(&failure, StepFailure::Failed(m) if m.contains("denied")),
        "{failure}"
    );
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(outcome.outbound.len(), 1);
    assert!(!outcome.outbound[0].allowed);
}

#[tokio::test]
async fn the_policy_cannot_widen_the_endpoint() {
    // The policy would allow another origin, but the plugin may only reach the endpoint it was given
    // ({{endpoint}} in its manifest): an endpoint on an origin the policy denies gets nothing.
    let rt = runtime();
    let plugin = rt
        .load_vendor(
            octo_builtin_plugins::UPDATE_CHECK.bytes,
            PluginKind::UpdateCheck,
        )
        .unwrap();
    let (origin, seen) = server("", "{}").await;
    let outcome = plugin
        .check(
            &rt,
            allow("http://127.0.0.1:1"),
            &format!("{origin}/api/update"),
            "0.1.0",
            "id",
        )
        .await;
    assert!(outcome.result.is_err());
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn telemetry_posts_the_report_as_json() {
    let rt = runtime();
    let plugin = rt
        .load_vendor(octo_builtin_plugins::TELEMETRY.bytes, PluginKind::Telemetry)
        .unwrap();
    let (origin, seen) = server("", r#"{"accepted":true}"#).await;
    let report = TelemetryReport {
        installation_id: "id-1".into(),
        version: "0.1.0".into(),
        metrics: vec![
            Metric {
                name: "targets".into(),
                value: 2,
            },
            Metric {
                name: "installedPlugins".into(),
                value: 5,
            },
        ],
    };
    let outcome = plugin
        .send(
            &rt,
            allow(&origin),
            &format!("{origin}/api/telemetry"),
            &report,
        )
        .await;
    outcome.result.unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].starts_with("POST /api/telemetry HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].ends_with(
            r#"{"installationId":"id-1","metrics":{"installedPlugins":5,"targets":2},"version":"0.1.0"}"#
        ),
        "{}",
        seen[0]
    );
}

fn report() -> TelemetryReport {
    TelemetryReport {
        installation_id: "id-1".into(),
        version: "0.1.0".into(),
        metrics: vec![
            Metric {
                name: "targets".into(),
                value: 2,
            },
            Metric {
                name: "installedPlugins".into(),
                value: 5,
            },
        ],
    }
}

#[tokio::test]
async fn a_preview_records_the_request_and_sends_nothing() {
    let rt = runtime();
    let plugin = rt
        .load_vendor(octo_builtin_plugins::TELEMETRY.bytes, PluginKind::Telemetry)
        .unwrap();
    let (origin, seen) = server("", r#"{"accepted":true}"#).await;
    let recorder = Arc::new(RecordingSender::new());
    let request = VendorRequest {
        recorder: Some(recorder.clone()),
        ..allow(&origin)
    };
    let endpoint = format!("{origin}/api/telemetry");
    let outcome = plugin.send(&rt, request, &endpoint, &report()).await;
    outcome.result.unwrap();
    assert!(seen.lock().unwrap().is_empty(), "a preview opened a socket");
    let recorded = recorder.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, endpoint);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        r#"{"installationId":"id-1","metrics":{"installedPlugins":5,"targets":2},"version":"0.1.0"}"#
    );
    // The policy was asked, and the attempt says it was a preview.
    assert_eq!(outcome.outbound.len(), 1);
    assert!(outcome.outbound[0].allowed && outcome.outbound[0].preview);
}

#[tokio::test]
async fn a_preview_still_asks_the_policy() {
    let rt = runtime();
    let plugin = rt
        .load_vendor(octo_builtin_plugins::TELEMETRY.bytes, PluginKind::Telemetry)
        .unwrap();
    let recorder = Arc::new(RecordingSender::new());
    let request = VendorRequest {
        recorder: Some(recorder.clone()),
        ..VendorRequest::new()
    };
    let outcome = plugin
        .send(&rt, request, "http://127.0.0.1:1/api/telemetry", &report())
        .await;
    assert!(outcome.result.is_err());
    assert!(recorder.requests().is_empty());
    assert_eq!(outcome.outbound.len(), 1);
    assert!(!outcome.outbound[0].allowed && outcome.outbound[0].preview);
}

#[tokio::test]
async fn dynamic_extensions_hands_back_body_and_signature() {
    let rt = runtime();
    let plugin = rt
        .load_vendor(
            octo_builtin_plugins::DYNAMIC_EXTENSIONS.bytes,
            PluginKind::DynamicExtensions,
        )
        .unwrap();
    let (origin, _seen) = server(
        "x-octo-signature: c2ln\r\n",
        r#"[{"name":"a","enabled":true}]"#,
    )
    .await;
    let outcome = plugin
        .fetch_signed(
            &rt,
            allow(&origin),
            &format!("{origin}/api/dynamic-extensions"),
            "0.1.0",
        )
        .await;
    let doc = outcome.result.unwrap();
    assert_eq!(doc.body, br#"[{"name":"a","enabled":true}]"#);
    assert_eq!(doc.signature, "c2ln");
}

#[tokio::test]
async fn kinds_must_match() {
    let rt = runtime();
    let err = rt
        .load_vendor(
            octo_builtin_plugins::TELEMETRY.bytes,
            PluginKind::UpdateCheck,
        )
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Incompatible(_)), "{err}");
    let err = rt
        .load_vendor(
            octo_builtin_plugins::RUN_SCRIPT.bytes,
            PluginKind::Telemetry,
        )
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Incompatible(_)), "{err}");
    // A step refuses to load as a vendor plugin; a vendor plugin as a step.
    assert!(
        rt.load_step(octo_builtin_plugins::EXPERIENCES.bytes)
            .is_err()
    );
}
