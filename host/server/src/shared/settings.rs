//! The settings several nodes share — when they share a PostgreSQL database (`database` is set; a
//! SQLite home is one node, and its `octo.toml` stays the settings, as before) — kept in the store as
//! the `settings` document (TOML text), with each node's `octo.toml` as its local copy: every reader
//! goes on reading the file (one `stat` tells the live settings it changed), and the file stays the
//! bootstrap — `database`, which says where the store is, and `installationId` are the node's own and
//! never shared.
//!
//! - [`update`] (`octo configure`, `octo proxy`, `octo proxies`): a compare-and-swap on the document,
//!   retried from a fresh read when another node wrote in between — so concurrent `configure` on two
//!   nodes loses nothing — then the result is written to this node's file.
//! - [`sync`] (the daemon, at start and whenever the document's revision changes): the document is
//!   written to this node's file; a store without the document imports the file (once).

use octo_settings::{Settings, SettingsError};
use octo_store::Store;

use crate::error::Result;
use crate::home::Home;

/// The document's name.
pub const NAME: &str = "settings";

/// What is shared: the settings without the node's own keys.
fn shared_part(settings: &Settings) -> Settings {
    Settings {
        database: None,
        installation_id: None,
        ..settings.clone()
    }
}

/// `shared` with the node's own keys taken from `local`.
fn with_local(shared: Settings, local: &Settings) -> Settings {
    Settings {
        database: local.database.clone(),
        installation_id: local.installation_id.clone(),
        ..shared
    }
}

/// The shared settings and their revision; a store without them imports `local` (revision then 1).
async fn load(store: &dyn Store, home: &Home, local: &Settings) -> Result<(Settings, i64)> {
    loop {
        if let Some(document) = store.document(NAME).await? {
            let shared = Settings::parse(&document.body, &home.settings())?;
            return Ok((with_local(shared, local), document.revision));
        }
        let body = shared_part(local).to_toml()?;
        if let Some(revision) = store.put_document(NAME, &body, 0).await? {
            return Ok((local.clone(), revision));
        }
    }
}

/// Writes `settings` to this node's file when it differs (under the file's lock; the node's own keys
/// as the file has them then).
fn write_local(home: &Home, settings: &Settings) -> Result<Settings> {
    let path = home.settings();
    let current = Settings::load(&path)?;
    if with_local(settings.clone(), &current) == current {
        return Ok(current);
    }
    Ok(Settings::update(&path, |s| {
        *s = with_local(settings.clone(), s);
        Ok(())
    })?)
}

/// Brings this node's file up to the shared settings (importing the file when the store has none).
/// Returns the revision seen (0 on a SQLite home, which shares nothing).
pub async fn sync(store: &dyn Store, home: &Home) -> Result<i64> {
    let local = Settings::load(&home.settings())?;
    if local.database.is_none() {
        return Ok(0);
    }
    let (shared, revision) = load(store, home, &local).await?;
    write_local(home, &shared)?;
    Ok(revision)
}

/// The revision of the shared settings (0: not stored).
pub async fn revision(store: &dyn Store) -> Result<i64> {
    Ok(store.document_revision(NAME).await?)
}

/// Changes the settings with `f` and returns them as saved. With PostgreSQL: a compare-and-swap on
/// the shared document, retried from a fresh read when another node got in first (so `f` may run more
/// than once), then written to this node's file. On SQLite: the file's locked read-modify-write. An
/// error of `f` or an invalid result changes nothing.
pub fn update(
    home: &Home,
    mut f: impl FnMut(&mut Settings) -> Result<(), SettingsError> + Send,
) -> Result<Settings> {
    let path = home.settings();
    let local = Settings::load(&path)?;
    if local.database.is_none() {
        return Ok(Settings::update(&path, f)?);
    }
    super::block_on(async {
        let store = crate::tasks::open_store(home).await?;
        for _ in 0..super::ATTEMPTS {
            let (mut settings, revision) = load(&*store, home, &local).await?;
            f(&mut settings)?;
            settings.validate()?;
            let body = shared_part(&settings).to_toml()?;
            if store.put_document(NAME, &body, revision).await?.is_some() {
                return write_local(home, &settings);
            }
        }
        bail!(
            Failed,
            "the shared settings kept changing under this write; try again"
        )
    })
}
