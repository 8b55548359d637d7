//! The server's package cache: content-addressed files and one entry per resolved package.
//!
//! ```text
//! <home>/packages/blobs/sha256/<hex>         each downloaded file, named by its sha256
//! <home>/packages/entries/<key>.json         one resolved package: its PackageDownload with every
//!                                            file's sha256 and size filled in, and when it was fetched
//! <home>/packages/locks/<key>.lock           flock(2) held while <key> is acquired
//! <home>/packages/tmp/                       downloads in progress (`.tmp-*`), renamed into blobs/
//! ```
//!
//! `<key>` is the sha256 of `feed \0 id-lowercase \0 version`, so no id or version ever becomes a path.
//! A download goes to `tmp/`, is verified, fsynced and renamed into `blobs/` (the same file system);
//! the entry is written (atomically) after all its blobs are in place. A crash leaves at most a temporary
//! file (removed by `prune`) or blobs without an entry (the next acquisition reuses them).

use crate::error::{Context, Result};
use octo_packages::PackageDownload;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One cached package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    /// What was downloaded; every file's `sha256` and `size` are set.
    pub download: PackageDownload,
    /// When (RFC 3339).
    pub fetched: String,
}

impl CacheEntry {
    /// The sum of the files' sizes.
    pub fn size(&self) -> u64 {
        self.download.files.iter().filter_map(|f| f.size).sum()
    }
}

/// The cache under `<home>/packages`.
#[derive(Debug, Clone)]
pub struct PackageCache {
    root: PathBuf,
}

/// An exclusive lock on one package key, released when dropped.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

impl PackageCache {
    /// Opens (creates, mode 0700) the cache at `root`.
    pub fn open(root: PathBuf) -> Result<Self> {
        for dir in ["blobs/sha256", "entries", "locks", "tmp"] {
            octo_fsutil::create_private_dir(&root.join(dir))?;
        }
        Ok(PackageCache { root })
    }

    /// The key of a package.
    pub fn key(feed: &str, id: &str, version: &str) -> String {
        octo_fsutil::sha256_hex(
            format!(
                "{feed}\0{}\0{}",
                id.to_ascii_lowercase(),
                version.to_ascii_lowercase()
            )
            .as_bytes(),
        )
    }

    /// Where downloads in progress go.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The file of a blob.
    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join("sha256").join(sha256)
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(format!("{key}.json"))
    }

    /// Takes the lock of `key`, waiting for another acquisition of the same package to finish.
    pub fn lock(&self, key: &str) -> Result<KeyLock> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(KeyLock { _file: file })
    }

    /// The entry of `key`, if it and all its blobs are there.
    pub fn get(&self, key: &str) -> Option<CacheEntry> {
        let bytes = std::fs::read(self.entry_path(key)).ok()?;
        let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
        let complete = entry.download.files.iter().all(|f| {
            f.sha256
                .as_deref()
                .is_some_and(|s| octo_feed::is_sha256_hex(s) && self.blob(s).is_file())
        });
        complete.then_some(entry)
    }

    /// Moves a verified temporary file into `blobs/` (if the blob is there already, the temporary file
    /// is removed) and returns the blob's path.
    pub fn install_blob(&self, temp: &Path, sha256: &str) -> Result<PathBuf> {
        let blob = self.blob(sha256);
        if blob.is_file() {
            let _ = std::fs::remove_file(temp);
        } else {
            std::fs::rename(temp, &blob)
                .with_context(|| format!("cannot move the download into {}", blob.display()))?;
        }
        Ok(blob)
    }

    /// Writes the entry of `key` (atomically).
    pub fn put(&self, key: &str, download: PackageDownload, now: SystemTime) -> Result<CacheEntry> {
        let entry = CacheEntry {
            download,
            fetched: octo_fsutil::rfc3339(now),
        };
        let path = self.entry_path(key);
        let bytes = serde_json::to_vec_pretty(&entry).expect("entries serialise");
        octo_fsutil::write_atomic(&path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(entry)
    }

    /// Every complete entry, with its key.
    pub fn entries(&self) -> Result<Vec<(String, CacheEntry)>> {
        let dir = self.root.join("entries");
        let mut out = Vec::new();
        for item in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let name = item?.file_name().to_string_lossy().to_string();
            if let Some(key) = name.strip_suffix(".json")
                && let Some(entry) = self.get(key)
            {
                out.push((key.to_string(), entry));
            }
        }
        out.sort_by(|a, b| {
            (
                &a.1.download.feed,
                &a.1.download.package_id,
                &a.1.download.version,
            )
                .cmp(&(
                    &b.1.download.feed,
                    &b.1.download.package_id,
                    &b.1.download.version,
                ))
        });
        Ok(out)
    }

    /// Removes the entry of `key` (its blobs stay until [`PackageCache::remove_unreferenced`]).
    pub fn remove_entry(&self, key: &str) -> Result<()> {
        let path = self.entry_path(key);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Removes blobs no entry refers to and leftover temporary files; returns (files, bytes) removed.
    pub fn remove_unreferenced(&self) -> Result<(u64, u64)> {
        let referenced: std::collections::HashSet<String> = self
            .entries()?
            .into_iter()
            .flat_map(|(_, e)| e.download.files.into_iter().filter_map(|f| f.sha256))
            .collect();
        let mut removed = (0, 0);
        for dir in [self.root.join("blobs").join("sha256"), self.tmp_dir()] {
            for item in
                std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let item = item?;
                let name = item.file_name().to_string_lossy().to_string();
                if referenced.contains(&name) {
                    continue;
                }
                // A download in progress holds its package's lock; a temporary file younger than a
                // minute may be one, so it is left alone.
                let meta = item.metadata()?;
                let young = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age.as_secs() < 60);
                if dir == self.tmp_dir() && young {
                    continue;
                }
                if std::fs::remove_file(item.path()).is_ok() {
                    removed.0 += 1;
                    removed.1 += meta.len();
                }
            }
        }
        Ok(removed)
    }
}
