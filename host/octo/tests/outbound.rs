//! `octo configure`, `show-configuration`, `outbound`, `plugins grant|revoke|grants` and the outbound
//! policy of `run-step`, as a user runs them: the real binary and a temporary home.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn octo(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("OCTO_HOME")
        .output()
        .expect("octo runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = octo(home, args);
    assert!(
        out.status.success(),
        "octo {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(home, args)).expect("JSON on stdout")
}

/// Asserts failure with exactly one `error:` line on stderr, equal to `error: {expected}`.
fn fails_with(out: &Output, expected: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure: {}",
        text(&out.stdout)
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        vec![format!("error: {expected}")],
        "stderr:\n{stderr}"
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A one-thread HTTP server answering 200 to every request.
fn http_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    url
}

const SWITCHES: [(&str, &str); 6] = [
    ("upgradeCheck", "upgrade-check"),
    ("sendTelemetry", "send-telemetry"),
    ("dynamicExtensionsEnabled", "dynamic-extensions-enabled"),
    ("experiencesEnabled", "experiences-enabled"),
    ("stepTemplateUpdates", "step-template-updates"),
    ("communityStepTemplates", "community-step-templates"),
];

#[test]
fn configure_saves_privately_and_show_configuration_reads_it_back() {
    let home = tempfile::tempdir().unwrap();
    let before = json(home.path(), &["show-configuration", "--json"]);
    assert_eq!(before["fileExists"], false);
    assert_eq!(before["upgradeCheck"], true);
    assert_eq!(before["airGapped"], false);
    // Endpoints are unset by default: nothing to ask anyone, not even DNS.
    assert_eq!(before["updateUrl"], Value::Null);
    assert!(entries(home.path()).is_empty(), "reading creates nothing");

    let out = ok(
        home.path(),
        &[
            "configure",
            "--upgradeCheck=false",
            "--send-telemetry",
            "false",
            "--feed=http://127.0.0.1:9/feed",
            "--commsListenPort=10999",
        ],
    );
    assert!(out.contains("upgradeCheck"), "{out}");
    assert!(out.contains("true -> false"), "{out}");
    assert!(out.contains("http://127.0.0.1:9/feed"), "{out}");
    let after = json(home.path(), &["show-configuration", "--json"]);
    assert_eq!(after["upgradeCheck"], false);
    assert_eq!(after["sendTelemetry"], false);
    assert_eq!(after["experiencesEnabled"], true);
    assert_eq!(after["feed"], "http://127.0.0.1:9/feed");
    assert_eq!(after["commsListenPort"], 10999);
    assert_eq!(after["feedPublicKey"], Value::Null);

    let file = home.path().join("octo.toml");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("upgradeCheck = false"), "{saved}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(entries(home.path()), vec!["octo.toml", "octo.toml.lock"]);

    // The same values again: nothing changes.
    let again = ok(home.path(), &["configure", "--upgrade-check=false"]);
    assert!(again.starts_with("No changes"), "{again}");

    let shown = ok(home.path(), &["show-configuration"]);
    assert!(shown.contains("upgradeCheck"), "{shown}");
    assert!(shown.contains("http://127.0.0.1:9/feed"), "{shown}");
}

#[test]
fn bad_values_name_the_flag_and_write_nothing() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing.pem");
    let missing = missing.display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--upgradeCheck=maybe".into()],
            r#"--upgradeCheck: expected true or false, got "maybe""#.into(),
        ),
        (
            vec!["--send-telemetry=yes".into()],
            r#"--sendTelemetry: expected true or false, got "yes""#.into(),
        ),
        (
            vec!["--airGapped=".into()],
            r#"--airGapped: expected true or false, got """#.into(),
        ),
        (
            vec!["--experiencesEnabled=false".into(), "--dynamicExtensionsEnabled=0".into()],
            r#"--dynamicExtensionsEnabled: expected true or false, got "0""#.into(),
        ),
        (
            vec!["--feed=ftp://feed.example/".into()],
            r#"--feed: expected an http:// or https:// URL, got "ftp://feed.example/" (scheme "ftp")"#
                .into(),
        ),
        (
            vec!["--comms-listen-port=65536".into()],
            r#"--commsListenPort: expected a port number from 0 to 65535, got "65536""#.into(),
        ),
        (
            vec!["--telemetryUrl=https://user:hunter2@t.example/".into()],
            "--telemetryUrl: a URL may not contain a user name or password".into(),
        ),
        (
            vec![format!("--feedCertificate={missing}")],
            format!(
                "--feedCertificate: expected a readable PEM certificate file, cannot read {missing}: No such file or directory (os error 2)"
            ),
        ),
    ];
    for (args, expected) in &cases {
        let mut argv = vec!["configure"];
        argv.extend(args.iter().map(String::as_str));
        fails_with(&octo(home.path(), &argv), expected);
        assert!(
            !home.path().join("octo.toml").exists(),
            "{args:?} wrote the settings"
        );
    }
    // With an existing file, a bad value leaves it byte for byte.
    ok(home.path(), &["configure", "--upgradeCheck=false"]);
    let before = std::fs::read(home.path().join("octo.toml")).unwrap();
    for (args, expected) in &cases {
        let mut argv = vec!["configure", "--libraryFeed=http://127.0.0.1:2/"];
        argv.extend(args.iter().map(String::as_str));
        fails_with(&octo(home.path(), &argv), expected);
    }
    assert_eq!(
        std::fs::read(home.path().join("octo.toml")).unwrap(),
        before
    );
    // Unknown flags and missing values are clap's errors, also non-zero and naming the flag.
    let out = octo(home.path(), &["configure", "--upgradeChek=false"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--upgradeChek"));
    let out = octo(home.path(), &["configure", "--upgradeCheck"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--upgradeCheck"));
    fails_with(
        &octo(home.path(), &["configure"]),
        "nothing to configure: give at least one flag, e.g. --upgradeCheck=false (see `octo configure --help`; current values: `octo show-configuration`)",
    );
}

#[test]
fn kebab_case_aliases_are_the_same_flags() {
    let camel = tempfile::tempdir().unwrap();
    let kebab = tempfile::tempdir().unwrap();
    let mut camel_args = vec!["configure".to_string()];
    let mut kebab_args = vec!["configure".to_string()];
    for (i, (name, alias)) in SWITCHES.iter().enumerate() {
        let value = if i % 2 == 0 { "false" } else { "true" };
        camel_args.push(format!("--{name}={value}"));
        kebab_args.push(format!("--{alias}={value}"));
    }
    for (name, alias, value) in [
        ("libraryFeed", "library-feed", "http://127.0.0.1:1/lib"),
        ("updateUrl", "update-url", "http://127.0.0.1:1/u"),
        ("telemetryUrl", "telemetry-url", "http://127.0.0.1:1/t"),
        ("experiencesUrl", "experiences-url", "http://127.0.0.1:1/e"),
        (
            "dynamicExtensionsUrl",
            "dynamic-extensions-url",
            "http://127.0.0.1:1/d",
        ),
        (
            "feedPublicKey",
            "feed-public-key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        ("commsListenPort", "comms-listen-port", "0"),
    ] {
        camel_args.push(format!("--{name}={value}"));
        kebab_args.push(format!("--{alias}={value}"));
    }
    ok(
        camel.path(),
        &camel_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ok(
        kebab.path(),
        &kebab_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let a = std::fs::read_to_string(camel.path().join("octo.toml")).unwrap();
    let b = std::fs::read_to_string(kebab.path().join("octo.toml")).unwrap();
    assert_eq!(a, b);
    assert!(
        a.contains("upgradeCheck = false") && a.contains("sendTelemetry = true"),
        "{a}"
    );
}

/// Every endpoint set (to a closed loopback port), so the switches alone decide.
fn configure_endpoints(home: &Path) {
    ok(
        home,
        &[
            "configure",
            "--feed=http://127.0.0.1:1/feed",
            "--libraryFeed=http://127.0.0.1:1",
            "--updateUrl=http://127.0.0.1:1/u",
            "--telemetryUrl=http://127.0.0.1:1/t",
            "--experiencesUrl=http://127.0.0.1:1/e",
            "--dynamicExtensionsUrl=http://127.0.0.1:1/d",
        ],
    );
}

#[test]
fn air_gapped_denies_every_vendor_destination_and_keeps_the_switches() {
    let home = tempfile::tempdir().unwrap();
    configure_endpoints(home.path());
    ok(home.path(), &["configure", "--sendTelemetry=false"]);
    let out = ok(home.path(), &["configure", "--air-gapped=true"]);
    assert!(
        out.contains("airGapped") && out.contains("false -> true"),
        "{out}"
    );
    let s = json(home.path(), &["show-configuration", "--json"]);
    assert_eq!(s["airGapped"], true);
    for (name, _) in SWITCHES {
        assert_eq!(s[name], name != "sendTelemetry", "{name} kept its value");
    }
    let report = json(home.path(), &["outbound", "--json"]);
    assert_eq!(report["airGapped"], true);
    for d in report["destinations"].as_array().unwrap() {
        let admin_configured = d["gate"]["type"] == "configuration";
        assert_eq!(d["allowed"], admin_configured, "{d}");
    }
    // A vendor switch turned on while air-gapped is saved, and says it has no effect.
    let out = ok(home.path(), &["configure", "--sendTelemetry=true"]);
    assert!(
        out.contains("--sendTelemetry=true is saved but has no effect while air-gapped"),
        "{out}"
    );
    let report = json(home.path(), &["outbound", "--json"]);
    let telemetry = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "telemetry")
        .unwrap()
        .clone();
    assert_eq!(telemetry["allowed"], false, "{telemetry}");
    // Lifting the air gap leaves every switch as it was.
    ok(home.path(), &["configure", "--sendTelemetry=false"]);
    ok(home.path(), &["configure", "--airGapped=false"]);
    let s = json(home.path(), &["show-configuration", "--json"]);
    for (name, _) in SWITCHES {
        assert_eq!(s[name], name != "sendTelemetry", "{name}");
    }
}

#[test]
fn each_switch_alone_allows_exactly_its_destination() {
    let home = tempfile::tempdir().unwrap();
    configure_endpoints(home.path());
    for (name, _) in SWITCHES {
        let mut args = vec!["configure".to_string()];
        for (other, alias) in SWITCHES {
            args.push(format!("--{alias}={}", other == name));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(home.path(), &args);
        let report = json(home.path(), &["outbound", "--json"]);
        let allowed_vendor: Vec<&str> = report["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["gate"]["type"] == "switch" && d["allowed"] == true)
            .map(|d| d["gate"]["setting"].as_str().unwrap())
            .collect();
        assert_eq!(allowed_vendor, vec![name]);
    }
}

#[test]
fn an_unset_endpoint_is_not_configured() {
    let home = tempfile::tempdir().unwrap();
    let report = json(home.path(), &["outbound", "--json"]);
    for d in report["destinations"].as_array().unwrap() {
        if d["gate"]["type"] == "switch" {
            assert_eq!(d["allowed"], false, "{d}");
            assert!(
                d["reason"].as_str().unwrap().contains("is not configured"),
                "{d}"
            );
            assert_eq!(d["url"], Value::Null, "{d}");
        }
    }
    let shown = ok(home.path(), &["outbound"]);
    assert!(shown.contains("not configured (updateUrl)"), "{shown}");
    let shown = ok(home.path(), &["show-configuration"]);
    assert!(shown.contains("(not configured)"), "{shown}");
    // Setting one and unsetting it again.
    ok(
        home.path(),
        &["configure", "--updateUrl=http://127.0.0.1:1/u"],
    );
    assert_eq!(
        json(home.path(), &["show-configuration", "--json"])["updateUrl"],
        "http://127.0.0.1:1/u"
    );
    ok(home.path(), &["configure", "--updateUrl="]);
    assert_eq!(
        json(home.path(), &["show-configuration", "--json"])["updateUrl"],
        Value::Null
    );
}

#[test]
fn a_broken_settings_file_is_reported_with_the_key() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("octo.toml"), "upgradeChek = false\n").unwrap();
    let out = octo(home.path(), &["show-configuration"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown setting \"upgradeChek\""),
        "{stderr}"
    );
    // configure refuses to overwrite it.
    let out = octo(home.path(), &["configure", "--sendTelemetry=false"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("upgradeChek"));
    assert_eq!(
        std::fs::read_to_string(home.path().join("octo.toml")).unwrap(),
        "upgradeChek = false\n"
    );
}

#[test]
fn grants_are_added_listed_and_revoked() {
    let home = tempfile::tempdir().unwrap();
    let digest = "aa".repeat(32);
    // Nothing installed under the id: the component must be named.
    fails_with(
        &octo(
            home.path(),
            &["plugins", "grant", "my-step", "https://API.example.com"],
        ),
        "plugin my-step is not installed, so there is no component to bind the grant to; name it with `--file PATH` (the .wasm you will run) or `--sha256 DIGEST`",
    );
    let out = ok(
        home.path(),
        &[
            "plugins",
            "grant",
            "my-step",
            "https://API.example.com",
            "--sha256",
            &digest,
        ],
    );
    assert_eq!(
        out.trim(),
        format!("Granted https://api.example.com:443 to plugin my-step (sha256 {digest}).")
    );
    ok(
        home.path(),
        &[
            "plugins",
            "grant",
            "my-step",
            "https://*.corp.example:*",
            "--sha256",
            &digest,
        ],
    );
    ok(
        home.path(),
        &[
            "plugins",
            "grant",
            "other",
            "http://10.0.0.1:8080",
            "--sha256",
            &digest,
        ],
    );
    let list = json(home.path(), &["plugins", "grants", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let mine = json(home.path(), &["plugins", "grants", "my-step", "--json"]);
    assert_eq!(
        mine,
        serde_json::json!([
            {"plugin": "my-step", "destination": "https://*.corp.example:*", "component": {"sha256": digest}},
            {"plugin": "my-step", "destination": "https://api.example.com:443", "component": {"sha256": digest}},
        ])
    );
    let file = home.path().join("grants.toml");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    ok(
        home.path(),
        &[
            "plugins",
            "revoke",
            "my-step",
            "https://api.example.com:443",
        ],
    );
    fails_with(
        &octo(
            home.path(),
            &["plugins", "revoke", "my-step", "https://api.example.com"],
        ),
        "plugin my-step has no grant https://api.example.com:443; its grants: https://*.corp.example:*",
    );
    fails_with(
        &octo(
            home.path(),
            &["plugins", "revoke", "nobody", "https://x.example"],
        ),
        "plugin nobody has no grants",
    );
    let out = octo(
        home.path(),
        &[
            "plugins", "grant", "my-step", "ftp://x", "--sha256", &digest,
        ],
    );
    assert!(!out.status.success());
    let report = json(home.path(), &["outbound", "--json"]);
    let steps = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "step-plugins")
        .unwrap();
    assert_eq!(steps["grants"].as_array().unwrap().len(), 2);
}

/// The built http-health-check under another id: a custom step, which needs grants.
fn custom_health_check(dir: &Path) -> String {
    let bytes = octo_builtin_plugins::HTTP_HEALTH_CHECK.bytes;
    let mut manifest = octo_manifest::read_manifest(bytes).unwrap();
    manifest.id = "custom-health-check".into();
    let packed = octo_manifest::embed_manifest(bytes, &manifest).unwrap();
    let path = dir.join("custom-health-check.wasm");
    std::fs::write(&path, packed).unwrap();
    path.display().to_string()
}

fn step_attempts(home: &Path) -> Vec<Value> {
    let report = json(home, &["outbound", "--json"]);
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "step-plugins")
        .unwrap()["lastAttempts"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn run_step_applies_the_policy_and_records_attempts() {
    let home = tempfile::tempdir().unwrap();
    let url = http_server();
    let origin = url.trim_end_matches('/').to_string();
    let param = format!("url={url}");

    // A built-in step reaches what its manifest declares without a grant.
    ok(
        home.path(),
        &["run-step", "http-health-check", "--param", &param],
    );
    let attempts = step_attempts(home.path());
    assert_eq!(attempts[0]["plugin"], "http-health-check");
    assert_eq!(attempts[0]["allowed"], true);
    assert_eq!(attempts[0]["destination"], format!("{origin}"));

    // A custom step is denied until granted; the denial says how to grant it.
    let custom = custom_health_check(home.path());
    let out = octo(home.path(), &["run-step", &custom, "--param", &param]);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "is not granted to plugin custom-health-check; an administrator can allow it with `octo plugins grant custom-health-check {origin}`"
        )),
        "{stdout}"
    );
    let attempts = step_attempts(home.path());
    assert_eq!(attempts[0]["plugin"], "custom-health-check");
    assert_eq!(attempts[0]["allowed"], false);

    // A one-run grant, then a stored one.
    ok(
        home.path(),
        &[
            "run-step",
            &custom,
            "--param",
            &param,
            "--allow-outbound",
            &origin,
        ],
    );
    ok(
        home.path(),
        &[
            "plugins",
            "grant",
            "custom-health-check",
            &origin,
            "--file",
            &custom,
        ],
    );
    ok(home.path(), &["run-step", &custom, "--param", &param]);
    let attempts = step_attempts(home.path());
    assert!(
        attempts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("granted to custom-health-check by an administrator"),
        "{attempts:?}"
    );

    // Air-gapped: nothing gets out, neither the built-in nor the granted step, not even with
    // --allow-outbound.
    ok(home.path(), &["configure", "--airGapped=true"]);
    for plugin in ["http-health-check", custom.as_str()] {
        let out = octo(
            home.path(),
            &[
                "run-step",
                plugin,
                "--param",
                &param,
                "--allow-outbound",
                &origin,
            ],
        );
        assert!(!out.status.success(), "{plugin} got out while air-gapped");
        let attempts = step_attempts(home.path());
        assert_eq!(attempts[0]["allowed"], false);
        assert!(
            attempts[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("air-gapped"),
            "{attempts:?}"
        );
    }
    let shown = ok(home.path(), &["outbound"]);
    assert!(
        shown.contains("Step plugins' own requests [step-plugins]: DENIED"),
        "{shown}"
    );
    assert!(shown.contains("custom-health-check"), "{shown}");
}

/// A component installed from a local file is unsigned: it stays a custom step that needs a grant,
/// even though it now sits in the plugin store (only signed-feed installs count as built-in steps).
#[test]
fn a_locally_installed_component_still_needs_a_grant() {
    let home = tempfile::tempdir().unwrap();
    let url = http_server();
    let custom = custom_health_check(home.path());
    ok(home.path(), &["plugins", "install", "--file", &custom]);
    let out = octo(
        home.path(),
        &[
            "run-step",
            "custom-health-check",
            "--param",
            &format!("url={url}"),
        ],
    );
    assert!(
        !out.status.success(),
        "an unsigned local install must not reach the network ungranted"
    );
    assert!(
        text(&out.stdout).contains("is not granted to plugin custom-health-check"),
        "{}",
        text(&out.stdout)
    );
}

/// Finding 7: a grant is bound to the component granted (here the one installed under the id, by
/// digest); another build carrying the same id — run from a file, or installed over it from a
/// file — does not inherit it.
#[test]
fn a_grant_is_not_inherited_by_another_component_with_the_same_id() {
    let home = tempfile::tempdir().unwrap();
    let url = http_server();
    let origin = url.trim_end_matches('/').to_string();
    let param = format!("url={url}");
    let custom = custom_health_check(home.path());
    ok(home.path(), &["plugins", "install", "--file", &custom]);
    let out = ok(
        home.path(),
        &["plugins", "grant", "custom-health-check", &origin],
    );
    let digest = octo_runtime::sha256_hex(&std::fs::read(&custom).unwrap());
    assert!(out.contains(&format!("(sha256 {digest})")), "{out}");
    // The granted component, installed or from its file: allowed.
    ok(
        home.path(),
        &["run-step", "custom-health-check", "--param", &param],
    );
    ok(home.path(), &["run-step", &custom, "--param", &param]);

    // Another component packed with the same id.
    let other = {
        let bytes = octo_builtin_plugins::HTTP_HEALTH_CHECK.bytes;
        let mut manifest = octo_manifest::read_manifest(bytes).unwrap();
        manifest.id = "custom-health-check".into();
        manifest.description = "not what the administrator granted".into();
        let path = home.path().join("relabelled.wasm");
        std::fs::write(
            &path,
            octo_manifest::embed_manifest(bytes, &manifest).unwrap(),
        )
        .unwrap();
        path.display().to_string()
    };
    let out = octo(home.path(), &["run-step", &other, "--param", &param]);
    assert!(
        !out.status.success(),
        "a relabelled component inherited the grant"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("grants do not follow an id to another build"),
        "{stdout}"
    );
    let attempts = step_attempts(home.path());
    assert_eq!(attempts[0]["allowed"], false);
    // Installed over the granted one from a file: no grant either.
    ok(home.path(), &["plugins", "install", "--file", &other]);
    let out = octo(
        home.path(),
        &["run-step", "custom-health-check", "--param", &param],
    );
    assert!(
        !out.status.success(),
        "an update from a file inherited the grant"
    );
    // The report shows the grant with the component it is bound to.
    let report = json(home.path(), &["outbound", "--json"]);
    let steps = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "step-plugins")
        .unwrap()
        .clone();
    assert_eq!(steps["grants"][0]["component"]["sha256"], digest);
}

/// Issue 11, finding 10: a host with a trailing dot is one destination — audited as `localhost`, and
/// the request dialled and sent (`Host` header) as `localhost`, not resolved as `localhost.`.
#[test]
fn a_trailing_dot_host_is_audited_and_dialled_the_same_way() {
    let home = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    ok(
        home.path(),
        &[
            "run-step",
            "http-health-check",
            "--param",
            &format!("url=http://localhost.:{port}/health"),
        ],
    );
    let head = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    let host = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("host: ")
                .or_else(|| l.strip_prefix("Host: "))
        })
        .unwrap_or_default()
        .to_string();
    assert_eq!(host, format!("localhost:{port}"), "{head}");
    let attempts = step_attempts(home.path());
    assert_eq!(
        attempts[0]["destination"],
        format!("http://localhost:{port}")
    );
    assert_eq!(attempts[0]["allowed"], true);
}
