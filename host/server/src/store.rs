//! The plugin store under `<home>/plugins` (octo-feed's content-addressed [`Store`]), opened once by a
//! command and handed down, and what its entries say about where a component came from. On a home
//! that shares a PostgreSQL store with other nodes, opening it first brings it up to the plugins the
//! nodes share, and a command that changed it [`Writing::publish`]es the change
//! ([`crate::shared::plugins`]).

use std::collections::BTreeMap;

use crate::error::{Context, Result};
use crate::home::Home;
use octo_feed::{LockEntry, Store};

/// The plugin store opened by a command that changes it: what was installed when it was opened,
/// to publish what the command changed.
pub struct Writing {
    home: Home,
    store: Store,
    before: BTreeMap<String, LockEntry>,
}

impl std::ops::Deref for Writing {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Writing {
    /// Shares what the command changed with the other nodes (nothing on a home that shares
    /// nothing). Call it once the change is made.
    pub fn publish(&self) -> Result<()> {
        crate::shared::plugins::publish(&self.home, &self.store, &self.before)
    }
}

/// The plugin store, created if missing (for commands that install; they call
/// [`Writing::publish`] when done).
pub fn open(home: &Home) -> Result<Writing> {
    let root = home.plugins();
    octo_fsutil::create_private_dir(&root)?;
    let store = Store::open(&root).context("cannot open the plugin store")?;
    crate::shared::plugins::pull(home, &store)?;
    let before = store.list()?;
    Ok(Writing {
        home: home.clone(),
        store,
        before,
    })
}

/// The store if it exists, without creating it (for read-only callers such as `run-step`).
pub fn existing(home: &Home) -> Result<Option<Store>> {
    let root = home.plugins();
    if crate::shared::plugins::shared(home)? {
        octo_fsutil::create_private_dir(&root)?;
        let store = Store::open(&root).context("cannot open the plugin store")?;
        crate::shared::plugins::pull(home, &store)?;
        if !root.join("plugins.lock").is_file() {
            return Ok(None);
        }
        return Ok(Some(store));
    }
    if !root.join("plugins.lock").is_file() {
        return Ok(None);
    }
    Ok(Some(
        Store::open(&root).context("cannot open the plugin store")?,
    ))
}

/// The bytes of the plugin installed under `id` if it came from a signed source and still matches its
/// digest.
pub fn signed_component(store: Option<&Store>, id: &str) -> Option<Vec<u8>> {
    let store = store?;
    let lock = store.get(id).ok().flatten()?;
    if !lock.source.is_signed() {
        return None;
    }
    store.read_blob(&lock.sha256).ok()
}
