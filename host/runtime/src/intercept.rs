//! Where an allowed request goes: out through the [`HttpSender`](crate::http_client) (directly or via
//! the web request proxy), or to a [`RecordingSender`] that keeps it and answers itself without opening
//! a socket or looking up a name — how a preview shows exactly what a plugin would send (the model is
//! Spin's outbound HTTP interceptor). The outbound gate decides first either way: a request the policy
//! denies is not recorded.

use crate::http_client::HttpSender;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Largest request body a [`RecordingSender`] keeps; a bigger one fails the request.
pub const MAX_RECORDED_BODY: usize = 1024 * 1024;

/// One request as it would have left: method, absolute URL, headers in order, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers in the order the plugin set them (the host adds `host`).
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Completes allowed requests without the network: keeps each one and answers `202 Accepted` with an
/// empty body. Put it in a [`VendorRequest`](crate::VendorRequest) to preview a vendor plugin's call;
/// the attempts it completes are marked [`preview`](crate::OutboundAttempt::preview).
#[derive(Debug, Default)]
pub struct RecordingSender {
    requests: Mutex<Vec<RecordedRequest>>,
}

impl RecordingSender {
    /// A sender that has recorded nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every request recorded so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn complete(&self, request: Request<WasiBody>) -> Result<Response<WasiBody>, Error> {
        let (parts, mut body) = request.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if bytes.len() + data.len() > MAX_RECORDED_BODY {
                    return Err(Error::HttpRequestBodySize(Some(
                        (bytes.len() + data.len()) as u64,
                    )));
                }
                bytes.extend_from_slice(&data);
            }
        }
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RecordedRequest {
                method: parts.method.as_str().to_string(),
                url: parts.uri.to_string(),
                headers,
                body: bytes,
            });
        let empty = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        Response::builder()
            .status(http::StatusCode::ACCEPTED)
            .header(http::header::CONTENT_LENGTH, "0")
            .body(empty)
            .map_err(|e| Error::InternalError(Some(e.to_string())))
    }
}

/// What completes the requests the gate allowed.
#[derive(Clone)]
pub(crate) enum Sender {
    /// Out to the network.
    Network(HttpSender),
    /// Kept, answered locally (a preview).
    Record(Arc<RecordingSender>),
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl Sender {
    pub(crate) fn is_preview(&self) -> bool {
        matches!(self, Sender::Record(_))
    }

    pub(crate) async fn send(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        warn: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(Response<WasiBody>, IoFuture), Error> {
        match self {
            Sender::Network(sender) => sender.send(request, options, warn).await,
            Sender::Record(recorder) => {
                let response = recorder.complete(request).await?;
                let io: IoFuture = Box::new(async { Ok(()) });
                Ok((response, io))
            }
        }
    }
}
