//! TCP (optionally through a proxy), TLS, the trust registry and RPC wired together for the two
//! directions:
//!
//! * listening: the server dials the tentacle ([`connect_listening`]); the tentacle accepts and
//!   serves ([`serve_listening`]);
//! * polling: the tentacle dials the server and serves on that connection ([`dial_tls`] +
//!   [`crate::rpc::serve_h2`], or the reconnecting loop [`run_polling`]); the server accepts and
//!   is the HTTP/2 client on it ([`accept_polling`]).
//!
//! Every established connection is registered in its trust store's
//! [`ConnectionRegistry`](crate::trust::ConnectionRegistry), so revoking a peer closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::identity::Thumbprint;
use crate::proxy::{ProxyConfig, connect_via_proxy};
use crate::rpc::{H2Options, RpcClient, RpcError, RpcService, handshake_h2, serve_h2};
use crate::stream::PrefixedStream;
use crate::tls::{
    AcceptError, ClientStream, PeerInfo, ServerStream, TlsClient, TlsError, TlsServer,
};
use crate::trust::{ConnectionGuard, Direction, TrustStore};

/// Default TCP port a listening tentacle accepts on.
pub const DEFAULT_LISTENING_PORT: u16 = 10933;
/// Default TCP port the server accepts polling tentacles on.
pub const DEFAULT_POLLING_PORT: u16 = 10943;
/// Default limit for the TCP connection (and for the proxy's reply).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to dial, and how.
#[derive(Debug, Clone)]
pub struct DialTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The HTTP proxy to tunnel through, if any.
    pub proxy: Option<ProxyConfig>,
    /// Limit for the TCP connection, and for the proxy's reply.
    pub connect_timeout: Duration,
}

impl DialTarget {
    /// A direct target.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            proxy: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The same target through `proxy` (or direct with `None`).
    pub fn with_proxy(mut self, proxy: Option<ProxyConfig>) -> Self {
        self.proxy = proxy;
        self
    }

    /// The same target with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        crate::proxy::reply_authority(&self.host, self.port)
    }
}

/// A TCP stream to the target, direct or through a proxy tunnel.
pub type DialStream = PrefixedStream<TcpStream>;

/// Opens the TCP connection (through the proxy when there is one). The address is the peer's
/// when direct, `None` through a proxy.
pub async fn dial_tcp(target: &DialTarget) -> Result<(DialStream, Option<SocketAddr>), RpcError> {
    if let Some(proxy) = &target.proxy {
        let bare = target.host.trim_start_matches('[').trim_end_matches(']');
        let stream = connect_via_proxy(proxy, bare, target.port, target.connect_timeout).await?;
        return Ok((stream, None));
    }
    let connect = TcpStream::connect((
        target.host.trim_start_matches('[').trim_end_matches(']'),
        target.port,
    ));
    let tcp = tokio::time::timeout(target.connect_timeout, connect)
        .await
        .map_err(|_| RpcError::Timeout {
            what: format!("connecting to {}", target.authority()),
            after: target.connect_timeout,
        })?
        .map_err(|source| RpcError::Connect {
            target: target.authority(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let remote = tcp.peer_addr().ok();
    Ok((PrefixedStream::new(bytes::Bytes::new(), tcp), remote))
}

/// A verified TLS connection, registered in the trust store's connection registry.
#[derive(Debug)]
pub struct Established<S> {
    /// The TLS stream.
    pub stream: S,
    /// The verified peer.
    pub peer: PeerInfo,
    /// Keeps the connection registered; its token is cancelled when the peer's trust is revoked.
    pub guard: ConnectionGuard,
}

fn register(
    trust: &TrustStore,
    peer: &PeerInfo,
    direction: Direction,
) -> Result<ConnectionGuard, TlsError> {
    trust
        .register_connection(peer.thumbprint, peer.remote, direction)
        .map_err(TlsError::Untrusted)
}

/// Dials `target` and runs the TLS handshake; the server must present a trusted certificate,
/// and exactly `expected` when given.
pub async fn dial_tls(
    target: &DialTarget,
    tls: &TlsClient,
    expected: Option<Thumbprint>,
) -> Result<Established<ClientStream<DialStream>>, RpcError> {
    let (tcp, remote) = dial_tcp(target).await?;
    let connection = tls.connect(&target.host, tcp, expected, remote).await?;
    let guard = register(tls.trust(), &connection.peer, Direction::Outbound)?;
    Ok(Established {
        stream: connection.stream,
        peer: connection.peer,
        guard,
    })
}

/// Accepts TLS on an accepted TCP connection and registers the peer.
pub async fn accept_tls<IO>(
    tls: &TlsServer,
    io: IO,
    remote: Option<SocketAddr>,
) -> Result<Established<ServerStream<IO>>, AcceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = tls.accept(io, remote).await?;
    let guard = tls
        .trust()
        .register_connection(connection.peer.thumbprint, remote, Direction::Inbound)
        .map_err(AcceptError::UntrustedClient)?;
    Ok(Established {
        stream: connection.stream,
        peer: connection.peer,
        guard,
    })
}

/// An RPC connection to a peer.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The calls.
    pub client: RpcClient,
    /// Who answers them.
    pub peer: PeerInfo,
}

/// Starts HTTP/2 as the client on an established connection; the registration lasts as long as
/// the connection.
pub async fn into_rpc_client<S>(
    established: Established<S>,
    options: &H2Options,
) -> Result<Connected, RpcError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Established {
        stream,
        peer,
        guard,
    } = established;
    let client = handshake_h2(stream, options, guard.token().clone()).await?;
    let watcher = client.clone();
    // Hold the registration until the connection ends, without keeping the connection open.
    let closed = watcher.shared_closed();
    drop(watcher);
    tokio::spawn(async move {
        closed.cancelled().await;
        drop(guard);
    });
    Ok(Connected { client, peer })
}

/// Listening direction, server side: dials a listening tentacle and returns the RPC client.
pub async fn connect_listening(
    target: &DialTarget,
    tls: &TlsClient,
    expected: Option<Thumbprint>,
    options: &H2Options,
) -> Result<Connected, RpcError> {
    let established = dial_tls(target, tls, expected).await?;
    into_rpc_client(established, options).await
}

/// Serves `service` on an established connection until it ends, the peer's trust is revoked, or
/// `shutdown` is cancelled.
pub async fn serve_established<S, IO>(
    established: Established<IO>,
    service: Arc<S>,
    options: &H2Options,
    shutdown: &CancellationToken,
) -> Result<(), RpcError>
where
    S: RpcService,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Established {
        stream,
        peer,
        guard,
    } = established;
    let token = guard.token().clone();
    tokio::select! {
        result = serve_h2(stream, service, peer, options, token) => result,
        _ = shutdown.cancelled() => Ok(()),
    }
}

fn log_accept_error(error: &AcceptError, remote: SocketAddr) {
    match error {
        AcceptError::UntrustedClient(_) | AcceptError::NotHttp2 { .. } => {
            tracing::warn!(%remote, %error, "refused a connection")
        }
        _ => tracing::debug!(%remote, %error, "refused a connection"),
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, shutdown: CancellationToken, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut failures = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, remote)) => {
                failures.reset();
                let _ = tcp.set_nodelay(true);
                tokio::spawn(handle(tcp, remote));
            }
            Err(error) => {
                // E.g. out of file descriptors: back off rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(failures.next_delay()).await;
            }
        }
    }
}

/// Listening direction, tentacle side: accepts connections on `listener` and serves `service`
/// to every trusted peer, until `shutdown` is cancelled (which also closes live connections).
pub async fn serve_listening<S: RpcService>(
    listener: TcpListener,
    tls: TlsServer,
    service: Arc<S>,
    options: H2Options,
    shutdown: CancellationToken,
) {
    let options = Arc::new(options);
    let loop_shutdown = shutdown.clone();
    accept_loop(listener, loop_shutdown, move |tcp, remote| {
        let tls = tls.clone();
        let service = service.clone();
        let options = options.clone();
        let shutdown = shutdown.clone();
        async move {
            match accept_tls(&tls, tcp, Some(remote)).await {
                Ok(established) => {
                    let peer = established.peer.thumbprint;
                    tracing::info!(%peer, %remote, "server connected");
                    if let Err(error) =
                        serve_established(established, service, &options, &shutdown).await
                    {
                        tracing::info!(%peer, %error, "connection ended");
                    }
                }
                Err(error) => log_accept_error(&error, remote),
            }
        }
    })
    .await
}

/// Polling direction, server side: accepts polling tentacles on `listener` and hands each
/// trusted one over as a [`Connected`] RPC client on `connections`, until `shutdown` is
/// cancelled.
pub async fn accept_polling(
    listener: TcpListener,
    tls: TlsServer,
    options: H2Options,
    connections: mpsc::Sender<Connected>,
    shutdown: CancellationToken,
) {
    let options = Arc::new(options);
    accept_loop(listener, shutdown, move |tcp, remote| {
        let tls = tls.clone();
        let options = options.clone();
        let connections = connections.clone();
        async move {
            let established = match accept_tls(&tls, tcp, Some(remote)).await {
                Ok(established) => established,
                Err(error) => return log_accept_error(&error, remote),
            };
            let peer = established.peer.thumbprint;
            match into_rpc_client(established, &options).await {
                Ok(connected) => {
                    tracing::info!(%peer, %remote, "polling tentacle connected");
                    let _ = connections.send(connected).await;
                }
                Err(error) => tracing::info!(%peer, %error, "polling connection failed"),
            }
        }
    })
    .await
}

/// Polling direction, tentacle side: dials the server, serves `service` on that connection
/// until it ends, and dials again after a full-jitter backoff delay (reset after every
/// successful connection), until `shutdown` is cancelled.
pub async fn run_polling<S: RpcService>(
    target: DialTarget,
    tls: TlsClient,
    expected: Option<Thumbprint>,
    service: Arc<S>,
    options: H2Options,
    mut backoff: Backoff,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let attempt = tokio::select! {
            attempt = dial_tls(&target, &tls, expected) => attempt,
            _ = shutdown.cancelled() => return,
        };
        match attempt {
            Ok(established) => {
                backoff.reset();
                let peer = established.peer.thumbprint;
                tracing::info!(%peer, server = %target.authority(), "connected to the server");
                if let Err(error) =
                    serve_established(established, service.clone(), &options, &shutdown).await
                {
                    tracing::info!(%peer, %error, "polling connection ended");
                }
            }
            Err(error) => {
                tracing::warn!(server = %target.authority(), %error, "cannot connect to the server")
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
