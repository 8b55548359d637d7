//! Calls to a polling tentacle connected to another node, relayed through PostgreSQL (issue 12,
//! item 6), with real processes: two `octo run` nodes sharing one database and one server
//! identity, a polling tentacle connected to node B, and steps run through node A.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Tentacle;
use common::octo::{Daemon, collect, octo, octo_bin, octo_ok, start_polling, text, wait_healthy};
use octo_test_support::postgres::PgCluster;

/// How long a node keeps trying to reach a tentacle before a part fails.
const RECONNECT_TIMEOUT: &str = "20s";

/// `psql URL -At -c SQL`: the rows as text.
fn sql(url: &str, query: &str) -> String {
    let bin = octo_test_support::postgres::bin_dir().expect("PostgreSQL is installed");
    let out = Command::new(bin.join("psql"))
        .args([url, "-At", "-v", "ON_ERROR_STOP=1", "-c", query])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {}", text(&out).1);
    String::from_utf8(out.stdout).unwrap()
}

/// Two homes on one database, so with one server identity and one set of targets.
struct Cluster {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    url: String,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
}

impl Cluster {
    fn new(pg: &PgCluster) -> Self {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let url = pg.new_database();
        for home in [a.path(), b.path()] {
            octo_ok(home, &["configure", "--database", &url]);
        }
        Self {
            url,
            a: a.path().to_path_buf(),
            b: b.path().to_path_buf(),
            _dirs: (a, b),
        }
    }
}

/// A polling tentacle connected to the node listening at `node`, added as `p1` to both homes.
async fn polling_tentacle(cluster: &Cluster, node: &Daemon) -> (Tentacle, tempfile::TempDir) {
    let (tentacle, home) = start_polling(node).await;
    // Targets are shared through the store: added once, both nodes trust it.
    octo_ok(
        &cluster.a,
        &[
            "targets",
            "add-polling",
            "p1",
            "--thumbprint",
            &tentacle.thumbprint.to_string(),
        ],
    );
    (tentacle, home)
}

fn wait_for(what: &str, text: &Arc<Mutex<String>>, needle: &str) {
    let started = Instant::now();
    while !text.lock().unwrap().contains(needle) {
        assert!(
            started.elapsed() < common::LIVENESS,
            "{what}: never saw {needle:?} in:\n{}",
            text.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SECRET: &str = "hunter2-relay-secret";
const SENSITIVE_OUTPUT: &str = "s3cr3t-relay-token";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_for_a_polling_tentacle_on_another_node_is_relayed_through_postgresql() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let cluster = Cluster::new(pg);
    let a = Daemon::start_with(&cluster.a, RECONNECT_TIMEOUT, &["--node", "a"]);
    let b = Daemon::start_with(&cluster.b, RECONNECT_TIMEOUT, &["--node", "b"]);
    assert_eq!(a.thumbprint, b.thumbprint, "one server identity");
    // Every version of every relayed row, kept aside to look for secrets afterwards.
    sql(
        &cluster.url,
        "CREATE TABLE relay_audit AS SELECT * FROM pending_requests WITH NO DATA;
         CREATE FUNCTION relay_audit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO relay_audit SELECT NEW.*; RETURN NEW; END $$;
         CREATE TRIGGER relay_audit AFTER INSERT OR UPDATE ON pending_requests
           FOR EACH ROW EXECUTE FUNCTION relay_audit();",
    );
    let (_tentacle, _th) = polling_tentacle(&cluster, &b).await;
    wait_healthy(&cluster.b, "p1");
    // Node A has no connection to p1: its health check goes through B.
    let health = wait_healthy(&cluster.a, "p1");
    assert!(health.contains("healthy"), "{health}");

    // A step through node A: output, output variables, the sensitive ones masked.
    let script = format!(
        "echo hello from p1\necho \"pw=#{{Password}}\"\nset_octopusvariable Greeting hello-world\nset_octopusvariable Token {SENSITIVE_OUTPUT} -sensitive"
    );
    let out = octo(
        &cluster.a,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!("ScriptBody={script}"),
            "--sensitive-variable",
            &format!("Password={SECRET}"),
            "--target",
            "p1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[p1] hello from p1"), "{stdout}");
    assert!(stdout.contains("[p1] pw=********"), "{stdout}");
    assert!(
        stdout.contains(
            "[p1]\n  Output variables:\n    Greeting = hello-world\n    Token = ********"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));

    // The relayed requests and answers were in the table, sealed: neither the sensitive variable
    // nor the sensitive output can be read there, as text or as bytes.
    let counts = sql(
        &cluster.url,
        "SELECT count(*) FILTER (WHERE request IS NOT NULL), count(*) FILTER (WHERE response IS NOT NULL) FROM relay_audit",
    );
    let (requests, responses) = counts.trim().split_once('|').unwrap();
    assert!(requests.parse::<u32>().unwrap() >= 2, "{counts}");
    assert!(responses.parse::<u32>().unwrap() >= 2, "{counts}");
    let dump = sql(
        &cluster.url,
        "SELECT target, encode(request, 'hex'), encode(response, 'hex'), encode(request, 'escape'), encode(response, 'escape') FROM relay_audit",
    );
    for secret in [SECRET, SENSITIVE_OUTPUT, "ScriptBody", "hello from p1"] {
        assert!(!dump.contains(secret), "{secret} in the table");
        assert!(!dump.contains(&hex(secret)), "{secret} in the table (hex)");
    }
    // Nothing is left behind once the calls are answered.
    let started = Instant::now();
    while sql(&cluster.url, "SELECT count(*) FROM pending_requests").trim() != "0" {
        assert!(started.elapsed() < common::LIVENESS, "rows left behind");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_while_relaying_or_is_gone_fails_the_call_clearly() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let cluster = Cluster::new(pg);
    let a = Daemon::start_with(&cluster.a, "8s", &["--node", "a"]);
    let mut b = Daemon::start_with(&cluster.b, "8s", &["--node", "b"]);
    let (_tentacle, _th) = polling_tentacle(&cluster, &b).await;
    wait_healthy(&cluster.a, "p1");

    // Node B killed while it relays A's status calls: A's part ends as "result unknown" once its
    // reconnect budget is spent, saying which node stopped answering; the step ran once.
    let mut cli = Command::new(octo_bin())
        .arg("--home")
        .arg(&cluster.a)
        .args([
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo begin\nsleep 4\necho finished",
            "--target",
            "p1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli_out = collect(cli.stdout.take().unwrap());
    let cli_err = collect(cli.stderr.take().unwrap());
    wait_for("the run through A", &cli_out, "[p1] begin");
    b.kill();
    let status = cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let all = format!("{}{}", cli_out.lock().unwrap(), cli_err.lock().unwrap());
    assert!(!status.success(), "{all}");
    // Whether B died while it performed one of A's calls, or between two of them (the next call
    // then waits for a node to take it), the failure says which.
    assert!(
        all.contains("node b, which holds the polling tentacle p1, stopped answering")
            || all.contains("waiting for a node holding the polling tentacle p1"),
        "{all}"
    );
    assert!(all.contains("its result is unknown"), "{all}");
    assert_eq!(all.matches("[p1] begin").count(), 1, "{all}");

    // No node holds p1 now: a call nobody takes fails like an unreachable tentacle.
    let out = octo(
        &cluster.a,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo never",
            "--target",
            "p1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("waiting for a node holding the polling tentacle p1"),
        "{all}"
    );
    assert!(
        all.contains("could not reach the tentacle for 8s; the step was not started"),
        "{all}"
    );
    assert!(!all.contains("[p1] never"), "{all}");
    // Withdrawn calls do not stay in the table.
    assert_eq!(
        sql(
            &cluster.url,
            "SELECT count(*) FROM pending_requests WHERE claimed_by IS NULL AND deadline < now() - interval '2 seconds'"
        )
        .trim(),
        "0"
    );
    drop(a);
}

/// Relay overhead: one trivial step, direct (through B, which holds the tentacle) and relayed
/// (through A). Prints the figures; asserts nothing about time.
/// `cargo test --workspace --test relay -- --ignored --nocapture relay_overhead`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn relay_overhead() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let cluster = Cluster::new(pg);
    let _a = Daemon::start_with(&cluster.a, RECONNECT_TIMEOUT, &["--node", "a"]);
    let b = Daemon::start_with(&cluster.b, RECONNECT_TIMEOUT, &["--node", "b"]);
    let (_tentacle, _th) = polling_tentacle(&cluster, &b).await;
    wait_healthy(&cluster.b, "p1");
    wait_healthy(&cluster.a, "p1");
    const RUNS: usize = 10;
    for (label, home) in [
        ("direct (node B)", &cluster.b),
        ("relayed (node A)", &cluster.a),
    ] {
        // One warm-up run (the plugin is sent once).
        octo_ok(
            home,
            &[
                "run-step",
                "run-script",
                "--param",
                "ScriptBody=echo hi",
                "--target",
                "p1",
            ],
        );
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            octo_ok(
                home,
                &[
                    "run-step",
                    "run-script",
                    "--param",
                    "ScriptBody=echo hi",
                    "--target",
                    "p1",
                ],
            );
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|x, y| x.partial_cmp(y).unwrap());
        println!(
            "{label}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {RUNS} runs",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
    }
}
