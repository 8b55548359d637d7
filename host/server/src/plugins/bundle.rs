//! Offline bundles for air-gapped servers.
//!
//! A bundle is a directory laid out like a feed, so it can also be served as one:
//!
//! ```text
//! BUNDLE/index.json            the feed's signed index, byte for byte as fetched
//! BUNDLE/index.json.sig        its signature
//! BUNDLE/blobs/sha256/<hex>    the selected components
//! BUNDLE/bundle.json           which (id, version) the bundle carries; informational, not trusted
//! ```
//!
//! `export` (on a connected machine) verifies the index and every download exactly as `install` does, and
//! writes the bundle into a temporary sibling directory renamed into place at the end. `import` (offline)
//! verifies the signature with the pinned key, then every component against the signed index (size,
//! sha256, manifest, plugin API) before it installs any of them: all or nothing.

use super::install::check_component;
use super::update::newest;
use super::{PluginSpec, compatible_with};
use crate::error::{Context, Error, Result};
use crate::feeds::{StepsFeed, block_on, pinned_key};
use crate::home::Home;
use crate::sink::Sink;
use octo_feed::store::NewEntry;
use octo_feed::{Entry, FeedIndex, Source};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

const MANIFEST: &str = "bundle.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleManifest {
    schema: u32,
    created_at: String,
    feed_url: String,
    plugins: Vec<BundlePlugin>,
}

/// One plugin in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundlePlugin {
    /// Its id.
    pub id: String,
    /// Its version.
    pub version: semver::Version,
    /// The component's sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What `octo plugins export` wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The bundle directory.
    pub dir: PathBuf,
    /// What it carries.
    pub plugins: Vec<BundlePlugin>,
}

impl fmt::Display for Exported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "exported {} plugin(s) to {}: {}",
            self.plugins.len(),
            self.dir.display(),
            self.plugins
                .iter()
                .map(|p| format!("{} {}", p.id, p.version))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            f,
            "copy the directory to the air-gapped server and run `octo plugins import {}` there",
            self.dir.display()
        )
    }
}

/// `octo plugins export --to DIR [ID[@REQ]...]`: each component as it is written is a note on `sink`.
pub fn export(home: &Home, to: &Path, specs: &[PluginSpec], sink: &Sink) -> Result<Exported> {
    let settings = home.load_settings()?;
    let target = to;
    let context = || format!("cannot export a bundle to {}", target.display());
    if target.exists() {
        let empty = std::fs::read_dir(target)
            .with_context(context)?
            .next()
            .is_none();
        if !empty {
            bail!(
                Invalid,
                "{}: the directory is not empty; choose a new directory",
                context()
            );
        }
        std::fs::remove_dir(target).with_context(context)?;
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(context)?;
    let feed = StepsFeed::open(home, &settings, sink).with_context(context)?;
    let staging = tempfile::Builder::new()
        .prefix(".octo-bundle-")
        .tempdir_in(parent)
        .with_context(context)?;
    let blob_dir = staging.path().join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).with_context(context)?;

    let plugins = block_on(async {
        let fetched = feed.fetch_index().await?;
        let selected: Vec<&Entry> = if specs.is_empty() {
            fetched
                .index
                .plugins
                .iter()
                .filter_map(|p| newest(&fetched.index, &p.id, |_| true))
                .collect()
        } else {
            let mut selected = Vec::new();
            for spec in specs {
                let entry = fetched.index.resolve(
                    &spec.id,
                    spec.requirement
                        .as_ref()
                        .unwrap_or(&semver::VersionReq::STAR),
                )?;
                entry.manifest.check_api_version()?;
                selected.push(entry);
            }
            selected
        };
        if selected.is_empty() {
            bail!(NotFound, "the feed has no plugin this host can run");
        }
        let mut plugins = Vec::new();
        for entry in selected {
            let temp = feed.download(&fetched, entry, &blob_dir).await?;
            let checked = std::fs::read(&temp)
                .map_err(Error::from)
                .and_then(|bytes| check_component(&bytes, Some(entry)).map(|_| ()));
            if let Err(e) = checked {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
            std::fs::rename(&temp, blob_dir.join(&entry.sha256))?;
            sink.note(&format!(
                "  {} {} ({} bytes)",
                entry.manifest.id, entry.version, entry.size
            ));
            plugins.push(BundlePlugin {
                id: entry.manifest.id.clone(),
                version: entry.version.clone(),
                sha256: entry.sha256.clone(),
                size: entry.size,
            });
        }
        std::fs::write(staging.path().join("index.json"), &fetched.bytes)?;
        std::fs::write(staging.path().join("index.json.sig"), &fetched.signature)?;
        let manifest = BundleManifest {
            schema: 1,
            created_at: octo_fsutil::rfc3339(std::time::SystemTime::now()),
            feed_url: feed.url().to_string(),
            plugins,
        };
        let mut json = serde_json::to_vec_pretty(&manifest)?;
        json.push(b'\n');
        std::fs::write(staging.path().join(MANIFEST), json)?;
        Ok::<_, Error>(manifest.plugins)
    })?
    .with_context(context)?;

    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, target) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(context);
    }
    Ok(Exported {
        dir: target.to_path_buf(),
        plugins,
    })
}

/// A component read from a bundle and checked against the signed index.
struct Checked<'a> {
    entry: &'a Entry,
    bytes: Vec<u8>,
}

/// What `octo plugins import` did: the lines it prints, one or more per plugin.
#[derive(Debug, Clone, Default)]
pub struct Imported(pub Vec<String>);

impl fmt::Display for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.0 {
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// `octo plugins import DIR`: checks everything against the pinned key, then installs all (or nothing).
pub fn import(home: &Home, dir: &Path) -> Result<Imported> {
    let context = || format!("cannot import the bundle {}", dir.display());
    let settings = home.load_settings()?;
    let key = pinned_key(&settings).with_context(context)?;
    let read = |name: &str| -> Result<Option<Vec<u8>>> {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.join(name).display())),
        }
    };
    let index_bytes = read("index.json").with_context(context)?.with_context(|| {
        format!(
            "{}: no index.json (not a bundle from `octo plugins export`)",
            context()
        )
    })?;
    let signature = read("index.json.sig").with_context(context)?;
    octo_feed::signature::verify(&index_bytes, signature.as_deref(), &key).with_context(context)?;
    let index = FeedIndex::parse(&index_bytes).with_context(context)?;

    // Which components: the ones bundle.json names, or else every one whose blob is in the directory.
    let wanted: Vec<(String, semver::Version)> = match read(MANIFEST).with_context(context)? {
        Some(bytes) => {
            let manifest: BundleManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: {MANIFEST} is malformed", context()))?;
            manifest
                .plugins
                .into_iter()
                .map(|p| (p.id, p.version))
                .collect()
        }
        None => index
            .plugins
            .iter()
            .flat_map(|p| p.versions.iter())
            .filter(|e| dir.join(&e.blob).is_file())
            .map(|e| (e.manifest.id.clone(), e.version.clone()))
            .collect(),
    };
    if wanted.is_empty() {
        bail!(Invalid, "{}: the bundle carries no components", context());
    }

    // Check everything before installing anything.
    let mut checked = Vec::new();
    for (id, version) in &wanted {
        let entry = index
            .plugin(id)
            .and_then(|p| p.versions.iter().find(|e| &e.version == version))
            .with_context(|| {
                format!(
                    "{}: {id} {version} is not in the bundle's signed index",
                    context()
                )
            })?;
        let path = dir.join(&entry.blob);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{id} {version}: cannot read {}", path.display()))
            .with_context(context)?;
        if bytes.len() as u64 != entry.size {
            bail!(
                Invalid,
                "{}: {id} {version}: {} has {} bytes, the signed index says {}",
                context(),
                path.display(),
                bytes.len(),
                entry.size
            );
        }
        let actual = octo_fsutil::sha256_hex(&bytes);
        if actual != entry.sha256 {
            bail!(
                Invalid,
                "{}: {id} {version}: {} has sha256 {actual}, the signed index says {}",
                context(),
                path.display(),
                entry.sha256
            );
        }
        check_component(&bytes, Some(entry))
            .with_context(|| format!("{id} {version}"))
            .with_context(context)?;
        checked.push(Checked { entry, bytes });
    }

    let store = crate::store::open(home)?;
    let source_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Imported::default();
    for Checked { entry, bytes } in checked {
        let id = &entry.manifest.id;
        if let Some(current) = store.get(id)?
            && current.version > entry.version
        {
            out.0.push(format!(
                "kept {id} {}: the bundle's {} is older\n",
                current.version, entry.version
            ));
            continue;
        }
        let before = store.get(id)?;
        let sha256 = store.add_blob(&bytes)?;
        let lock = store.set_entry(
            id,
            NewEntry {
                requirement: before
                    .as_ref()
                    .map(|b| b.requirement.clone())
                    .filter(|r| r.matches(&entry.version))
                    .unwrap_or_else(|| compatible_with(&entry.version)),
                version: entry.version.clone(),
                sha256,
                source: Source::SignedBundle {
                    path: source_dir.display().to_string(),
                    key: Some(key.to_base64()),
                },
                kind: entry.manifest.kind,
            },
        )?;
        out.0.push(match before {
            Some(b) if b.sha256 == lock.sha256 => {
                format!("{id} {} is already installed\n", lock.version)
            }
            Some(b) => format!("installed {id} {} (was {})\n", lock.version, b.version),
            None => format!("installed {id} {}\n", lock.version),
        });
        out.0.push(super::describe_manifest(&entry.manifest));
    }
    store.publish()?;
    Ok(out)
}
