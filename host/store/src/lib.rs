//! `octo-store`: what the server remembers — tasks (every run on targets, every job run), each
//! target's part of a task with its outcome, and every log line with its sequence — behind one
//! [`Store`] trait with two backends:
//!
//! - [`sqlite`]: a file under the server's home in WAL mode, nothing to install or start (default);
//! - [`postgres`]: a PostgreSQL database (`octo configure --database postgres://…`).
//!
//! Both run the embedded [`migrations`] when opened and refuse a database whose schema is newer than
//! this binary. Besides tasks, a store keeps the small [`Documents`] several nodes share (targets,
//! settings, …), written with compare-and-swap on a revision. Both pass the same test suite (`tests/suite.rs`). Passwords in a database URL are never
//! shown: [`DatabaseUrl`]'s `Display` masks them.

#![deny(missing_docs)]

mod documents;
mod error;
pub mod migrations;
mod model;
pub mod postgres;
pub mod relay;
pub mod sqlite;
mod url;

pub use documents::{Document, Documents};
pub use error::{Error, Result};
pub use model::{
    Artifact, Claimed, DEFAULT_TASK_CAP, LogLine, Marked, NewPart, NewTask, NodeControl, NodeInfo,
    NodeStart, OutboundAttempt, OutputVariable, PartOutcome, PartState, Queue, Task, TaskFilter,
    TaskId, TaskKind, TaskPart, TaskState, TaskSummary,
};
pub use url::DatabaseUrl;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database.
    Postgres(DatabaseUrl),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "SQLite {}", path.display()),
            Location::Postgres(url) => write!(f, "PostgreSQL {url}"),
        }
    }
}

/// Opens the store at `location`, running its migrations.
pub async fn open(location: &Location) -> Result<Arc<dyn Store>> {
    Ok(match location {
        Location::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
        Location::Postgres(url) => Arc::new(postgres::PostgresStore::connect(url).await?),
    })
}

/// The default store of a home: `<home>/octo.db`.
pub fn default_location(home: &Path) -> Location {
    Location::Sqlite(home.join("octo.db"))
}

/// What the server keeps. Every method is one transaction.
#[async_trait::async_trait]
pub trait Store: Documents + Send + Sync {
    /// Records a new task (state `running`, each part `running`) and returns its id.
    async fn create_task(&self, task: &NewTask) -> Result<TaskId>;

    /// One task with its parts, if it exists.
    async fn task(&self, id: TaskId) -> Result<Option<Task>>;

    /// Tasks, newest first.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>>;

    /// Tasks that have not ended (what a restarted server resumes), oldest first, with their parts.
    async fn unfinished_tasks(&self) -> Result<Vec<Task>>;

    /// Appends log lines of one target's part; a line whose sequence is already stored is ignored
    /// (each line is kept exactly once). Returns how many were new.
    async fn append_log(&self, id: TaskId, target: &str, lines: &[LogLine]) -> Result<usize>;

    /// The highest sequence stored for one target's part (0 when none).
    async fn last_sequence(&self, id: TaskId, target: &str) -> Result<u64>;

    /// Log lines of a task after the store's own position `after` (0 = from the start), in the order
    /// they were stored, at most `limit`. Each comes with its position, to ask for what follows.
    async fn log_after(&self, id: TaskId, after: i64, limit: usize) -> Result<Vec<(i64, LogLine)>>;

    /// Ends one target's part.
    async fn finish_part(
        &self,
        id: TaskId,
        target: &str,
        state: PartState,
        outcome: &PartOutcome,
    ) -> Result<()>;

    /// Ends a task.
    async fn finish_task(&self, id: TaskId, state: TaskState, message: Option<&str>) -> Result<()>;

    /// Marks a task as to be cancelled; false when it does not exist or has already ended.
    async fn request_cancel(&self, id: TaskId) -> Result<bool>;

    /// Where it lives (passwords masked).
    fn describe(&self) -> String;

    // --- Several nodes (issue 12 item 6): queued tasks, claims, heartbeats. ---

    /// Whether several nodes may share this store (PostgreSQL): a SQLite store has one node.
    fn shared(&self) -> bool;

    /// Records a task in state `queued` (parts too), for a node to claim, and wakes the nodes; or,
    /// with `queue.claimed_by`, `running` on that node at once (no node is woken).
    async fn enqueue_task(&self, task: &NewTask, queue: &Queue) -> Result<TaskId>;

    /// Claims up to `limit` queued tasks for `node`: those pinned to it or to none, oldest first,
    /// skipping rows another node is claiming (`FOR UPDATE SKIP LOCKED`). They (and their parts)
    /// become `running` with `node` set.
    async fn claim_tasks(&self, node: &str, limit: usize) -> Result<Vec<Claimed>>;

    /// The running tasks of `node` (and those recorded before nodes existed), oldest first, with
    /// their parts: what a restarted node resumes.
    async fn node_tasks(&self, node: &str) -> Result<Vec<Task>>;

    /// Running tasks of `node` whose cancellation was asked.
    async fn cancel_requests(&self, node: &str) -> Result<Vec<TaskId>>;

    /// Keeps a component (by its sha256) for other nodes to run, or marks the one already kept as
    /// stored now.
    async fn put_component(&self, sha256: &str, bytes: &[u8]) -> Result<()>;

    /// Drops the kept components that no unfinished task names, that are not in `keep`, and that
    /// were last stored more than `older_than` ago (by the database's clock), so that a component
    /// stored for a task or a plugin about to be recorded stays. Drops none while an unfinished task
    /// recorded before tasks named their component remains. Returns how many it dropped.
    async fn prune_components(&self, keep: &[String], older_than: Duration) -> Result<usize>;

    /// A kept component.
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>>;

    /// Registers a starting node: refused ([`Error::NodeTaken`]) while another instance from
    /// another home holds the name with a heartbeat younger than its timeout.
    async fn register_node(&self, node: &NodeStart) -> Result<NodeControl>;

    /// A heartbeat of `name`'s `instance`; `None` when another instance has taken the name.
    async fn heartbeat(&self, name: &str, instance: &str) -> Result<Option<NodeControl>>;

    /// Every node, by name.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;

    /// Sets a node's task cap; false when there is no such node.
    async fn set_node_cap(&self, name: &str, cap: u32) -> Result<bool>;

    /// Sets a node's draining flag; false when there is no such node.
    async fn set_node_draining(&self, name: &str, draining: bool) -> Result<bool>;

    /// Marks the tasks of nodes (other than `me`) whose last heartbeat is older than their timeout:
    /// running parts "result unknown" (never run again), tasks pinned to them and still queued
    /// failed. Each task is marked once, by one node.
    async fn mark_dead_nodes(&self, me: &str) -> Result<Vec<Marked>>;

    /// Log lines of a task after a cursor per target (`(target, last sequence seen)`, every
    /// target of the task), at most `limit`: correct whatever the order in which several writers
    /// committed.
    async fn log_since(
        &self,
        id: TaskId,
        cursors: &[(String, u64)],
        limit: usize,
    ) -> Result<Vec<LogLine>>;

    // --- The outbound audit several nodes share (issue 12 item 2). ---

    /// Appends outbound attempts made by `node` (each the audit record's JSON line), in order, then
    /// drops the oldest rows beyond the newest `keep`.
    async fn append_outbound(&self, node: &str, records: &[String], keep: usize) -> Result<()>;

    /// The newest `limit` outbound attempts, oldest first, each as `(node, record)`.
    async fn outbound_attempts(&self, limit: usize) -> Result<Vec<(String, String)>>;

    /// Wake-ups when a task is queued or a cancellation asked (PostgreSQL `LISTEN`); `None` when
    /// the backend has none (nodes then poll).
    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>>;
}
