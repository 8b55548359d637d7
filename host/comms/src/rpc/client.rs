//! The calling side: an [`RpcClient`] on an HTTP/2 connection.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{HeaderMap, Method, Request, Response, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::body::{self, BodyError, RpcBody};
use super::{H2Options, RpcError};
use crate::tls::find_tls_cause;

struct Shared {
    /// Cancelled when the connection task has ended.
    closed: CancellationToken,
    /// Why it ended, when it failed.
    error: Mutex<Option<RpcError>>,
}

/// Calls on one HTTP/2 connection. Cheap to clone; clones share the connection, and calls from
/// clones run concurrently.
#[derive(Clone)]
pub struct RpcClient {
    sender: SendRequest<RpcBody>,
    shared: Arc<Shared>,
    options: Arc<H2Options>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Starts HTTP/2 as the client on `io` and spawns the task that drives the connection. The
/// connection closes when every clone of the returned client is dropped, when the peer closes,
/// when a keep-alive PING is not acknowledged in time, or at once when `shutdown` is cancelled.
pub async fn handshake_h2<IO>(
    io: IO,
    options: &H2Options,
    shutdown: CancellationToken,
) -> Result<RpcClient, RpcError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(options.stream_window)
        .initial_connection_window_size(options.connection_window)
        .max_frame_size(options.max_frame_size)
        .max_send_buf_size(4 * 1024 * 1024);
    let (sender, connection) = builder
        .handshake::<_, RpcBody>(TokioIo::new(io))
        .await
        .map_err(|e| classify(e, None))?;
    let shared = Arc::new(Shared {
        closed: CancellationToken::new(),
        error: Mutex::new(None),
    });
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            result = connection => result.err().map(|e| classify(e, None)),
            _ = shutdown.cancelled() => Some(RpcError::Closed { reason: Some("closed by this side".into()) }),
        };
        if let Some(error) = outcome {
            tracing::debug!(%error, "RPC connection ended");
            *task_shared.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        }
        task_shared.closed.cancel();
    });
    Ok(RpcClient {
        sender,
        shared,
        options: Arc::new(options.clone()),
    })
}

/// Maps a hyper error to an [`RpcError`], naming a TLS cause when there is one.
fn classify(error: hyper::Error, connection_error: Option<&RpcError>) -> RpcError {
    if let Some(tls) = find_tls_cause(&error, None) {
        return RpcError::Tls(tls);
    }
    if error.is_canceled() || error.is_closed() || error.is_incomplete_message() {
        return RpcError::Closed {
            reason: connection_error
                .map(|e| e.to_string())
                .or_else(|| Some(error.to_string())),
        };
    }
    RpcError::Http(error)
}

impl RpcClient {
    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled() || self.sender.is_closed()
    }

    /// Completes when the connection has ended.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// A token cancelled when the connection has ended (holding it does not keep the
    /// connection open).
    pub(crate) fn shared_closed(&self) -> CancellationToken {
        self.shared.closed.clone()
    }

    /// Why the connection ended, if it failed.
    pub fn close_reason(&self) -> Option<String> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|e| e.to_string())
    }

    /// The options this client was made with.
    pub fn options(&self) -> &H2Options {
        &self.options
    }

    /// A request builder for `method` and `path` with the right scheme and authority.
    pub fn request_builder(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("https://{}{}", self.options.authority, path))
    }

    /// Sends one request; returns the response whatever its status.
    pub async fn send(&self, request: Request<RpcBody>) -> Result<Response<Incoming>, RpcError> {
        let mut sender = self.sender.clone();
        let result = async {
            sender.ready().await?;
            sender.send_request(request).await
        }
        .await;
        result.map_err(|e| self.map_error(e))
    }

    fn map_error(&self, error: hyper::Error) -> RpcError {
        let connection_error = self.shared.error.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(RpcError::Tls(tls)) = connection_error.as_ref()
            && find_tls_cause(&error, None).is_none()
        {
            // The connection task saw the real cause; the call only saw "closed".
            return RpcError::Closed {
                reason: Some(tls.to_string()),
            };
        }
        classify(error, connection_error.as_ref())
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: RpcBody,
    ) -> Result<Request<RpcBody>, RpcError> {
        if !path.starts_with('/') {
            return Err(RpcError::InvalidRequest(format!(
                "the path {path:?} must start with '/'"
            )));
        }
        self.request_builder(method, path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|e| RpcError::InvalidRequest(e.to_string()))
    }

    async fn with_timeout<T>(
        &self,
        what: impl FnOnce() -> String,
        future: impl Future<Output = Result<T, RpcError>>,
    ) -> Result<T, RpcError> {
        match self.options.call_timeout {
            Some(limit) => {
                tokio::time::timeout(limit, future)
                    .await
                    .map_err(|_| RpcError::Timeout {
                        what: what(),
                        after: limit,
                    })?
            }
            None => future.await,
        }
    }

    /// POSTs `request` as JSON to `path` and decodes a JSON answer. A non-2xx answer is
    /// [`RpcError::Status`]. The whole call is limited by [`H2Options::call_timeout`].
    pub async fn call_json<Req, Resp>(&self, path: &str, request: &Req) -> Result<Resp, RpcError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let bytes = serde_json::to_vec(request).map_err(RpcError::Encode)?;
        let request = self.build(Method::POST, path, "application/json", body::full(bytes))?;
        self.with_timeout(
            || format!("call to {path}"),
            self.exchange_json(path, request),
        )
        .await
    }

    async fn exchange_json<Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: Request<RpcBody>,
    ) -> Result<Resp, RpcError> {
        let response = self.send(request).await?;
        self.read_json_answer(path, response).await
    }

    async fn read_json_answer<Resp: DeserializeOwned>(
        &self,
        path: &str,
        response: Response<Incoming>,
    ) -> Result<Resp, RpcError> {
        let response = check_status(path, response).await?;
        let limit = self.options.max_json_response;
        let bytes = body::read_limited(response.into_body(), limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => RpcError::ResponseTooLarge {
                    path: path.to_owned(),
                    limit,
                },
                BodyError::Read(e) => body_read_error(e),
                BodyError::Malformed(source) => RpcError::Decode {
                    path: path.to_owned(),
                    source,
                },
            })?;
        serde_json::from_slice(&bytes).map_err(|source| RpcError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// POSTs `body` (of `content_type`) to `path` and returns the answer's status and body, whatever
    /// the status: for relaying a call opaquely (the relaying node does not need to understand it).
    /// The whole call is limited by [`H2Options::call_timeout`], the answer by
    /// [`H2Options::max_json_response`].
    pub async fn exchange(
        &self,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<RawAnswer, RpcError> {
        let request = self.build(Method::POST, path, content_type, body::full(body))?;
        self.with_timeout(|| format!("call to {path}"), async {
            let response = self.send(request).await?;
            let status = response.status().as_u16();
            let limit = self.options.max_json_response;
            let body = body::read_limited(response.into_body(), limit)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => RpcError::ResponseTooLarge {
                        path: path.to_owned(),
                        limit,
                    },
                    BodyError::Read(e) => body_read_error(e),
                    BodyError::Malformed(source) => RpcError::Decode {
                        path: path.to_owned(),
                        source,
                    },
                })?;
            Ok(RawAnswer {
                status,
                body: body.to_vec(),
            })
        })
        .await
    }

    /// POSTs the bytes of `reader` to `path` as a streamed `application/octet-stream` body and
    /// decodes a JSON answer. Only the wait for the answer's head is limited by the call
    /// timeout, not the upload itself.
    pub async fn upload<R, Resp>(&self, path: &str, reader: R) -> Result<Resp, RpcError>
    where
        R: AsyncRead + Send + 'static,
        Resp: DeserializeOwned,
    {
        self.post_octets(path, body::from_reader(reader)).await
    }

    /// [`RpcClient::upload`] of a whole file, read ahead on a blocking thread in large chunks
    /// ([`body::from_file`]): what bulk transfers (packages, plugins) should use.
    pub async fn upload_file<Resp>(&self, path: &str, file: std::fs::File) -> Result<Resp, RpcError>
    where
        Resp: DeserializeOwned,
    {
        self.post_octets(path, body::from_file(file)).await
    }

    /// POSTs `body` to `path` as `application/octet-stream` and decodes a JSON answer; only the wait
    /// for the answer's head is limited by the call timeout.
    async fn post_octets<Resp>(&self, path: &str, body: RpcBody) -> Result<Resp, RpcError>
    where
        Resp: DeserializeOwned,
    {
        let request = self.build(Method::POST, path, "application/octet-stream", body)?;
        let response = self
            .with_timeout(|| format!("call to {path}"), self.send(request))
            .await?;
        self.read_json_answer(path, response).await
    }

    /// POSTs `request` as JSON to `path` and returns the answer's streamed body. Only the wait
    /// for the answer's head is limited by the call timeout.
    pub async fn download<Req>(&self, path: &str, request: &Req) -> Result<Download, RpcError>
    where
        Req: Serialize + ?Sized,
    {
        let bytes = serde_json::to_vec(request).map_err(RpcError::Encode)?;
        let request = self.build(Method::POST, path, "application/json", body::full(bytes))?;
        let response = self
            .with_timeout(|| format!("call to {path}"), self.send(request))
            .await?;
        let response = check_status(path, response).await?;
        let (parts, body) = response.into_parts();
        Ok(Download {
            headers: parts.headers,
            body,
        })
    }
}

fn body_read_error(error: body::BoxError) -> RpcError {
    match error.downcast::<hyper::Error>() {
        Ok(hyper_error) => classify(*hyper_error, None),
        Err(other) => RpcError::Io(std::io::Error::other(other)),
    }
}

/// Turns a non-2xx answer into [`RpcError::Status`] with the start of its text.
async fn check_status(
    path: &str,
    response: Response<Incoming>,
) -> Result<Response<Incoming>, RpcError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    const KEEP: usize = 512;
    let mut body = response.into_body();
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while text.len() < KEEP {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        text.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
    })
    .await;
    text.truncate(KEEP);
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    Err(RpcError::Status {
        path: path.to_owned(),
        status,
        message,
    })
}

/// An answer as bytes, from [`RpcClient::exchange`] (or relayed from another node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The JSON answer to a call to `path`, as [`RpcClient::call_json`] would have returned it: a
    /// non-2xx status is [`RpcError::Status`] with the start of the text.
    pub fn into_json<Resp: DeserializeOwned>(self, path: &str) -> Result<Resp, RpcError> {
        let status = hyper::StatusCode::from_u16(self.status).map_err(|_| RpcError::Status {
            path: path.to_owned(),
            status: hyper::StatusCode::BAD_GATEWAY,
            message: format!("an invalid status {}", self.status),
        })?;
        if !status.is_success() {
            const KEEP: usize = 512;
            let text = &self.body[..self.body.len().min(KEEP)];
            return Err(RpcError::Status {
                path: path.to_owned(),
                status,
                message: String::from_utf8_lossy(text).trim().to_owned(),
            });
        }
        serde_json::from_slice(&self.body).map_err(|source| RpcError::Decode {
            path: path.to_owned(),
            source,
        })
    }
}

/// A streamed answer from [`RpcClient::download`].
#[derive(Debug)]
pub struct Download {
    headers: HeaderMap,
    body: Incoming,
}

impl Download {
    /// The answer's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The declared length, if any.
    pub fn content_length(&self) -> Option<u64> {
        hyper::body::Body::size_hint(&self.body).exact()
    }

    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RpcError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(classify(e, None)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Copies the whole body into `writer`; returns the number of bytes.
    pub async fn copy_to<W: AsyncWrite + Unpin>(mut self, writer: &mut W) -> Result<u64, RpcError> {
        let mut total = 0u64;
        while let Some(chunk) = self.next_chunk().await? {
            writer.write_all(&chunk).await.map_err(RpcError::Io)?;
            total += chunk.len() as u64;
        }
        writer.flush().await.map_err(RpcError::Io)?;
        Ok(total)
    }

    /// The body as an [`AsyncRead`].
    pub fn into_reader(self) -> body::BodyReader<Incoming> {
        body::body_reader(self.body, None)
    }
}
