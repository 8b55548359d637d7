//! The PostgreSQL backend (`octo configure --database postgres://…`): one connection, re-opened when
//! it breaks; migrations under an advisory lock, so nodes starting together migrate once. No TLS to
//! the database yet (a loopback or private network is assumed).

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

async fn connect(url: &DatabaseUrl) -> Result<Client> {
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
            "SELECT kind, name, state, message, cancel_requested, created, ended FROM tasks WHERE id = $1",
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
                "UPDATE tasks SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'",
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.url)
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
