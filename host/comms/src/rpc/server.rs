//! The serving side: one [`RpcService`] on an HTTP/2 connection.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::body::{RpcBody, text_response};
use super::{H2Options, RpcError};
use crate::tls::PeerInfo;

/// The calls a tentacle serves. One implementation serves both directions (listening and
/// polling).
pub trait RpcService: Send + Sync + 'static {
    /// Answers one call from `peer`. Use [`super::body`] helpers to read bodies within limits
    /// and to build answers. A panic is answered with a `500` text and logged.
    fn call(
        &self,
        peer: PeerInfo,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<RpcBody>> + Send;
}

/// Serves HTTP/2 with `service` on `io` until the peer closes, the connection fails (including a
/// keep-alive PING timeout), or `shutdown` is cancelled (then the connection closes at once).
pub async fn serve_h2<IO, S>(
    io: IO,
    service: Arc<S>,
    peer: PeerInfo,
    options: &H2Options,
    shutdown: CancellationToken,
) -> Result<(), RpcError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: RpcService,
{
    let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let service = service.clone();
        let peer = peer.clone();
        async move {
            let path = request.uri().path().to_owned();
            let task = tokio::spawn(async move { service.call(peer, request).await });
            let response = match task.await {
                Ok(response) => response,
                Err(e) => {
                    tracing::error!(%path, error = %e, "an RPC handler failed");
                    text_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error while handling this call",
                    )
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        .max_concurrent_streams(options.max_concurrent_streams)
        .initial_stream_window_size(options.stream_window)
        .initial_connection_window_size(options.connection_window)
        .max_frame_size(options.max_frame_size)
        .max_send_buf_size(4 * 1024 * 1024);
    let connection = builder.serve_connection(TokioIo::new(io), hyper_service);
    tokio::select! {
        result = connection => result.map_err(RpcError::Http),
        _ = shutdown.cancelled() => Ok(()),
    }
}
