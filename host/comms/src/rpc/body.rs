//! Body types and helpers: the boxed body both directions send, streaming adapters between
//! [`AsyncRead`] and HTTP bodies, and size-limited reading with the matching error responses.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Response, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, ReadBuf};

/// A boxed error, as carried by [`RpcBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type sent in both directions: requests from [`super::RpcClient`], responses from an
/// [`super::RpcService`].
pub type RpcBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Default limit for a JSON request body read by [`read_json`] (1 MiB).
pub const DEFAULT_JSON_LIMIT: usize = 1024 * 1024;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> RpcBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> RpcBody {
    full(Bytes::new())
}

/// A body streamed from `reader` in chunks of up to 64 KiB.
pub fn from_reader<R: AsyncRead + Send + 'static>(reader: R) -> RpcBody {
    ReaderBody {
        reader: Box::pin(reader),
        buf: BytesMut::new(),
        done: false,
    }
    .boxed_unsync()
}

/// Bytes read from a file at a time by [`from_file`]: one HTTP/2 frame at the default
/// [`super::H2Options::max_frame_size`].
pub const FILE_CHUNK: usize = 1024 * 1024;

/// A body streamed from `file`, read by a blocking thread in chunks of [`FILE_CHUNK`] a few
/// chunks ahead of the sender: one read per chunk and no copy between the read and the frame
/// (an async file reads through the blocking pool once per poll, with a copy each time).
pub fn from_file(file: std::fs::File) -> RpcBody {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut chunk = BytesMut::zeroed(FILE_CHUNK);
            let mut filled = 0;
            let result = loop {
                match file.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == chunk.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let end = filled < chunk.len();
            chunk.truncate(filled);
            let item = match result {
                Ok(()) if filled == 0 => return,
                Ok(()) => Ok(chunk.freeze()),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // The receiver is gone when the request was dropped: stop reading.
            if tx.blocking_send(item).is_err() || failed || end {
                return;
            }
        }
    });
    ChannelBody { rx, done: false }.boxed_unsync()
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    done: bool,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// A response with a JSON body.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<RpcBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_content_type(status, full(bytes), "application/json"),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a JSON response");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response could not be encoded",
            )
        }
    }
}

/// A response with a short `text/plain` body.
pub fn text_response(status: StatusCode, text: impl Into<String>) -> Response<RpcBody> {
    let mut text = text.into();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    with_content_type(status, full(text), "text/plain; charset=utf-8")
}

/// A response whose body is streamed from `reader` (`application/octet-stream`).
pub fn stream_response<R: AsyncRead + Send + 'static>(reader: R) -> Response<RpcBody> {
    with_content_type(
        StatusCode::OK,
        from_reader(reader),
        "application/octet-stream",
    )
}

fn with_content_type(
    status: StatusCode,
    body: RpcBody,
    content_type: &'static str,
) -> Response<RpcBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Why a request body was refused. [`BodyError::into_response`] gives the answer to send.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than allowed (`413`).
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not valid JSON for the expected type (`400`).
    #[error("the request body is not valid JSON for this call: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The body could not be read (`400`).
    #[error("the request body could not be read: {0}")]
    Read(#[source] BoxError),
}

impl BodyError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Malformed(_) | Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short `text/plain` answer.
    pub fn into_response(self) -> Response<RpcBody> {
        text_response(self.status(), self.to_string())
    }
}

/// Reads a whole body of at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before reading.
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// Reads a JSON request body of at most `limit` bytes.
pub async fn read_json<T, B>(body: B, limit: usize) -> Result<T, BodyError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let bytes = read_limited(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(BodyError::Malformed)
}

/// An [`AsyncRead`] over an HTTP body, for streaming it to a file or a hasher. Reading more than
/// `limit` bytes (when given) fails with an I/O error of kind `InvalidData`.
pub fn body_reader<B>(body: B, limit: Option<u64>) -> BodyReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    BodyReader {
        body,
        chunk: Bytes::new(),
        read: 0,
        limit,
    }
}

/// See [`body_reader`].
#[derive(Debug)]
pub struct BodyReader<B> {
    body: B,
    chunk: Bytes,
    read: u64,
    limit: Option<u64>,
}

impl<B> AsyncRead for BodyReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.chunk.is_empty() {
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e.into()))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.read += data.len() as u64;
                        if let Some(limit) = this.limit
                            && this.read > limit
                        {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("the body is larger than the limit of {limit} bytes"),
                            )));
                        }
                        this.chunk = data;
                    }
                }
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk.split_to(n));
        Poll::Ready(Ok(()))
    }
}

struct ReaderBody {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    buf: BytesMut,
    done: bool,
}

const READ_CHUNK: usize = 64 * 1024;

impl Body for ReaderBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < READ_CHUNK {
            this.buf.reserve(READ_CHUNK);
        }
        match ready!(tokio_util::io::poll_read_buf(
            this.reader.as_mut(),
            cx,
            &mut this.buf
        )) {
            Ok(0) => {
                this.done = true;
                Poll::Ready(None)
            }
            Ok(_) => Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
            Err(e) => {
                this.done = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn limits_and_json() {
        let ok: serde_json::Value = read_json(full(&b"{\"a\":1}"[..]), 100).await.unwrap();
        assert_eq!(ok["a"], 1);
        let too_large = read_limited(full(vec![0u8; 101]), 100).await.unwrap_err();
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let streamed = from_reader(std::io::Cursor::new(vec![1u8; 1000]));
        let too_large = read_limited(streamed, 100).await.unwrap_err();
        assert!(matches!(too_large, BodyError::TooLarge { limit: 100 }));
        let bad = read_json::<serde_json::Value, _>(full(&b"{nope"[..]), 100)
            .await
            .unwrap_err();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn reader_body_and_body_reader_round_trip() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let body = from_reader(std::io::Cursor::new(data.clone()));
        let mut out = Vec::new();
        body_reader(body, None).read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        let body = from_reader(std::io::Cursor::new(data));
        let err = body_reader(body, Some(1000))
            .read_to_end(&mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
