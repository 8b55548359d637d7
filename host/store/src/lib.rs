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
pub mod sqlite;
mod url;

pub use documents::{Document, Documents};
pub use error::{Error, Result};
pub use model::{
    Artifact, LogLine, NewPart, NewTask, OutboundAttempt, OutputVariable, PartOutcome, PartState,
    Task, TaskFilter, TaskId, TaskKind, TaskPart, TaskState, TaskSummary,
};
pub use url::DatabaseUrl;

use std::path::Path;
use std::sync::Arc;

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
}
