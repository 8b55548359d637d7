//! Plugins' web requests through the web request proxy, proven against real squid and tinyproxy.

use octo_comms::proxy::ProxyConfig;
use octo_manifest::{Destination, DestinationPattern};
use octo_runtime::{
    AllowList, LogLine, Runtime, RuntimeConfig, StepFailure, StepOutcome, StepRequest, WebProxy,
};
use octo_test_support::{HttpServer, Squid, Tinyproxy};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

fn component(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join(format!("{name}.wasm")),
    )
    .unwrap()
}

fn runtime(trusted: Option<&str>) -> Runtime {
    Runtime::new(RuntimeConfig {
        trusted_certificates: trusted
            .map(|pem| vec![pem.as_bytes().to_vec()])
            .unwrap_or_default(),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Runs `plugin` with `arguments`, the destination of `url` granted, through `proxy`.
async fn run(
    rt: &Runtime,
    plugin: &str,
    arguments: &[(&str, &str)],
    url: &str,
    proxy: ProxyConfig,
) -> (StepOutcome, Vec<LogLine>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let dir = tempfile::tempdir().unwrap();
    let origin = Destination::from_url(url).unwrap();
    let request = StepRequest {
        arguments: arguments
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        policy: Arc::new(AllowList::new(vec![DestinationPattern::exact(&origin)])),
        web_proxy: Some(Arc::new(WebProxy::Fixed(proxy))),
        log: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l)),
        ..StepRequest::new(dir.path())
    };
    let plugin = rt.load_step(&component(plugin)).unwrap();
    let outcome = plugin.run(rt, request).await;
    let lines = lines.lock().unwrap().clone();
    (outcome, lines)
}

fn proxy(url: &str) -> ProxyConfig {
    ProxyConfig::parse(url).unwrap()
}

#[tokio::test]
async fn plain_http_goes_through_squid_in_absolute_form() {
    let Some(squid) = Squid::start(None) else {
        return;
    };
    let server = HttpServer::plain();
    let url = format!("{}/health", server.base_url);
    let (outcome, _) = run(
        &runtime(None),
        "fixture_denied_http",
        &[("url", &url)],
        &url,
        proxy(&squid.url()),
    )
    .await;
    assert_eq!(outcome.result, Ok(()));
    let log = squid.access_log_containing(&url);
    assert!(log.contains(&format!("GET {url}")), "squid log:\n{log}");
}

#[tokio::test]
async fn https_goes_through_a_squid_tunnel_with_tls_end_to_end() {
    let Some(squid) = Squid::start(None) else {
        return;
    };
    let server = HttpServer::tls();
    let url = format!("{}/health", server.base_url);
    let rt = runtime(server.certificate_pem.as_deref());
    let (outcome, lines) = run(
        &rt,
        "fixture_denied_http",
        &[("url", &url)],
        &url,
        proxy(&squid.url()),
    )
    .await;
    assert_eq!(outcome.result, Ok(()), "{lines:#?}");
    let authority = server.base_url.trim_start_matches("https://");
    let log = squid.access_log_containing("CONNECT");
    // squid saw only a tunnel to the origin: never the path, so never the plaintext request.
    assert!(
        log.contains(&format!("CONNECT {authority}")),
        "squid log:\n{log}"
    );
    assert!(!log.contains("/health"), "squid log:\n{log}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_through_the_tunnel() {
    let Some(squid) = Squid::start(None) else {
        return;
    };
    let server = HttpServer::tls();
    let url = format!("{}/health", server.base_url);
    let (outcome, lines) = run(
        &runtime(None),
        "fixture_denied_http",
        &[("url", &url)],
        &url,
        proxy(&squid.url()),
    )
    .await;
    assert!(outcome.result.is_err());
    assert!(
        lines
            .iter()
            .any(|l| l.message.contains("TLS with localhost")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn squid_basic_auth_right_and_wrong_credentials() {
    let Some(squid) = Squid::start(Some(("octo", "pr0xy-s3cret"))) else {
        return;
    };
    let server = HttpServer::tls();
    let url = format!("{}/health", server.base_url);
    let rt = runtime(server.certificate_pem.as_deref());
    let good = proxy(&squid.url()).with_credentials("octo", "pr0xy-s3cret");
    let (outcome, _) = run(&rt, "fixture_denied_http", &[("url", &url)], &url, good).await;
    assert_eq!(outcome.result, Ok(()));

    let bad = proxy(&squid.url()).with_credentials("octo", "wrong-pa55");
    let (outcome, lines) = run(&rt, "fixture_denied_http", &[("url", &url)], &url, bad).await;
    let Err(StepFailure::Failed(message)) = &outcome.result else {
        panic!("{:?}", outcome.result)
    };
    let all: String = lines
        .iter()
        .map(|l| format!("{}\n", l.message))
        .collect::<String>()
        + message;
    assert!(all.contains("407"), "{all}");
    assert!(
        all.contains(&format!("127.0.0.1:{}", squid.port)),
        "the error names the proxy: {all}"
    );
    assert!(
        !all.contains("wrong-pa55") && !all.contains("pr0xy-s3cret"),
        "{all}"
    );
}

#[tokio::test]
async fn a_scripts_own_curl_uses_the_proxy_and_never_logs_its_password() {
    let Some(squid) = Squid::start(Some(("octo", "scr1pt-pw"))) else {
        return;
    };
    let server = HttpServer::plain();
    let url = format!("{}/from-script", server.base_url);
    let body = format!(
        "curl -s -o /dev/null -w 'status %{{http_code}}\\n' {url}\necho \"proxy is $HTTP_PROXY\""
    );
    let with_auth = proxy(&squid.url()).with_credentials("octo", "scr1pt-pw");
    let (outcome, lines) = run(
        &runtime(None),
        "run_script",
        &[("ScriptBody", &body)],
        &url,
        with_auth,
    )
    .await;
    assert_eq!(outcome.result, Ok(()), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.message == "status 200"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.message.contains("scr1pt-pw")),
        "{lines:#?}"
    );
    // The script's proxy is the step's egress proxy (issue 11), which goes on through squid with the
    // credentials: the script never sees them.
    assert!(
        lines
            .iter()
            .any(|l| l.message.starts_with("proxy is http://127.0.0.1:")),
        "{lines:#?}"
    );
    let log = squid.access_log_containing(&url);
    assert!(log.contains(&format!("GET {url}")), "squid log:\n{log}");
}

#[tokio::test]
async fn tinyproxy_carries_http_and_https() {
    let Some(tinyproxy) = Tinyproxy::start() else {
        return;
    };
    let plain = HttpServer::plain();
    let url = format!("{}/tiny", plain.base_url);
    let (outcome, _) = run(
        &runtime(None),
        "fixture_denied_http",
        &[("url", &url)],
        &url,
        proxy(&tinyproxy.url()),
    )
    .await;
    assert_eq!(outcome.result, Ok(()));
    let tls = HttpServer::tls();
    let url = format!("{}/tiny-tls", tls.base_url);
    let rt = runtime(tls.certificate_pem.as_deref());
    let (outcome, lines) = run(
        &rt,
        "fixture_denied_http",
        &[("url", &url)],
        &url,
        proxy(&tinyproxy.url()),
    )
    .await;
    assert_eq!(outcome.result, Ok(()), "{lines:#?}");
    let log = tinyproxy.log_containing("CONNECT");
    assert!(log.contains("CONNECT localhost:"), "tinyproxy log:\n{log}");
}

#[tokio::test]
async fn an_unreachable_proxy_is_named_in_the_log() {
    let port = octo_test_support::free_port();
    let server = HttpServer::tls();
    let url = format!("{}/x", server.base_url);
    let rt = runtime(server.certificate_pem.as_deref());
    let (outcome, lines) = run(
        &rt,
        "fixture_denied_http",
        &[("url", &url)],
        &url,
        proxy(&format!("http://127.0.0.1:{port}")),
    )
    .await;
    assert!(outcome.result.is_err());
    assert!(
        lines
            .iter()
            .any(|l| l.message.contains(&format!("127.0.0.1:{port}"))),
        "{lines:#?}"
    );
    assert_eq!(server.hits(), 0);
}
