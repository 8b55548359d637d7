//! What several nodes share (issue 12): two `octo run` daemons, each with its own home, on one
//! PostgreSQL database. A target added through one node is trusted by the other, a setting configured
//! through one reaches the other, and concurrent edits made through both lose nothing. Real processes on loopback and a private PostgreSQL cluster.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::octo::{Daemon, octo, octo_ok};
use common::{Tentacle, tentacle_cmd};

/// `octo targets health NAME` until it succeeds (a polling tentacle may still be dialling).
fn wait_healthy(home: &Path, name: &str) {
    let started = Instant::now();
    loop {
        let out = octo(home, &["targets", "health", name]);
        if out.status.success() {
            return;
        }
        assert!(
            started.elapsed() < common::LIVENESS,
            "{name} never became healthy: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two homes configured with one database; they share one server identity through it.
fn two_nodes(url: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for home in [a.path(), b.path()] {
        octo_ok(home, &["configure", "--database", url]);
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_added_on_one_node_is_trusted_by_the_other() {
    use octo_test_support::postgres::PgCluster;
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let url = cluster.new_database();
    let (a, b) = two_nodes(&url);
    let node_a = Daemon::start_with(a.path(), "20s", &["--node", "a"]);
    let node_b = Daemon::start_with(b.path(), "20s", &["--node", "b"]);
    // One identity: the first node's, taken by the second from the store.
    assert_eq!(node_a.thumbprint, node_b.thumbprint);
    assert_eq!(
        octo_ok(a.path(), &["show-thumbprint"]),
        octo_ok(b.path(), &["show-thumbprint"])
    );

    // A polling tentacle dials node B; the target is added through node A.
    let phome = tempfile::tempdir().unwrap();
    tentacle_cmd(phome.path(), &["configure", "--noListen"]);
    tentacle_cmd(
        phome.path(),
        &[
            "poll-server",
            "--server-comms-address",
            &format!("https://{}", node_b.polling),
            "--server-thumbprint",
            &node_b.thumbprint.to_string(),
        ],
    );
    let polling = Tentacle::start(phome.path()).await;
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
    use octo_test_support::postgres::PgCluster;
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let url = cluster.new_database();
    let (a, b) = two_nodes(&url);
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
    use octo_test_support::postgres::{PASSWORD, PgCluster};
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let url = cluster.new_database();
    let (a, b) = two_nodes(&url);
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
