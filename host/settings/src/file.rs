//! Private files written atomically, and the sibling lock files that serialise read-modify-write.
//!
//! Used for `octo.toml` and for other small files in the home that must never be seen half-written
//! (administrator grants, for instance).

use crate::SettingsError;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file that guards `path`: `path` with `.lock` appended (`octo.toml.lock`).
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` atomically with mode 0600 ([`octo_fsutil::write_atomic`]: a temporary file
/// in the same directory, fsync, rename, fsync of the directory). The directory is created with mode
/// 0700 if missing. On failure the old file is untouched and no temporary file is left behind.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> Result<(), SettingsError> {
    octo_fsutil::write_atomic(path, bytes).map_err(|source| SettingsError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `f` holding an exclusive lock on [`lock_path`]`(path)` (created with mode 0600 if missing).
/// The lock is released when `f` returns, also on error; other processes block until then. `f` may fail
/// with any error a [`SettingsError`] converts into (e.g. `anyhow::Error`).
pub fn with_lock<T, E: From<SettingsError>>(
    path: &Path,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let lock = lock_path(path);
    create_private_dir(parent_of(path))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock)
        .map_err(|source| SettingsError::Io {
            action: "open the lock file",
            path: lock.clone(),
            source,
        })?;
    file.lock().map_err(|source| SettingsError::Io {
        action: "lock",
        path: lock.clone(),
        source,
    })?;
    let result = f();
    // Closing the file releases the lock as well; unlocking explicitly keeps it short.
    let _ = file.unlock();
    result
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), SettingsError> {
    octo_fsutil::create_private_dir(dir).map_err(|source| SettingsError::Io {
        action: "create the directory",
        path: dir.to_path_buf(),
        source,
    })
}
