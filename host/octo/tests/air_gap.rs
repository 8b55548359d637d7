//! The air-gap proof: with `--airGapped=true` no job reaches anything — not the registry-mock, not a
//! bare TCP listener — whatever the vendor switches say, and with exactly one vendor switch on (not
//! air-gapped), exactly its destination is reached. While air-gapped, a step plugin still reaches a
//! granted destination inside `--internalNetworks`, and nothing outside it. Also the vendor commands
//! end to end (`check-updates`, `telemetry preview` from the plugin that would be used, `status`).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A plain TCP listener on loopback that counts accepted connections and closes them at once.
struct Sentinel {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Sentinel {
    fn start() -> Sentinel {
        Sentinel::serving(|_| {}, "")
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Like [`Sentinel::start`], but answers every request `200 OK`.
    fn answering() -> Sentinel {
        Sentinel::serving(
            |mut stream| {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            },
            "/",
        )
    }

    /// A loopback listener answering each connection with `answer`; `path` ends its URL.
    fn serving(answer: impl Fn(std::net::TcpStream) + Send + 'static, path: &str) -> Sentinel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let (_, hits) = octo_test_support::counting_listener(listener, answer);
        Sentinel { url, hits }
    }
}

/// The switches, their settings keys, and the mock path prefix their requests go to.
const SWITCHES: &[(&str, &str)] = &[
    ("upgradeCheck", "/api/update"),
    ("sendTelemetry", "/api/telemetry"),
    ("experiencesEnabled", "/api/experiences"),
    ("dynamicExtensionsEnabled", "/api/dynamic-extensions"),
    ("stepTemplateUpdates", "/feed"),
    ("communityStepTemplates", "/api/step-templates"),
];

fn settings(feed_url: &str, library: &str, vendor: [&str; 4], key: &str) -> String {
    format!(
        "feed = \"{feed_url}\"\nfeedPublicKey = \"{key}\"\nlibraryFeed = \"{library}\"\nupdateUrl = \"{}\"\ntelemetryUrl = \"{}\"\nexperiencesUrl = \"{}\"\ndynamicExtensionsUrl = \"{}\"\n",
        vendor[0], vendor[1], vendor[2], vendor[3]
    )
}

fn feed_with_run_script() -> Feed {
    let mut feed = Feed::new();
    feed.publish(&[("rs.wasm", run_script("0.1.1"))], &[]);
    feed
}

/// Not air-gapped, every vendor switch off but `flag`.
fn only(home: &Home, flag: &str) {
    let mut args = vec!["configure".to_string(), "--airGapped=false".to_string()];
    for (other, _) in SWITCHES {
        args.push(format!("--{other}={}", *other == flag));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    home.octo(&args).success();
}

#[test]
fn air_gapped_reaches_nothing_and_each_switch_reaches_only_its_destination_sentinels() {
    let feed = feed_with_run_script();
    let mock = Mock::start(Some(&feed));
    let sentinels: Vec<Sentinel> = (0..4).map(|_| Sentinel::start()).collect();
    let vendor = [0, 1, 2, 3].map(|i| sentinels[i].url.as_str());
    let home = Home::new();
    home.write_settings(&settings(
        &mock.feed_url,
        &mock.url,
        vendor,
        &feed.public_key,
    ));

    home.octo(&["configure", "--airGapped=true"]).success();
    let out = home.octo(&["jobs", "run", "--all"]);
    let text = out.success();
    assert_eq!(text.matches("skipped").count(), 6, "{text}");
    assert_eq!(mock.request_paths(), Vec::<String>::new());
    for s in &sentinels {
        assert_eq!(s.hits(), 0);
    }
    // The commands refuse too, without a request.
    home.octo(&["check-updates"]).failure("upgradeCheck");
    // Turning a vendor switch on changes nothing while air-gapped (and says so).
    let out = home.octo(&["configure", "--upgradeCheck=true", "--sendTelemetry=true"]);
    assert!(
        out.success().contains("no effect while air-gapped"),
        "{out:?}"
    );
    let _ = home.octo(&["jobs", "run", "--all"]);
    let _ = home.octo(&["check-updates"]);
    assert_eq!(mock.request_paths(), Vec::<String>::new());
    for s in &sentinels {
        assert_eq!(s.hits(), 0);
    }

    // One vendor switch at a time: only its sentinel sees a connection (the job then fails, since a
    // sentinel answers nothing, which is fine here).
    for (i, (flag, _)) in SWITCHES[..4].iter().enumerate() {
        only(&home, flag);
        let before: Vec<usize> = sentinels.iter().map(Sentinel::hits).collect();
        let _ = home.octo(&["jobs", "run", "--all"]);
        for (j, s) in sentinels.iter().enumerate() {
            let got = s.hits() - before[j];
            if i == j {
                assert!(got >= 1, "{flag}: its endpoint was not reached");
            } else {
                assert_eq!(got, 0, "{flag}: sentinel {j} was reached");
            }
        }
        assert_eq!(mock.request_paths(), Vec::<String>::new(), "{flag}");
    }
}

#[test]
fn air_gapped_reaches_nothing_and_each_switch_reaches_only_its_destination_mock() {
    let feed = feed_with_run_script();
    let mock = Mock::start(Some(&feed));
    let home = Home::new();
    let vendor = [
        format!("{}/api/update", mock.url),
        format!("{}/api/telemetry", mock.url),
        format!("{}/api/experiences", mock.url),
        format!("{}/api/dynamic-extensions", mock.url),
    ];
    home.write_settings(&settings(
        &mock.feed_url,
        &mock.url,
        [&vendor[0], &vendor[1], &vendor[2], &vendor[3]],
        &feed.public_key,
    ));
    // stepTemplateUpdates only has something to ask when a built-in step is installed from the feed.
    home.octo(&["plugins", "install", "run-script@0.1.0"]);

    home.octo(&["configure", "--airGapped=true"]).success();
    mock.clear_requests();
    let out = home.octo(&["jobs", "run", "--all"]);
    assert_eq!(out.success().matches("skipped").count(), 6, "{out:?}");
    assert_eq!(mock.request_paths(), Vec::<String>::new());

    let feed_prefix = mock
        .feed_url
        .trim_start_matches(&mock.url)
        .trim_end_matches('/')
        .to_string();
    for (flag, prefix) in SWITCHES {
        let prefix = if *prefix == "/feed" {
            feed_prefix.as_str()
        } else {
            prefix
        };
        only(&home, flag);
        mock.clear_requests();
        let out = home.octo(&["jobs", "run", "--all"]);
        let paths = mock.request_paths();
        assert!(!paths.is_empty(), "{flag}: no request: {out:?}");
        for p in &paths {
            assert!(
                p.starts_with(prefix),
                "{flag}: unexpected request {p} ({out:?})"
            );
        }
        assert!(out.ok(), "{flag}: {out:?}");
    }

    // `octo outbound` shows the host's own feed/library attempts too (allowed and denied).
    let audit = home.audit();
    assert!(audit.contains("\"kind\":\"steps-feed\"") && audit.contains("octo:steps-feed"));
    assert!(audit.contains("\"kind\":\"library-feed\""));
    assert!(audit.contains("\"kind\":\"update-check\""));
}

#[test]
fn vendor_commands_end_to_end() {
    let feed = feed_with_run_script();
    let mock = Mock::start(Some(&feed));
    let home = Home::new();
    let u = &mock.url;
    let vendor = [
        format!("{u}/api/update"),
        format!("{u}/api/telemetry"),
        format!("{u}/api/experiences"),
        format!("{u}/api/dynamic-extensions"),
    ];
    home.write_settings(&settings(
        &mock.feed_url,
        u,
        [&vendor[0], &vendor[1], &vendor[2], &vendor[3]],
        &feed.public_key,
    ));
    home.octo(&[
        "configure",
        "--communityStepTemplates=false",
        "--stepTemplateUpdates=false",
    ])
    .success();

    let out = home.octo(&["check-updates", "--json"]).json();
    assert_eq!(out["currentVersion"], env!("CARGO_PKG_VERSION"));
    assert!(out["latestVersion"].is_string());
    let paths = mock.request_paths();
    assert_eq!(paths, vec!["/api/update".to_string()], "{paths:?}");

    // The preview is exactly what the telemetry job sends.
    let preview = home.octo(&["telemetry", "preview"]);
    let preview: serde_json::Value = serde_json::from_str(preview.success().trim()).unwrap();
    assert!(preview["metrics"]["targets"].is_u64(), "{preview}");
    home.octo(&["jobs", "run", "telemetry"]).success();
    let (_, sent) = mock.http("GET", "/_mock/telemetry", None);
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent, serde_json::json!([preview]));
    // Nothing identifying: no URL, no path, no host name in it.
    let text = preview.to_string();
    assert!(
        !text.contains("http") && !text.contains("127.0.0.1"),
        "{text}"
    );

    home.octo(&["status"]).success();
    home.octo(&["jobs", "run", "experiences"]).success();
    let status = home.octo(&["status", "--json"]).json();
    assert!(
        !status["messages"].as_array().unwrap().is_empty(),
        "{status}"
    );
    assert!(home.octo(&["status"]).success().contains("in-app messages"));

    let out = home.octo(&["jobs", "run", "dynamic-extensions"]);
    assert!(out.success().contains("signature verified"), "{out:?}");
    assert!(home.path().join("cache/dynamic-extensions.json").is_file());

    // A key the document was not signed with: refused, nothing kept.
    std::fs::remove_file(home.path().join("cache/dynamic-extensions.json")).unwrap();
    let other = feed_with_run_script();
    home.octo(&[
        "configure",
        &format!("--feedPublicKey={}", other.public_key),
    ])
    .success();
    let out = home.octo(&["jobs", "run", "dynamic-extensions"]);
    assert!(
        !out.ok() && out.stderr.contains("signature does not verify"),
        "{out:?}"
    );
    assert!(!home.path().join("cache/dynamic-extensions.json").exists());
}

#[test]
fn air_gapped_step_plugins_reach_granted_internal_destinations_only() {
    let home = Home::new();
    let internal = Sentinel::answering();
    let param = format!("url={}", internal.url);
    let origin = internal.url.trim_end_matches('/').to_string();
    // A custom step (the built http-health-check under another id) with an administrator's grant.
    let custom = home.path().join("custom-health-check.wasm");
    std::fs::write(
        &custom,
        repack(octo_builtin_plugins::HTTP_HEALTH_CHECK.bytes, |m| {
            m.id = "custom-health-check".into()
        }),
    )
    .unwrap();
    let custom = custom.display().to_string();
    home.octo(&[
        "plugins",
        "grant",
        "custom-health-check",
        &origin,
        "--file",
        &custom,
    ])
    .success();

    // Air-gapped with no internal networks: nothing leaves, granted or built-in.
    home.octo(&["configure", "--airGapped=true"]).success();
    for step in ["http-health-check", custom.as_str()] {
        let out = home.octo(&["run-step", step, "--param", &param]);
        assert!(!out.ok(), "{step} got out while air-gapped: {out:?}");
    }
    assert_eq!(internal.hits(), 0, "air-gapped: zero requests");

    // 127.0.0.0/8 is internal: the built-in step and the granted custom step reach it.
    let out = home.octo(&["configure", "--internalNetworks=127.0.0.0/8"]);
    out.success();
    for step in ["http-health-check", custom.as_str()] {
        let before = internal.hits();
        let out = home.octo(&["run-step", step, "--param", &param]);
        assert!(out.ok(), "{step}: {out:?}");
        assert_eq!(internal.hits(), before + 1, "{step}");
    }
    // Without the grant the custom step stays out, internal or not.
    home.octo(&["plugins", "revoke", "custom-health-check", &origin])
        .success();
    let before = internal.hits();
    let out = home.octo(&["run-step", &custom, "--param", &param]);
    assert!(!out.ok(), "{out:?}");
    assert_eq!(internal.hits(), before);

    // `octo outbound` shows the list and why.
    let report = home.octo(&["outbound", "--json"]).json();
    assert_eq!(
        report["internalNetworks"],
        serde_json::json!(["127.0.0.0/8"])
    );
    let steps = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "step-plugins")
        .unwrap()
        .clone();
    assert_eq!(steps["allowed"], true, "{steps}");
    assert!(
        steps["reason"].as_str().unwrap().contains("127.0.0.0/8"),
        "{steps}"
    );
    let last = &steps["lastAttempts"][0];
    assert_eq!(last["allowed"], false, "{last}");
    let shown = home.octo(&["outbound"]);
    assert!(
        shown.success().contains("internal networks: 127.0.0.0/8"),
        "{shown:?}"
    );

    // Outside the list: still nothing, even for the built-in step.
    home.octo(&["configure", "--internalNetworks=10.0.0.0/8"])
        .success();
    let before = internal.hits();
    let out = home.octo(&["run-step", "http-health-check", "--param", &param]);
    assert!(!out.ok(), "{out:?}");
    assert_eq!(internal.hits(), before);
}

#[test]
fn the_telemetry_preview_comes_from_the_plugin_that_would_be_used() {
    let home = Home::new();
    // A feed with a newer telemetry plugin, whose payload has one more field.
    let mut feed = Feed::new();
    feed.publish(
        &[("telemetry.wasm", built("fixture_telemetry_extra.wasm"))],
        &[],
    );
    let mock = Mock::start(Some(&feed));
    home.configure(&mock, &feed.public_key, true, false);

    // Nothing installed: the embedded plugin's payload.
    let embedded = home.octo(&["telemetry", "preview"]);
    let embedded: serde_json::Value = serde_json::from_str(embedded.success().trim()).unwrap();
    assert!(
        embedded["metrics"].is_object() && embedded.get("fixture").is_none(),
        "{embedded}"
    );

    // Installed from the signed feed: the preview is the new plugin's.
    home.octo(&["plugins", "install", "telemetry"]).success();
    mock.clear_requests();
    let preview = home.octo(&["telemetry", "preview"]);
    let preview: serde_json::Value = serde_json::from_str(preview.success().trim()).unwrap();
    assert_eq!(preview["fixture"], "telemetry-extra", "{preview}");
    assert_eq!(preview["installationId"], embedded["installationId"]);
    // A preview sends nothing, and records nothing as sent.
    assert_eq!(mock.request_paths(), Vec::<String>::new());
    let audit = home.audit();
    assert!(!audit.contains("\"kind\":\"telemetry\""), "{audit}");

    // And it is what the job sends.
    home.octo(&[
        "configure",
        &format!("--telemetryUrl={}/api/telemetry", mock.url),
        "--sendTelemetry=true",
    ])
    .success();
    let preview = home.octo(&["telemetry", "preview"]);
    let preview: serde_json::Value = serde_json::from_str(preview.success().trim()).unwrap();
    home.octo(&["jobs", "run", "telemetry"]).success();
    let (_, sent) = mock.http("GET", "/_mock/telemetry", None);
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent, serde_json::json!([preview]));
}
