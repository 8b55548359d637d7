//! The plugin store under `<home>/plugins` (octo-feed's content-addressed [`Store`]), opened once by a
//! command and handed down, and what its entries say about where a component came from.

use crate::error::{Context, Result};
use crate::home::Home;
use octo_feed::Store;

/// The plugin store, created if missing (for commands that install).
pub fn open(home: &Home) -> Result<Store> {
    let root = home.plugins();
    octo_fsutil::create_private_dir(&root)?;
    Store::open(&root).context("cannot open the plugin store")
}

/// The store if it exists, without creating it (for read-only callers such as `run-step`).
pub fn existing(home: &Home) -> Result<Option<Store>> {
    let root = home.plugins();
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
