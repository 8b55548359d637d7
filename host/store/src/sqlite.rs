//! The default backend: one SQLite file under the server's home, WAL mode (readers — `octo tasks` in
//! another process — never wait for the daemon's writes), `synchronous=NORMAL` (a commit survives a
//! process crash; a power cut may lose the last commits, never corrupt the file). The file is created
//! 0600. One connection, used from the blocking pool.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::migrations::{LATEST, MIGRATIONS};
use crate::model::{self, *};

/// Now in milliseconds since the epoch, in SQL: kept components' ages (nodes' heartbeats use the
/// caller's clock; a SQLite home is one node).
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// A store in a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

fn corrupt(path: &Path, error: rusqlite::Error) -> Error {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: error.to_string(),
        },
        _ => Error::Sqlite(error),
    }
}

impl SqliteStore {
    /// Opens (creating it 0600 when missing) and migrates the store at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let connection = tokio::task::spawn_blocking(move || open_blocking(&opened))
            .await
            .map_err(|e| Error::Data(e.to_string()))??;
        Ok(SqliteStore {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Data(e.to_string()))?
    }
}

fn open_blocking(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent() {
        octo_fsutil::create_private_dir(parent).map_err(|source| Error::Io {
            what: format!("cannot create {}", parent.display()),
            source,
        })?;
    }
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| Error::Io {
                what: format!("cannot create the store {}", path.display()),
                source,
            })?;
    }
    let mut connection = Connection::open(path).map_err(|e| corrupt(path, e))?;
    connection
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| corrupt(path, e))?;
    connection
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
        .map_err(|e| corrupt(path, e))?;
    connection
        .execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
        .map_err(|e| corrupt(path, e))?;
    migrate(&mut connection, path).map_err(|e| match e {
        Error::Sqlite(e) => corrupt(path, e),
        other => other,
    })?;
    Ok(connection)
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<()> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS octo_schema (version INTEGER NOT NULL)")?;
    let found: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM octo_schema",
        [],
        |r| r.get(0),
    )?;
    if found > LATEST {
        return Err(Error::SchemaTooNew {
            location: path.display().to_string(),
            found,
            supported: LATEST,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.execute_batch(migration.sqlite)?;
        tx.execute("DELETE FROM octo_schema", [])?;
        tx.execute(
            "INSERT INTO octo_schema (version) VALUES (?1)",
            [migration.version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn read_task(connection: &Connection, id: TaskId) -> Result<Option<Task>> {
    let row = connection
        .query_row(
            "SELECT kind, name, state, message, cancel_requested, created, ended, node FROM tasks WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((kind, name, state, message, cancel_requested, created, ended, node)) = row else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT target, ticket, state, outcome FROM task_parts WHERE task_id = ?1 ORDER BY position",
    )?;
    let parts = statement
        .query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .map(|row| {
            let (target, ticket, state, outcome) = row?;
            Ok(TaskPart {
                target,
                ticket,
                state: model::state(&state)?,
                outcome: serde_json::from_str(&outcome)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Task {
        id,
        kind: model::kind(&kind)?,
        name,
        state: model::state(&state)?,
        message,
        cancel_requested,
        created,
        ended,
        node,
        parts,
    }))
}

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    async fn create_task(&self, task: &NewTask) -> Result<TaskId> {
        let task = task.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tasks (kind, name, state, created) VALUES (?1, ?2, 'running', ?3)",
                params![task.kind.as_str(), task.name, model::now()],
            )?;
            let id = tx.last_insert_rowid();
            for (position, part) in task.parts.iter().enumerate() {
                tx.execute(
                    "INSERT INTO task_parts (task_id, position, target, ticket, state) VALUES (?1, ?2, ?3, ?4, 'running')",
                    params![id, position as i64, part.target, part.ticket],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>> {
        self.with(move |c| read_task(c, id)).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        let filter = filter.clone();
        self.with(move |c| {
            let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
            let placeholders = (0..states.len())
                .map(|i| format!("?{}", i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let mut sql = String::from(
                "SELECT t.id, t.kind, t.name, t.state, t.created, t.ended, (SELECT COUNT(*) FROM task_parts p WHERE p.task_id = t.id) FROM tasks t",
            );
            if !states.is_empty() {
                sql.push_str(&format!(" WHERE t.state IN ({placeholders})"));
            }
            sql.push_str(" ORDER BY t.id DESC");
            if filter.limit > 0 {
                sql.push_str(&format!(" LIMIT {}", filter.limit));
            }
            let mut statement = c.prepare(&sql)?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(states.iter()), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })?
                .map(|row| {
                    let (id, kind, name, state, created, ended, targets) = row?;
                    Ok(TaskSummary {
                        id,
                        kind: model::kind(&kind)?,
                        name,
                        state: model::state(&state)?,
                        created,
                        ended,
                        targets: targets as usize,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        self.with(|c| {
            let ids = c
                .prepare("SELECT id FROM tasks WHERE state = 'running' ORDER BY id")?
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut tasks = Vec::new();
            for id in ids {
                if let Some(task) = read_task(c, id)? {
                    tasks.push(task);
                }
            }
            Ok(tasks)
        })
        .await
    }

    async fn append_log(&self, id: TaskId, target: &str, lines: &[LogLine]) -> Result<usize> {
        if lines.is_empty() {
            return Ok(0);
        }
        let target = target.to_string();
        let lines = lines.to_vec();
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut inserted = 0;
            {
                let mut statement = tx.prepare_cached(
                    "INSERT INTO task_log (task_id, target, sequence, level, message) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?;
                for line in &lines {
                    inserted += statement.execute(params![
                        id,
                        target,
                        line.sequence as i64,
                        line.level,
                        line.message
                    ])?;
                }
            }
            tx.commit()?;
            Ok(inserted)
        })
        .await
    }

    async fn last_sequence(&self, id: TaskId, target: &str) -> Result<u64> {
        let target = target.to_string();
        self.with(move |c| {
            let last: i64 = c.query_row(
                "SELECT COALESCE(MAX(sequence), 0) FROM task_log WHERE task_id = ?1 AND target = ?2",
                params![id, target],
                |r| r.get(0),
            )?;
            Ok(last as u64)
        })
        .await
    }

    async fn log_after(&self, id: TaskId, after: i64, limit: usize) -> Result<Vec<(i64, LogLine)>> {
        self.with(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT id, target, sequence, level, message FROM task_log WHERE task_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![id, after, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        LogLine {
                            target: r.get(1)?,
                            sequence: r.get::<_, i64>(2)? as u64,
                            level: r.get(3)?,
                            message: r.get(4)?,
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn finish_part(
        &self,
        id: TaskId,
        target: &str,
        state: PartState,
        outcome: &PartOutcome,
    ) -> Result<()> {
        let target = target.to_string();
        let outcome = serde_json::to_string(outcome)?;
        self.with(move |c| {
            c.execute(
                "UPDATE task_parts SET state = ?1, outcome = ?2 WHERE task_id = ?3 AND target = ?4",
                params![state.as_str(), outcome, id, target],
            )?;
            Ok(())
        })
        .await
    }

    async fn finish_task(&self, id: TaskId, state: TaskState, message: Option<&str>) -> Result<()> {
        let message = message.map(str::to_string);
        self.with(move |c| {
            c.execute(
                "UPDATE tasks SET state = ?1, message = ?2, ended = ?3 WHERE id = ?4",
                params![state.as_str(), message, model::now(), id],
            )?;
            Ok(())
        })
        .await
    }

    async fn request_cancel(&self, id: TaskId) -> Result<bool> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE tasks SET cancel_requested = 1 WHERE id = ?1 AND state IN ('queued', 'running')",
                [id],
            )?;
            // A task no node has claimed yet ends here.
            if tx.execute(
                "UPDATE tasks SET state = 'cancelled', ended = ?2 WHERE id = ?1 AND state = 'queued'",
                params![id, model::now()],
            )? > 0
            {
                tx.execute(
                    "UPDATE task_parts SET state = 'cancelled' WHERE task_id = ?1",
                    [id],
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn shared(&self) -> bool {
        false
    }

    async fn enqueue_task(&self, task: &NewTask, queue: &Queue) -> Result<TaskId> {
        let task = task.clone();
        let queue = queue.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let state = model::queued_or_running(&queue).as_str();
            tx.execute(
                "INSERT INTO tasks (kind, name, state, created, spec, component, pinned_node, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![task.kind.as_str(), task.name, state, model::now(), queue.spec, queue.component, queue.pinned_node, queue.claimed_by],
            )?;
            let id = tx.last_insert_rowid();
            for (position, part) in task.parts.iter().enumerate() {
                tx.execute(
                    "INSERT INTO task_parts (task_id, position, target, ticket, state) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, position as i64, part.target, part.ticket, state],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn claim_tasks(&self, node: &str, limit: usize) -> Result<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let node = node.to_string();
        self.with(move |c| {
            // One writer at a time: an immediate transaction is SQLite's row lock.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let claimed = tx
                .prepare_cached(
                    "SELECT id, spec FROM tasks WHERE state = 'queued'
                       AND (pinned_node IS NULL OR pinned_node = ?1)
                     ORDER BY id LIMIT ?2",
                )?
                .query_map(params![node, limit as i64], |r| {
                    Ok(Claimed {
                        id: r.get(0)?,
                        spec: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for claim in &claimed {
                tx.execute(
                    "UPDATE tasks SET state = 'running', node = ?2 WHERE id = ?1",
                    params![claim.id, node],
                )?;
                tx.execute(
                    "UPDATE task_parts SET state = 'running' WHERE task_id = ?1 AND state = 'queued'",
                    [claim.id],
                )?;
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn node_tasks(&self, node: &str) -> Result<Vec<Task>> {
        let node = node.to_string();
        self.with(move |c| {
            let ids = c
                .prepare(
                    "SELECT id FROM tasks WHERE state = 'running' AND (node = ?1 OR node IS NULL) ORDER BY id",
                )?
                .query_map([node], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut tasks = Vec::new();
            for id in ids {
                if let Some(task) = read_task(c, id)? {
                    tasks.push(task);
                }
            }
            Ok(tasks)
        })
        .await
    }

    async fn cancel_requests(&self, node: &str) -> Result<Vec<TaskId>> {
        let node = node.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(
                "SELECT id FROM tasks WHERE node = ?1 AND state = 'running' AND cancel_requested",
            )?
            .query_map([node], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_component(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let sha256 = sha256.to_string();
        let bytes = bytes.to_vec();
        self.with(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO task_components (sha256, bytes, stored_ms) VALUES (?1, ?2, {NOW_MS})
                     ON CONFLICT (sha256) DO UPDATE SET stored_ms = excluded.stored_ms"
                ),
                params![sha256, bytes],
            )?;
            Ok(())
        })
        .await
    }

    async fn prune_components(&self, keep: &[String], older_than: Duration) -> Result<usize> {
        let keep: HashSet<String> = keep.iter().cloned().collect();
        let older_than = older_than.as_millis() as i64;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let legacy: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN ('queued', 'running')
                   AND spec IS NOT NULL AND component IS NULL)",
                [],
                |r| r.get(0),
            )?;
            if legacy {
                return Ok(0);
            }
            let stale = tx
                .prepare(&format!(
                    "SELECT sha256 FROM task_components
                      WHERE stored_ms < {NOW_MS} - ?1
                        AND sha256 NOT IN (SELECT component FROM tasks
                              WHERE state IN ('queued', 'running') AND component IS NOT NULL)"
                ))?
                .query_map([older_than], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut dropped = 0;
            for sha256 in stale.iter().filter(|s| !keep.contains(*s)) {
                dropped += tx.execute("DELETE FROM task_components WHERE sha256 = ?1", [sha256])?;
            }
            tx.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn append_outbound(&self, node: &str, records: &[String], keep: usize) -> Result<()> {
        let node = node.to_string();
        let records = records.to_vec();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut insert =
                    tx.prepare("INSERT INTO outbound_attempts (node, record) VALUES (?1, ?2)")?;
                for record in &records {
                    insert.execute(params![node, record])?;
                }
            }
            tx.execute(
                "DELETE FROM outbound_attempts WHERE id <= (SELECT MAX(id) FROM outbound_attempts) - ?1",
                [keep as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn outbound_attempts(&self, limit: usize) -> Result<Vec<(String, String)>> {
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT node, record FROM (SELECT id, node, record FROM outbound_attempts ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )?;
            let rows = statement
                .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let sha256 = sha256.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT bytes FROM task_components WHERE sha256 = ?1",
                [sha256],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?)
        })
        .await
    }

    async fn register_node(&self, node: &NodeStart) -> Result<NodeControl> {
        let node = node.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = model::now_ms();
            let held = tx
                .query_row(
                    "SELECT home_id, heartbeat_ms, timeout_ms FROM nodes WHERE name = ?1",
                    [&node.name],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
                )
                .optional()?;
            if let Some((home_id, heartbeat, timeout)) = held
                && home_id != node.home_id
                && now - heartbeat <= timeout
            {
                return Err(Error::NodeTaken {
                    name: node.name.clone(),
                    age_ms: now - heartbeat,
                });
            }
            let control = tx.query_row(
                "INSERT INTO nodes (name, instance, home_id, started, heartbeat_ms, timeout_ms, task_cap)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (name) DO UPDATE SET instance = ?2, home_id = ?3, started = ?4,
                     heartbeat_ms = ?5, timeout_ms = ?6
                 RETURNING task_cap, draining",
                params![
                    node.name,
                    node.instance,
                    node.home_id,
                    model::now(),
                    now,
                    node.timeout.as_millis() as i64,
                    DEFAULT_TASK_CAP
                ],
                control,
            )?;
            tx.commit()?;
            Ok(control)
        })
        .await
    }

    async fn heartbeat(&self, name: &str, instance: &str) -> Result<Option<NodeControl>> {
        let (name, instance) = (name.to_string(), instance.to_string());
        self.with(move |c| {
            Ok(c.query_row(
                "UPDATE nodes SET heartbeat_ms = ?3 WHERE name = ?1 AND instance = ?2 RETURNING task_cap, draining",
                params![name, instance, model::now_ms()],
                control,
            )
            .optional()?)
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.with(|c| {
            let now = model::now_ms();
            Ok(c.prepare(
                "SELECT n.name, n.instance, n.started, ?1 - n.heartbeat_ms, n.timeout_ms, n.task_cap, n.draining,
                        (SELECT COUNT(*) FROM tasks t WHERE t.node = n.name AND t.state = 'running')
                 FROM nodes n ORDER BY n.name",
            )?
            .query_map([now], |r| {
                Ok(NodeInfo {
                    name: r.get(0)?,
                    instance: r.get(1)?,
                    started: r.get(2)?,
                    heartbeat_age_ms: r.get(3)?,
                    timeout_ms: r.get(4)?,
                    cap: r.get::<_, i64>(5)?.max(0) as u32,
                    draining: r.get(6)?,
                    running: r.get::<_, i64>(7)? as usize,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn set_node_cap(&self, name: &str, cap: u32) -> Result<bool> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE nodes SET task_cap = ?2 WHERE name = ?1",
                params![name, cap],
            )? > 0)
        })
        .await
    }

    async fn set_node_draining(&self, name: &str, draining: bool) -> Result<bool> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE nodes SET draining = ?2 WHERE name = ?1",
                params![name, draining],
            )? > 0)
        })
        .await
    }

    async fn mark_dead_nodes(&self, me: &str) -> Result<Vec<Marked>> {
        let me = me.to_string();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows = tx
                .prepare(
                    "SELECT t.id, n.name, t.state FROM tasks t JOIN nodes n
                       ON n.name = COALESCE(t.node, t.pinned_node)
                     WHERE n.name <> ?1 AND ?2 - n.heartbeat_ms > n.timeout_ms
                       AND (t.state = 'running' AND t.node = n.name
                            OR t.state = 'queued' AND t.pinned_node = n.name)
                     ORDER BY t.id",
                )?
                .query_map(params![me, model::now_ms()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut marked = Vec::new();
            for (id, node, state) in rows {
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
                    "UPDATE task_parts SET state = ?2, outcome = ?3 WHERE task_id = ?1 AND state IN ('queued', 'running')",
                    params![id, new_state.as_str(), outcome],
                )?;
                tx.execute(
                    "UPDATE tasks SET state = ?2, message = ?3, ended = ?4 WHERE id = ?1",
                    params![id, new_state.as_str(), failure, model::now()],
                )?;
                marked.push(Marked {
                    node,
                    task: id,
                    state: new_state,
                });
            }
            tx.commit()?;
            Ok(marked)
        })
        .await
    }

    async fn log_since(
        &self,
        id: TaskId,
        cursors: &[(String, u64)],
        limit: usize,
    ) -> Result<Vec<LogLine>> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let cursors = cursors.to_vec();
        self.with(move |c| {
            let values = (0..cursors.len())
                .map(|i| format!("(?{}, ?{})", 3 + 2 * i, 4 + 2 * i))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "WITH c (t, s) AS (VALUES {values})
                 SELECT l.target, l.sequence, l.level, l.message FROM task_log l JOIN c ON l.target = c.t
                 WHERE l.task_id = ?1 AND l.sequence > c.s ORDER BY l.id LIMIT ?2"
            );
            let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(id), Box::new(limit as i64)];
            for (target, after) in cursors {
                params.push(Box::new(target));
                params.push(Box::new(after as i64));
            }
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    Ok(LogLine {
                        target: r.get(0)?,
                        sequence: r.get::<_, i64>(1)? as u64,
                        level: r.get(2)?,
                        message: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }
}

fn control(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeControl> {
    Ok(NodeControl {
        cap: r.get::<_, i64>(0)?.max(0) as u32,
        draining: r.get(1)?,
    })
}

#[async_trait::async_trait]
impl crate::Documents for SqliteStore {
    async fn document(&self, name: &str) -> Result<Option<crate::Document>> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT body, revision FROM documents WHERE name = ?1",
                [name],
                |r| {
                    Ok(crate::Document {
                        body: r.get(0)?,
                        revision: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn put_document(&self, name: &str, body: &str, expected: i64) -> Result<Option<i64>> {
        let (name, body) = (name.to_string(), body.to_string());
        self.with(move |c| {
            let n = if expected == 0 {
                c.execute(
                    "INSERT INTO documents (name, body, revision, updated) VALUES (?1, ?2, 1, ?3) ON CONFLICT DO NOTHING",
                    params![name, body, model::now()],
                )?
            } else {
                c.execute(
                    "UPDATE documents SET body = ?1, revision = revision + 1, updated = ?2 WHERE name = ?3 AND revision = ?4",
                    params![body, model::now(), name, expected],
                )?
            };
            Ok((n == 1).then_some(expected + 1))
        })
        .await
    }

    async fn document_revision(&self, name: &str) -> Result<i64> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(revision), 0) FROM documents WHERE name = ?1",
                [name],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
