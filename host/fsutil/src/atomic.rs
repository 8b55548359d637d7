//! Whole-file writes: temporary file in the same directory, fsync, rename over the target, fsync of the
//! directory. A reader (or the next start after a crash) sees the old contents or the new, never a mix.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Creates `dir` (and any missing parents) with mode 0700. An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| with_path(e, "cannot create", dir))
}

/// A fresh temporary path next to `path` (same directory, so a rename is atomic), unique per process
/// and call. Starts with a dot so listings of the directory skip it.
pub fn temp_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    path.with_file_name(format!(
        "{}{}-{}",
        temp_prefix_for(path),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// How the names of [`temp_path_beside`]`(path)` start (`.NAME.tmp-`): what a cleaner looks for when a
/// crash left a temporary file behind.
pub fn temp_prefix_for(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Writes `bytes` to `path` atomically with mode 0600, creating the parent directory (0700) if missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o600)
}

/// [`write_atomic`] with another file mode (e.g. 0644 for a file other users must read).
///
/// Errors name the path and the operation that failed; the temporary file never outlives a failure.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let temp = temp_path_beside(path);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(|e| with_path(e, "cannot create", &temp))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| with_path(e, "cannot write", &temp))?;
        fs::rename(&temp, path).map_err(|e| with_path(e, "cannot replace", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    // The rename is durable only once the directory entry is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "cannot fsync", dir))
}

/// Keeps the error kind (callers match on `NotFound`, `PermissionDenied`, `StorageFull`) and adds
/// what was being done to which path.
fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        let temp = temp_path_beside(&path);
        let temp_name = temp.file_name().unwrap().to_string_lossy();
        assert!(
            temp_name.starts_with(&temp_prefix_for(&path)),
            "{temp_name}"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn other_modes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("public");
        write_atomic_with_mode(&path, b"x", 0o644).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn a_failed_write_names_the_path_and_keeps_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        fs::create_dir(&path).unwrap(); // a directory cannot be replaced by a file
        let err = write_atomic(&path, b"new").unwrap_err();
        assert!(err.to_string().contains("target"), "{err}");
        assert!(path.is_dir());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
    }
}
