//! The content-addressed plugin store on disk.
//!
//! ```text
//! ROOT/
//!   blobs/sha256/<hex>     components, named by their sha256, read-only
//!   plugins.lock           JSON: per plugin id the requirement, version, sha256, source, kind, previous
//!   tmp/                   downloads in progress (see [`Store::download_dir`])
//!   .write-lock            held (flock) by the one writer at a time
//! ```
//!
//! **Crash safety.** Every change is "write a temporary file, fsync it, rename it over the target, fsync the
//! directory": a rename is atomic, so a reader (or a process after a crash, even SIGKILL or power loss)
//! sees the old `plugins.lock` or the new one, never a mix. Installing is two such steps in a fixed order,
//! blob first ([`Store::install_blob`]), then lock entry ([`Store::set_entry`], which refuses an entry whose
//! blob is absent), so a crash between them leaves a blob nothing references: harmless, and removed by
//! [`Store::gc`]. Leftover temporary files are ignored by readers and cleaned by [`Store::open`] and
//! [`Store::gc`].
//!
//! **Concurrency.** Writers serialise on an exclusive advisory lock of `.write-lock`, taken with
//! [`std::fs::File::try_lock`] (stable since Rust 1.89: `flock(2)` on Unix, `LockFileEx` on Windows). We use
//! std rather than `fs4`/`fd-lock` because it needs no dependency and has the property that matters here:
//! the kernel drops the lock when its holder dies, so a SIGKILLed writer never leaves a stale lock behind.
//! Readers ([`Store::list`], [`Store::get`]) take no lock: atomic renames make every read consistent.
//!
//! All operations are blocking file I/O; from async code call them in `spawn_blocking`.

use crate::Source;
use octo_manifest::PluginKind;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const LOCK_FILE: &str = "plugins.lock";
const WRITE_LOCK: &str = ".write-lock";
const TMP_DIR: &str = "tmp";
const TEMP_PREFIX: &str = ".tmp-";
const LOCK_SCHEMA: u32 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("plugin store: cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "rename".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the write lock for longer than the configured timeout.
    #[error("the plugin store {} is busy: another Octo process is changing it (waited {waited:?}); try again when it has finished", root.display())]
    Busy {
        /// The store's root.
        root: PathBuf,
        /// How long this call waited.
        waited: Duration,
    },
    /// A digest argument is not 64 lowercase hex digits.
    #[error("{0:?} is not a sha256 digest (64 lowercase hex digits)")]
    InvalidDigest(String),
    /// A file's contents do not hash to the digest it should have.
    #[error("{} has sha256 {actual}, expected {expected}", path.display())]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// A lock entry would reference a blob the store does not have.
    #[error(
        "plugin {id}: blob sha256:{sha256} is not in the store; install the blob before the lock entry"
    )]
    BlobMissing {
        /// Plugin id.
        id: String,
        /// The missing digest.
        sha256: String,
    },
    /// No lock entry for this id.
    #[error("plugin {0} is not installed")]
    NotInstalled(String),
    /// Rollback asked for a plugin that has no previous version.
    #[error("plugin {0} has no previous version to roll back to")]
    NoPrevious(String),
    /// `plugins.lock` does not parse (it was edited by hand, or written by a newer Octo).
    #[error("the plugin lock file {} is not valid: {reason}; restore it or remove it and reinstall the plugins", path.display())]
    CorruptLock {
        /// The lock file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Tunables of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a writer waits for another writer to finish before failing with [`StoreError::Busy`].
    pub lock_timeout: Duration,
    /// Temporary files and unreferenced blobs younger than this are left alone by cleaning and
    /// [`Store::gc`], so that a download or install in progress in another process is not pulled from
    /// under it.
    pub grace: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            lock_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(3600),
        }
    }
}

/// What an install records about one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockEntry {
    /// The requirement the user asked for, e.g. `^0.1`; updates stay within it.
    pub requirement: VersionReq,
    /// The installed version.
    pub version: Version,
    /// sha256 of the installed component; its blob is `blobs/sha256/<sha256>`.
    pub sha256: String,
    /// Where it came from; [`Source::is_signed`] says whether it may be trusted like the feed. Lock
    /// files written before this was a type hold a string, read by [`Source::from_legacy`].
    #[serde(deserialize_with = "crate::source::deserialize_stored")]
    pub source: Source,
    /// The plugin's kind.
    pub kind: PluginKind,
    /// The version it replaced, kept for [`Store::rollback`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousVersion>,
    /// When it was installed (RFC 3339, UTC).
    pub installed_at: String,
}

/// The version an install replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousVersion {
    /// Its version.
    pub version: Version,
    /// Its sha256.
    pub sha256: String,
    /// Where it came from (unknown, so not signed, when an old lock file did not say).
    #[serde(
        default = "crate::source::unknown",
        deserialize_with = "crate::source::deserialize_stored"
    )]
    pub source: Source,
}

/// What [`Store::set_entry`] is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The requirement the user asked for.
    pub requirement: VersionReq,
    /// The version being installed.
    pub version: Version,
    /// Its sha256 (the blob must already be installed).
    pub sha256: String,
    /// Where it came from.
    pub source: Source,
    /// Its kind.
    pub kind: PluginKind,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LockFile {
    schema: u32,
    plugins: BTreeMap<String, LockEntry>,
}

/// One problem [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProblem {
    /// Plugin id that references the blob.
    pub id: String,
    /// The version that references it.
    pub version: Version,
    /// The digest the blob should have.
    pub sha256: String,
    /// The blob's actual digest, or `None` when the blob is missing.
    pub actual: Option<String>,
}

impl std::fmt::Display for BlobProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.actual {
            None => write!(
                f,
                "{} {}: blob sha256:{} is missing",
                self.id, self.version, self.sha256
            ),
            Some(actual) => write!(
                f,
                "{} {}: blob sha256:{} is corrupt (its contents hash to {actual})",
                self.id, self.version, self.sha256
            ),
        }
    }
}

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many distinct blobs were hashed.
    pub checked: usize,
    /// Missing or corrupt blobs.
    pub problems: Vec<BlobProblem>,
}

impl VerifyReport {
    /// Whether every referenced blob is present and intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The result of [`Store::gc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Digests of the removed blobs.
    pub removed_blobs: Vec<String>,
    /// How many leftover temporary files were removed.
    pub removed_temp_files: usize,
    /// Bytes freed.
    pub freed_bytes: u64,
}

/// A plugin store rooted at a directory. Cheap to clone; holds no open files between calls.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    options: StoreOptions,
}

/// The held write lock; released on drop (or by the kernel when the process dies).
struct WriteGuard(File);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`, with default options.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        Store::open_with(root, StoreOptions::default())
    }

    /// Opens (creating if needed) the store at `root`.
    ///
    /// Removes what a crashed writer may have left: temporary lock files always (only a lock holder writes
    /// them, and we hold the lock while cleaning), temporary downloads older than [`StoreOptions::grace`].
    /// If another writer is busy, cleaning is skipped; it is never needed for correctness.
    pub fn open_with(root: impl Into<PathBuf>, options: StoreOptions) -> Result<Store, StoreError> {
        let store = Store {
            root: root.into(),
            options,
        };
        for dir in [store.blob_dir(), store.download_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        if let Some(_guard) = store.try_write_lock()? {
            store.clean_temp_files(false)?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where downloads should be written (same file system as the blobs, so installing is a rename).
    pub fn download_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// The path of the blob with digest `sha256` (whether or not it exists).
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blob_dir().join(sha256)
    }

    /// The path of the lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Moves a verified download into the store as `blobs/sha256/<sha256>` (read-only).
    ///
    /// The file is hashed again first, so the store never holds a blob whose name lies; on a mismatch the
    /// temporary file is removed. Idempotent: if an intact blob is already there, the temporary file is
    /// just removed. `temp_path` must be on the store's file system (use [`Store::download_dir`]).
    pub fn install_blob(&self, temp_path: &Path, sha256: &str) -> Result<PathBuf, StoreError> {
        check_digest(sha256)?;
        let actual = hash_file(temp_path)?;
        if actual != sha256 {
            let _ = fs::remove_file(temp_path);
            return Err(StoreError::DigestMismatch {
                path: temp_path.to_path_buf(),
                expected: sha256.to_string(),
                actual,
            });
        }
        let _guard = self.write_lock()?;
        let target = self.blob_path(sha256);
        if target.exists() && hash_file(&target).ok().as_deref() == Some(sha256) {
            fs::remove_file(temp_path).map_err(io_err("remove", temp_path))?;
            return Ok(target);
        }
        let file = File::open(temp_path).map_err(io_err("open", temp_path))?;
        let mut permissions = file
            .metadata()
            .map_err(io_err("stat", temp_path))?
            .permissions();
        permissions.set_readonly(true);
        fs::set_permissions(temp_path, permissions)
            .map_err(io_err("set permissions of", temp_path))?;
        file.sync_all().map_err(io_err("fsync", temp_path))?;
        drop(file);
        fs::rename(temp_path, &target).map_err(io_err("rename into place", &target))?;
        sync_dir(&self.blob_dir())?;
        tracing::debug!(sha256, "installed blob");
        Ok(target)
    }

    /// Writes `bytes` as a blob (temp file + [`Store::install_blob`]) and returns its sha256.
    pub fn add_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha256 = crate::sha256_hex(bytes);
        let (path, mut file) = self.create_temp(&self.download_dir())?;
        file.write_all(bytes).map_err(io_err("write", &path))?;
        file.sync_all().map_err(io_err("fsync", &path))?;
        drop(file);
        self.install_blob(&path, &sha256)?;
        Ok(sha256)
    }

    /// Records `entry` as the installed version of `id`; the version it replaces becomes `previous`.
    ///
    /// Refuses an entry whose blob is not in the store. Setting the same content again keeps `previous`.
    pub fn set_entry(&self, id: &str, entry: NewEntry) -> Result<LockEntry, StoreError> {
        let _guard = self.write_lock()?;
        self.require_blob(id, &entry.sha256)?;
        let mut lock = self.read_lock_file()?;
        let previous = match lock.plugins.get(id) {
            Some(old) if old.sha256 == entry.sha256 => old.previous.clone(),
            Some(old) => Some(PreviousVersion {
                version: old.version.clone(),
                sha256: old.sha256.clone(),
                source: old.source.clone(),
            }),
            None => None,
        };
        let new = LockEntry {
            requirement: entry.requirement,
            version: entry.version,
            sha256: entry.sha256,
            source: entry.source,
            kind: entry.kind,
            previous,
            installed_at: rfc3339(SystemTime::now()),
        };
        lock.plugins.insert(id.to_string(), new.clone());
        self.write_lock_file(&lock)?;
        tracing::info!(id, version = %new.version, sha256 = %new.sha256, "plugin installed");
        Ok(new)
    }

    /// Records `entry` for `id` exactly as given — its `previous` and `installed_at` too: a copy of
    /// what another node installed (octo-server's shared plugins). Refuses an entry whose blob is not
    /// in the store.
    pub fn put_entry(&self, id: &str, entry: LockEntry) -> Result<(), StoreError> {
        let _guard = self.write_lock()?;
        self.require_blob(id, &entry.sha256)?;
        let mut lock = self.read_lock_file()?;
        if lock.plugins.get(id) == Some(&entry) {
            return Ok(());
        }
        lock.plugins.insert(id.to_string(), entry);
        self.write_lock_file(&lock)
    }

    /// Refuses a lock entry for `id` whose digest is malformed or whose blob is not stored.
    fn require_blob(&self, id: &str, sha256: &str) -> Result<(), StoreError> {
        check_digest(sha256)?;
        if !self.blob_path(sha256).is_file() {
            return Err(StoreError::BlobMissing {
                id: id.to_string(),
                sha256: sha256.to_string(),
            });
        }
        Ok(())
    }

    /// Removes the lock entry of `id` and returns it. Its blobs stay until [`Store::gc`].
    pub fn remove(&self, id: &str) -> Result<LockEntry, StoreError> {
        let _guard = self.write_lock()?;
        let mut lock = self.read_lock_file()?;
        let removed = lock
            .plugins
            .remove(id)
            .ok_or_else(|| StoreError::NotInstalled(id.to_string()))?;
        self.write_lock_file(&lock)?;
        Ok(removed)
    }

    /// Makes the previous version of `id` current again; the current one becomes `previous` (so a second
    /// rollback rolls forward).
    pub fn rollback(&self, id: &str) -> Result<LockEntry, StoreError> {
        let _guard = self.write_lock()?;
        let mut lock = self.read_lock_file()?;
        let current = lock
            .plugins
            .get(id)
            .ok_or_else(|| StoreError::NotInstalled(id.to_string()))?
            .clone();
        let previous = current
            .previous
            .clone()
            .ok_or_else(|| StoreError::NoPrevious(id.to_string()))?;
        if !self.blob_path(&previous.sha256).is_file() {
            return Err(StoreError::BlobMissing {
                id: id.to_string(),
                sha256: previous.sha256,
            });
        }
        let rolled = LockEntry {
            requirement: current.requirement.clone(),
            version: previous.version,
            sha256: previous.sha256,
            source: previous.source,
            kind: current.kind,
            previous: Some(PreviousVersion {
                version: current.version,
                sha256: current.sha256,
                source: current.source,
            }),
            installed_at: rfc3339(SystemTime::now()),
        };
        lock.plugins.insert(id.to_string(), rolled.clone());
        self.write_lock_file(&lock)?;
        tracing::info!(id, version = %rolled.version, "plugin rolled back");
        Ok(rolled)
    }

    /// Every installed plugin, by id.
    pub fn list(&self) -> Result<BTreeMap<String, LockEntry>, StoreError> {
        Ok(self.read_lock_file()?.plugins)
    }

    /// The lock entry of `id`, if installed.
    pub fn get(&self, id: &str) -> Result<Option<LockEntry>, StoreError> {
        Ok(self.read_lock_file()?.plugins.remove(id))
    }

    /// Reads an installed blob.
    pub fn read_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        check_digest(sha256)?;
        let path = self.blob_path(sha256);
        fs::read(&path).map_err(io_err("read", &path))
    }

    /// Re-hashes every blob the lock file references (current and previous versions).
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let lock = self.read_lock_file()?;
        let mut report = VerifyReport::default();
        let mut hashed: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (id, entry) in &lock.plugins {
            let refs = std::iter::once((&entry.version, &entry.sha256))
                .chain(entry.previous.as_ref().map(|p| (&p.version, &p.sha256)));
            for (version, sha256) in refs {
                let actual = match hashed.get(sha256) {
                    Some(actual) => actual.clone(),
                    None => {
                        let path = self.blob_path(sha256);
                        let actual = match hash_file(&path) {
                            Ok(actual) => Some(actual),
                            Err(StoreError::Io { source, .. })
                                if source.kind() == io::ErrorKind::NotFound =>
                            {
                                None
                            }
                            Err(e) => return Err(e),
                        };
                        hashed.insert(sha256.clone(), actual.clone());
                        actual
                    }
                };
                if actual.as_deref() != Some(sha256.as_str()) {
                    report.problems.push(BlobProblem {
                        id: id.clone(),
                        version: version.clone(),
                        sha256: sha256.clone(),
                        actual,
                    });
                }
            }
        }
        report.checked = hashed.len();
        Ok(report)
    }

    /// Removes blobs no lock entry references (neither current nor previous) and leftover temporary files,
    /// except those younger than [`StoreOptions::grace`].
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _guard = self.write_lock()?;
        let lock = self.read_lock_file()?;
        let referenced: std::collections::HashSet<&str> = lock
            .plugins
            .values()
            .flat_map(|e| {
                std::iter::once(e.sha256.as_str())
                    .chain(e.previous.as_ref().map(|p| p.sha256.as_str()))
            })
            .collect();
        let mut report = GcReport {
            removed_temp_files: self.clean_temp_files(true)?,
            ..GcReport::default()
        };
        let dir = self.blob_dir();
        for item in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let item = item.map_err(io_err("list", &dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if referenced.contains(name.as_str()) {
                continue;
            }
            let metadata = item.metadata().map_err(io_err("stat", &item.path()))?;
            if !self.older_than_grace(&metadata) {
                continue;
            }
            fs::remove_file(item.path()).map_err(io_err("remove", &item.path()))?;
            report.freed_bytes += metadata.len();
            report.removed_blobs.push(name);
        }
        sync_dir(&dir)?;
        report.removed_blobs.sort();
        Ok(report)
    }

    fn older_than_grace(&self, metadata: &fs::Metadata) -> bool {
        let age = metadata
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok());
        // A clock that went backwards gives no age: treat as old only with a zero grace.
        age.map_or(self.options.grace.is_zero(), |age| {
            age >= self.options.grace
        })
    }

    /// Removes our temporary files in the root (always stale: written only under the write lock, which
    /// the caller holds) and, older than the grace period, in the download directory. `count_all`: also
    /// count the root ones in the result.
    fn clean_temp_files(&self, count_all: bool) -> Result<usize, StoreError> {
        let mut removed = 0;
        // Downloads and blobs in the making are `.tmp-*`; a new lock file is `.plugins.lock.tmp-*`.
        let lock_temp = octo_fsutil::temp_prefix_for(&self.lock_path());
        for (dir, always) in [(self.root.clone(), true), (self.download_dir(), false)] {
            for item in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let item = item.map_err(io_err("list", &dir))?;
                let name = item.file_name().to_string_lossy().into_owned();
                let ours =
                    name.starts_with(TEMP_PREFIX) || (always && name.starts_with(&lock_temp));
                if !ours {
                    continue;
                }
                let stale = always
                    || item
                        .metadata()
                        .map(|m| self.older_than_grace(&m))
                        .unwrap_or(false);
                if stale && fs::remove_file(item.path()).is_ok() {
                    tracing::debug!(path = %item.path().display(), "removed leftover temporary file");
                    if always || count_all {
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    fn lock_handle(&self) -> Result<File, StoreError> {
        let path = self.root.join(WRITE_LOCK);
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open", &path))
    }

    fn try_write_lock(&self) -> Result<Option<WriteGuard>, StoreError> {
        let file = self.lock_handle()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(WriteGuard(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &self.root.join(WRITE_LOCK))(e)),
        }
    }

    fn write_lock(&self) -> Result<WriteGuard, StoreError> {
        let start = Instant::now();
        loop {
            if let Some(guard) = self.try_write_lock()? {
                return Ok(guard);
            }
            if start.elapsed() >= self.options.lock_timeout {
                return Err(StoreError::Busy {
                    root: self.root.clone(),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_lock_file(&self) -> Result<LockFile, StoreError> {
        let path = self.lock_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(LockFile {
                    schema: LOCK_SCHEMA,
                    plugins: BTreeMap::new(),
                });
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let lock: LockFile =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptLock {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if lock.schema != LOCK_SCHEMA {
            return Err(StoreError::CorruptLock {
                path,
                reason: format!(
                    "schema {} is not {LOCK_SCHEMA} (written by another Octo version?)",
                    lock.schema
                ),
            });
        }
        Ok(lock)
    }

    fn write_lock_file(&self, lock: &LockFile) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(&LockFile {
            schema: LOCK_SCHEMA,
            plugins: lock.plugins.clone(),
        })
        .expect("the lock file always serialises");
        bytes.push(b'\n');
        // Not a secret: readable like the blobs (0644), written like every other file of Octo.
        let path = self.lock_path();
        octo_fsutil::write_atomic_with_mode(&path, &bytes, 0o644).map_err(io_err("write", &path))
    }

    fn create_temp(&self, dir: &Path) -> Result<(PathBuf, File), StoreError> {
        create_temp_in(dir)
    }
}

fn create_temp_in(dir: &Path) -> Result<(PathBuf, File), StoreError> {
    loop {
        let path = dir.join(format!(
            "{TEMP_PREFIX}{}-{:016x}",
            std::process::id(),
            random_u64()
        ));
        match File::options().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &path)(e)),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn check_digest(sha256: &str) -> Result<(), StoreError> {
    if crate::is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(StoreError::InvalidDigest(sha256.to_string()))
    }
}

fn hash_file(path: &Path) -> Result<String, StoreError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = octo_fsutil::Sha256Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish_hex())
}

fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    })
}

/// `time` as RFC 3339 UTC with seconds, e.g. `2025-01-31T12:00:00Z` (how `installedAt` is written).
pub use octo_fsutil::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    fn test_store(dir: &Path) -> Store {
        Store::open_with(
            dir,
            StoreOptions {
                lock_timeout: Duration::from_secs(10),
                grace: Duration::ZERO,
            },
        )
        .unwrap()
    }

    fn new_entry(version: &str, sha256: &str) -> NewEntry {
        NewEntry {
            requirement: VersionReq::parse("^0.1").unwrap(),
            version: version.parse().unwrap(),
            sha256: sha256.to_string(),
            source: Source::SignedFeed {
                url: format!("http://feed/blobs/sha256/{sha256}"),
                key: Some("KEY".into()),
            },
            kind: PluginKind::Step,
        }
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
            "2000-02-29T01:01:01Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "2024-12-31T23:59:59Z"
        );
    }

    #[test]
    fn install_set_list_rollback_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        assert!(store.list().unwrap().is_empty());
        let a = store.add_blob(b"component a").unwrap();
        let b = store.add_blob(b"component b").unwrap();
        assert_eq!(store.read_blob(&a).unwrap(), b"component a");
        assert!(
            fs::metadata(store.blob_path(&a))
                .unwrap()
                .permissions()
                .readonly()
        );

        let first = store
            .set_entry("run-script", new_entry("0.1.0", &a))
            .unwrap();
        assert_eq!(first.previous, None);
        let second = store
            .set_entry("run-script", new_entry("0.1.1", &b))
            .unwrap();
        assert_eq!(
            second.previous.as_ref().unwrap().version.to_string(),
            "0.1.0"
        );
        // Setting the same content again keeps the previous version.
        let again = store
            .set_entry("run-script", new_entry("0.1.1", &b))
            .unwrap();
        assert_eq!(again.previous, second.previous);

        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed["run-script"].version.to_string(), "0.1.1");
        assert_eq!(listed["run-script"].kind, PluginKind::Step);
        assert!(listed["run-script"].installed_at.ends_with('Z'));

        let rolled = store.rollback("run-script").unwrap();
        assert_eq!(
            (rolled.version.to_string(), rolled.sha256.clone()),
            ("0.1.0".into(), a.clone())
        );
        assert_eq!(rolled.previous.as_ref().unwrap().sha256, b);
        let forward = store.rollback("run-script").unwrap();
        assert_eq!(forward.version.to_string(), "0.1.1");

        assert!(matches!(
            store.rollback("nope"),
            Err(StoreError::NotInstalled(_))
        ));
        store.set_entry("other", new_entry("0.1.0", &a)).unwrap();
        assert!(matches!(
            store.rollback("other"),
            Err(StoreError::NoPrevious(_))
        ));

        assert_eq!(
            store.remove("run-script").unwrap().version.to_string(),
            "0.1.1"
        );
        assert!(store.get("run-script").unwrap().is_none());
        assert!(matches!(
            store.remove("run-script"),
            Err(StoreError::NotInstalled(_))
        ));
        // Reopening sees the same state.
        assert_eq!(
            test_store(dir.path())
                .list()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["other"]
        );
    }

    #[test]
    fn lock_file_is_json_with_the_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let a = store.add_blob(b"a").unwrap();
        let b = store.add_blob(b"b").unwrap();
        store
            .set_entry("run-script", new_entry("0.1.0", &a))
            .unwrap();
        store
            .set_entry("run-script", new_entry("0.1.1", &b))
            .unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&fs::read(store.lock_path()).unwrap()).unwrap();
        let e = &doc["plugins"]["run-script"];
        assert_eq!(doc["schema"], 1);
        assert_eq!(e["requirement"], "^0.1");
        assert_eq!(e["version"], "0.1.1");
        assert_eq!(e["sha256"], b.as_str());
        assert_eq!(e["kind"], "step");
        assert_eq!(e["previous"]["version"], "0.1.0");
        assert_eq!(e["previous"]["sha256"], a.as_str());
        assert_eq!(e["source"]["type"], "signedFeed");
        assert!(e["source"]["url"].as_str().unwrap().ends_with(&b));
        assert_eq!(e["source"]["key"], "KEY");
        assert!(e["installedAt"].is_string());
    }

    /// A lock file from before sources were typed stays readable: its strings become sources, and
    /// only the forms Octo wrote for the feed, bundles and built-ins count as signed.
    #[test]
    fn an_old_lock_file_with_string_sources_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let a = store.add_blob(b"a").unwrap();
        let b = store.add_blob(b"b").unwrap();
        let old = format!(
            r#"{{"schema":1,"plugins":{{
            "feed":{{"requirement":"^0.1","version":"0.1.1","sha256":"{b}","source":"https://feed.example/blobs/sha256/{b}","kind":"step","installedAt":"2025-01-31T12:00:00Z",
                "previous":{{"version":"0.1.0","sha256":"{a}","source":"file:/tmp/a.wasm"}}}},
            "local":{{"requirement":"=0.1.0","version":"0.1.0","sha256":"{a}","source":"file:/home/me/https://x.wasm","kind":"step","installedAt":"2025-01-31T12:00:00Z"}},
            "bundled":{{"requirement":"^0.1","version":"0.1.0","sha256":"{a}","source":"bundle:/media/b","kind":"step","installedAt":"2025-01-31T12:00:00Z",
                "previous":{{"version":"0.0.9","sha256":"{b}"}}}}
            }}}}"#
        );
        fs::write(store.lock_path(), old).unwrap();
        let listed = store.list().unwrap();
        assert!(listed["feed"].source.is_signed());
        assert_eq!(
            listed["feed"].source.to_string(),
            format!("https://feed.example/blobs/sha256/{b}")
        );
        assert!(!listed["feed"].previous.as_ref().unwrap().source.is_signed());
        assert_eq!(
            listed["local"].source,
            Source::LocalFile {
                path: "/home/me/https://x.wasm".into()
            }
        );
        assert!(!listed["local"].source.is_signed());
        assert!(listed["bundled"].source.is_signed());
        assert!(
            !listed["bundled"]
                .previous
                .as_ref()
                .unwrap()
                .source
                .is_signed()
        );
        // Rolling back brings the previous source along: the file install is still unsigned.
        assert!(!store.rollback("feed").unwrap().source.is_signed());
        // Written back in the typed form.
        let doc: serde_json::Value =
            serde_json::from_slice(&fs::read(store.lock_path()).unwrap()).unwrap();
        assert_eq!(doc["plugins"]["local"]["source"]["type"], "localFile");
        assert_eq!(doc["plugins"]["feed"]["source"]["type"], "localFile");
        assert_eq!(
            doc["plugins"]["feed"]["previous"]["source"]["type"],
            "signedFeed"
        );
    }

    #[test]
    fn set_entry_refuses_a_missing_blob_and_bad_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let sha = crate::sha256_hex(b"never installed");
        assert!(matches!(
            store.set_entry("x", new_entry("0.1.0", &sha)),
            Err(StoreError::BlobMissing { .. })
        ));
        assert!(matches!(
            store.set_entry("x", new_entry("0.1.0", "zz")),
            Err(StoreError::InvalidDigest(_))
        ));
        assert!(!store.lock_path().exists(), "nothing written");
    }

    #[test]
    fn install_blob_checks_the_digest_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let write_temp = |bytes: &[u8]| {
            let (path, mut file) = create_temp_in(&store.download_dir()).unwrap();
            file.write_all(bytes).unwrap();
            path
        };
        let sha = crate::sha256_hex(b"hello");
        let temp = write_temp(b"hellO");
        let err = store.install_blob(&temp, &sha).unwrap_err();
        assert!(
            matches!(&err, StoreError::DigestMismatch { expected, .. } if *expected == sha),
            "{err}"
        );
        assert!(!temp.exists(), "a mismatching temp file is removed");
        assert!(!store.blob_path(&sha).exists());

        let path = store.install_blob(&write_temp(b"hello"), &sha).unwrap();
        let temp = write_temp(b"hello");
        assert_eq!(store.install_blob(&temp, &sha).unwrap(), path);
        assert!(!temp.exists());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(fs::read_dir(store.download_dir()).unwrap().count(), 0);
    }

    #[test]
    fn verify_reports_missing_and_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let a = store.add_blob(b"a").unwrap();
        let b = store.add_blob(b"b").unwrap();
        store.set_entry("p", new_entry("0.1.0", &a)).unwrap();
        store.set_entry("p", new_entry("0.1.1", &b)).unwrap();
        store.set_entry("q", new_entry("0.1.0", &b)).unwrap();
        assert_eq!(
            store.verify().unwrap(),
            VerifyReport {
                checked: 2,
                problems: vec![]
            }
        );

        // Corrupt b (it is read-only, so make it writable first), remove a.
        let path_b = store.blob_path(&b);
        let mut perms = fs::metadata(&path_b).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path_b, perms).unwrap();
        fs::write(&path_b, b"B").unwrap();
        fs::remove_file(store.blob_path(&a)).unwrap();
        let report = store.verify().unwrap();
        assert!(!report.is_ok());
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("p 0.1.0") && l.contains("missing"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("p 0.1.1") && l.contains("corrupt"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("q 0.1.0") && l.contains(&crate::sha256_hex(b"B")))
        );
        assert!(matches!(
            store.rollback("p"),
            Err(StoreError::BlobMissing { .. })
        ));
    }

    #[test]
    fn gc_keeps_current_and_previous_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let [a, b, c, orphan] = [b"a", b"b", b"c", b"o"].map(|x| store.add_blob(x).unwrap());
        store.set_entry("p", new_entry("0.1.0", &a)).unwrap();
        store.set_entry("p", new_entry("0.1.1", &b)).unwrap();
        store.set_entry("p", new_entry("0.1.2", &c)).unwrap();
        let report = store.gc().unwrap();
        let mut expected = vec![a.clone(), orphan.clone()];
        expected.sort();
        assert_eq!(report.removed_blobs, expected);
        assert_eq!(report.freed_bytes, 2);
        assert!(store.blob_path(&b).exists() && store.blob_path(&c).exists());
        assert!(store.verify().unwrap().is_ok());

        // With a grace period, fresh unreferenced blobs are kept (an install may be in progress).
        let patient = Store::open_with(dir.path(), StoreOptions::default()).unwrap();
        let fresh = patient.add_blob(b"fresh").unwrap();
        assert!(patient.gc().unwrap().removed_blobs.is_empty());
        assert!(patient.blob_path(&fresh).exists());
    }

    /// Simulated crashes between the steps of an install: each leaves the old state, and leftovers are
    /// harmless. (tests/store_crash.rs SIGKILLs a real writer.)
    #[test]
    fn a_crash_between_steps_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let a = store.add_blob(b"v1").unwrap();
        store.set_entry("p", new_entry("0.1.0", &a)).unwrap();
        let before = store.list().unwrap();

        // 1. Crash while downloading: a partial temp file in tmp/.
        let (partial, mut f) = create_temp_in(&store.download_dir()).unwrap();
        f.write_all(b"half a compo").unwrap();
        drop(f);
        // 2. Crash after the blob was renamed in but before the lock entry was written.
        let orphan = store.add_blob(b"v2").unwrap();
        // 3. Crash while writing the new lock file: a temp lock file, half written.
        let (lock_temp, mut f) = create_temp_in(dir.path()).unwrap();
        f.write_all(br#"{"schema":1,"plugins":{"p":{"requi"#)
            .unwrap();
        drop(f);
        let new_lock_temp = octo_fsutil::temp_path_beside(&store.lock_path());
        fs::write(&new_lock_temp, br#"{"schema":1,"plu"#).unwrap();

        let reopened = test_store(dir.path());
        assert_eq!(reopened.list().unwrap(), before, "the old state, untouched");
        assert!(reopened.verify().unwrap().is_ok());
        assert!(!lock_temp.exists(), "temp lock files are removed at open");
        assert!(
            !new_lock_temp.exists(),
            "temp lock files are removed at open"
        );
        assert!(
            !partial.exists(),
            "stale downloads are removed at open (grace 0 here)"
        );
        // The orphan blob is harmless and collected.
        assert_eq!(reopened.gc().unwrap().removed_blobs, vec![orphan.clone()]);
        // And the interrupted install can simply be redone.
        let again = reopened.add_blob(b"v2").unwrap();
        reopened.set_entry("p", new_entry("0.1.1", &again)).unwrap();
        assert_eq!(
            reopened.get("p").unwrap().unwrap().previous.unwrap().sha256,
            a
        );
    }

    #[test]
    fn fresh_downloads_of_another_process_survive_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (partial, _f) = create_temp_in(&store.download_dir()).unwrap();
        let _again = Store::open(dir.path()).unwrap();
        assert!(partial.exists());
    }

    #[test]
    fn a_corrupt_lock_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        fs::write(store.lock_path(), b"{ not json").unwrap();
        let err = store.list().unwrap_err();
        assert!(matches!(err, StoreError::CorruptLock { .. }));
        assert!(err.to_string().contains("plugins.lock"), "{err}");
    }

    #[test]
    fn a_second_writer_waits_then_reports_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let a = store.add_blob(b"a").unwrap();
        let holder = test_store(dir.path());
        let guard = holder.write_lock().unwrap();
        let impatient = Store::open_with(
            dir.path(),
            StoreOptions {
                lock_timeout: Duration::from_millis(50),
                grace: Duration::ZERO,
            },
        )
        .unwrap();
        assert!(matches!(
            impatient.set_entry("p", new_entry("0.1.0", &a)),
            Err(StoreError::Busy { .. })
        ));
        drop(guard);
        impatient.set_entry("p", new_entry("0.1.0", &a)).unwrap();
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let a = store.add_blob(b"a").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = Store::open(dir.path()).unwrap();
                let a = a.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store
                            .set_entry(&format!("plugin-{t}-{i}"), new_entry("0.1.0", &a))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.list().unwrap().len(), 40);
    }
}
