//! One install: from the feed (`install ID[@REQ]`) or from a local file (`install --file PATH`).
//!
//! The order is what makes it safe: resolve in the verified index → refuse an unsupported API before
//! downloading → stream to a temporary file in the store, checking size and sha256 → read the component's
//! own manifest and refuse it unless it agrees with the index and its API is supported → rename the blob
//! into the store → write the lock entry (atomic rename). A failure (or SIGKILL) before the last step
//! leaves the previous lock entry, so the previous version keeps running.

use super::{PluginSpec, describe_manifest};
use crate::error::{Context, Error, Result};
use crate::feeds::{StepsFeed, block_on};
use crate::home::Home;
use crate::sink::Sink;
use octo_feed::store::{LockEntry, NewEntry};
use octo_feed::{Entry, FetchedIndex, Source, Store};
use octo_manifest::Manifest;
use semver::VersionReq;
use std::fmt;
use std::path::{Path, PathBuf};

/// What an install did.
#[derive(Debug)]
pub struct Installed {
    /// The plugin id.
    pub id: String,
    /// The new lock entry.
    pub lock: LockEntry,
    /// The component's manifest.
    pub manifest: Manifest,
    /// The version it replaced (None: new install, or the same content again).
    pub replaced: Option<semver::Version>,
    /// The same content was already installed.
    pub unchanged: bool,
    /// Installed from a local file (pinned: `update` leaves it alone).
    pub from_file: bool,
}

impl fmt::Display for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report())?;
        if self.from_file {
            writeln!(
                f,
                "  (pinned to ={}: `octo plugins update` leaves a plugin installed from a file alone)",
                self.lock.version
            )?;
        }
        Ok(())
    }
}

impl Installed {
    /// The lines `install` and `update` print.
    pub fn report(&self) -> String {
        let mut out = if self.unchanged {
            format!("{} {} is already installed\n", self.id, self.lock.version)
        } else {
            match &self.replaced {
                Some(old) => format!("installed {} {} (was {old})\n", self.id, self.lock.version),
                None => format!("installed {} {}\n", self.id, self.lock.version),
            }
        };
        out.push_str(&format!("  from {}\n", self.lock.source));
        out.push_str(&format!("  sha256 {}\n", self.lock.sha256));
        out.push_str(&describe_manifest(&self.manifest));
        if let Some(previous) = &self.lock.previous {
            out.push_str(&format!(
                "  previous version kept: {} (`octo plugins rollback {}` goes back to it)\n",
                previous.version, self.id
            ));
        }
        out
    }
}

/// Removes a temporary file on drop unless it was consumed (renamed into the store).
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The checks every component passes before it is installed: it carries a manifest, the manifest agrees
/// with the index entry it was downloaded for (if any), and its plugin API is one this host implements.
pub fn check_component(bytes: &[u8], entry: Option<&Entry>) -> Result<Manifest> {
    let manifest = octo_manifest::read_manifest(bytes)?;
    if let Some(entry) = entry {
        entry.check_manifest(&manifest)?;
    }
    manifest.check_api_version()?;
    Ok(manifest)
}

/// Downloads (unless the store already has the blob), checks and installs `entry`, recording
/// `requirement` in the lock file.
pub async fn install_entry(
    store: &Store,
    feed: &StepsFeed,
    fetched: &FetchedIndex,
    entry: &Entry,
    requirement: VersionReq,
) -> Result<Installed> {
    let id = entry.manifest.id.clone();
    // Refuse before downloading what could never run here.
    entry.manifest.check_api_version()?;
    let current = store.get(&id)?;
    let have_blob = std::fs::read(store.blob_path(&entry.sha256))
        .ok()
        .filter(|bytes| octo_fsutil::sha256_hex(bytes) == entry.sha256);
    let (bytes, temp) = match have_blob {
        Some(bytes) => (bytes, TempFile(None)),
        None => {
            let path = feed.download(fetched, entry, &store.download_dir()).await?;
            let temp = TempFile(Some(path.clone()));
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read the download {}", path.display()))?;
            (bytes, temp)
        }
    };
    let manifest = check_component(&bytes, Some(entry))?;
    let mut temp = temp;
    if let Some(path) = temp.0.take() {
        store.install_blob(&path, &entry.sha256)?;
    }
    let source = feed.source_of(fetched, entry);
    let lock = set_entry(store, &id, entry, requirement, source)?;
    let unchanged = current.as_ref().is_some_and(|c| c.sha256 == lock.sha256);
    Ok(Installed {
        replaced: current
            .filter(|c| c.sha256 != lock.sha256)
            .map(|c| c.version),
        id,
        lock,
        manifest,
        unchanged,
        from_file: false,
    })
}

fn set_entry(
    store: &Store,
    id: &str,
    entry: &Entry,
    requirement: VersionReq,
    source: Source,
) -> Result<LockEntry> {
    Ok(store.set_entry(
        id,
        NewEntry {
            requirement,
            version: entry.version.clone(),
            sha256: entry.sha256.clone(),
            source,
            kind: entry.manifest.kind,
        },
    )?)
}

/// `octo plugins install ID[@REQ]`: installs `spec` from the steps feed (through the gate).
pub fn install_spec(home: &Home, spec: &PluginSpec, sink: &Sink) -> Result<Installed> {
    let settings = home.load_settings()?;
    let context = || match &spec.requirement {
        Some(req) => format!("cannot install {}@{req}", spec.id),
        None => format!("cannot install {}", spec.id),
    };
    let feed = StepsFeed::open(home, &settings, sink).with_context(context)?;
    let store = crate::store::open(home)?;
    let installed = block_on(async {
        let fetched = feed.fetch_index().await?;
        let entry = fetched.index.resolve(
            &spec.id,
            spec.requirement.as_ref().unwrap_or(&VersionReq::STAR),
        )?;
        // Without a requirement, record "compatible with what was installed", so that `update` never
        // crosses a breaking change on its own.
        let requirement = spec
            .requirement
            .clone()
            .unwrap_or_else(|| super::compatible_with(&entry.version));
        install_entry(&store, &feed, &fetched, entry, requirement).await
    })?
    .with_context(context)?;
    store.publish()?;
    Ok(installed)
}

/// `octo plugins install --file PATH`: a local component, unsigned, pinned to its version.
pub fn install_file(home: &Home, path: &Path) -> Result<Installed> {
    let context = || format!("cannot install {}", path.display());
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .with_context(context)?;
    let manifest = check_component(&bytes, None).with_context(context)?;
    let store = crate::store::open(home)?;
    let current = store.get(&manifest.id)?;
    let sha256 = store.add_blob(&bytes)?;
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let lock = store.set_entry(
        &manifest.id,
        NewEntry {
            requirement: VersionReq::parse(&format!("={}", manifest.version))
                .map_err(|e| Error::Invalid(e.to_string()))?,
            version: manifest.version.clone(),
            sha256,
            // A local file is never signed, whatever its path or contents look like.
            source: Source::LocalFile {
                path: absolute.display().to_string(),
            },
            kind: manifest.kind,
        },
    )?;
    store.publish()?;
    Ok(Installed {
        id: manifest.id.clone(),
        unchanged: current.as_ref().is_some_and(|c| c.sha256 == lock.sha256),
        replaced: current
            .filter(|c| c.sha256 != lock.sha256)
            .map(|c| c.version),
        lock,
        manifest,
        from_file: true,
    })
}
