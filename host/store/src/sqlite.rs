//! The default backend: one SQLite file under the server's home, WAL mode (readers — `octo tasks` in
//! another process — never wait for the daemon's writes), `synchronous=NORMAL` (a commit survives a
//! process crash; a power cut may lose the last commits, never corrupt the file). The file is created
//! 0600. One connection, used from the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::migrations::{LATEST, MIGRATIONS};
use crate::model::{self, *};

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
            "SELECT kind, name, state, message, cancel_requested, created, ended FROM tasks WHERE id = ?1",
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
                ))
            },
        )
        .optional()?;
    let Some((kind, name, state, message, cancel_requested, created, ended)) = row else {
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
            let n = c.execute(
                "UPDATE tasks SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'",
                [id],
            )?;
            Ok(n > 0)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }
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
