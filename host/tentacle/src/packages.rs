//! The tentacle's package cache: each file of a package by its sha256 digest,
//! `packages/<sha256>/<name>`, with a record `packages/<sha256>.json` (feed, id, version, name,
//! size, when stored and last used). A file is stored only when the bytes received (an upload from
//! the server, or the tentacle's own download) have the announced digest, through a temporary
//! directory renamed into place. The cache keeps under a size budget by removing the files used
//! least recently, never one a running step uses.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use octo_protocol::{PackageFileRef, Sha256Digest, StepPackage};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

/// The default size budget: 10 GiB.
pub const DEFAULT_BUDGET: u64 = 10 << 30;

/// What the cache knows of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRecord {
    /// The feed on the server (empty for a file the administrator gave).
    pub feed: String,
    /// The package id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The file's name.
    pub name: String,
    /// Its digest.
    pub sha256: Sha256Digest,
    /// Its SHA-512 (lowercase hex), when it was downloaded against one a feed publishes: how a
    /// later run that names the file by that digest finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// Its size.
    pub size: u64,
    /// When it was stored (RFC 3339).
    pub stored_at: String,
    /// When a step last used it, milliseconds since the epoch (least recently used goes first).
    pub last_used_ms: u64,
}

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The bytes do not have the announced digest.
    #[error(
        "package {id} {version}: the file {name} has digest {actual}, not the announced {expected}; it was discarded"
    )]
    DigestMismatch {
        /// Package id.
        id: String,
        /// Version.
        version: String,
        /// File name.
        name: String,
        /// Announced.
        expected: Sha256Digest,
        /// Received.
        actual: Sha256Digest,
    },
    /// Larger than allowed.
    #[error("the package file is larger than {0} bytes")]
    TooLarge(u64),
    /// Reading the body or writing the file failed.
    #[error("storing the package file failed: {0}")]
    Io(#[from] io::Error),
}

impl From<crate::files::WriteHashedError> for PutError {
    fn from(e: crate::files::WriteHashedError) -> Self {
        match e {
            crate::files::WriteHashedError::TooLarge(limit) => Self::TooLarge(limit),
            crate::files::WriteHashedError::Io(e) => Self::Io(e),
        }
    }
}

/// The cache directory and the files running steps use.
#[derive(Debug, Clone)]
pub struct PackageCache {
    dir: PathBuf,
    budget: u64,
    in_use: Arc<Mutex<HashMap<Sha256Digest, usize>>>,
}

/// Files of a running step: kept from pruning until dropped.
pub struct InUse {
    cache: PackageCache,
    digests: Vec<Sha256Digest>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut map = self.cache.in_use.lock().unwrap_or_else(|e| e.into_inner());
        for d in &self.digests {
            if let Some(n) = map.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    map.remove(d);
                }
            }
        }
    }
}

impl PackageCache {
    /// A cache in `dir` (created on first put) keeping under `budget` bytes.
    pub fn new(dir: PathBuf, budget: u64) -> Self {
        Self {
            dir,
            budget,
            in_use: Arc::default(),
        }
    }

    fn file_dir(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    fn record_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(format!("{digest}.json"))
    }

    /// Where downloads are written before they are verified and taken in (created).
    pub fn tmp_dir(&self) -> io::Result<PathBuf> {
        let dir = self.dir.join(".tmp");
        octo_fsutil::create_private_dir(&dir)?;
        Ok(dir)
    }

    /// Whether the file is cached.
    pub fn has(&self, digest: &Sha256Digest) -> bool {
        self.record_path(digest).is_file() && self.file_dir(digest).is_dir()
    }

    /// Streams `reader` into the cache as `file` of `package`, checking size and digest; returns the
    /// size. Then keeps the cache under its budget.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        package: &PackageMeta<'_>,
        file: &PackageFileRef,
        reader: R,
        limit: u64,
    ) -> Result<u64, PutError> {
        self.store(package, file, |path| async move {
            crate::files::write_hashed(reader, &path, limit).await
        })
        .await
    }

    /// [`PackageCache::put`] of an upload's body: received on this task while another thread
    /// hashes and writes (what the server's push uses).
    pub async fn put_body<B>(
        &self,
        package: &PackageMeta<'_>,
        file: &PackageFileRef,
        body: B,
        limit: u64,
    ) -> Result<u64, PutError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        self.store(package, file, |path| async move {
            crate::files::write_hashed_body(body, &path, limit).await
        })
        .await
    }

    /// Writes `file` through `write` (which returns the size and digest of what it wrote) into a
    /// staging directory; keeps it only when the digest is the announced one.
    async fn store<W, F>(
        &self,
        package: &PackageMeta<'_>,
        file: &PackageFileRef,
        write: W,
    ) -> Result<u64, PutError>
    where
        W: FnOnce(PathBuf) -> F,
        F: std::future::Future<
                Output = Result<(u64, Sha256Digest), crate::files::WriteHashedError>,
            >,
    {
        octo_fsutil::create_private_dir(&self.dir)?;
        let staging = self
            .dir
            .join(format!(".partial-{}-{}", file.sha256, std::process::id()));
        let _ = tokio::fs::remove_dir_all(&staging).await;
        octo_fsutil::create_private_dir(&staging)?;
        let result = async {
            let (total, actual) = write(staging.join(&file.name)).await?;
            if actual != file.sha256 {
                return Err(PutError::DigestMismatch {
                    id: package.id.to_owned(),
                    version: package.version.to_owned(),
                    name: file.name.clone(),
                    expected: file.sha256,
                    actual,
                });
            }
            Ok(total)
        }
        .await;
        match result {
            Ok(size) => {
                self.commit(&staging, package, file, size, None)?;
                Ok(size)
            }
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                Err(e)
            }
        }
    }

    /// Takes a verified file (e.g. the tentacle's own download) into the cache, with the SHA-512
    /// it was verified against, if any.
    pub fn adopt(
        &self,
        verified: &Path,
        package: &PackageMeta<'_>,
        file: &PackageFileRef,
        sha512: Option<&str>,
    ) -> io::Result<()> {
        octo_fsutil::create_private_dir(&self.dir)?;
        let staging = self
            .dir
            .join(format!(".partial-{}-{}", file.sha256, std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        octo_fsutil::create_private_dir(&staging)?;
        let target = staging.join(&file.name);
        if std::fs::rename(verified, &target).is_err() {
            std::fs::copy(verified, &target)?;
        }
        let size = std::fs::metadata(&target)?.len();
        self.commit(&staging, package, file, size, sha512)
    }

    /// The cached file whose recorded SHA-512 is `sha512` (lowercase hex), if there is one.
    pub fn find_sha512(&self, sha512: &str) -> Option<PackageRecord> {
        self.list()
            .ok()?
            .into_iter()
            .find(|r| r.sha512.as_deref() == Some(sha512) && self.has(&r.sha256))
    }

    /// Moves a complete staging directory into place, then writes the record (a file without a
    /// record is not in the cache).
    fn commit(
        &self,
        staging: &Path,
        package: &PackageMeta<'_>,
        file: &PackageFileRef,
        size: u64,
        sha512: Option<&str>,
    ) -> io::Result<()> {
        let dir = self.file_dir(&file.sha256);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(staging, &dir)?;
        let record = PackageRecord {
            feed: package.feed.to_owned(),
            id: package.id.to_owned(),
            version: package.version.to_owned(),
            name: file.name.clone(),
            sha256: file.sha256,
            sha512: sha512.map(str::to_owned),
            size,
            stored_at: octo_fsutil::rfc3339(std::time::SystemTime::now()),
            last_used_ms: now_ms(),
        };
        self.write_record(&record)?;
        let _ = self.prune(self.budget);
        Ok(())
    }

    fn write_record(&self, record: &PackageRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("a record encodes");
        octo_fsutil::write_atomic(&self.record_path(&record.sha256), &bytes)
    }

    fn read_record(&self, digest: &Sha256Digest) -> Option<PackageRecord> {
        let bytes = std::fs::read(self.record_path(digest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The files of `package` this cache lacks.
    pub fn missing<'p>(&self, package: &'p StepPackage) -> Vec<&'p PackageFileRef> {
        package
            .files
            .iter()
            .filter(|f| !self.has(&f.sha256))
            .collect()
    }

    /// Marks the package's files as used now and keeps them from pruning while the guard lives;
    /// returns the directory the step mounts and the name it opens there: a single file's own
    /// directory, or (several files) `staging` with a hard link of each.
    pub fn use_package(
        &self,
        package: &StepPackage,
        staging: &Path,
    ) -> io::Result<(PathBuf, String, InUse)> {
        let guard = {
            let mut map = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
            for f in &package.files {
                *map.entry(f.sha256).or_default() += 1;
            }
            InUse {
                cache: self.clone(),
                digests: package.files.iter().map(|f| f.sha256).collect(),
            }
        };
        for f in &package.files {
            if let Some(mut record) = self.read_record(&f.sha256) {
                record.last_used_ms = now_ms();
                let _ = self.write_record(&record);
            }
        }
        match package.files.as_slice() {
            [one] => {
                let dir = self.file_dir(&one.sha256);
                let cached = cached_name(&dir)?;
                let name = octo_builtin_plugins::deploy_package::mount_name([cached.as_str()]);
                Ok((dir, name, guard))
            }
            files => {
                octo_fsutil::create_private_dir(staging)?;
                for f in files {
                    let dir = self.file_dir(&f.sha256);
                    let source = dir.join(cached_name(&dir)?);
                    let target = staging.join(&f.name);
                    if std::fs::hard_link(&source, &target).is_err() {
                        std::fs::copy(&source, &target)?;
                    }
                }
                Ok((staging.to_path_buf(), ".".to_owned(), guard))
            }
        }
    }

    /// Every cached file, least recently used first.
    pub fn list(&self) -> io::Result<Vec<PackageRecord>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(digest) = Sha256Digest::parse(hex) else {
                continue;
            };
            if let Some(record) = self.read_record(&digest) {
                out.push(record);
            }
        }
        out.sort_by_key(|r| (r.last_used_ms, r.sha256.to_hex()));
        Ok(out)
    }

    /// Removes the least recently used files until the cache holds at most `budget` bytes, skipping
    /// files in use; returns what was removed.
    pub fn prune(&self, budget: u64) -> io::Result<Vec<PackageRecord>> {
        let records = self.list()?;
        let mut total: u64 = records.iter().map(|r| r.size).sum();
        let in_use = self
            .in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut removed = Vec::new();
        for record in records {
            if total <= budget {
                break;
            }
            if in_use.contains_key(&record.sha256) {
                continue;
            }
            // The record first: without it the file is not in the cache.
            std::fs::remove_file(self.record_path(&record.sha256))?;
            let _ = std::fs::remove_dir_all(self.file_dir(&record.sha256));
            total -= record.size;
            removed.push(record);
        }
        Ok(removed)
    }
}

/// What a package file belongs to, for its record.
#[derive(Debug, Clone, Copy)]
pub struct PackageMeta<'a> {
    /// Feed.
    pub feed: &'a str,
    /// Package id.
    pub id: &'a str,
    /// Version.
    pub version: &'a str,
}

impl<'a> From<&'a StepPackage> for PackageMeta<'a> {
    fn from(p: &'a StepPackage) -> Self {
        PackageMeta {
            feed: &p.feed,
            id: &p.id,
            version: &p.version,
        }
    }
}

/// The one file in a cached file's directory.
fn cached_name(dir: &Path) -> io::Result<String> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            return Ok(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} holds no file", dir.display()),
    ))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(files: &[(&str, &[u8])]) -> StepPackage {
        StepPackage {
            feed: "f".into(),
            id: "app".into(),
            version: "1.0.0".into(),
            files: files
                .iter()
                .map(|(name, bytes)| PackageFileRef {
                    name: name.to_string(),
                    sha256: Sha256Digest::of(bytes),
                    size: bytes.len() as u64,
                })
                .collect(),
            direct: None,
        }
    }

    #[tokio::test]
    async fn put_verifies_lists_and_prunes_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(dir.path().join("packages"), u64::MAX);
        let a = package(&[("a.zip", b"aaaa")]);
        let b = package(&[("b.zip", b"bbbbbb")]);
        for p in [&a, &b] {
            let bytes = if p.files[0].name == "a.zip" {
                &b"aaaa"[..]
            } else {
                &b"bbbbbb"[..]
            };
            cache
                .put(&p.into(), &p.files[0], bytes, 1 << 20)
                .await
                .unwrap();
        }
        assert!(cache.missing(&a).is_empty());
        // A wrong digest is refused and leaves nothing.
        let c = package(&[("c.zip", b"cc")]);
        let err = cache
            .put(&(&c).into(), &c.files[0], &b"XX"[..], 1 << 20)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("package app 1.0.0"), "{err}");
        assert_eq!(cache.missing(&c).len(), 1);
        assert_eq!(cache.list().unwrap().len(), 2);

        // Using a makes b the least recently used.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (mount, name, guard) = cache.use_package(&a, &dir.path().join("s")).unwrap();
        assert_eq!(std::fs::read(mount.join(&name)).unwrap(), b"aaaa");
        let removed = cache.prune(5).unwrap();
        assert_eq!(
            removed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b.zip"]
        );
        // a is in use: not removed even over budget.
        assert!(cache.prune(0).unwrap().is_empty());
        drop(guard);
        assert_eq!(cache.prune(0).unwrap().len(), 1);
        assert!(cache.list().unwrap().is_empty());
    }
}
