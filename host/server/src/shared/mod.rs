//! What several nodes share — targets, package feeds, grants, the settings ([`settings`]), the
//! server's identity ([`identity`]) and the installed plugins ([`plugins`]) — kept in the store (octo-store's [`Documents`]) as one
//! JSON document each, so every node sharing a PostgreSQL database (or every process of one home on
//! SQLite) sees the same state.
//!
//! - [`load`] reads a document. A store that lacks it imports the old file of the home once (one
//!   write that only succeeds while the document is still missing); the file is then renamed
//!   `<file>.imported` and never read again. When another node imported first, the file is left as it
//!   is and ignored.
//! - [`update`] is a read-modify-write with compare-and-swap on the document's revision: when another
//!   writer got in between, it reads again and re-applies the change, so concurrent writers lose
//!   nothing.
//!
//! Everything needed to open the store stays local: `octo.toml`'s `database` setting is the bootstrap.

pub mod identity;
pub mod plugins;
pub mod settings;

use std::future::Future;
use std::path::{Path, PathBuf};

use octo_store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Context, Result};
use crate::home::Home;

/// A shared document: its name in the store and the file it was kept in before.
pub trait Shared: Serialize + DeserializeOwned + Default + Send {
    /// Its name in the store.
    const NAME: &'static str;

    /// The file of a home that held it before the store did.
    fn old_file(home: &Home) -> PathBuf;

    /// Reads that file's bytes.
    fn parse_old(bytes: &[u8], path: &Path) -> Result<Self>;
}

/// How often a compare-and-swap is retried before giving up (only reached under a storm of writers).
pub(crate) const ATTEMPTS: usize = 100;

fn parse<T: Shared>(body: &str) -> Result<T> {
    serde_json::from_str(body).with_context(|| {
        format!(
            "the store holds an unreadable {} document; fix or delete it",
            T::NAME
        )
    })
}

/// The document and its revision (0: not stored, and no old file to import).
pub async fn load<T: Shared>(store: &dyn Store, home: &Home) -> Result<(T, i64)> {
    loop {
        if let Some(document) = store.document(T::NAME).await? {
            return Ok((parse(&document.body)?, document.revision));
        }
        let file = T::old_file(home);
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((T::default(), 0)),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let value = T::parse_old(&bytes, &file)?;
        let body = serde_json::to_string_pretty(&value)?;
        if let Some(revision) = store.put_document(T::NAME, &body, 0).await? {
            let mut imported = file.clone().into_os_string();
            imported.push(".imported");
            std::fs::rename(&file, &imported).with_context(|| {
                format!(
                    "imported {} into the store but cannot rename it",
                    file.display()
                )
            })?;
            return Ok((value, revision));
        }
        // Another node imported (or wrote) it first: read theirs.
    }
}

/// Changes the document with `f` and stores it, retrying from a fresh read when another writer got
/// in first (so `f` may run more than once). Returns what `f` returned.
pub async fn update<T: Shared, R>(
    store: &dyn Store,
    home: &Home,
    mut f: impl FnMut(&mut T) -> Result<R>,
) -> Result<R> {
    for _ in 0..ATTEMPTS {
        let (mut value, revision) = load::<T>(store, home).await?;
        let out = f(&mut value)?;
        let body = serde_json::to_string_pretty(&value)?;
        if store
            .put_document(T::NAME, &body, revision)
            .await?
            .is_some()
        {
            return Ok(out);
        }
    }
    bail!(
        Failed,
        "the {} document kept changing under this write; try again",
        T::NAME
    )
}

/// The revision of a document (0: not stored): a cheap check of whether another node changed it.
pub async fn revision<T: Shared>(store: &dyn Store) -> Result<i64> {
    Ok(store.document_revision(T::NAME).await?)
}

/// Runs `f` to its end from synchronous code (a CLI command), on a runtime of its own — on a thread
/// of its own when the caller already runs inside one.
pub fn block_on<T: Send>(f: impl Future<Output = Result<T>> + Send) -> Result<T> {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f)
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| {
        s.spawn(run)
            .join()
            .unwrap_or_else(|_| bail!(Failed, "reading the store panicked"))
    })
}

/// Loads a document from this home's store (opened for the call), from synchronous code.
pub fn load_in<T: Shared>(home: &Home) -> Result<T> {
    block_on(async {
        let store = crate::tasks::open_store(home).await?;
        Ok(load::<T>(&*store, home).await?.0)
    })
}

/// Updates a document in this home's store (opened for the call), from synchronous code.
pub fn update_in<T: Shared, R: Send>(
    home: &Home,
    f: impl FnMut(&mut T) -> Result<R> + Send,
) -> Result<R> {
    block_on(async {
        let store = crate::tasks::open_store(home).await?;
        update::<T, R>(&*store, home, f).await
    })
}
