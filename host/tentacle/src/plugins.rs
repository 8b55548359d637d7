//! Step plugin components cached by digest: `plugins/<sha256>.wasm`. A component is stored only
//! when the bytes received have the announced digest, and checked again when read.

use std::io;
use std::path::PathBuf;

use octo_protocol::Sha256Digest;
use tokio::io::AsyncRead;

/// Why a plugin could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The bytes do not have the announced digest.
    #[error("the plugin's bytes have digest {actual}, not the announced {expected}")]
    DigestMismatch {
        /// Announced.
        expected: Sha256Digest,
        /// Received.
        actual: Sha256Digest,
    },
    /// Larger than allowed.
    #[error("the plugin is larger than {0} bytes")]
    TooLarge(u64),
    /// Reading the body or writing the file failed.
    #[error("storing the plugin failed: {0}")]
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

/// The cache directory.
#[derive(Debug, Clone)]
pub struct PluginCache {
    dir: PathBuf,
}

impl PluginCache {
    /// A cache in `dir` (created on first put).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Whether the component is cached.
    pub fn has(&self, digest: &Sha256Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Streams `reader` into the cache, checking size and digest; returns the size.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        digest: &Sha256Digest,
        reader: R,
        limit: u64,
    ) -> Result<u64, PutError> {
        octo_fsutil::create_private_dir(&self.dir)?;
        let path = self.path(digest);
        let temp = octo_fsutil::temp_path_beside(&path);
        let result = async {
            let (total, actual) = crate::files::write_hashed(reader, &temp, limit).await?;
            if &actual != digest {
                return Err(PutError::DigestMismatch {
                    expected: *digest,
                    actual,
                });
            }
            tokio::fs::rename(&temp, &path).await?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }

    /// The component's bytes, if cached and intact. A cached file whose digest no longer matches
    /// is removed and reported as missing.
    pub fn read(&self, digest: &Sha256Digest) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if &Sha256Digest::of(&bytes) != digest {
            tracing::warn!(%digest, "a cached plugin is corrupt; removing it");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(bytes))
    }
}
