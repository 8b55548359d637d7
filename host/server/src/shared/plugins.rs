//! The installed plugins several nodes share — when they share a PostgreSQL database (a SQLite home
//! is one node: its plugin store under `<home>/plugins` alone, as before).
//!
//! The store keeps the `plugins` document (each id's lock entry, as `plugins.lock` has it) and every
//! component those entries name (current and previous versions) by sha256 in `task_components`. Each
//! node's `<home>/plugins` (octo-feed's content-addressed store) is its local copy, which the runtime
//! and every reader go on using:
//!
//! - [`pull`] (whenever a command or the daemon opens the plugin store): when the document's revision
//!   is not the one this node last copied (`plugins/shared-revision`), every entry that differs is
//!   copied with its components (each checked against its sha256 as it is read back) and entries the
//!   document lacks are removed.
//! - [`publish`] (after `plugins install|update|remove|rollback|import` changed the local store): the
//!   components of the changed entries are stored first, then the entries are written into the
//!   document with compare-and-swap, retried on a fresh read when another node wrote in between — so
//!   two installs on two nodes lose nothing (the same id on both: the last one wins).
//! - The first [`pull`] of a node (no `shared-revision` yet) imports what it had installed before
//!   it shared the store: its entries that the document lacks are published, once.

use std::collections::BTreeMap;

use octo_feed::LockEntry;
use octo_store::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::home::Home;

/// The document's name.
pub const NAME: &str = "plugins";

/// The file of a node's plugin store holding the document revision it last copied.
const REVISION_FILE: &str = "shared-revision";

/// What the document holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SharedLock {
    plugins: BTreeMap<String, LockEntry>,
}

/// Whether this home shares its plugins (its store is PostgreSQL).
pub fn shared(home: &Home) -> Result<bool> {
    Ok(home.load_settings()?.database.is_some())
}

async fn load(store: &dyn Store) -> Result<(SharedLock, i64)> {
    match store.document(NAME).await? {
        Some(document) => Ok((
            serde_json::from_str(&document.body).context(
                "the store holds an unreadable plugins document; fix or delete it, then install again",
            )?,
            document.revision,
        )),
        None => Ok((SharedLock::default(), 0)),
    }
}

fn revision_file(home: &Home) -> std::path::PathBuf {
    home.plugins().join(REVISION_FILE)
}

fn copied_revision(home: &Home) -> Option<i64> {
    std::fs::read_to_string(revision_file(home))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Stores the components `entry` names (current and previous) that this node has.
async fn store_components(
    store: &dyn Store,
    local: &octo_feed::Store,
    entry: &LockEntry,
) -> Result<()> {
    store
        .put_component(&entry.sha256, &local.read_blob(&entry.sha256)?)
        .await?;
    if let Some(previous) = &entry.previous
        && let Ok(bytes) = local.read_blob(&previous.sha256)
    {
        store.put_component(&previous.sha256, &bytes).await?;
    }
    Ok(())
}

/// The components the shared plugins name (current and previous versions): the store keeps them
/// for nodes that have yet to copy them.
pub async fn named_components(store: &dyn Store) -> Result<Vec<String>> {
    let (shared, _) = load(store).await?;
    Ok(shared
        .plugins
        .values()
        .flat_map(|entry| {
            std::iter::once(entry.sha256.clone())
                .chain(entry.previous.as_ref().map(|p| p.sha256.clone()))
        })
        .collect())
}

/// Copies the component `sha256` from the store into this node's, checked against its digest.
async fn fetch_component(store: &dyn Store, local: &octo_feed::Store, sha256: &str) -> Result<()> {
    if local.blob_path(sha256).is_file() {
        return Ok(());
    }
    let Some(bytes) = store.component(sha256).await? else {
        bail!(
            NotFound,
            "the store lacks the component {sha256} that the shared plugins name; install the plugin again"
        );
    };
    let actual = octo_fsutil::sha256_hex(&bytes);
    if actual != sha256 {
        bail!(
            Invalid,
            "the store's component {sha256} does not match its digest (it is {actual}); install the plugin again"
        );
    }
    local.add_blob(&bytes)?;
    Ok(())
}

/// Writes the entries of `changes` (`None`: removed) into the document, retrying on a fresh read
/// when another writer got in first.
async fn write(store: &dyn Store, changes: &BTreeMap<String, Option<LockEntry>>) -> Result<i64> {
    for _ in 0..super::ATTEMPTS {
        let (mut shared, revision) = load(store).await?;
        for (id, entry) in changes {
            match entry {
                Some(entry) => shared.plugins.insert(id.clone(), entry.clone()),
                None => shared.plugins.remove(id),
            };
        }
        let body = serde_json::to_string_pretty(&shared)?;
        if let Some(revision) = store.put_document(NAME, &body, revision).await? {
            return Ok(revision);
        }
    }
    bail!(
        Failed,
        "the shared plugins kept changing under this write; try again"
    )
}

/// Brings this node's plugin store up to the shared plugins (see the module documentation).
pub async fn pull_from(store: &dyn Store, home: &Home, local: &octo_feed::Store) -> Result<()> {
    let copied = copied_revision(home);
    if copied.is_none() {
        // This node's first look: what it installed before sharing is imported, once.
        let (shared, _) = load(store).await?;
        let mut changes = BTreeMap::new();
        for (id, entry) in local.list()? {
            if !shared.plugins.contains_key(&id) {
                store_components(store, local, &entry).await?;
                changes.insert(id, Some(entry));
            }
        }
        if !changes.is_empty() {
            write(store, &changes).await?;
        }
    }
    if copied.is_some() && store.document_revision(NAME).await? == copied.unwrap_or(0) {
        return Ok(());
    }
    let (shared, revision) = load(store).await?;
    let installed = local.list()?;
    for (id, entry) in &shared.plugins {
        if installed.get(id) == Some(entry) {
            continue;
        }
        fetch_component(store, local, &entry.sha256).await?;
        if let Some(previous) = &entry.previous
            && let Err(e) = fetch_component(store, local, &previous.sha256).await
        {
            tracing::warn!("plugin {id}'s previous version is not available here: {e}");
        }
        local.put_entry(id, entry.clone())?;
    }
    for id in installed.keys() {
        if !shared.plugins.contains_key(id) {
            local.remove(id)?;
        }
    }
    octo_fsutil::write_atomic(&revision_file(home), revision.to_string().as_bytes())?;
    Ok(())
}

/// [`pull_from`] on this home's store (opened for the call), from synchronous code; nothing on a
/// home that does not share its plugins.
pub fn pull(home: &Home, local: &octo_feed::Store) -> Result<()> {
    if !shared(home)? {
        return Ok(());
    }
    super::block_on(async {
        let store = crate::tasks::open_store(home).await?;
        pull_from(&*store, home, local).await
    })
    .context("cannot bring the installed plugins up to those the nodes share")
}

/// Publishes what changed in this node's plugin store since `before` (see the module
/// documentation); nothing on a home that does not share its plugins.
pub fn publish(
    home: &Home,
    local: &octo_feed::Store,
    before: &BTreeMap<String, LockEntry>,
) -> Result<()> {
    if !shared(home)? {
        return Ok(());
    }
    let after = local.list()?;
    let mut changes: BTreeMap<String, Option<LockEntry>> = BTreeMap::new();
    for (id, entry) in &after {
        if before.get(id) != Some(entry) {
            changes.insert(id.clone(), Some(entry.clone()));
        }
    }
    for id in before.keys() {
        if !after.contains_key(id) {
            changes.insert(id.clone(), None);
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    super::block_on(async {
        let store = crate::tasks::open_store(home).await?;
        for entry in changes.values().flatten() {
            store_components(&*store, local, entry).await?;
        }
        write(&*store, &changes).await?;
        Ok(())
    })
    .context(
        "installed here, but cannot share the change with the other nodes; run the command again",
    )
}
