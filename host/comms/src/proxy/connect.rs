//! The `CONNECT` client: opens a tunnel through an HTTP proxy.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::{ProxyConfig, authority};
use super::reply::{ReplyHead, connect_request, parse_reply_head};
use super::{ProxiedStream, ProxyError};
use crate::stream::PrefixedStream;

/// Default limit for connecting to the proxy and for its reply.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens a tunnel to `target_host:target_port` through `proxy` with `CONNECT`. `timeout` limits
/// connecting to the proxy, and separately the wait for its reply. Only a 2xx reply opens the
/// tunnel; bytes the proxy sent after its reply head are kept in the returned stream. The caller
/// runs TLS over the returned stream, end to end with the target.
pub async fn connect_via_proxy(
    proxy: &ProxyConfig,
    target_host: &str,
    target_port: u16,
    timeout: Duration,
) -> Result<ProxiedStream, ProxyError> {
    let name = proxy.authority();
    let target = authority(
        target_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(target_host),
        target_port,
    );
    let request = connect_request(
        target_host,
        target_port,
        proxy.basic_authorization().as_deref(),
    )
    .map_err(|detail| ProxyError::InvalidTarget {
        proxy: name.clone(),
        detail,
    })?;

    let mut tcp = tokio::time::timeout(timeout, TcpStream::connect((proxy.host(), proxy.port())))
        .await
        .map_err(|_| ProxyError::Unreachable {
            proxy: name.clone(),
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            ),
        })?
        .map_err(|source| ProxyError::Unreachable {
            proxy: name.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);

    let exchange = async {
        tcp.write_all(&request)
            .await
            .map_err(|source| ProxyError::Io {
                proxy: name.clone(),
                source,
            })?;
        read_reply(&mut tcp, &name).await
    };
    let (head, buf) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ProxyError::Timeout {
            proxy: name.clone(),
            after: timeout,
        })??;

    let proxy_name = name;
    match head.status {
        200..=299 => {
            tracing::debug!(proxy = %proxy_name, %target, "proxy tunnel open");
            let leftover = Bytes::copy_from_slice(&buf[head.head_len..]);
            Ok(PrefixedStream::new(leftover, tcp))
        }
        407 => Err(ProxyError::AuthenticationRequired {
            proxy: proxy_name,
            sent_credentials: proxy.credentials().is_some(),
        }),
        403 => Err(ProxyError::Forbidden {
            proxy: proxy_name,
            target,
        }),
        502..=504 => Err(ProxyError::TargetUnreachable {
            proxy: proxy_name,
            target,
            status: head.status,
            reason: head.reason,
        }),
        status => Err(ProxyError::Refused {
            proxy: proxy_name,
            target,
            status,
            reason: head.reason,
        }),
    }
}

/// Reads until a complete reply head; returns it with everything read.
async fn read_reply(tcp: &mut TcpStream, name: &str) -> Result<(ReplyHead, Vec<u8>), ProxyError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|source| ProxyError::Io {
                proxy: name.to_owned(),
                source,
            })?;
        if n == 0 {
            return Err(ProxyError::ClosedMidReply {
                proxy: name.to_owned(),
                received: buf.len(),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_reply_head(&buf) {
            Ok(Some(head)) => return Ok((head, buf)),
            Ok(None) => continue,
            Err(detail) => {
                return Err(ProxyError::MalformedReply {
                    proxy: name.to_owned(),
                    detail,
                });
            }
        }
    }
}
