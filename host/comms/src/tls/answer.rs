//! The short, harmless answers given to connections that do not speak the protocol: plain HTTP to
//! the TLS port, TLS clients without a certificate (browsers, curl), clients that do not speak
//! HTTP/2. Never a stack trace, never more than a few lines.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the first byte of a connection says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstByte {
    /// A TLS handshake record.
    Tls,
    /// Anything else: plain HTTP, or garbage.
    NotTls,
}

/// Classifies the first byte read from a connection.
pub fn classify_first_byte(byte: u8) -> FirstByte {
    if byte == TLS_HANDSHAKE {
        FirstByte::Tls
    } else {
        FirstByte::NotTls
    }
}

/// Answer to plain (non-TLS) HTTP sent to the TLS port.
pub const PLAIN_HTTP_TEXT: &str = "This is an Octo communications port. It only accepts TLS connections from Octo servers and tentacles with a trusted client certificate.\n";

/// Answer to a TLS client that presented no certificate.
pub const CERTIFICATE_REQUIRED_TEXT: &str = "This is an Octo communications port. A trusted client certificate is required: it is used by Octo servers and tentacles, not by browsers.\n";

/// Answer to a trusted TLS client that did not negotiate HTTP/2.
pub const HTTP2_REQUIRED_TEXT: &str =
    "This is an Octo communications port. It only speaks HTTP/2 (ALPN \"h2\").\n";

/// A complete `HTTP/1.1` response with a `text/plain` body that closes the connection.
pub fn http1_text_response(status: StatusCode, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text.len(),
        text
    )
    .into_bytes()
}

/// Whether `buf` holds a complete HTTP/1 request head.
fn has_request_head(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// Reads what the peer sends (up to a request head, 8 KiB, or `wait`), so that answering and
/// closing does not reset the connection under unread data; then writes `response` and closes.
pub async fn answer_http1<S>(mut stream: S, already_read: &[u8], response: &[u8], wait: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = already_read.to_vec();
    let _ = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; 1024];
        while !has_request_head(&seen) && seen.len() < 8192 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(wait, async {
        stream.write_all(response).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves HTTP/2 on `stream` answering every request with `status` and `text`, then closes after
/// the first answer or after `wait`, whichever comes first.
pub async fn answer_h2<S>(stream: S, status: StatusCode, text: &'static str, wait: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answered = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = answered.clone();
    let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
        notify.notify_one();
        async move {
            let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            *response.status_mut() = status;
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(4)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let _ = tokio::time::timeout(wait, async {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = answered.notified() => {}
        }
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_tls_and_plain_http() {
        assert_eq!(classify_first_byte(0x16), FirstByte::Tls);
        assert_eq!(classify_first_byte(b'G'), FirstByte::NotTls);
        assert_eq!(classify_first_byte(0), FirstByte::NotTls);
    }

    #[test]
    fn http1_text_response_is_well_formed() {
        let bytes = http1_text_response(StatusCode::BAD_REQUEST, PLAIN_HTTP_TEXT);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Content-Type: text/plain"));
        assert_eq!(body, PLAIN_HTTP_TEXT);
    }

    #[test]
    fn request_head_detection() {
        assert!(has_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!has_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }
}
