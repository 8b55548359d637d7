//! Several `octo run` nodes on one PostgreSQL (issue 12 item 6), with real processes on loopback:
//! each node its own `--home`, the same server identity (the first home's `certs/` copied), one
//! database. Two nodes with one name, a task received by a draining node and run by another (the
//! CLI following it through the store), a node SIGKILLed mid-task whose task another marks "result
//! unknown" without running it again, PostgreSQL stopped and restarted while a task runs, and a
//! database unreachable at start.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Tentacle;
use common::octo::{Daemon, add_listening, octo, octo_ok, task_json, text, wait_task};
use octo_test_support::postgres::{PASSWORD, PgCluster};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A home on the shared database, with the first node's identity when given.
fn node_home(url: &str, identity: Option<&Path>) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    octo_ok(home.path(), &["configure", "--database", url]);
    if let Some(first) = identity {
        copy_dir(&first.join("certs"), &home.path().join("certs"));
    }
    home
}

fn task_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("(task ")?.split(':').next())
        .expect("the task id is announced")
        .to_string()
}

const SCRIPT: &str = "echo hello\nset_octopusvariable Greeting hello-world";
const TIMEOUT: &str = "2s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_postgresql_and_mark_a_dead_nodes_task() {
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let url = cluster.new_database();
    let a_home = node_home(&url, None);
    let a = a_home.path();
    let node_a = Daemon::start_with(a, "30s", &["--node", "a", "--node-timeout", TIMEOUT]);
    let b_home = node_home(&url, Some(a));
    let b = b_home.path();
    let mut node_b = Daemon::start_with(b, "30s", &["--node", "b", "--node-timeout", TIMEOUT]);
    assert_eq!(node_a.thumbprint, node_b.thumbprint, "one server identity");

    // Two nodes, one name: the second is refused in one line.
    let c_home = node_home(&url, Some(a));
    let out = octo(
        c_home.path(),
        &[
            "run",
            "--listen-address",
            "127.0.0.1",
            "--comms-listen-port",
            "0",
            "--node",
            "a",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("the node name a is held by another running octo"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(PASSWORD));

    let (t1, _t1_home) = Tentacle::listening(node_a.thumbprint).await;
    // Targets live in the shared store: added through one node, every node knows it.
    add_listening(a, "t1", &t1, t1.thumbprint);
    assert!(octo_ok(b, &["targets", "list", "--json"]).contains("\"t1\""));

    let list: serde_json::Value =
        serde_json::from_str(&octo_ok(a, &["nodes", "list", "--json"])).unwrap();
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("a", "running"), ("b", "running")]);

    // Node a drains: a task it receives is claimed by b, and the CLI on a follows it through the
    // store (log, outcome, result).
    assert!(octo_ok(a, &["nodes", "drain", "a"]).contains("draining"));
    let list = octo_ok(b, &["nodes", "list"]);
    assert!(list.contains("draining"), "{list}");
    // Node a reads its flag with its next heartbeat.
    std::thread::sleep(Duration::from_secs(2));
    let out = octo(
        a,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={SCRIPT}"),
            "--target",
            "t1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("[t1] hello\n").count(), 1, "{stdout}");
    assert!(stdout.contains("Greeting = hello-world"), "{stdout}");
    let id = task_id(&stderr);
    let task = task_json(a, &id);
    assert_eq!(task["node"], "b", "{task}");
    assert_eq!(task["state"], "succeeded");
    // Node a stays draining for the next task, so that node b is the one to claim it.

    // Node b is SIGKILLed in the middle of a step: node a marks the task "result unknown" once b's
    // heartbeat is older than the timeout, and runs nothing again.
    let id = octo_ok(
        b,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=for i in $(seq 1 100); do echo line $i; sleep 0.2; done",
            "--target",
            "t1",
            "--detach",
        ],
    );
    let id = id.trim().to_string();
    wait_task(a, &id, |t| {
        t["log"].as_array().is_some_and(|l| !l.is_empty())
    });
    node_b.kill();
    let killed = Instant::now();
    let task = wait_task(a, &id, |t| t["state"] != "running");
    eprintln!(
        "node b SIGKILLed; its task marked after {} ms (timeout {TIMEOUT})",
        killed.elapsed().as_millis()
    );
    assert_eq!(task["state"], "unknown", "{task}");
    assert_eq!(task["node"], "b", "never claimed again: {task}");
    let failure = task["parts"][0]["outcome"]["failure"].as_str().unwrap();
    assert!(
        failure.contains("node b") && failure.contains("stopped heartbeating"),
        "{failure}"
    );
    octo_ok(a, &["nodes", "drain", "a", "--off"]);
    assert!(octo_ok(a, &["nodes", "cap", "a", "7"]).contains("at most 7"));
    let list: serde_json::Value =
        serde_json::from_str(&octo_ok(a, &["nodes", "list", "--json"])).unwrap();
    assert_eq!(list[1]["state"], "offline", "{list}");
    assert_eq!(list[0]["cap"], 7, "{list}");
    drop(node_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarting_while_a_task_runs_and_unreachable_at_start() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let url = cluster.new_database();
    let home_dir = node_home(&url, None);
    let home = home_dir.path();
    let node = Daemon::start_with(home, "60s", &["--node", "solo", "--node-timeout", "5s"]);
    let (t1, _t1_home) = Tentacle::listening(node.thumbprint).await;
    add_listening(home, "t1", &t1, t1.thumbprint);

    let id = octo_ok(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=for i in $(seq 1 20); do echo line $i; sleep 0.2; done",
            "--target",
            "t1",
            "--detach",
        ],
    );
    let id = id.trim().to_string();
    wait_task(home, &id, |t| {
        t["log"].as_array().is_some_and(|l| !l.is_empty())
    });
    // The database goes away while the step runs, and comes back.
    cluster.stop();
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart();
    let task = wait_task(home, &id, |t| t["state"] != "running");
    assert_eq!(task["state"], "succeeded", "{task}");
    let sequences: Vec<u64> = task["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sequence"].as_u64().unwrap())
        .collect();
    let lines: Vec<String> = task["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            l["message"]
                .as_str()?
                .strip_prefix("line ")
                .map(String::from)
        })
        .collect();
    assert_eq!(
        lines,
        (1..=20).map(|i| i.to_string()).collect::<Vec<_>>(),
        "every line once"
    );
    let mut sorted = sequences.clone();
    sorted.dedup();
    assert_eq!(sorted, sequences);
    // The node claims again after the outage: a new task runs.
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={SCRIPT}"),
            "--target",
            "t1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[t1] hello"), "{stdout}");
    drop(node);

    // Unreachable at start: `octo run` does not start, and says why in one line.
    cluster.stop();
    let out = octo(
        home,
        &[
            "run",
            "--listen-address",
            "127.0.0.1",
            "--comms-listen-port",
            "0",
            "--node",
            "solo",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(PASSWORD));
    cluster.restart();
}
