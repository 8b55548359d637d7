//! The store's one error type.

use std::path::PathBuf;

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database was written by a newer Octo.
    #[error(
        "the database {location} has schema version {found}, newer than this octo supports ({supported}); upgrade octo, or point it at another database"
    )]
    SchemaTooNew {
        /// Where (passwords masked).
        location: String,
        /// Its version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// The SQLite file is not a database (or is damaged).
    #[error(
        "the store {} is corrupt or not a SQLite database ({detail}); move it aside to start with an empty store, or restore it from a backup",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// PostgreSQL could not be reached or refused the login.
    #[error(
        "cannot connect to the database {url}: {detail}; check `octo configure --database` and that PostgreSQL is running"
    )]
    Unreachable {
        /// The URL, password masked.
        url: String,
        /// Why.
        detail: String,
    },
    /// A database URL that is not `postgres://…`.
    #[error("invalid database URL {0}: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")]
    InvalidUrl(String),
    /// Another running node holds the name.
    #[error(
        "the node name {name} is held by another running octo (last heartbeat {age_ms} ms ago); start this one with another --node NAME, or stop the other first"
    )]
    NodeTaken {
        /// The name.
        name: String,
        /// How old its heartbeat is.
        age_ms: i64,
    },
    /// A SQLite error.
    #[error("the store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL error.
    #[error("the database failed: {0}")]
    Postgres(String),
    /// A stored value that cannot be read back.
    #[error("the store holds an unreadable value: {0}")]
    Data(String),
    /// A file system error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // tokio-postgres' Display hides the server's message behind "db error"; the source has it.
        let detail = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        };
        Error::Postgres(detail)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Data(e.to_string())
    }
}
