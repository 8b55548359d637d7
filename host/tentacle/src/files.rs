//! File transfer, confined to the tentacle's `files/` directory: paths are validated by
//! [`RelativePath`], and a path that goes through a symbolic link is refused.

use std::path::{Path, PathBuf};

use octo_protocol::{ErrorBody, ErrorCode, RelativePath, Sha256Digest, Stored};
use sha2::Digest;
use std::io::Write;

use bytes::Bytes;
use hyper::body::Body;
use tokio::io::AsyncReadExt;

/// Bytes gathered before one write to the file ([`write_hashed`]).
const WRITE_BUFFER: usize = 4 * 1024 * 1024;

/// Received chunks at least this large are written as they are; smaller ones are gathered.
const GATHER: usize = 256 * 1024;

/// Write-back to the disk is started every this many bytes while a file is received.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// A file being received, fed chunk by chunk by [`receive_pipelined`]'s thread: large chunks are
/// written without another copy, and the kernel is asked to start writing back every
/// [`WRITEBACK_EVERY`] bytes (`sync_file_range`, which does not wait), so the disk works while the
/// network does and the one `fsync` at the end has little left to write.
struct ReceivedFile {
    out: std::io::BufWriter<std::fs::File>,
    written: u64,
    started: u64,
}

impl ReceivedFile {
    fn new(file: std::fs::File) -> Self {
        Self {
            out: std::io::BufWriter::with_capacity(GATHER, file),
            written: 0,
            started: 0,
        }
    }

    /// `Some(chunk)`: appends it; `None`: the end, flushed and synced.
    fn take(&mut self, chunk: Option<&[u8]>) -> std::io::Result<()> {
        let Some(bytes) = chunk else {
            self.out.flush()?;
            return self.out.get_ref().sync_all();
        };
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.started >= WRITEBACK_EVERY {
            self.out.flush()?;
            start_writeback(
                self.out.get_ref(),
                self.started,
                self.written - self.started,
            );
            self.started = self.written;
        }
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to the disk, without waiting
/// (a hint: the final `fsync` is what makes the file durable, so a failure here is ignored).
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor, plain integer arguments, no memory passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The files directory.
#[derive(Debug, Clone)]
pub struct FileArea {
    root: PathBuf,
}

impl FileArea {
    /// The area rooted at `root` (created on first use).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn resolve(&self, path: &RelativePath) -> Result<PathBuf, ErrorBody> {
        octo_fsutil::create_private_dir(&self.root)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        let full = path.join_to(&self.root);
        if goes_through_link(&self.root, &full) {
            return Err(ErrorBody::new(
                ErrorCode::PathRefused,
                format!("the file path {path} goes through a symbolic link"),
            ));
        }
        Ok(full)
    }

    /// Streams `body` to `path` (replacing it) if its bytes have `digest`. The body is received
    /// on this task while another thread hashes and writes, so network, digest and disk overlap.
    pub async fn upload<B>(
        &self,
        path: &RelativePath,
        digest: &Sha256Digest,
        body: B,
    ) -> Result<Stored, ErrorBody>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let full = self.resolve(path)?;
        let internal = |e: std::io::Error| ErrorBody::new(ErrorCode::Internal, e.to_string());
        if let Some(parent) = full.parent() {
            octo_fsutil::create_private_dir(parent).map_err(internal)?;
            // The directories just created may have raced with a planted link.
            if goes_through_link(&self.root, parent) {
                return Err(ErrorBody::new(
                    ErrorCode::PathRefused,
                    format!("the file path {path} goes through a symbolic link"),
                ));
            }
        }
        let temp = octo_fsutil::temp_path_beside(&full);
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(internal)?
        };
        let mut writer = ReceivedFile::new(file);
        let received = receive_pipelined(body, octo_protocol::MAX_FILE_SIZE, move |chunk| {
            writer.take(chunk)
        })
        .await;
        let result = match received {
            Ok((size, actual)) if &actual == digest => tokio::fs::rename(&temp, &full)
                .await
                .map_err(internal)
                .map(|()| Stored {
                    name: path.to_string(),
                    size,
                    sha256: actual,
                }),
            Ok((_, actual)) => Err(ErrorBody::new(
                ErrorCode::DigestMismatch,
                format!("the file's bytes have digest {actual}, not the announced {digest}"),
            )),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }

    /// Opens `path` for download; returns the file and its digest.
    pub async fn open(
        &self,
        path: &RelativePath,
    ) -> Result<(tokio::fs::File, Sha256Digest), ErrorBody> {
        let full = self.resolve(path)?;
        let not_found = || {
            ErrorBody::new(
                ErrorCode::FileNotFound,
                format!("there is no file {path} in the tentacle's files directory"),
            )
        };
        if !full.is_file() {
            return Err(not_found());
        }
        let digest = digest_file(&full).await.map_err(|_| not_found())?;
        let file = tokio::fs::File::open(&full)
            .await
            .map_err(|_| not_found())?;
        Ok((file, digest))
    }
}

async fn digest_file(path: &Path) -> std::io::Result<Sha256Digest> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

/// Why [`write_hashed`] stopped.
#[derive(Debug)]
pub(crate) enum WriteHashedError {
    /// More than the limit (in bytes) arrived; what was written is incomplete.
    TooLarge(u64),
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteHashedError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Streams `reader` (at most `limit` bytes) into a new file at `path`, hashing as it goes, and
/// syncs it; returns the size and the digest. The caller checks the digest and renames or removes
/// the file: the plugin and package caches share this.
pub(crate) async fn write_hashed<R: tokio::io::AsyncRead + Unpin>(
    mut reader: R,
    path: &Path,
    limit: u64,
) -> Result<(u64, Sha256Digest), WriteHashedError> {
    use tokio::io::AsyncWriteExt;
    let mut out =
        tokio::io::BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::create(path).await?);
    let mut hasher = sha2::Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(WriteHashedError::TooLarge(limit));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).await?;
    }
    out.flush().await?;
    out.into_inner().sync_all().await?;
    Ok((total, Sha256Digest::from_bytes(hasher.finalize().into())))
}

/// [`write_hashed`] of an HTTP body, pipelined: frames are received on this task while a blocking
/// thread hashes them and writes them to a new file at `path`, synced once at the end, so network,
/// digest and disk overlap. The caller checks the digest and renames or removes the file.
pub(crate) async fn write_hashed_body<B>(
    body: B,
    path: &Path,
    limit: u64,
) -> Result<(u64, Sha256Digest), WriteHashedError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?
    };
    let mut writer = ReceivedFile::new(file);
    receive_pipelined(body, limit, move |chunk| writer.take(chunk))
        .await
        .map_err(|e| match e.error {
            ErrorCode::TooLarge => WriteHashedError::TooLarge(limit),
            _ => WriteHashedError::Io(std::io::Error::other(e.message)),
        })
}

/// Receives `body` (at most `limit` bytes) on this task while a blocking thread hashes each
/// chunk and hands it to `sink`; `sink(None)` is called once at the end. Returns the size and the
/// digest of everything received.
pub async fn receive_pipelined<B, F>(
    mut body: B,
    limit: u64,
    mut sink: F,
) -> Result<(u64, Sha256Digest), ErrorBody>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
    F: FnMut(Option<&[u8]>) -> std::io::Result<()> + Send + 'static,
{
    use http_body_util::BodyExt;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(64);
    let worker = tokio::task::spawn_blocking(move || -> std::io::Result<Sha256Digest> {
        let mut hasher = sha2::Sha256::new();
        for chunk in rx {
            hasher.update(&chunk);
            sink(Some(&chunk))?;
        }
        sink(None)?;
        Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
    });
    let mut total = 0u64;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                failure = Some(ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("the upload broke off: {e}"),
                ));
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            failure = Some(ErrorBody::new(
                ErrorCode::TooLarge,
                format!("the upload is larger than the limit of {limit} bytes"),
            ));
            break;
        }
        if tx.send(data).is_err() {
            // The writer failed; its error is reported below.
            break;
        }
    }
    drop(tx);
    let written = worker
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    let digest = written.map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    Ok((total, digest))
}

/// Whether any existing component of `path` below `root` is a symbolic link (a link planted in
/// the files directory must not lead a transfer outside it).
fn goes_through_link(root: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(root) else {
        return true;
    };
    let mut current = root.to_path_buf();
    for component in rest.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}
