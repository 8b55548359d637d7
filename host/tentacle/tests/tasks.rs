//! Tasks end to end (issue 12), with real processes: the `octo` daemon and CLI and `tentacle`
//! agents on loopback. A remote run's outcome (output variables, `--json`), `octo tasks
//! list|show|cancel`, `--detach` and `--follow`, a pinning error that ends a part at once, and a
//! daemon SIGKILLed in the middle of a step that resumes with every log line exactly once.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Tentacle;
use common::octo::{
    Daemon, add_listening, collect, octo, octo_bin, octo_ok, task_json, text, wait_task,
};

/// How long the daemon keeps redialling a tentacle before a part fails.
const RECONNECT_TIMEOUT: &str = "30s";

const SCRIPT: &str = "echo hello\nset_octopusvariable Greeting hello-world\nset_octopusvariable Token s3cr3t-token -sensitive\nnew_octopusartifact /etc/hostname host.txt 2>/dev/null || true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_run_is_a_task_with_each_targets_outcome() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (web1, _h1) = Tentacle::listening(daemon.thumbprint).await;
    let (web2, _h2) = Tentacle::listening(daemon.thumbprint).await;
    add_listening(home, "web1", &web1, web1.thumbprint);
    add_listening(home, "web2", &web2, web2.thumbprint);

    // The summary lists each target's output variables, the sensitive one masked.
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={SCRIPT}"),
            "--target",
            "web1",
            "--target",
            "web2",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for target in ["web1", "web2"] {
        assert!(stdout.contains(&format!("[{target}] hello")), "{stdout}");
        assert!(
            stdout.contains(&format!(
                "[{target}]\n  Output variables:\n    Greeting = hello-world\n    Token = ********"
            )),
            "{stdout}"
        );
    }
    assert!(!stdout.contains("s3cr3t-token") && !stderr.contains("s3cr3t-token"));
    // The daemon's start-up jobs are tasks too: take the id the run announced.
    let first = stderr
        .lines()
        .find_map(|l| l.strip_prefix("(task ")?.split(':').next())
        .expect("the task id is announced")
        .to_string();
    assert!(
        stderr.contains(&format!("(task {first}: `octo tasks show {first}`)")),
        "{stderr}"
    );

    // --json: one document with every target's outcome on stdout; the log goes to stderr.
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={SCRIPT}"),
            "--target",
            "web1",
            "--target",
            "web2",
            "--json",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let second = doc["task"].as_i64().unwrap();
    assert_eq!(second, first.parse::<i64>().unwrap() + 1);
    assert_eq!(doc["status"], "succeeded");
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for t in targets {
        assert_eq!(t["status"], "succeeded");
        let outputs = t["outputs"].as_array().unwrap();
        assert!(
            outputs.contains(
                &serde_json::json!({"name": "Greeting", "value": "hello-world", "sensitive": false})
            ),
            "{doc}"
        );
        assert!(
            outputs.contains(
                &serde_json::json!({"name": "Token", "value": "********", "sensitive": true})
            ),
            "{doc}"
        );
    }
    assert!(stderr.contains("[web1] hello"), "{stderr}");
    assert!(!stdout.contains("s3cr3t-token") && !stderr.contains("s3cr3t-token"));

    // The tasks are kept: listed, shown with outcome and log, as text and JSON.
    let list = octo_ok(home, &["tasks", "list"]);
    assert_eq!(
        list.lines()
            .filter(|l| l.contains("run-step") && l.contains("succeeded"))
            .count(),
        2,
        "{list}"
    );
    assert!(list.contains("job"), "job runs are tasks: {list}");
    let shown = octo_ok(home, &["tasks", "show", &first]);
    assert!(
        shown.contains(&format!("Task {first} (run-step): succeeded")),
        "{shown}"
    );
    assert!(shown.contains("[web2] succeeded\n    Output variables:\n      Greeting = hello-world\n      Token = ********"), "{shown}");
    assert!(shown.contains("[web1] hello"), "{shown}");
    let task = task_json(home, &first);
    assert_eq!(task["state"], "succeeded");
    assert_eq!(
        task["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["message"] == "hello")
            .count(),
        2
    );
    let mut db = std::fs::read(home.join("octo.db")).unwrap_or_default();
    db.extend(std::fs::read(home.join("octo.db-wal")).unwrap_or_default());
    assert!(
        !String::from_utf8_lossy(&db).contains("s3cr3t-token"),
        "no secret at rest"
    );

    // A failure is a failed task, with the cause per target; --state filters.
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=exit 3",
            "--target",
            "web1",
        ],
    );
    assert!(!out.status.success());
    let failed = octo_ok(home, &["tasks", "list", "--state", "failed", "--json"]);
    let failed: serde_json::Value = serde_json::from_str(&failed).unwrap();
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    let third = failed[0]["id"].to_string();
    let out = octo(home, &["tasks", "show", &third]);
    assert!(!out.status.success(), "a failed task exits non-zero");
    assert!(text(&out).0.contains("[web1] failed:"), "{}", text(&out).0);

    // --detach prints the id and returns; --follow streams the log until the end.
    let id = octo_ok(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=for i in 1 2 3; do echo tick $i; sleep 0.2; done",
            "--target",
            "web1",
            "--detach",
        ],
    );
    let id = id.trim();
    let followed = octo_ok(home, &["tasks", "show", id, "--follow"]);
    for i in 1..=3 {
        assert_eq!(
            followed.matches(&format!("[web1] tick {i}\n")).count(),
            1,
            "{followed}"
        );
    }
    assert!(
        followed.contains(&format!("Task {id} (run-step): succeeded")),
        "{followed}"
    );

    // Cancel: a detached long step is cancelled on its target.
    let id = octo_ok(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo started; sleep 60",
            "--target",
            "web2",
            "--detach",
        ],
    );
    let id = id.trim().to_string();
    wait_task(home, &id, |t| {
        t["log"].as_array().is_some_and(|l| !l.is_empty())
    });
    let answer = octo_ok(home, &["tasks", "cancel", &id]);
    assert!(
        answer.contains(&format!("Cancelling task {id}")),
        "{answer}"
    );
    let task = wait_task(home, &id, |t| t["state"] != "running");
    assert_eq!(task["state"], "cancelled", "{task}");
    let out = octo(home, &["tasks", "cancel", &id]);
    assert!(
        text(&out).1.contains("has already ended"),
        "{}",
        text(&out).1
    );
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=true",
            "--detach",
        ],
    );
    assert!(
        text(&out).1.contains("--detach is for runs on targets"),
        "{}",
        text(&out).1
    );
    let out = octo(home, &["tasks", "show", "999"]);
    assert!(text(&out).1.contains("no task 999"), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinning_errors_end_the_targets_part_at_once() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (tentacle, _h) = Tentacle::listening(daemon.thumbprint).await;
    // The server expects another certificate than the tentacle presents.
    let wrong = octo_comms::identity::Identity::generate("impostor")
        .unwrap()
        .thumbprint();
    add_listening(home, "wrong-cert", &tentacle, wrong);
    // This tentacle trusts another server.
    let other = octo_comms::identity::Identity::generate("other server")
        .unwrap()
        .thumbprint();
    let (picky, _h2) = Tentacle::listening(other).await;
    add_listening(home, "refuses-us", &picky, picky.thumbprint);

    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo never",
            "--target",
            "wrong-cert",
            "--target",
            "refuses-us",
            "--json",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let message = |name: &str| {
        doc["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == name)
            .map(|t| t["message"].as_str().unwrap_or_default().to_string())
            .unwrap()
    };
    let wrong_cert = message("wrong-cert");
    assert!(
        wrong_cert.contains("is not trusted") && wrong_cert.contains(&wrong.to_string()),
        "{wrong_cert}"
    );
    let refused = message("refuses-us");
    assert!(
        refused.contains("refused this side's certificate"),
        "{refused}"
    );
    for m in [&wrong_cert, &refused] {
        // Ended by the cause, not by the reconnect budget running out.
        assert!(!m.contains("could not reach the tentacle"), "{m}");
    }
    assert!(
        !stderr.contains("retrying"),
        "no retry of a trust failure: {stderr}"
    );
    let task = task_json(home, &doc["task"].to_string());
    assert_eq!(task["state"], "failed");
}

/// Every `[t1] line N` of `text`, in order.
fn numbered(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("[t1] line "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_step_resumes_and_loses_no_line() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let mut daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (tentacle, _h) = Tentacle::listening(daemon.thumbprint).await;
    add_listening(home, "t1", &tentacle, tentacle.thumbprint);

    const LINES: u32 = 60;
    let script = format!(
        "for i in $(seq 1 {LINES}); do echo line $i; sleep 0.05; done\nset_octopusvariable Done yes"
    );
    // The CLI that started the run, in the foreground: it announces the task on stderr.
    let mut cli = Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args([
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={script}"),
            "--target",
            "t1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli_out = collect(cli.stdout.take().unwrap());
    let cli_err = collect(cli.stderr.take().unwrap());
    let started = Instant::now();
    let id = loop {
        let err = cli_err.lock().unwrap().clone();
        if let Some(id) = err
            .lines()
            .find_map(|l| l.strip_prefix("(task ")?.split(':').next())
        {
            break id.to_string();
        }
        assert!(
            started.elapsed() < common::LIVENESS,
            "no task announced: {err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    // A follower started before the crash.
    let mut follower = Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args(["tasks", "show", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = collect(follower.stdout.take().unwrap());
    // Some lines are stored; then the daemon dies in the middle of the step.
    wait_task(home, &id, |t| {
        t["log"].as_array().is_some_and(|l| l.len() >= 5)
    });
    daemon.kill();
    let before = task_json(home, &id);
    assert_eq!(before["state"], "running");
    let stored_before = before["log"].as_array().unwrap().len();
    assert!(
        stored_before < LINES as usize,
        "the step was still running when the daemon died"
    );

    // A new daemon on the same home resumes following the tentacle's journal.
    let _daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let task = wait_task(home, &id, |t| t["state"] != "running");
    assert_eq!(task["state"], "succeeded", "{task}");
    let sequences: Vec<u64> = task["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["target"] == "t1")
        .map(|l| l["sequence"].as_u64().unwrap())
        .collect();
    let mut sorted = sequences.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, sequences, "every line once, in order");
    let shown = octo_ok(home, &["tasks", "show", &id]);
    assert_eq!(numbered(&shown), (1..=LINES).collect::<Vec<_>>(), "{shown}");
    assert!(
        shown.contains("Done = yes"),
        "the outcome came through: {shown}"
    );

    // The follower went on across the restart and saw each line exactly once.
    let status = follower.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let seen = seen.lock().unwrap().clone();
    assert!(status.success(), "{seen}");
    assert_eq!(numbered(&seen), (1..=LINES).collect::<Vec<_>>(), "{seen}");
    // So did the CLI that started the run: it went on from the store, ended with the task's
    // result and printed each line once, and the outcome.
    let status = cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = cli_out.lock().unwrap().clone();
    let err = cli_err.lock().unwrap().clone();
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(numbered(&out), (1..=LINES).collect::<Vec<_>>(), "{out}");
    assert!(out.contains("Done = yes"), "{out}");
    assert!(err.contains("following task"), "{err}");
    // Nothing is left running on the tentacle.
    assert_eq!(
        std::fs::read_dir(tentacle.home.join("work"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_kept_in_postgresql_when_configured() {
    use octo_test_support::postgres::{PASSWORD, PgCluster};
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let url = cluster.new_database();
    let configured = octo_ok(home, &["configure", "--database", &url]);
    assert!(!configured.contains(PASSWORD), "{configured}");
    assert!(
        configured.contains("postgres://octo:********@127.0.0.1"),
        "{configured}"
    );
    let shown = octo_ok(home, &["show-configuration", "--json"]);
    assert!(!shown.contains(PASSWORD), "{shown}");
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (tentacle, _h) = Tentacle::listening(daemon.thumbprint).await;
    add_listening(home, "pg1", &tentacle, tentacle.thumbprint);
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={SCRIPT}"),
            "--target",
            "pg1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!home.join("octo.db").exists(), "nothing in SQLite");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("(task ")?.split(':').next())
        .expect("the task id is announced")
        .to_string();
    let task = task_json(home, &id);
    assert_eq!(task["state"], "succeeded");
    assert_eq!(
        task["parts"][0]["outcome"]["outputs"][0]["value"],
        "hello-world"
    );
    assert!(
        task["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "hello")
    );

    // A database that cannot be reached: the daemon does not start, and says why in one line.
    let other = tempfile::tempdir().unwrap();
    let port = octo_test_support::free_port();
    octo_ok(
        other.path(),
        &[
            "configure",
            "--database",
            &format!("postgres://octo:{PASSWORD}@127.0.0.1:{port}/x"),
        ],
    );
    let out = octo(
        other.path(),
        &[
            "run",
            "--listen-address",
            "127.0.0.1",
            "--comms-listen-port",
            "0",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot connect to the database postgres://octo:********@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Issue 11: the attempts a tentacle's confined script made (reported with the step's result) land
/// in the server's own audit file, under the step scripts' row and marked with the target, so
/// `octo outbound` lists them beside the server's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tentacles_script_attempts_reach_the_servers_audit() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    octo_ok(home, &["configure", "--scriptNetwork=confined"]);
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (web1, _h1) = Tentacle::listening(daemon.thumbprint).await;
    add_listening(home, "web1", &web1, web1.thumbprint);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!(
                "ScriptBody=if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo tcp=open; else echo tcp=refused; fi"
            ),
            "--target",
            "web1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("tcp=refused"), "{stdout}");
    let destination = format!("tcp://127.0.0.1:{port}");
    assert_audited(
        home,
        &[
            &format!("\"{destination}\""),
            "\"kind\":\"step-scripts\"",
            "\"plugin\":\"run-script\"",
            "\"allowed\":false",
            "\"target\":\"web1\"",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&octo_ok(home, &["outbound", "--json"])).unwrap();
    let scripts = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "step-scripts")
        .unwrap()["lastAttempts"]
        .clone();
    assert!(
        scripts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["destination"] == destination.as_str() && a["target"] == "web1"),
        "{scripts}"
    );
    let shown = octo_ok(home, &["outbound"]);
    assert!(
        shown.contains(&format!("run-script {destination} (on target web1): ")),
        "{shown}"
    );
}

/// Issue 11: while the server is air-gapped, a tentacle forwards a granted name only to addresses
/// inside the server's internal networks, which the start request carries. `localhost` is an
/// internal name here but 127.0.0.1 is in no internal block: the tentacle refuses the connection
/// (nothing reaches the listener), the step's log names the address, and the refusal is in the
/// server's audit; once `127.0.0.0/8` is internal too, the same run reaches the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tentacle_forwards_a_granted_name_only_inside_the_internal_networks_while_air_gapped() {
    use std::sync::atomic::Ordering;
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    octo_ok(
        home,
        &[
            "configure",
            "--airGapped=true",
            "--internalNetworks=localhost",
        ],
    );
    let (port, hits) = octo_test_support::pong_listener("127.0.0.1:0").unwrap();
    let destination = format!("tcp://localhost:{port}");
    octo_ok(home, &["plugins", "grant", "run-script", &destination]);
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (web1, _h1) = Tentacle::listening(daemon.thumbprint).await;
    add_listening(home, "web1", &web1, web1.thumbprint);
    let body = format!(
        "ScriptBody=if exec 3<>/dev/tcp/localhost/{port}; then read -t 10 line <&3; \
         echo \"named=$line\"; else echo named=refused; fi"
    );
    let run = || {
        octo(
            home,
            &[
                "run-step",
                "run-script",
                "--param",
                &body,
                "--target",
                "web1",
            ],
        )
    };

    let out = run();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("named=pong"), "{stdout}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "{stdout}");
    let why = "localhost resolved to 127.0.0.1, which is not inside the internal networks";
    assert!(
        stdout.contains(why) || stderr.contains(why),
        "{stdout}\n{stderr}"
    );
    assert_audited(
        home,
        &[
            &format!("\"{destination}\""),
            "\"kind\":\"step-scripts\"",
            "\"allowed\":false",
            why,
            "\"target\":\"web1\"",
        ],
    );

    octo_ok(
        home,
        &["configure", "--internalNetworks=localhost,127.0.0.0/8"],
    );
    let out = run();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("named=pong"), "{stdout}\n{stderr}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "{stdout}");
}

/// Asserts that one line of the server's outbound audit (`logs/outbound.jsonl`) holds every one of
/// `parts`.
fn assert_audited(home: &std::path::Path, parts: &[&str]) {
    let audit = std::fs::read_to_string(home.join("logs/outbound.jsonl")).unwrap_or_default();
    assert!(
        audit
            .lines()
            .any(|l| parts.iter().all(|part| l.contains(part))),
        "no line with {parts:?} in:\n{audit}"
    );
}
