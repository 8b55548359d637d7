//! One suite, run against both backends: SQLite in a temporary directory and PostgreSQL in a private
//! cluster (tests/support), one database per test.

use octo_store::*;
use octo_test_support::postgres::{PASSWORD, PgCluster};
use std::sync::Arc;

fn line(target: &str, sequence: u64, message: &str) -> LogLine {
    LogLine {
        target: target.into(),
        sequence,
        level: "info".into(),
        message: message.into(),
    }
}

fn new_task(targets: &[&str]) -> NewTask {
    NewTask {
        kind: TaskKind::RunStep,
        name: "hello-step 0.1.0".into(),
        parts: targets
            .iter()
            .enumerate()
            .map(|(i, t)| NewPart {
                target: t.to_string(),
                ticket: format!("run-1-{i}"),
            })
            .collect(),
    }
}

/// Two stores (two nodes) on one SQLite file in `dir`.
async fn sqlite_pair(dir: &tempfile::TempDir) -> (Arc<dyn Store>, Arc<dyn Store>) {
    let location = Location::Sqlite(dir.path().join("octo.db"));
    (
        open(&location).await.unwrap(),
        open(&location).await.unwrap(),
    )
}

/// Two stores (two nodes) on a new database of the private cluster, when there is one.
async fn postgres_pair() -> Option<(Arc<dyn Store>, Arc<dyn Store>)> {
    let cluster = PgCluster::shared()?;
    let location = Location::Postgres(DatabaseUrl::parse(&cluster.new_database()).unwrap());
    Some((
        open(&location).await.unwrap(),
        open(&location).await.unwrap(),
    ))
}

/// What every backend must do.
async fn suite(store: Arc<dyn Store>) {
    // A task with its parts, running.
    let id = store
        .create_task(&new_task(&["web1", "web2"]))
        .await
        .unwrap();
    let task = store.task(id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.kind, TaskKind::RunStep);
    assert_eq!(
        task.parts
            .iter()
            .map(|p| p.target.as_str())
            .collect::<Vec<_>>(),
        ["web1", "web2"]
    );
    assert_eq!(task.parts[1].ticket, "run-1-1");
    assert!(task.parts.iter().all(|p| p.state == TaskState::Running));
    assert!(store.task(id + 1000).await.unwrap().is_none());

    // Log lines: each kept exactly once, whatever is sent again.
    assert_eq!(store.last_sequence(id, "web1").await.unwrap(), 0);
    let first = [line("web1", 1, "one"), line("web1", 2, "two ünïcode")];
    assert_eq!(store.append_log(id, "web1", &first).await.unwrap(), 2);
    assert_eq!(
        store
            .append_log(id, "web2", &[line("web2", 1, "w2")])
            .await
            .unwrap(),
        1
    );
    let again = [line("web1", 2, "two ünïcode"), line("web1", 3, "three")];
    assert_eq!(store.append_log(id, "web1", &again).await.unwrap(), 1);
    assert_eq!(store.last_sequence(id, "web1").await.unwrap(), 3);
    assert_eq!(store.last_sequence(id, "web2").await.unwrap(), 1);
    let all = store.log_after(id, 0, 100).await.unwrap();
    let texts: Vec<_> = all
        .iter()
        .map(|(_, l)| (l.target.as_str(), l.sequence, l.message.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            ("web1", 1, "one"),
            ("web1", 2, "two ünïcode"),
            ("web2", 1, "w2"),
            ("web1", 3, "three")
        ]
    );
    // Following: after a position, in pages.
    let page = store.log_after(id, 0, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let rest = store.log_after(id, page[1].0, 100).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].1.message, "w2");

    // Outcomes.
    let outcome = PartOutcome {
        failure: None,
        outputs: vec![
            OutputVariable::stored("Greeting", "hello", false),
            OutputVariable::stored("Token", "hunter2", true),
        ],
        artifacts: vec![Artifact {
            name: "report".into(),
            path: "out/report.txt".into(),
        }],
        outbound: vec![OutboundAttempt {
            destination: "https://example.com:443".into(),
            allowed: false,
            reason: "not granted".into(),
        }],
    };
    store
        .finish_part(id, "web1", TaskState::Succeeded, &outcome)
        .await
        .unwrap();
    let failed = PartOutcome {
        failure: Some("exit code 3".into()),
        ..Default::default()
    };
    store
        .finish_part(id, "web2", TaskState::Failed, &failed)
        .await
        .unwrap();
    let task = store.task(id).await.unwrap().unwrap();
    assert_eq!(task.parts[0].outcome, outcome);
    assert_eq!(
        task.parts[0].outcome.outputs[1].value, "********",
        "sensitive values are never stored"
    );
    assert_eq!(task.parts[1].state, TaskState::Failed);
    assert_eq!(
        task.parts[1].outcome.failure.as_deref(),
        Some("exit code 3")
    );

    // Unfinished tasks are what a restart resumes.
    let other = store.create_task(&new_task(&["db1"])).await.unwrap();
    let unfinished: Vec<_> = store
        .unfinished_tasks()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(unfinished, [id, other]);

    // Cancel is asked of running tasks only.
    assert!(store.request_cancel(other).await.unwrap());
    assert!(store.task(other).await.unwrap().unwrap().cancel_requested);
    store
        .finish_task(id, TaskState::Failed, Some("1 of 2 targets failed"))
        .await
        .unwrap();
    assert!(!store.request_cancel(id).await.unwrap());
    let task = store.task(id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.message.as_deref(), Some("1 of 2 targets failed"));
    assert!(task.ended.is_some());
    assert_eq!(store.unfinished_tasks().await.unwrap().len(), 1);

    // Jobs are tasks without targets.
    let job = store
        .create_task(&NewTask {
            kind: TaskKind::Job,
            name: "check-updates".into(),
            parts: vec![],
        })
        .await
        .unwrap();
    store
        .finish_task(job, TaskState::Succeeded, Some("up to date"))
        .await
        .unwrap();

    // Listing: newest first, by state, limited.
    let list = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.id).collect::<Vec<_>>(),
        [job, other, id]
    );
    assert_eq!(list[2].targets, 2);
    assert_eq!(list[0].kind, TaskKind::Job);
    let running = store
        .list_tasks(&TaskFilter {
            states: vec![TaskState::Running],
            limit: 0,
        })
        .await
        .unwrap();
    assert_eq!(running.iter().map(|t| t.id).collect::<Vec<_>>(), [other]);
    let ended = store
        .list_tasks(&TaskFilter {
            states: vec![TaskState::Failed, TaskState::Succeeded],
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(ended.iter().map(|t| t.id).collect::<Vec<_>>(), [job]);

    // Many lines in one call (a chatty step's batch).
    let many: Vec<_> = (1..=500)
        .map(|i| line("db1", i, &format!("line {i}")))
        .collect();
    assert_eq!(store.append_log(other, "db1", &many).await.unwrap(), 500);
    assert_eq!(store.last_sequence(other, "db1").await.unwrap(), 500);
    let back = store.log_after(other, 0, 1000).await.unwrap();
    assert!(
        back.iter().map(|(_, l)| l.sequence).eq(1..=500),
        "stored in order"
    );
}

/// Documents: compare-and-swap on the revision; two stores (two nodes) incrementing one counter at
/// once lose no increment.
async fn documents(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    assert_eq!(a.document("targets").await.unwrap(), None);
    assert_eq!(a.document_revision("targets").await.unwrap(), 0);
    assert_eq!(a.put_document("targets", "{}", 0).await.unwrap(), Some(1));
    // Created once: a second creation is refused.
    assert_eq!(
        b.put_document("targets", "{\"x\":1}", 0).await.unwrap(),
        None
    );
    let doc = b.document("targets").await.unwrap().unwrap();
    assert_eq!((doc.body.as_str(), doc.revision), ("{}", 1));
    assert_eq!(b.put_document("targets", "[1]", 1).await.unwrap(), Some(2));
    // A stale revision is refused.
    assert_eq!(a.put_document("targets", "[2]", 1).await.unwrap(), None);
    assert_eq!(a.document("targets").await.unwrap().unwrap().body, "[1]");
    assert_eq!(a.document_revision("targets").await.unwrap(), 2);

    async fn increment(store: Arc<dyn Store>, times: usize) {
        for _ in 0..times {
            loop {
                let (value, revision) = match store.document("counter").await.unwrap() {
                    Some(d) => (d.body.parse::<u64>().unwrap(), d.revision),
                    None => (0, 0),
                };
                let next = (value + 1).to_string();
                if store
                    .put_document("counter", &next, revision)
                    .await
                    .unwrap()
                    .is_some()
                {
                    break;
                }
            }
        }
    }
    let writers = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|s| tokio::spawn(increment(s, 25)));
    for w in writers {
        w.await.unwrap();
    }
    let counter = a.document("counter").await.unwrap().unwrap();
    assert_eq!(counter.body, "100");
    assert_eq!(counter.revision, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_swapped_by_revision_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(&dir).await;
    documents(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_swapped_by_revision_in_postgres() {
    let Some((a, b)) = postgres_pair().await else {
        return;
    };
    documents(a, b).await;
}

/// The shared outbound audit: attempts of two stores (two nodes) in one table, each with its node,
/// oldest first, the oldest dropped beyond the bound.
async fn outbound(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    assert!(a.outbound_attempts(10).await.unwrap().is_empty());
    a.append_outbound("a", &["{\"n\":1}".into(), "{\"n\":2}".into()], 100)
        .await
        .unwrap();
    b.append_outbound("b", &["{\"n\":3}".into()], 100)
        .await
        .unwrap();
    let all = b.outbound_attempts(10).await.unwrap();
    let seen: Vec<(&str, &str)> = all.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
    assert_eq!(
        seen,
        [("a", "{\"n\":1}"), ("a", "{\"n\":2}"), ("b", "{\"n\":3}")]
    );
    // The newest `limit`, oldest first.
    let newest = a.outbound_attempts(2).await.unwrap();
    assert_eq!(newest[0].1, "{\"n\":2}");
    assert_eq!(newest[1].1, "{\"n\":3}");
    // Bounded: beyond `keep` the oldest go.
    let many: Vec<String> = (4..=20).map(|n| format!("{{\"n\":{n}}}")).collect();
    a.append_outbound("a", &many, 5).await.unwrap();
    let kept = b.outbound_attempts(100).await.unwrap();
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert_eq!(kept[0].1, "{\"n\":16}");
    assert_eq!(kept[4].1, "{\"n\":20}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_attempts_are_shared_and_bounded_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(&dir).await;
    outbound(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_attempts_are_shared_and_bounded_in_postgres() {
    let Some((a, b)) = postgres_pair().await else {
        return;
    };
    outbound(a, b).await;
}

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("octo.db");
    suite(open(&Location::Sqlite(path.clone())).await.unwrap()).await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Opened again (migrations already applied), the data is there.
    let store = open(&Location::Sqlite(path)).await.unwrap();
    assert_eq!(
        store
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let url = DatabaseUrl::parse(&cluster.new_database()).unwrap();
    let store = open(&Location::Postgres(url.clone())).await.unwrap();
    assert!(!store.describe().contains(PASSWORD));
    suite(store).await;
    let store = open(&Location::Postgres(url)).await.unwrap();
    assert_eq!(
        store
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("octo.db");
    drop(open(&Location::Sqlite(path.clone())).await.unwrap());
    {
        let c = rusqlite_set_version(&path);
        drop(c);
    }
    let e = open(&Location::Sqlite(path)).await.err().unwrap();
    assert!(matches!(e, Error::SchemaTooNew { found: 99, .. }), "{e}");
    assert!(
        e.to_string().contains("newer than this octo supports"),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'));

    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let raw = cluster.new_database();
    let url = DatabaseUrl::parse(&raw).unwrap();
    drop(open(&Location::Postgres(url.clone())).await.unwrap());
    // Bump the version through the store's own table.
    let client = tokio_postgres::connect(&raw, tokio_postgres::NoTls).await;
    let (client, connection) = client.unwrap();
    tokio::spawn(connection);
    client
        .execute("UPDATE octo_schema SET version = 99", &[])
        .await
        .unwrap();
    let e = open(&Location::Postgres(url)).await.err().unwrap();
    assert!(matches!(e, Error::SchemaTooNew { found: 99, .. }), "{e}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
}

fn rusqlite_set_version(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute("UPDATE octo_schema SET version = 99", [])
        .unwrap();
    c
}

#[tokio::test]
async fn a_corrupt_sqlite_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("octo.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = open(&Location::Sqlite(path)).await.err().unwrap();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("corrupt or not a SQLite database") && text.contains("move it aside"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let port = octo_test_support::free_port();
    let url =
        DatabaseUrl::parse(&format!("postgres://octo:{PASSWORD}@127.0.0.1:{port}/octo")).unwrap();
    let e = open(&Location::Postgres(url)).await.err().unwrap();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("cannot connect to the database postgres://octo:********@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");

    // A wrong password: refused, and still not shown.
    let Some(cluster) = PgCluster::shared() else {
        return;
    };
    let url = DatabaseUrl::parse(&format!(
        "postgres://octo:wrong-pass@127.0.0.1:{}/postgres",
        cluster.port()
    ))
    .unwrap();
    let text = open(&Location::Postgres(url))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("wrong-pass"), "{text}");
}

#[tokio::test]
async fn postgres_reconnects_after_a_restart() {
    // A cluster of its own: the shared one stays up for the other tests.
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let url = DatabaseUrl::parse(&cluster.new_database()).unwrap();
    let store = open(&Location::Postgres(url)).await.unwrap();
    let id = store.create_task(&new_task(&["web1"])).await.unwrap();
    cluster.stop();
    let e = store.append_log(id, "web1", &[line("web1", 1, "x")]).await;
    assert!(e.is_err(), "the database is down");
    cluster.restart();
    // The next call opens a new connection.
    let mut stored = None;
    for _ in 0..50 {
        match store.append_log(id, "web1", &[line("web1", 1, "x")]).await {
            Ok(n) => {
                stored = Some(n);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(stored, Some(1));
}

/// Several nodes on one store: queued tasks claimed once each, within a limit, pinned ones only by
/// their node; heartbeats; names; dead nodes' tasks marked once; per-target log cursors.
async fn nodes_suite(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use std::time::Duration;
    let start = |name: &str, home: &str, timeout: u64| NodeStart {
        name: name.into(),
        instance: format!("{name}-{home}-{timeout}"),
        home_id: home.into(),
        timeout: Duration::from_millis(timeout),
    };
    let control = a
        .register_node(&start("a", "home-a", 60_000))
        .await
        .unwrap();
    assert_eq!(
        control,
        NodeControl {
            cap: DEFAULT_TASK_CAP,
            draining: false
        }
    );
    b.register_node(&start("b", "home-b", 60_000))
        .await
        .unwrap();
    // Two nodes, one name: refused while the holder's heartbeat is fresh.
    let e = b
        .register_node(&start("a", "home-c", 60_000))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::NodeTaken { .. }), "{e}");
    assert!(e.to_string().contains("another --node NAME"), "{e}");
    // The same home takes its name back at once (a restart).
    a.register_node(&start("a", "home-a", 60_000))
        .await
        .unwrap();
    assert!(a.heartbeat("a", "a-home-a-60000").await.unwrap().is_some());
    assert!(a.heartbeat("a", "stolen").await.unwrap().is_none());

    // Queued tasks: each claimed by one node, within the limit asked.
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            a.enqueue_task(
                &new_task(&["web1"]),
                &Queue {
                    spec: Some("{}".into()),
                    component: None,
                    pinned_node: None,
                    claimed_by: None,
                },
            )
            .await
            .unwrap(),
        );
    }
    let pinned = a
        .enqueue_task(
            &new_task(&["web1"]),
            &Queue {
                spec: None,
                component: None,
                pinned_node: Some("a".into()),
                claimed_by: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        a.task(pinned).await.unwrap().unwrap().state,
        TaskState::Queued
    );
    let (x, y) = tokio::join!(a.claim_tasks("a", 2), b.claim_tasks("b", 10));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x.len() <= 2);
    let mut all: Vec<i64> = x.iter().chain(y.iter()).map(|c| c.id).collect();
    all.sort();
    assert!(
        !y.iter().any(|c| c.id == pinned),
        "b never claims a's pinned task"
    );
    let expected_without_pinned: Vec<i64> = ids.clone();
    let claimed_unpinned: Vec<i64> = all.iter().copied().filter(|i| *i != pinned).collect();
    let mut rest = a.claim_tasks("a", 10).await.unwrap();
    rest.extend(b.claim_tasks("b", 10).await.unwrap());
    let mut every: Vec<i64> = claimed_unpinned
        .into_iter()
        .chain(rest.iter().map(|c| c.id).filter(|i| *i != pinned))
        .collect();
    every.sort();
    assert_eq!(
        every, expected_without_pinned,
        "each task claimed exactly once"
    );
    let task = a.task(ids[0]).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert!(task.node.is_some());
    assert_eq!(task.parts[0].state, TaskState::Running);
    assert!(a.claim_tasks("a", 10).await.unwrap().is_empty());

    // Claimed as it is recorded (the receiving node has room): running there, nobody else gets it.
    let own = b
        .enqueue_task(
            &new_task(&["web1"]),
            &Queue {
                spec: Some("{}".into()),
                component: None,
                pinned_node: None,
                claimed_by: Some("b".into()),
            },
        )
        .await
        .unwrap();
    let task = a.task(own).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.node.as_deref(), Some("b"));
    assert_eq!(task.parts[0].state, TaskState::Running);
    assert!(a.claim_tasks("a", 10).await.unwrap().is_empty());

    // Cancelling a queued task ends it; a running one is asked of its node.
    let queued = a
        .enqueue_task(&new_task(&["web1"]), &Queue::default())
        .await
        .unwrap();
    assert!(a.request_cancel(queued).await.unwrap());
    assert_eq!(
        a.task(queued).await.unwrap().unwrap().state,
        TaskState::Cancelled
    );
    let mut on_b = None;
    for i in &every {
        if a.task(*i).await.unwrap().unwrap().node.as_deref() == Some("b") {
            on_b = Some(*i);
            break;
        }
    }
    if let Some(on_b) = on_b {
        a.request_cancel(on_b).await.unwrap();
        assert_eq!(b.cancel_requests("b").await.unwrap(), vec![on_b]);
    }

    // Cap and draining, as an administrator sets them, come back with the heartbeat.
    assert!(a.set_node_cap("b", 3).await.unwrap());
    assert!(a.set_node_draining("b", true).await.unwrap());
    assert!(!a.set_node_cap("nobody", 3).await.unwrap());
    assert_eq!(
        b.heartbeat("b", "b-home-b-60000").await.unwrap(),
        Some(NodeControl {
            cap: 3,
            draining: true
        })
    );
    let nodes = a.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1].state(), "draining");
    assert_eq!(
        nodes[0].running + nodes[1].running,
        7,
        "five claimed, the pinned one, and the one claimed as recorded"
    );

    // A node that stops heartbeating: its running tasks are marked "result unknown", once.
    b.register_node(&start("b", "home-b", 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let marked = a.mark_dead_nodes("a").await.unwrap();
    assert!(
        marked
            .iter()
            .all(|m| m.node == "b" && m.state == TaskState::Unknown)
    );
    for m in &marked {
        let task = a.task(m.task).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Unknown);
        assert!(
            task.parts[0]
                .outcome
                .failure
                .as_deref()
                .unwrap()
                .contains("stopped heartbeating"),
            "{task:?}"
        );
    }
    assert!(
        a.mark_dead_nodes("a").await.unwrap().is_empty(),
        "marked once"
    );
    assert!(a.nodes().await.unwrap()[1].state() == "offline");

    // Log cursors per target: a line committed late (lower sequence, higher id) is not skipped.
    let id = a.create_task(&new_task(&["t1", "t2"])).await.unwrap();
    a.append_log(id, "t1", &[line("t1", 1, "a1"), line("t1", 2, "a2")])
        .await
        .unwrap();
    let cursors = vec![("t1".to_string(), 0), ("t2".to_string(), 0)];
    let seen = a.log_since(id, &cursors, 100).await.unwrap();
    assert_eq!(seen.len(), 2);
    let cursors = vec![("t1".to_string(), 2), ("t2".to_string(), 0)];
    b.append_log(id, "t2", &[line("t2", 1, "b1")])
        .await
        .unwrap();
    a.append_log(id, "t1", &[line("t1", 3, "a3")])
        .await
        .unwrap();
    let seen = a.log_since(id, &cursors, 100).await.unwrap();
    let mut messages: Vec<&str> = seen.iter().map(|l| l.message.as_str()).collect();
    messages.sort();
    assert_eq!(messages, ["a3", "b1"]);

    // Components kept by digest.
    a.put_component("abc", b"bytes").await.unwrap();
    a.put_component("abc", b"bytes").await.unwrap();
    assert_eq!(b.component("abc").await.unwrap().unwrap(), b"bytes");
    assert!(b.component("nope").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_nodes_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(&dir).await;
    assert!(!a.shared());
    assert!(a.wake_ups().is_none());
    nodes_suite(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_nodes_suite() {
    let Some((a, b)) = postgres_pair().await else {
        return;
    };
    assert!(a.shared());
    // A task queued by one node wakes the others.
    let mut wake = b.wake_ups().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), wake.recv())
        .await
        .expect("woken once listening")
        .unwrap();
    let woken_by = a
        .enqueue_task(&new_task(&["w"]), &Queue::default())
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), wake.recv())
        .await
        .expect("a notification")
        .unwrap();
    // Out of the way of the suite's counts.
    a.request_cancel(woken_by).await.unwrap();
    nodes_suite(a, b).await;
}

/// Kept components go once nothing needs them: never while an unfinished task names one, while it
/// is in `keep`, or within `older_than` of being stored (or stored again); none at all while an
/// unfinished task from before tasks named their component remains.
async fn components(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use std::time::Duration;
    let queue = |component: &str| Queue {
        spec: Some("{}".into()),
        component: Some(component.into()),
        ..Queue::default()
    };
    let claimed = |component: &str| Queue {
        claimed_by: Some("a".into()),
        ..queue(component)
    };
    for c in ["queued", "running", "ended", "plugin", "again", "stray"] {
        a.put_component(c, c.as_bytes()).await.unwrap();
    }
    a.enqueue_task(&new_task(&["w"]), &queue("queued"))
        .await
        .unwrap();
    let running = a
        .enqueue_task(&new_task(&["w"]), &claimed("running"))
        .await
        .unwrap();
    let ended = a
        .enqueue_task(&new_task(&["w"]), &claimed("ended"))
        .await
        .unwrap();
    a.finish_task(ended, TaskState::Succeeded, None)
        .await
        .unwrap();
    let keep = vec!["plugin".to_string()];
    let grace = Duration::from_secs(1);
    assert_eq!(
        b.prune_components(&keep, grace).await.unwrap(),
        0,
        "all young"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.put_component("again", b"again").await.unwrap();
    assert_eq!(b.prune_components(&keep, grace).await.unwrap(), 2);
    for (c, kept) in [
        ("queued", true),
        ("running", true),
        ("plugin", true),
        ("again", true),
        ("ended", false),
        ("stray", false),
    ] {
        assert_eq!(b.component(c).await.unwrap().is_some(), kept, "{c}");
    }

    // Its task ended, the running one's component goes; the one stored again is still young.
    a.finish_task(running, TaskState::Failed, Some("no"))
        .await
        .unwrap();
    assert_eq!(b.prune_components(&keep, grace).await.unwrap(), 1);
    assert!(b.component("running").await.unwrap().is_none());
    assert!(b.component("again").await.unwrap().is_some());

    // A task recorded with a spec but no component (by an older node): nothing goes while it runs.
    let legacy = a
        .enqueue_task(
            &new_task(&["w"]),
            &Queue {
                component: None,
                ..claimed("")
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(b.prune_components(&[], grace).await.unwrap(), 0);
    a.finish_task(legacy, TaskState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(b.prune_components(&[], grace).await.unwrap(), 2);
    assert!(b.component("plugin").await.unwrap().is_none());
    assert!(b.component("again").await.unwrap().is_none());
    assert!(b.component("queued").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_drops_components_nothing_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(&dir).await;
    components(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drops_components_nothing_needs() {
    let Some((a, b)) = postgres_pair().await else {
        return;
    };
    components(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_kept_before_the_upgrade_go_once_their_tasks_end() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("octo.db");
    {
        // A store as version 5 left it: a kept component and the running task it was kept for.
        let c = rusqlite::Connection::open(&path).unwrap();
        for m in migrations::MIGRATIONS.iter().filter(|m| m.version <= 5) {
            c.execute_batch(m.sqlite).unwrap();
        }
        c.execute_batch(
            "CREATE TABLE octo_schema (version INTEGER NOT NULL);
             INSERT INTO octo_schema (version) VALUES (5);
             INSERT INTO task_components (sha256, bytes) VALUES ('old', x'00');
             INSERT INTO tasks (kind, name, state, created, spec) VALUES ('run-step', 'x', 'running', '2026-01-01T00:00:00Z', '{}');",
        )
        .unwrap();
    }
    let store = open(&Location::Sqlite(path)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store.prune_components(&[], Duration::ZERO).await.unwrap(),
        0,
        "its task is unfinished"
    );
    let task = store.unfinished_tasks().await.unwrap()[0].id;
    store
        .finish_task(task, TaskState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(
        store.prune_components(&[], Duration::ZERO).await.unwrap(),
        1
    );
    assert!(store.component("old").await.unwrap().is_none());
}
