//! The lock that serialises everything done to one identity directory, across processes: an
//! exclusive `flock` on `<dir>/.lock`, released when the guard is dropped (or the process dies).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::{IdentityError, LOCK_FILE};

/// Holds the lock of one identity directory (nothing when the directory is read-only to this user:
/// then this process cannot change the identity anyway).
pub(super) struct DirLock(Option<File>);

impl DirLock {
    /// Creates `dir` (0700) if missing and blocks until this process holds its lock.
    pub(super) fn create_and_acquire(dir: &Path) -> Result<Self, IdentityError> {
        octo_fsutil::create_private_dir(dir).map_err(|source| IdentityError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Self::acquire(dir)
    }

    /// Blocks until this process holds the lock of `dir`; holds nothing when `dir` does not exist.
    pub(super) fn acquire(dir: &Path) -> Result<Self, IdentityError> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError::Io { path, source }
        };
        if !dir.is_dir() {
            return Ok(DirLock(None));
        }
        let path = dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = match options.open(&path) {
            Ok(file) => file,
            // A directory this user may read but not write: a read-only descriptor locks as well.
            Err(e) if read_only(&e) => match File::open(&path) {
                Ok(file) => file,
                Err(_) => return Ok(DirLock(None)),
            },
            Err(e) => return Err(io_error(&path)(e)),
        };
        file.lock().map_err(io_error(&path))?;
        Ok(DirLock(Some(file)))
    }
}

fn read_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            let _ = file.unlock();
        }
    }
}
