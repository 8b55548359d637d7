//! The server's identity, shared by the nodes of a cluster (a PostgreSQL `database`): every node must
//! present the one certificate tentacles pinned. It is kept in the store as the `identity` document
//! (certificate and PKCS#8 private key, PEM) — so **the private key is in the database**, which must
//! be as private as `certs/` — and each node keeps a copy in its own `certs/`. The first node to start
//! offers its identity (an existing `certs/` is imported, else a new one is made); the store keeps the
//! first offer, and every other node takes it. A SQLite home is one node: `certs/` alone, as before.

use octo_comms::identity::{self, Identity};
use octo_store::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::home::Home;

/// The document's name.
pub const NAME: &str = "identity";

#[derive(Serialize, Deserialize)]
struct Stored {
    certificate: String,
    key: String,
}

/// The identity in `certs/` as the document's text (read from its files, which are written whole
/// under their lock before an identity is returned).
fn body(home: &Home) -> Result<String> {
    let certs = home.certs();
    let read = |name: &str| {
        let path = certs.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(serde_json::to_string(&Stored {
        certificate: read(identity::CERT_FILE)?,
        key: read(identity::KEY_FILE)?,
    })?)
}

fn parse(body: &str) -> Result<Identity> {
    let stored: Stored = serde_json::from_str(body)
        .context("the store holds an unreadable server identity; fix or delete it")?;
    Ok(Identity::from_pem(&stored.certificate, &stored.key)?)
}

/// Whether this home shares its identity (its store is PostgreSQL).
fn shared(home: &Home) -> Result<bool> {
    Ok(home.load_settings()?.database.is_some())
}

/// This node's copy in `certs/`, replaced when it is not `identity`.
fn keep_copy(home: &Home, identity: &Identity, local: &Identity) -> Result<()> {
    if local.thumbprint() != identity.thumbprint() {
        identity.save(&home.certs())?;
    }
    Ok(())
}

async fn load_or_offer(store: &dyn Store, home: &Home, name: &str) -> Result<Identity> {
    let local = Identity::load_or_create(&home.certs(), name)?;
    loop {
        if let Some(document) = store.document(NAME).await? {
            let identity = parse(&document.body)?;
            keep_copy(home, &identity, &local)?;
            return Ok(identity);
        }
        if store.put_document(NAME, &body(home)?, 0).await?.is_some() {
            return Ok(local);
        }
    }
}

/// The server's identity: the store's when shared (offering this node's when the store has none),
/// else `certs/`'s, created on first use.
pub fn load_or_create(home: &Home, name: &str) -> Result<Identity> {
    home.create()?;
    if !shared(home)? {
        return Ok(Identity::load_or_create(&home.certs(), name)?);
    }
    super::block_on(async {
        let store = crate::tasks::open_store(home).await?;
        load_or_offer(&*store, home, name).await
    })
}

/// `new-certificate`: a new identity for every node sharing the store (each takes its copy at its
/// next start), or for this home alone.
pub fn regenerate(home: &Home, name: &str) -> Result<Identity> {
    if !shared(home)? {
        return Ok(Identity::regenerate(&home.certs(), name)?);
    }
    let identity = Identity::regenerate(&home.certs(), name)?;
    let text = body(home)?;
    super::block_on(async {
        let store = crate::tasks::open_store(home).await?;
        for _ in 0..super::ATTEMPTS {
            let revision = store.document_revision(NAME).await?;
            if store.put_document(NAME, &text, revision).await?.is_some() {
                return Ok(());
            }
        }
        bail!(
            Failed,
            "the shared identity kept changing under this write; try again"
        )
    })?;
    Ok(identity)
}
