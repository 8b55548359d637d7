//! What several nodes share (issue 12): two `octo run` daemons, each with its own home, on one
//! PostgreSQL database. A target added through one node is trusted by the other, a setting configured
//! through one reaches the other, and concurrent edits made through both lose nothing. Real processes on loopback and a private PostgreSQL cluster.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::octo::{Daemon, octo, octo_ok, start_polling, wait_healthy};

/// A new database in this binary's private PostgreSQL cluster; `None` (the test skips, with a note)
/// where PostgreSQL is not installed.
fn database() -> Option<String> {
    Some(octo_test_support::postgres::PgCluster::shared()?.new_database())
}

/// Two homes configured with one new database; they share one server identity through it.
fn two_nodes() -> Option<(tempfile::TempDir, tempfile::TempDir)> {
    let url = database()?;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for home in [a.path(), b.path()] {
        octo_ok(home, &["configure", "--database", &url]);
    }
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_added_on_one_node_is_trusted_by_the_other() {
    let Some((a, b)) = two_nodes() else {
        return;
    };
    let node_a = Daemon::start_with(a.path(), "20s", &["--node", "a"]);
    let node_b = Daemon::start_with(b.path(), "20s", &["--node", "b"]);
    // One identity: the first node's, taken by the second from the store.
    assert_eq!(node_a.thumbprint, node_b.thumbprint);
    assert_eq!(
        octo_ok(a.path(), &["show-thumbprint"]),
        octo_ok(b.path(), &["show-thumbprint"])
    );

    // A polling tentacle dials node B; the target is added through node A.
    let (polling, _phome) = start_polling(&node_b).await;
    octo_ok(
        a.path(),
        &[
            "targets",
            "add-polling",
            "p1",
            "--thumbprint",
            &polling.thumbprint.to_string(),
        ],
    );
    let listed = octo_ok(b.path(), &["targets", "list", "--json"]);
    assert!(listed.contains("\"p1\""), "{listed}");
    wait_healthy(b.path(), "p1");
    let stdout = octo_ok(
        b.path(),
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo from-b",
            "--target",
            "p1",
        ],
    );
    assert!(stdout.contains("from-b"), "{stdout}");

    // A setting configured through node A reaches node B's file (its daemon follows the store).
    octo_ok(a.path(), &["configure", "--upgrade-check=false"]);
    let started = Instant::now();
    while !std::fs::read_to_string(b.path().join("octo.toml"))
        .unwrap()
        .contains("upgradeCheck = false")
    {
        assert!(started.elapsed() < common::LIVENESS, "node B never saw it");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Removed through node B: node A no longer knows it.
    octo_ok(b.path(), &["targets", "remove", "p1"]);
    let out = octo(a.path(), &["targets", "health", "p1"]);
    assert!(!out.status.success());
}

#[test]
fn concurrent_edits_on_two_nodes_lose_nothing() {
    let Some((a, b)) = two_nodes() else {
        return;
    };
    let thumbprint = "0".repeat(64);
    std::thread::scope(|s| {
        for (node, home) in [("a", a.path()), ("b", b.path())] {
            let thumbprint = &thumbprint;
            s.spawn(move || {
                for i in 0..8 {
                    octo_ok(
                        home,
                        &[
                            "targets",
                            "add-polling",
                            &format!("{node}{i}"),
                            "--thumbprint",
                            thumbprint,
                        ],
                    );
                }
            });
        }
    });
    let listed: serde_json::Value =
        serde_json::from_str(&octo_ok(a.path(), &["targets", "list", "--json"])).unwrap();
    let mut names: Vec<String> = listed["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut expected: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|n| (0..8).map(move |i| format!("{n}{i}")))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn an_old_targets_file_is_imported_once() {
    let home = tempfile::tempdir().unwrap();
    let thumbprint = "1".repeat(64);
    std::fs::write(
        home.path().join("targets.json"),
        format!(
            r#"{{"targets":[{{"name":"old1","kind":"polling","thumbprint":"{thumbprint}","roles":["web"]}}]}}"#
        ),
    )
    .unwrap();
    let listed = octo_ok(home.path(), &["targets", "list", "--json"]);
    assert!(listed.contains("\"old1\""), "{listed}");
    assert!(!home.path().join("targets.json").exists());
    assert!(home.path().join("targets.json.imported").exists());
    // A file that appears again later is not read: the store is the truth.
    std::fs::write(home.path().join("targets.json"), "not json").unwrap();
    octo_ok(
        home.path(),
        &[
            "targets",
            "add-polling",
            "new1",
            "--thumbprint",
            &thumbprint,
        ],
    );
    let listed = octo_ok(home.path(), &["targets", "list", "--json"]);
    assert!(
        listed.contains("\"old1\"") && listed.contains("\"new1\""),
        "{listed}"
    );
}

#[test]
fn concurrent_configure_on_two_nodes_loses_nothing() {
    use octo_test_support::postgres::PASSWORD;
    let Some((a, b)) = two_nodes() else {
        return;
    };
    let on_a = [
        "--upgrade-check=false",
        "--send-telemetry=false",
        "--experiences-enabled=false",
        "--dynamic-extensions-enabled=false",
    ];
    let on_b = [
        "--update-url=http://127.0.0.1:9/update",
        "--telemetry-url=http://127.0.0.1:9/telemetry",
        "--experiences-url=http://127.0.0.1:9/experiences",
        "--dynamic-extensions-url=http://127.0.0.1:9/extensions",
    ];
    std::thread::scope(|s| {
        for (home, flags) in [(a.path(), on_a), (b.path(), on_b)] {
            s.spawn(move || {
                for flag in flags {
                    octo_ok(home, &["configure", flag]);
                }
            });
        }
    });
    // One more change through node A: its file then holds everything both nodes configured.
    octo_ok(a.path(), &["configure", "--step-template-updates=false"]);
    let shown: serde_json::Value =
        serde_json::from_str(&octo_ok(a.path(), &["show-configuration", "--json"])).unwrap();
    for key in [
        "upgradeCheck",
        "sendTelemetry",
        "experiencesEnabled",
        "dynamicExtensionsEnabled",
        "stepTemplateUpdates",
    ] {
        assert_eq!(shown[key], false, "{key}: {shown}");
    }
    assert_eq!(shown["updateUrl"], "http://127.0.0.1:9/update", "{shown}");
    assert_eq!(shown["telemetryUrl"], "http://127.0.0.1:9/telemetry");
    assert_eq!(shown["experiencesUrl"], "http://127.0.0.1:9/experiences");
    assert_eq!(
        shown["dynamicExtensionsUrl"],
        "http://127.0.0.1:9/extensions"
    );
    // Each node keeps its own database setting; its password is never shown.
    assert!(!shown.to_string().contains(PASSWORD));
    let file = std::fs::read_to_string(a.path().join("octo.toml")).unwrap();
    assert!(file.contains("database"), "{file}");
}

/// The built example step (`hello-step`: sets the output `greeting`).
fn hello_step() -> Vec<u8> {
    let path = Path::new(octo_builtin_plugins::BUILD_DIR).join("hello_step.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `hello-step` under another id.
fn hello_as(id: &str) -> Vec<u8> {
    let bytes = hello_step();
    let mut manifest = octo_manifest::read_manifest(&bytes).unwrap();
    manifest.id = id.to_string();
    octo_manifest::embed_manifest(&bytes, &manifest).unwrap()
}

/// The ids `octo plugins list --json` shows as installed.
fn installed(home: &Path) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&octo_ok(home, &["plugins", "list", "--json"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["installedAt"].is_null())
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_plugins_and_outbound_attempts_are_shared() {
    let Some((a, b)) = two_nodes() else {
        return;
    };
    let _node_a = Daemon::start_with(a.path(), "20s", &["--node", "a"]);
    let node_b = Daemon::start_with(b.path(), "20s", &["--node", "b"]);

    // A grant made on A applies on B; revoked on B, A no longer has it.
    let digest = "ab".repeat(32);
    octo_ok(
        a.path(),
        &[
            "plugins",
            "grant",
            "some-step",
            "https://api.example.com:443",
            "--sha256",
            &digest,
        ],
    );
    let grants = octo_ok(b.path(), &["plugins", "grants", "--json"]);
    assert!(
        grants.contains("https://api.example.com:443") && grants.contains(&digest),
        "{grants}"
    );
    octo_ok(
        b.path(),
        &[
            "plugins",
            "revoke",
            "some-step",
            "https://api.example.com:443",
        ],
    );
    let grants = octo_ok(a.path(), &["plugins", "grants", "--json"]);
    assert!(!grants.contains("api.example.com"), "{grants}");

    // A plugin installed through A runs in a task that B claims, on a tentacle polling B.
    let file = a.path().join("hello.wasm");
    std::fs::write(&file, hello_step()).unwrap();
    octo_ok(
        a.path(),
        &["plugins", "install", "--file", file.to_str().unwrap()],
    );
    assert!(installed(b.path()).contains(&"hello-step".to_string()));
    let (polling, _phome) = start_polling(&node_b).await;
    octo_ok(
        b.path(),
        &[
            "targets",
            "add-polling",
            "p1",
            "--thumbprint",
            &polling.thumbprint.to_string(),
        ],
    );
    wait_healthy(b.path(), "p1");
    let stdout = octo_ok(
        b.path(),
        &[
            "run-step",
            "hello-step",
            "--param",
            "name=node-b",
            "--target",
            "p1",
        ],
    );
    assert!(stdout.contains("Hello, node-b!"), "{stdout}");
    // Removed through B: A no longer has it.
    octo_ok(b.path(), &["plugins", "remove", "hello-step"]);
    assert!(!installed(a.path()).contains(&"hello-step".to_string()));

    // Attempts made on either node are in one audit: `octo outbound` on A shows B's, by node.
    octo_ok(
        a.path(),
        &[
            "feeds",
            "add",
            "closed",
            "--type",
            "nuget",
            "--url",
            "http://127.0.0.1:9/v3/index.json",
        ],
    );
    for home in [b.path(), a.path()] {
        let _ = octo(home, &["feeds", "test", "closed"]);
    }
    let report = octo_ok(a.path(), &["outbound"]);
    assert!(
        report.contains("(node b)") && report.contains("(node a)"),
        "{report}"
    );
    assert!(report.contains("recorded in the store"), "{report}");
    assert!(!a.path().join("logs/outbound.jsonl").exists());
    assert!(!b.path().join("logs/outbound.jsonl").exists());
}

#[test]
fn concurrent_plugin_installs_on_two_nodes_lose_nothing() {
    let Some((a, b)) = two_nodes() else {
        return;
    };
    std::thread::scope(|s| {
        for (node, home) in [("a", a.path()), ("b", b.path())] {
            s.spawn(move || {
                for i in 0..4 {
                    let id = format!("hello-{node}{i}");
                    let file = home.join(format!("{id}.wasm"));
                    std::fs::write(&file, hello_as(&id)).unwrap();
                    octo_ok(
                        home,
                        &["plugins", "install", "--file", file.to_str().unwrap()],
                    );
                }
            });
        }
    });
    let mut expected: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|n| (0..4).map(move |i| format!("hello-{n}{i}")))
        .collect();
    expected.sort();
    for home in [a.path(), b.path()] {
        let mut ids: Vec<String> = installed(home)
            .into_iter()
            .filter(|id| id.starts_with("hello-"))
            .collect();
        ids.sort();
        assert_eq!(ids, expected);
    }
    // Each node runs what the other installed (its bytes came through the store).
    let out = octo_ok(a.path(), &["run-step", "hello-b3", "--param", "name=x"]);
    assert!(out.contains("Hello, x!"), "{out}");
}

#[test]
fn old_grants_plugins_and_audit_are_imported_once() {
    let Some(url) = database() else {
        return;
    };
    // A home that ran alone (SQLite) first: a plugin, a grant, an audit file.
    let a = tempfile::tempdir().unwrap();
    let file = a.path().join("hello.wasm");
    std::fs::write(&file, hello_step()).unwrap();
    octo_ok(
        a.path(),
        &["plugins", "install", "--file", file.to_str().unwrap()],
    );
    octo_ok(
        a.path(),
        &["plugins", "grant", "hello-step", "https://old.example:443"],
    );
    std::fs::create_dir_all(a.path().join("logs")).unwrap();
    std::fs::write(
        a.path().join("logs/outbound.jsonl"),
        concat!(
            r#"{"time":"2026-01-01T00:00:00.000Z","kind":"step-plugins","plugin":"old-plugin","destination":"https://old.example:443","allowed":false,"reason":"not granted"}"#,
            "\n"
        ),
    )
    .unwrap();
    assert!(a.path().join("grants.toml").exists());

    // Then it joins a cluster: everything is imported, once, and another node sees it.
    octo_ok(a.path(), &["configure", "--database", &url]);
    let grants = octo_ok(a.path(), &["plugins", "grants", "--json"]);
    assert!(grants.contains("https://old.example:443"), "{grants}");
    assert!(!a.path().join("grants.toml").exists());
    assert!(a.path().join("grants.toml.imported").exists());
    let report = octo_ok(a.path(), &["outbound"]);
    assert!(report.contains("old-plugin"), "{report}");
    assert!(!a.path().join("logs/outbound.jsonl").exists());
    assert!(a.path().join("logs/outbound.jsonl.imported").exists());
    assert!(installed(a.path()).contains(&"hello-step".to_string()));

    let b = tempfile::tempdir().unwrap();
    octo_ok(b.path(), &["configure", "--database", &url]);
    assert!(installed(b.path()).contains(&"hello-step".to_string()));
    let grants = octo_ok(b.path(), &["plugins", "grants", "--json"]);
    assert!(grants.contains("https://old.example:443"), "{grants}");
    let report = octo_ok(b.path(), &["outbound"]);
    assert_eq!(report.matches("old-plugin").count(), 1, "{report}");

    // A file that appears again is not imported again: the store is the truth.
    std::fs::write(a.path().join("grants.toml"), "not toml [").unwrap();
    let grants = octo_ok(a.path(), &["plugins", "grants", "--json"]);
    assert!(grants.contains("https://old.example:443"), "{grants}");
    // Removing on B removes it on A (A's copy of the lock follows the store).
    octo_ok(b.path(), &["plugins", "remove", "hello-step"]);
    assert!(!installed(a.path()).contains(&"hello-step".to_string()));
}
