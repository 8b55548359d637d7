//! `registry-mock publish`: components in, signed feed out.
//!
//! ```text
//! FEED_DIR/index.json              the index (pretty JSON), merged with what was there
//! FEED_DIR/index.json.sig          ed25519 signature of index.json's exact bytes
//! FEED_DIR/blobs/sha256/<hex>      the components, content addressed
//! ```

use anyhow::{Context, Result, bail};
use octo_feed::index::{Entry, FeedIndex};
use octo_feed::signature::{self, FeedSigningKey};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Directories (every `*.wasm` in them) or files.
    pub plugins: Vec<PathBuf>,
    /// The feed directory.
    pub out: PathBuf,
    /// The signing key file; default [`default_key_path`] of `out`.
    pub key: Option<PathBuf>,
    /// `ID@VERSION`s to mark yanked.
    pub yank: Vec<String>,
}

/// What publishing did.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// The public key to pin (base64).
    pub public_key: String,
    /// Whether the key file was created by this run.
    pub key_created: bool,
    /// One line per component: `id version sha256 (added|unchanged)`.
    pub lines: Vec<String>,
}

/// The default key file of a feed directory: a sibling named `<FEED_DIR>.key` (outside the served tree).
pub fn default_key_path(feed_dir: &Path) -> PathBuf {
    let normal: PathBuf = feed_dir.components().collect();
    let mut name = normal.into_os_string();
    name.push(".key");
    PathBuf::from(name)
}

/// Reads the signing key at `path`, or creates one there (mode 0600) if there is none.
pub fn load_or_create_key(path: &Path) -> Result<(FeedSigningKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = FeedSigningKey::from_base64(&text)
                .with_context(|| format!("reading the feed key {}", path.display()))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, _) = signature::generate_keypair()?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut options = std::fs::File::options();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("creating the feed key {}", path.display()))?;
            file.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
            file.sync_all()?;
            Ok((key, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading the feed key {}", path.display())),
    }
}

struct Component {
    path: PathBuf,
    bytes: Vec<u8>,
    entry: Entry,
}

fn collect_components(inputs: &[PathBuf]) -> Result<Vec<Component>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("listing {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
                .collect();
            if found.is_empty() {
                bail!("{} has no *.wasm components", input.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let mut components = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let manifest = octo_manifest::read_manifest(&bytes)
            .map_err(|e| anyhow::anyhow!("refusing {}: {e}", path.display()))?;
        let sha256 = octo_feed::sha256_hex(&bytes);
        let entry = Entry {
            version: manifest.version.clone(),
            blob: format!("blobs/sha256/{sha256}"),
            size: bytes.len() as u64,
            sha256,
            yanked: false,
            manifest,
        };
        components.push(Component { path, bytes, entry });
    }
    Ok(components)
}

/// Writes a published file atomically ([`octo_fsutil::write_atomic_with_mode`]), readable by everyone:
/// a feed is public.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    octo_fsutil::write_atomic_with_mode(path, bytes, 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// Publishes components (and yanks) into the feed at `options.out`, merging with its existing index.
///
/// Everything is checked before anything is written: a component without a manifest, a version already
/// published with other contents, or an unknown `--yank` fails the whole run.
pub fn publish(options: &PublishOptions) -> Result<PublishReport> {
    if options.plugins.is_empty() && options.yank.is_empty() {
        bail!("nothing to do: give --plugins DIR... and/or --yank ID@VERSION");
    }
    let components = collect_components(&options.plugins)?;
    let index_path = options.out.join("index.json");
    let mut index = match std::fs::read(&index_path) {
        Ok(bytes) => FeedIndex::parse(&bytes)
            .with_context(|| format!("reading the existing {}", index_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FeedIndex::empty(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", index_path.display())),
    };
    let mut lines = Vec::new();
    for component in &components {
        let added = index
            .add(component.entry.clone())
            .with_context(|| format!("publishing {}", component.path.display()))?;
        let e = &component.entry;
        lines.push(format!(
            "{} {} sha256:{} ({})",
            e.manifest.id,
            e.version,
            e.sha256,
            if added { "added" } else { "unchanged" }
        ));
    }
    for spec in &options.yank {
        let (id, version) = spec.split_once('@').with_context(|| {
            format!("--yank {spec:?}: expected ID@VERSION, e.g. run-script@0.1.0")
        })?;
        let version: semver::Version = version
            .parse()
            .with_context(|| format!("--yank {spec:?}: bad version"))?;
        index
            .set_yanked(id, &version, true)
            .with_context(|| format!("--yank {spec}"))?;
        lines.push(format!("{id} {version} yanked"));
    }

    let key_path = options
        .key
        .clone()
        .unwrap_or_else(|| default_key_path(&options.out));
    let (key, key_created) = load_or_create_key(&key_path)?;

    let blob_dir = options.out.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir)
        .with_context(|| format!("creating {}", blob_dir.display()))?;
    for component in &components {
        let target = blob_dir.join(&component.entry.sha256);
        if !target.exists() {
            write_atomic(&target, &component.bytes)?;
        }
    }
    // Index, then signature: a reader in between sees a signature that does not match (and retries).
    let bytes = index.to_json();
    write_atomic(&index_path, &bytes)?;
    write_atomic(
        &options.out.join("index.json.sig"),
        signature::sign(&key, &bytes).as_bytes(),
    )?;
    Ok(PublishReport {
        public_key: key.public_key().to_base64(),
        key_created,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use octo_manifest::Manifest;

    fn component(dir: &Path, name: &str, id: &str, version: &str, filler: &[u8]) -> PathBuf {
        let manifest = Manifest::from_json(
            format!(r#"{{"id":"{id}","version":"{version}","kind":"step","apiVersion":"0.1.0"}}"#)
                .as_bytes(),
        )
        .unwrap();
        // The smallest component, plus an unrelated custom section so contents can differ.
        let mut base = b"\0asm\x0d\0\x01\0".to_vec();
        base.push(0);
        base.push((2 + filler.len()) as u8);
        base.push(1);
        base.push(b'x');
        base.extend_from_slice(filler);
        let bytes = octo_manifest::embed_manifest(&base, &manifest).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn default_key_path_is_a_sibling() {
        assert_eq!(
            default_key_path(Path::new("/tmp/feed/")),
            PathBuf::from("/tmp/feed.key")
        );
        assert_eq!(
            default_key_path(Path::new("feed")),
            PathBuf::from("feed.key")
        );
    }

    #[test]
    fn publishes_merges_and_yanks() {
        let tmp = tempfile::tempdir().unwrap();
        let plugins = tmp.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        component(&plugins, "a.wasm", "run-script", "0.1.0", b"a");
        std::fs::write(plugins.join("README.md"), "not a component").unwrap();
        let out = tmp.path().join("feed");
        let options = PublishOptions {
            plugins: vec![plugins.clone()],
            out: out.clone(),
            ..Default::default()
        };
        let first = publish(&options).unwrap();
        assert!(first.key_created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join("feed.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let more = tmp.path().join("more");
        std::fs::create_dir(&more).unwrap();
        let b = component(&more, "b.wasm", "run-script", "0.2.0", b"b");
        let report = publish(&PublishOptions {
            plugins: vec![b],
            yank: vec!["run-script@0.1.0".into()],
            ..options.clone()
        })
        .unwrap();
        assert!(!report.key_created);
        assert_eq!(report.public_key, first.public_key);

        let bytes = std::fs::read(out.join("index.json")).unwrap();
        let sig = std::fs::read(out.join("index.json.sig")).unwrap();
        let key = octo_feed::FeedPublicKey::from_base64(&report.public_key).unwrap();
        octo_feed::signature::verify(&bytes, Some(&sig), &key).unwrap();
        let index = FeedIndex::parse(&bytes).unwrap();
        let versions: Vec<(String, bool)> = index
            .plugin("run-script")
            .unwrap()
            .versions
            .iter()
            .map(|e| (e.version.to_string(), e.yanked))
            .collect();
        assert_eq!(
            versions,
            [("0.1.0".to_string(), true), ("0.2.0".to_string(), false)]
        );
        for entry in &index.plugin("run-script").unwrap().versions {
            let blob = std::fs::read(out.join(&entry.blob)).unwrap();
            assert_eq!(octo_feed::sha256_hex(&blob), entry.sha256);
        }
        // Publishing the same again is a no-op.
        let again = publish(&options).unwrap();
        assert!(again.lines[0].ends_with("(unchanged)"), "{:?}", again.lines);
    }

    #[test]
    fn refuses_changed_contents_and_missing_manifests_without_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("feed");
        let a = component(tmp.path(), "a.wasm", "run-script", "0.1.0", b"a");
        publish(&PublishOptions {
            plugins: vec![a],
            out: out.clone(),
            ..Default::default()
        })
        .unwrap();
        let before = std::fs::read(out.join("index.json")).unwrap();

        let changed = component(tmp.path(), "a2.wasm", "run-script", "0.1.0", b"changed");
        let err = publish(&PublishOptions {
            plugins: vec![changed],
            out: out.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("publish it under a new version"),
            "{err:#}"
        );

        let bare = tmp.path().join("bare.wasm");
        std::fs::write(&bare, b"\0asm\x0d\0\x01\0").unwrap();
        let err = publish(&PublishOptions {
            plugins: vec![bare],
            out: out.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("refusing") && err.to_string().contains("no octo:manifest"),
            "{err}"
        );

        let err = publish(&PublishOptions {
            yank: vec!["nope@1.0.0".into()],
            out: out.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("no plugin"), "{err:#}");
        assert_eq!(
            std::fs::read(out.join("index.json")).unwrap(),
            before,
            "nothing was written"
        );
    }
}
