//! The PostgreSQL backend (`octo configure --database postgres://…`): one connection, re-opened when
//! it breaks; migrations under an advisory lock, so nodes starting together migrate once. No TLS to
//! the database yet (a loopback or private network is assumed).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Row};

use crate::error::{Error, Result};
use crate::migrations::{LATEST, MIGRATIONS};
use crate::model::{self, *};
use crate::url::DatabaseUrl;

/// A store in a PostgreSQL database.
pub struct PostgresStore {
    url: DatabaseUrl,
    client: Mutex<Option<Client>>,
}

/// Any number the migrations' advisory lock uses (the same in every node).
const MIGRATION_LOCK: i64 = 0x6f63_746f;

pub(crate) async fn connect(url: &DatabaseUrl) -> Result<Client> {
    let config = url.config()?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::Unreachable {
            url: url.to_string(),
            detail: match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            },
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "the database connection ended");
        }
    });
    Ok(client)
}

impl PostgresStore {
    /// Connects and migrates.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self> {
        let mut client = connect(url).await?;
        migrate(&mut client, url).await?;
        Ok(PostgresStore {
            url: url.clone(),
            client: Mutex::new(Some(client)),
        })
    }

    /// The connection, opened again when it broke.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.url).await?);
        }
        Ok(guard)
    }
}

async fn migrate(client: &mut Client, url: &DatabaseUrl) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS octo_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM octo_schema", &[])
        .await?
        .get(0);
    if found > LATEST {
        return Err(Error::SchemaTooNew {
            location: url.to_string(),
            found,
            supported: LATEST,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(migration.postgres).await?;
        tx.execute("DELETE FROM octo_schema", &[]).await?;
        tx.execute(
            "INSERT INTO octo_schema (version) VALUES ($1)",
            &[&migration.version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn read_task(client: &Client, id: TaskId) -> Result<Option<Task>> {
    let Some(row) = client
        .query_opt(
            "SELECT kind, name, state, message, cancel_requested, created, ended, node FROM tasks WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let parts = client
        .query(
            "SELECT target, ticket, state, outcome FROM task_parts WHERE task_id = $1 ORDER BY position",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(TaskPart {
                target: r.get(0),
                ticket: r.get(1),
                state: model::state(r.get(2))?,
                outcome: serde_json::from_str(r.get(3))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Task {
        id,
        kind: model::kind(row.get(0))?,
        name: row.get(1),
        state: model::state(row.get(2))?,
        message: row.get(3),
        cancel_requested: row.get(4),
        created: row.get(5),
        ended: row.get(6),
        node: row.get(7),
        parts,
    }))
}

fn summary(r: &Row) -> Result<TaskSummary> {
    Ok(TaskSummary {
        id: r.get(0),
        kind: model::kind(r.get(1))?,
        name: r.get(2),
        state: model::state(r.get(3))?,
        created: r.get(4),
        ended: r.get(5),
        targets: r.get::<_, i64>(6) as usize,
    })
}

#[async_trait::async_trait]
impl crate::Store for PostgresStore {
    async fn create_task(&self, task: &NewTask) -> Result<TaskId> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO tasks (kind, name, state, created) VALUES ($1, $2, 'running', $3) RETURNING id",
                &[&task.kind.as_str(), &task.name, &model::now()],
            )
            .await?
            .get(0);
        let positions: Vec<i32> = (0..task.parts.len() as i32).collect();
        let targets: Vec<&str> = task.parts.iter().map(|p| p.target.as_str()).collect();
        let tickets: Vec<&str> = task.parts.iter().map(|p| p.ticket.as_str()).collect();
        tx.execute(
            "INSERT INTO task_parts (task_id, position, target, ticket, state)
             SELECT $1, p, t, k, 'running' FROM UNNEST($2::int[], $3::text[], $4::text[]) AS u (p, t, k)",
            &[&id, &positions, &targets, &tickets],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>> {
        let guard = self.client().await?;
        read_task(guard.as_ref().expect("connected"), id).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let limit: i64 = if filter.limit == 0 {
            i64::MAX
        } else {
            filter.limit as i64
        };
        let rows = client
            .query(
                "SELECT t.id, t.kind, t.name, t.state, t.created, t.ended,
                        (SELECT COUNT(*) FROM task_parts p WHERE p.task_id = t.id)
                 FROM tasks t
                 WHERE cardinality($1::text[]) = 0 OR t.state = ANY($1::text[])
                 ORDER BY t.id DESC LIMIT $2",
                &[&states, &limit],
            )
            .await?;
        rows.iter().map(summary).collect()
    }

    async fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let ids: Vec<i64> = client
            .query(
                "SELECT id FROM tasks WHERE state = 'running' ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut tasks = Vec::new();
        for id in ids {
            if let Some(task) = read_task(client, id).await? {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    async fn append_log(&self, id: TaskId, target: &str, lines: &[LogLine]) -> Result<usize> {
        if lines.is_empty() {
            return Ok(0);
        }
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let sequences: Vec<i64> = lines.iter().map(|l| l.sequence as i64).collect();
        let levels: Vec<&str> = lines.iter().map(|l| l.level.as_str()).collect();
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        // One statement: the lines go in together or not at all, in their order.
        let n = client
            .execute(
                "INSERT INTO task_log (task_id, target, sequence, level, message)
                 SELECT $1, $2, s, l, m FROM UNNEST($3::bigint[], $4::text[], $5::text[]) WITH ORDINALITY AS u (s, l, m, o)
                 ORDER BY o
                 ON CONFLICT DO NOTHING",
                &[&id, &target, &sequences, &levels, &messages],
            )
            .await?;
        Ok(n as usize)
    }

    async fn last_sequence(&self, id: TaskId, target: &str) -> Result<u64> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let last: i64 = client
            .query_one(
                "SELECT COALESCE(MAX(sequence), 0)::bigint FROM task_log WHERE task_id = $1 AND target = $2",
                &[&id, &target],
            )
            .await?
            .get(0);
        Ok(last as u64)
    }

    async fn log_after(&self, id: TaskId, after: i64, limit: usize) -> Result<Vec<(i64, LogLine)>> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let rows = client
            .query(
                "SELECT id, target, sequence, level, message FROM task_log
                 WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&id, &after, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    LogLine {
                        target: r.get(1),
                        sequence: r.get::<_, i64>(2) as u64,
                        level: r.get(3),
                        message: r.get(4),
                    },
                )
            })
            .collect())
    }

    async fn finish_part(
        &self,
        id: TaskId,
        target: &str,
        state: PartState,
        outcome: &PartOutcome,
    ) -> Result<()> {
        let outcome = serde_json::to_string(outcome)?;
        let guard = self.client().await?;
        guard
            .as_ref()
            .expect("connected")
            .execute(
                "UPDATE task_parts SET state = $1, outcome = $2 WHERE task_id = $3 AND target = $4",
                &[&state.as_str(), &outcome, &id, &target],
            )
            .await?;
        Ok(())
    }

    async fn finish_task(&self, id: TaskId, state: TaskState, message: Option<&str>) -> Result<()> {
        let guard = self.client().await?;
        guard
            .as_ref()
            .expect("connected")
            .execute(
                "UPDATE tasks SET state = $1, message = $2, ended = $3 WHERE id = $4",
                &[&state.as_str(), &message, &model::now(), &id],
            )
            .await?;
        Ok(())
    }

    async fn request_cancel(&self, id: TaskId) -> Result<bool> {
        let guard = self.client().await?;
        let n = guard
            .as_ref()
            .expect("connected")
            .execute(
                "WITH asked AS (
                     UPDATE tasks SET cancel_requested = TRUE,
                         state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                         ended = CASE WHEN state = 'queued' THEN $2 ELSE ended END
                     WHERE id = $1 AND state IN ('queued', 'running') RETURNING id, state
                 ), parts AS (
                     UPDATE task_parts SET state = 'cancelled'
                     WHERE task_id IN (SELECT id FROM asked WHERE state = 'cancelled')
                 )
                 SELECT pg_notify('octo_tasks', 'cancel') FROM asked",
                &[&id, &model::now()],
            )
            .await?;
        Ok(n > 0)
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.url)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn enqueue_task(&self, task: &NewTask, queue: &Queue) -> Result<TaskId> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let state = model::queued_or_running(queue);
        let id: i64 = tx
            .query_one(
                "INSERT INTO tasks (kind, name, state, created, spec, component, pinned_node, node)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &task.kind.as_str(),
                    &task.name,
                    &state.as_str(),
                    &model::now(),
                    &queue.spec,
                    &queue.component,
                    &queue.pinned_node,
                    &queue.claimed_by,
                ],
            )
            .await?
            .get(0);
        let positions: Vec<i32> = (0..task.parts.len() as i32).collect();
        let targets: Vec<&str> = task.parts.iter().map(|p| p.target.as_str()).collect();
        let tickets: Vec<&str> = task.parts.iter().map(|p| p.ticket.as_str()).collect();
        tx.execute(
            "INSERT INTO task_parts (task_id, position, target, ticket, state)
             SELECT $1, p, t, k, $5 FROM UNNEST($2::int[], $3::text[], $4::text[]) AS u (p, t, k)",
            &[&id, &positions, &targets, &tickets, &state.as_str()],
        )
        .await?;
        if queue.claimed_by.is_none() {
            // Delivered to the listening nodes when the transaction commits.
            tx.execute("SELECT pg_notify('octo_tasks', 'queued')", &[])
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn claim_tasks(&self, node: &str, limit: usize) -> Result<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "UPDATE tasks SET state = 'running', node = $1
                 WHERE id IN (
                     SELECT id FROM tasks
                     WHERE state = 'queued' AND (pinned_node IS NULL OR pinned_node = $1)
                     ORDER BY id
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 )
                 RETURNING id, spec",
                &[&node, &(limit as i64)],
            )
            .await?;
        let claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                spec: r.get(1),
            })
            .collect();
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        tx.execute(
            "UPDATE task_parts SET state = 'running' WHERE task_id = ANY($1) AND state = 'queued'",
            &[&ids],
        )
        .await?;
        tx.commit().await?;
        let mut claimed = claimed;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    async fn node_tasks(&self, node: &str) -> Result<Vec<Task>> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let ids: Vec<i64> = client
            .query(
                "SELECT id FROM tasks WHERE state = 'running' AND (node = $1 OR node IS NULL) ORDER BY id",
                &[&node],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut tasks = Vec::new();
        for id in ids {
            if let Some(task) = read_task(client, id).await? {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    async fn cancel_requests(&self, node: &str) -> Result<Vec<TaskId>> {
        let guard = self.client().await?;
        let rows = guard
            .as_ref()
            .expect("connected")
            .query(
                "SELECT id FROM tasks WHERE node = $1 AND state = 'running' AND cancel_requested",
                &[&node],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn put_component(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        // Marking a kept one as stored now spares sending its bytes again.
        let known = client
            .execute(
                &format!("UPDATE task_components SET stored_ms = {NOW_MS} WHERE sha256 = $1"),
                &[&sha256],
            )
            .await?
            > 0;
        if !known {
            client
                .execute(
                    &format!(
                        "INSERT INTO task_components (sha256, bytes, stored_ms) VALUES ($1, $2, {NOW_MS})
                         ON CONFLICT (sha256) DO UPDATE SET stored_ms = EXCLUDED.stored_ms"
                    ),
                    &[&sha256, &bytes],
                )
                .await?;
        }
        Ok(())
    }

    async fn prune_components(&self, keep: &[String], older_than: Duration) -> Result<usize> {
        let older_than = older_than.as_millis() as i64;
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        // One statement: a row marked as stored meanwhile (by a node about to record a task or a
        // plugin naming it) no longer matches when the delete reaches it.
        let dropped = client
            .execute(
                &format!(
                    "DELETE FROM task_components
                      WHERE stored_ms < {NOW_MS} - $1
                        AND sha256 <> ALL($2::text[])
                        AND sha256 NOT IN (SELECT component FROM tasks
                              WHERE state IN ('queued', 'running') AND component IS NOT NULL)
                        AND NOT EXISTS (SELECT 1 FROM tasks WHERE state IN ('queued', 'running')
                              AND spec IS NOT NULL AND component IS NULL)"
                ),
                &[&older_than, &keep],
            )
            .await?;
        Ok(dropped as usize)
    }

    async fn append_outbound(&self, node: &str, records: &[String], keep: usize) -> Result<()> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let insert = tx
            .prepare("INSERT INTO outbound_attempts (node, record) VALUES ($1, $2)")
            .await?;
        for record in records {
            tx.execute(&insert, &[&node, record]).await?;
        }
        tx.execute(
            "DELETE FROM outbound_attempts WHERE id <= (SELECT MAX(id) FROM outbound_attempts) - $1",
            &[&(keep as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbound_attempts(&self, limit: usize) -> Result<Vec<(String, String)>> {
        let guard = self.client().await?;
        let rows = guard
            .as_ref()
            .expect("connected")
            .query(
                "SELECT node, record FROM (SELECT id, node, record FROM outbound_attempts ORDER BY id DESC LIMIT $1) AS newest ORDER BY id",
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let guard = self.client().await?;
        Ok(guard
            .as_ref()
            .expect("connected")
            .query_opt(
                "SELECT bytes FROM task_components WHERE sha256 = $1",
                &[&sha256],
            )
            .await?
            .map(|r| r.get(0)))
    }

    async fn register_node(&self, node: &NodeStart) -> Result<NodeControl> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let held = tx
            .query_opt(
                &format!(
                    "SELECT home_id, {NOW_MS} - heartbeat_ms, timeout_ms FROM nodes WHERE name = $1 FOR UPDATE"
                ),
                &[&node.name],
            )
            .await?;
        if let Some(row) = held {
            let (home_id, age, timeout): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            if home_id != node.home_id && age <= timeout {
                return Err(Error::NodeTaken {
                    name: node.name.clone(),
                    age_ms: age,
                });
            }
        }
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO nodes (name, instance, home_id, started, heartbeat_ms, timeout_ms, task_cap)
                     VALUES ($1, $2, $3, $4, {NOW_MS}, $5, $6)
                     ON CONFLICT (name) DO UPDATE SET instance = $2, home_id = $3, started = $4,
                         heartbeat_ms = {NOW_MS}, timeout_ms = $5
                     RETURNING task_cap, draining"
                ),
                &[
                    &node.name,
                    &node.instance,
                    &node.home_id,
                    &model::now(),
                    &(node.timeout.as_millis() as i64),
                    &(DEFAULT_TASK_CAP as i32),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(control(&row))
    }

    async fn heartbeat(&self, name: &str, instance: &str) -> Result<Option<NodeControl>> {
        let guard = self.client().await?;
        let row = guard
            .as_ref()
            .expect("connected")
            .query_opt(
                &format!(
                    "UPDATE nodes SET heartbeat_ms = {NOW_MS} WHERE name = $1 AND instance = $2
                     RETURNING task_cap, draining"
                ),
                &[&name, &instance],
            )
            .await?;
        Ok(row.as_ref().map(control))
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let guard = self.client().await?;
        let rows = guard
            .as_ref()
            .expect("connected")
            .query(
                &format!(
                    "SELECT n.name, n.instance, n.started, {NOW_MS} - n.heartbeat_ms, n.timeout_ms,
                            n.task_cap, n.draining,
                            (SELECT COUNT(*) FROM tasks t WHERE t.node = n.name AND t.state = 'running')
                     FROM nodes n ORDER BY n.name"
                ),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeInfo {
                name: r.get(0),
                instance: r.get(1),
                started: r.get(2),
                heartbeat_age_ms: r.get(3),
                timeout_ms: r.get(4),
                cap: r.get::<_, i32>(5) as u32,
                draining: r.get(6),
                running: r.get::<_, i64>(7) as usize,
            })
            .collect())
    }

    async fn set_node_cap(&self, name: &str, cap: u32) -> Result<bool> {
        let guard = self.client().await?;
        let n = guard
            .as_ref()
            .expect("connected")
            .execute(
                "UPDATE nodes SET task_cap = $2 WHERE name = $1",
                &[&name, &(cap as i32)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn set_node_draining(&self, name: &str, draining: bool) -> Result<bool> {
        let guard = self.client().await?;
        let n = guard
            .as_ref()
            .expect("connected")
            .execute(
                "UPDATE nodes SET draining = $2 WHERE name = $1",
                &[&name, &draining],
            )
            .await?;
        Ok(n > 0)
    }

    async fn mark_dead_nodes(&self, me: &str) -> Result<Vec<Marked>> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        // Locking the tasks (SKIP LOCKED) lets one node mark each; another skips it.
        let rows = tx
            .query(
                &format!(
                    "SELECT t.id, n.name, t.state FROM tasks t JOIN nodes n
                       ON n.name = COALESCE(t.node, t.pinned_node)
                     WHERE n.name <> $1 AND {NOW_MS} - n.heartbeat_ms > n.timeout_ms
                       AND (t.state = 'running' AND t.node = n.name
                            OR t.state = 'queued' AND t.pinned_node = n.name)
                     ORDER BY t.id
                     FOR UPDATE OF t SKIP LOCKED"
                ),
                &[&me],
            )
            .await?;
        let mut marked = Vec::new();
        for row in &rows {
            let (id, node, state): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            let running = state == "running";
            let failure = model::dead_node_failure(&node, running);
            let new_state = if running {
                TaskState::Unknown
            } else {
                TaskState::Failed
            };
            let outcome = serde_json::to_string(&PartOutcome {
                failure: Some(failure.clone()),
                ..Default::default()
            })?;
            tx.execute(
                "UPDATE task_parts SET state = $2, outcome = $3
                 WHERE task_id = $1 AND state IN ('queued', 'running')",
                &[&id, &new_state.as_str(), &outcome],
            )
            .await?;
            tx.execute(
                "UPDATE tasks SET state = $2, message = $3, ended = $4 WHERE id = $1",
                &[&id, &new_state.as_str(), &failure, &model::now()],
            )
            .await?;
            marked.push(Marked {
                node,
                task: id,
                state: new_state,
            });
        }
        tx.commit().await?;
        Ok(marked)
    }

    async fn log_since(
        &self,
        id: TaskId,
        cursors: &[(String, u64)],
        limit: usize,
    ) -> Result<Vec<LogLine>> {
        let guard = self.client().await?;
        let targets: Vec<&str> = cursors.iter().map(|(t, _)| t.as_str()).collect();
        let after: Vec<i64> = cursors.iter().map(|(_, s)| *s as i64).collect();
        let rows = guard
            .as_ref()
            .expect("connected")
            .query(
                "SELECT l.target, l.sequence, l.level, l.message FROM task_log l
                 JOIN UNNEST($2::text[], $3::bigint[]) AS c (t, s) ON l.target = c.t
                 WHERE l.task_id = $1 AND l.sequence > c.s
                 ORDER BY l.id LIMIT $4",
                &[&id, &targets, &after, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LogLine {
                target: r.get(0),
                sequence: r.get::<_, i64>(1) as u64,
                level: r.get(2),
                message: r.get(3),
            })
            .collect())
    }

    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(listen(self.url.clone(), tx));
        Some(rx)
    }
}

/// The database's clock in milliseconds: heartbeats and kept components' ages are on one clock,
/// whatever the nodes'.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";

fn control(row: &Row) -> NodeControl {
    NodeControl {
        cap: row.get::<_, i32>(0).max(0) as u32,
        draining: row.get(1),
    }
}

/// `LISTEN octo_tasks` on a connection of its own, passing each notification on as a wake-up;
/// connected again (after a pause) when it breaks, with a wake-up then (what was queued meanwhile
/// was not notified). Ends when the receiver is gone.
async fn listen(url: DatabaseUrl, wake: tokio::sync::mpsc::Sender<()>) {
    use tokio_postgres::AsyncMessage;
    let mut pause = std::time::Duration::from_millis(250);
    while !wake.is_closed() {
        let attempt = async {
            let config = url.config()?;
            let (client, mut connection) = config.connect(NoTls).await?;
            let listen = client.batch_execute("LISTEN octo_tasks");
            tokio::pin!(listen);
            let mut listening = false;
            loop {
                tokio::select! {
                    done = &mut listen, if !listening => {
                        done?;
                        listening = true;
                        let _ = wake.try_send(());
                    }
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                        Some(Ok(AsyncMessage::Notification(_))) => {
                            if wake.try_send(()).is_err() && wake.is_closed() {
                                return Ok(());
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Err(Error::from(error)),
                        None => return Ok::<_, Error>(()),
                    },
                    _ = wake.closed() => return Ok(()),
                }
            }
        }
        .await;
        if let Err(error) = attempt {
            tracing::debug!(%error, "the database notifications connection ended");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
        } else {
            tokio::time::sleep(pause).await;
        }
    }
}

#[async_trait::async_trait]
impl crate::Documents for PostgresStore {
    async fn document(&self, name: &str) -> Result<Option<crate::Document>> {
        let guard = self.client().await?;
        let row = guard
            .as_ref()
            .expect("connected")
            .query_opt(
                "SELECT body, revision FROM documents WHERE name = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|r| crate::Document {
            body: r.get(0),
            revision: r.get(1),
        }))
    }

    async fn put_document(&self, name: &str, body: &str, expected: i64) -> Result<Option<i64>> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let n = if expected == 0 {
            client
                .execute(
                    "INSERT INTO documents (name, body, revision, updated) VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING",
                    &[&name, &body, &model::now()],
                )
                .await?
        } else {
            client
                .execute(
                    "UPDATE documents SET body = $1, revision = revision + 1, updated = $2 WHERE name = $3 AND revision = $4",
                    &[&body, &model::now(), &name, &expected],
                )
                .await?
        };
        Ok((n == 1).then_some(expected + 1))
    }

    async fn document_revision(&self, name: &str) -> Result<i64> {
        let guard = self.client().await?;
        Ok(guard
            .as_ref()
            .expect("connected")
            .query_one(
                "SELECT COALESCE(MAX(revision), 0)::bigint FROM documents WHERE name = $1",
                &[&name],
            )
            .await?
            .get(0))
    }
}
