//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! Every request goes through the host, which first checks it against the plugin's manifest
//! (`outbound`) and the installation's outbound policy. A refused request fails with
//! [`HttpError::Denied`], whose message names the destination, so a step can say exactly what was
//! blocked.
//!
//! ```no_run
//! # fn main() -> Result<(), octo_plugin_sdk::http::HttpError> {
//! use std::time::Duration;
//! use octo_plugin_sdk::http;
//!
//! let response = http::get("https://example.com/health")
//!     .header("Accept", "application/json")
//!     .timeout(Duration::from_secs(10))
//!     .send()?;
//! if response.status() != 200 { /* ... */ }
//!
//! let created = http::post("https://hooks.example.com/deploy")
//!     .header("Content-Type", "application/json")
//!     .body(r#"{"text":"deployed"}"#)
//!     .send()?;
//! println!("{} {}", created.status(), created.text());
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, HeaderError, IncomingBody, IncomingResponse, Method,
    OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::poll::{Pollable, poll};
use crate::bindings::wasi::io::streams::StreamError;

/// The largest response body [`Request::send`] reads unless told otherwise (16 MiB).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// A `GET` request to `url`.
pub fn get(url: impl Into<String>) -> Request {
    Request::new("GET", url)
}

/// A `POST` request to `url`.
pub fn post(url: impl Into<String>) -> Request {
    Request::new("POST", url)
}

/// An HTTP request under construction. Send it with [`Request::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_body: usize,
    read_body: bool,
}

impl Request {
    /// A request with any method (`GET`, `PUT`, `DELETE`, ...) to an `http://` or `https://` URL.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            connect_timeout: None,
            max_body: DEFAULT_MAX_BODY,
            read_body: true,
        }
    }

    /// Add a header. (`Host` and other hop-by-hop headers are set by the host and refused here.)
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// The request body. A `Content-Length` header is added unless you set one.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The whole exchange (connecting, sending, the response headers and body) must finish within
    /// `timeout`; otherwise [`HttpError::Timeout`]. Also passed to the host as the first-byte and
    /// between-bytes timeouts of `wasi:http` request options.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Connecting must finish within `timeout` (a `wasi:http` request option).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Refuse response bodies larger than `bytes` with [`HttpError::BodyTooLarge`]
    /// (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Do not read the response body; [`Response::body`] will be empty. For status checks.
    pub fn ignore_body(mut self) -> Self {
        self.read_body = false;
        self
    }

    /// The URL this request goes to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Send the request and wait for the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        let target = Target::parse(&self.url)?;
        let destination = target.destination();
        let deadline = self
            .timeout
            .map(|t| monotonic_clock::now().saturating_add(nanos(t)));
        let fail = |code: ErrorCode| HttpError::from_code(code, &destination);

        let headers = Fields::new();
        // Send the length up front: many servers refuse chunked request bodies.
        let has_length = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        let method_has_body = ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| self.method.eq_ignore_ascii_case(m));
        if !has_length && (!self.body.is_empty() || method_has_body) {
            headers
                .append("content-length", self.body.len().to_string().as_bytes())
                .map_err(|e| HttpError::InvalidHeader {
                    name: "content-length".into(),
                    reason: header_error(&e),
                })?;
        }
        for (name, value) in &self.headers {
            headers
                .append(name, value)
                .map_err(|e| HttpError::InvalidHeader {
                    name: name.clone(),
                    reason: header_error(&e),
                })?;
        }
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&method(&self.method))
            .map_err(|()| HttpError::InvalidMethod(self.method.clone()))?;
        let invalid_url = |reason: &str| HttpError::InvalidUrl {
            url: self.url.clone(),
            reason: reason.to_owned(),
        };
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| invalid_url("the scheme was refused"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid_url("the host or port is not valid"))?;
        request
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| invalid_url("the path or query is not valid"))?;
        let body = request.body().map_err(|()| HttpError::Other {
            destination: destination.clone(),
            detail: "the request body was already taken".into(),
        })?;

        let options = RequestOptions::new();
        // Hosts may not support every option; they then keep their own defaults.
        if let Some(t) = self.connect_timeout.or(self.timeout) {
            let _ = options.set_connect_timeout(Some(nanos(t)));
        }
        if let Some(t) = self.timeout {
            let _ = options.set_first_byte_timeout(Some(nanos(t)));
            let _ = options.set_between_bytes_timeout(Some(nanos(t)));
        }

        let future = outgoing_handler::handle(request, Some(options)).map_err(fail)?;
        let written = write_body(body, &self.body, &destination);
        // If the host failed the request, its reason beats "could not write the body".
        let response = wait_response(&future, deadline, &destination)?;
        written?;

        let status = response.status();
        let headers = response.headers().entries();
        let body = if self.read_body {
            read_body(&response, deadline, self.max_body, &destination)?
        } else {
            Vec::new()
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// An HTTP response with its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    /// The status code, e.g. 200.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// All headers as received.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body, consuming the response.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// Why a request failed. Every message names the destination (`https://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The host refused the request: the destination is not in the plugin's manifest, or the
    /// outbound policy (e.g. an air-gapped installation) does not allow it.
    Denied {
        /// `scheme://host[:port]` of the refused request.
        destination: String,
    },
    /// The URL could not be used.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The method is not a valid HTTP method.
    InvalidMethod(String),
    /// A header was refused (invalid syntax, or one only the host may set).
    InvalidHeader {
        /// Header name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The request did not complete in time.
    Timeout {
        /// `scheme://host[:port]`.
        destination: String,
    },
    /// The host name could not be resolved.
    Dns {
        /// `scheme://host[:port]`.
        destination: String,
        /// Details from the host.
        detail: String,
    },
    /// No connection could be made, or it broke.
    Connection {
        /// `scheme://host[:port]`.
        destination: String,
        /// What happened.
        detail: String,
    },
    /// The TLS handshake failed (e.g. an untrusted certificate).
    Tls {
        /// `scheme://host[:port]`.
        destination: String,
        /// What happened.
        detail: String,
    },
    /// The response body is larger than [`Request::max_body`].
    BodyTooLarge {
        /// `scheme://host[:port]`.
        destination: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Any other failure reported by the host.
    Other {
        /// `scheme://host[:port]`.
        destination: String,
        /// What happened.
        detail: String,
    },
}

impl HttpError {
    /// Whether the host refused the request (see [`HttpError::Denied`]). Retrying will not help.
    pub fn is_denied(&self) -> bool {
        matches!(self, HttpError::Denied { .. })
    }

    /// Whether retrying the same request can never succeed: denied requests and invalid input.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            HttpError::Denied { .. }
                | HttpError::InvalidUrl { .. }
                | HttpError::InvalidMethod(_)
                | HttpError::InvalidHeader { .. }
        )
    }

    fn from_code(code: ErrorCode, destination: &str) -> Self {
        let destination = destination.to_owned();
        let detail = |s: &str| s.to_owned();
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied { destination },
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpError::Timeout { destination },
            ErrorCode::DnsError(p) => HttpError::Dns {
                destination,
                detail: match (p.rcode, p.info_code) {
                    (Some(rcode), _) => rcode,
                    (None, Some(info)) => format!("info code {info}"),
                    (None, None) => "name not resolved".into(),
                },
            },
            ErrorCode::DestinationNotFound => HttpError::Dns {
                destination,
                detail: detail("destination not found"),
            },
            ErrorCode::ConnectionRefused => HttpError::Connection {
                destination,
                detail: detail("connection refused"),
            },
            ErrorCode::ConnectionTerminated => HttpError::Connection {
                destination,
                detail: detail("connection closed unexpectedly"),
            },
            ErrorCode::DestinationUnavailable => HttpError::Connection {
                destination,
                detail: detail("destination unavailable"),
            },
            ErrorCode::DestinationIpProhibited => HttpError::Connection {
                destination,
                detail: detail("destination IP address prohibited"),
            },
            ErrorCode::DestinationIpUnroutable => HttpError::Connection {
                destination,
                detail: detail("destination IP address unroutable"),
            },
            ErrorCode::ConnectionLimitReached => HttpError::Connection {
                destination,
                detail: detail("connection limit reached"),
            },
            ErrorCode::TlsProtocolError => HttpError::Tls {
                destination,
                detail: detail("TLS protocol error"),
            },
            ErrorCode::TlsCertificateError => HttpError::Tls {
                destination,
                detail: detail("the server's certificate is not trusted"),
            },
            ErrorCode::TlsAlertReceived(p) => HttpError::Tls {
                destination,
                detail: format!(
                    "TLS alert received{}",
                    p.alert_message
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            },
            ErrorCode::InternalError(Some(message)) => HttpError::Other {
                destination,
                detail: message,
            },
            other => HttpError::Other {
                destination,
                detail: format!("{other:?}"),
            },
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied { destination } => write!(
                f,
                "outbound request to {destination} was denied by the host \
                 (not declared in the plugin's manifest, or not allowed by the outbound policy)"
            ),
            HttpError::InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            HttpError::InvalidMethod(m) => write!(f, "invalid HTTP method {m:?}"),
            HttpError::InvalidHeader { name, reason } => {
                write!(f, "invalid header {name:?}: {reason}")
            }
            HttpError::Timeout { destination } => write!(f, "request to {destination} timed out"),
            HttpError::Dns {
                destination,
                detail,
            } => write!(f, "could not resolve {destination}: {detail}"),
            HttpError::Connection {
                destination,
                detail,
            } => write!(f, "could not connect to {destination}: {detail}"),
            HttpError::Tls {
                destination,
                detail,
            } => write!(f, "TLS with {destination} failed: {detail}"),
            HttpError::BodyTooLarge { destination, limit } => write!(
                f,
                "response from {destination} is larger than the limit of {limit} bytes"
            ),
            HttpError::Other {
                destination,
                detail,
            } => write!(f, "request to {destination} failed: {detail}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The parts of an absolute `http`/`https` URL that `wasi:http` wants.
#[derive(Debug, Clone)]
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        if trimmed.chars().any(char::is_whitespace) {
            return Err(invalid("it contains whitespace"));
        }
        let (scheme, rest) = trimmed
            .split_once("://")
            .ok_or_else(|| invalid("expected an absolute URL such as https://host/path"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid("only http and https URLs are supported")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        if authority.is_empty() {
            return Err(invalid("it has no host"));
        }
        if authority.contains('@') {
            return Err(invalid(
                "credentials in URLs are not supported; send an Authorization header instead",
            ));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let path_with_query = if rest.is_empty() {
            "/".to_owned()
        } else if rest.starts_with('?') {
            format!("/{rest}")
        } else {
            rest.to_owned()
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path_with_query,
        })
    }

    /// `scheme://authority`, the form used in manifests and error messages.
    fn destination(&self) -> String {
        let scheme = match &self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Other(s) => s,
        };
        format!("{scheme}://{}", self.authority)
    }
}

fn method(m: &str) -> Method {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(m.to_owned()),
    }
}

fn header_error(e: &HeaderError) -> String {
    match e {
        HeaderError::InvalidSyntax => "invalid syntax".into(),
        HeaderError::Forbidden => "this header is set by the host".into(),
        HeaderError::Immutable => "headers are immutable".into(),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Wait until `pollable` is ready or the deadline passes.
fn wait(pollable: &Pollable, deadline: Option<u64>, destination: &str) -> Result<(), HttpError> {
    match deadline {
        None => {
            pollable.block();
            Ok(())
        }
        Some(deadline) => {
            let timer = monotonic_clock::subscribe_instant(deadline);
            if poll(&[pollable, &timer]).contains(&0) {
                Ok(())
            } else {
                Err(HttpError::Timeout {
                    destination: destination.to_owned(),
                })
            }
        }
    }
}

fn write_body(body: OutgoingBody, bytes: &[u8], destination: &str) -> Result<(), HttpError> {
    let broken = |detail: String| HttpError::Connection {
        destination: destination.to_owned(),
        detail,
    };
    if !bytes.is_empty() {
        let stream = body
            .write()
            .map_err(|()| broken("could not open the request body".into()))?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| match e {
                    StreamError::Closed => broken("the request body was closed early".into()),
                    StreamError::LastOperationFailed(e) => broken(format!(
                        "writing the request body failed: {}",
                        e.to_debug_string()
                    )),
                })?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|code| HttpError::from_code(code, destination))
}

fn wait_response(
    future: &FutureIncomingResponse,
    deadline: Option<u64>,
    destination: &str,
) -> Result<IncomingResponse, HttpError> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(HttpError::from_code(code, destination)),
            Some(Err(())) => {
                return Err(HttpError::Other {
                    destination: destination.to_owned(),
                    detail: "the response was already taken".into(),
                });
            }
            None => wait(&future.subscribe(), deadline, destination)?,
        }
    }
}

fn read_body(
    response: &IncomingResponse,
    deadline: Option<u64>,
    limit: usize,
    destination: &str,
) -> Result<Vec<u8>, HttpError> {
    let other = |detail: &str| HttpError::Other {
        destination: destination.to_owned(),
        detail: detail.to_owned(),
    };
    let body = response
        .consume()
        .map_err(|()| other("the response body was already taken"))?;
    let stream = body
        .stream()
        .map_err(|()| other("the response body stream was already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.read(64 * 1024) {
            Ok(chunk) if chunk.is_empty() => wait(&stream.subscribe(), deadline, destination)?,
            Ok(chunk) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(HttpError::BodyTooLarge {
                        destination: destination.to_owned(),
                        limit,
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(
                    match crate::bindings::wasi::http::types::http_error_code(&e) {
                        Some(code) => HttpError::from_code(code, destination),
                        None => HttpError::Connection {
                            destination: destination.to_owned(),
                            detail: format!("reading the response failed: {}", e.to_debug_string()),
                        },
                    },
                );
            }
        }
    }
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> (String, String) {
        let t = Target::parse(url).unwrap();
        (t.destination(), t.path_with_query)
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            parse("https://example.com"),
            ("https://example.com".into(), "/".into())
        );
        assert_eq!(
            parse("HTTP://127.0.0.1:8080/a/b?x=1#frag"),
            ("http://127.0.0.1:8080".into(), "/a/b?x=1".into())
        );
        assert_eq!(
            parse("http://[::1]:81?q"),
            ("http://[::1]:81".into(), "/?q".into())
        );
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "example.com",
            "ftp://x",
            "https://",
            "https://u:p@x/",
            "http://a b",
        ] {
            assert!(
                matches!(Target::parse(url), Err(HttpError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn denied_names_the_destination() {
        let e = HttpError::from_code(ErrorCode::HttpRequestDenied, "https://example.com:8443");
        assert!(e.is_denied());
        assert!(
            e.to_string()
                .starts_with("outbound request to https://example.com:8443 was denied by the host")
        );
    }
}
