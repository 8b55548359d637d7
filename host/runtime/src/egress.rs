//! The step's egress proxy: the way a script's HTTP(S) leaves the host.
//!
//! The commands a step starts get `HTTP_PROXY`/`HTTPS_PROXY` (and the lower-case names) pointing here.
//! Absolute-form `http://` requests and `CONNECT host:port` tunnels are decided by the step's own
//! [`crate::OutboundPolicy`] (marked as coming from a script) and recorded in the same audit as the
//! plugin's `wasi:http` requests. A denied request gets `403` with a one-line reason and opens no
//! upstream socket; an allowed one goes upstream directly or through the web request proxy. In
//! confined mode the proxy's listening socket lives inside the command's network namespace and is
//! the only way out of it, besides the raw TCP destinations an administrator granted: for each, a
//! listening socket at the same address inside the namespace whose connections the host forwards
//! ([`serve_forward`]) after the same decision, recorded as `tcp://address:port`.

use crate::forwards::Upstream;
use crate::intercept::Sender;
use crate::outbound::{OutboundAttempt, OutboundGate};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use octo_manifest::Destination;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use wasmtime_wasi_http::WasiBody;

/// How long connecting upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers meant for the proxy or for one hop only; never sent on.
const HOP_BY_HOP: &[&str] = &[
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// What the proxy needs from the step: the same decision, audit and sender as the plugin's requests.
pub(crate) struct Egress {
    gate: OutboundGate,
}

impl Egress {
    pub(crate) fn new(gate: &OutboundGate) -> Arc<Self> {
        Arc::new(Egress {
            gate: OutboundGate {
                plugin_id: gate.plugin_id.clone(),
                declared: Vec::new(),
                policy: gate.policy.clone(),
                audit: gate.audit.clone(),
                on_denied: gate.on_denied.clone(),
                sender: gate.sender.clone(),
                warn: gate.warn.clone(),
            },
        })
    }

    /// Records a confined script's direct connection attempt (denied: its namespace has no other way
    /// out than this proxy).
    pub(crate) fn record_direct_attempt(&self, destination: String) {
        self.gate.record_denied_script(
            destination,
            "a confined script reaches the network only through the step's egress proxy \
             (HTTP_PROXY/HTTPS_PROXY)"
                .into(),
        );
    }

    fn decide(&self, destination: &Destination) -> OutboundAttempt {
        self.gate.decide_script(destination)
    }
}

/// The running proxy; stops (with every connection it carries) when dropped.
pub(crate) struct EgressServer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EgressServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `listener` until the returned handle is dropped.
pub(crate) fn serve(egress: Arc<Egress>, listener: TcpListener) -> EgressServer {
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let egress = egress.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let egress = egress.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(&egress, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    EgressServer { task }
}

/// Forwards each connection accepted on `listener` (inside a confined command's namespace, at
/// `forward.listen`) to its upstream on the host's network, once the step's policy allows the
/// granted destination for a script. A granted name is resolved then, and (while air-gapped) its
/// addresses must lie inside the internal networks ([`crate::OutboundPolicy::check_resolved`]). A
/// denied connection is reset and opens no upstream socket. Every connection is one attempt in the
/// audit.
pub(crate) fn serve_forward(
    egress: Arc<Egress>,
    listener: TcpListener,
    forward: crate::forwards::Forward,
) -> EgressServer {
    let forward = Arc::new(forward);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    connections.spawn(forward_one(egress.clone(), forward.clone(), stream));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    EgressServer { task }
}

/// One forwarded connection: decided, recorded, then spliced (or reset).
async fn forward_one(
    egress: Arc<Egress>,
    forward: Arc<crate::forwards::Forward>,
    mut stream: tokio::net::TcpStream,
) {
    let destination = &forward.destination;
    let decided = match &forward.upstream {
        Upstream::Address(addr) => egress.gate.check_script(destination).map(|()| vec![*addr]),
        Upstream::Name { host, port } => match egress.gate.check_script(destination) {
            Err(reason) => Err(reason),
            Ok(()) => match resolve(host, *port).await {
                Err(reason) => Err(reason),
                Ok(addrs) => egress.gate.check_resolved_script(destination, addrs),
            },
        },
    };
    egress
        .gate
        .record_script(destination.to_string(), decided.as_ref().err().cloned());
    let Ok(addrs) = decided else {
        // Reset, not a clean close.
        let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
        return;
    };
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(mut up)) => {
                let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
                return;
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no connection within {CONNECT_TIMEOUT:?}"),
        }
    }
    (egress.gate.warn)(format!("forwarding {destination}: {last}"));
}

/// The addresses of a granted name, as the host resolves it.
async fn resolve(host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("{host} has no address"))
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!("cannot resolve {host} within {CONNECT_TIMEOUT:?}")),
    }
}

async fn handle(egress: &Arc<Egress>, request: Request<Incoming>) -> Response<WasiBody> {
    if request.method() == Method::CONNECT {
        return connect(egress, request).await;
    }
    let uri = request.uri();
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "octo egress proxy: send absolute-form requests (http://host/path) or CONNECT".into(),
        );
    };
    let destination = match Destination::new(scheme, host, uri.port_u16()) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("octo egress proxy: {e}")),
    };
    let attempt = egress.decide(&destination);
    if !attempt.allowed {
        return denied(&attempt);
    }
    let (mut parts, body) = request.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(*name);
    }
    let request = Request::from_parts(
        parts,
        body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync(),
    );
    let warn = egress.gate.warn.clone();
    match egress.gate.sender.send(request, None, &*warn).await {
        Ok((mut response, io)) => {
            tokio::spawn(Box::into_pin(io));
            for name in HOP_BY_HOP {
                response.headers_mut().remove(*name);
            }
            response
        }
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("octo egress proxy: {destination} failed: {e}"),
        ),
    }
}

async fn connect(egress: &Arc<Egress>, request: Request<Incoming>) -> Response<WasiBody> {
    let Some(authority) = request.uri().authority().cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "octo egress proxy: CONNECT needs host:port".into(),
        );
    };
    let Some(port) = authority.port_u16() else {
        return text(
            StatusCode::BAD_REQUEST,
            "octo egress proxy: CONNECT needs host:port".into(),
        );
    };
    let host = authority.host();
    let destination = match Destination::new("https", host, Some(port)) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("octo egress proxy: {e}")),
    };
    let attempt = egress.decide(&destination);
    if !attempt.allowed {
        return denied(&attempt);
    }
    let tunnel = match &egress.gate.sender {
        Sender::Network(sender) => sender.tunnel(host, port, CONNECT_TIMEOUT).await,
        Sender::Record(_) => Err("a preview opens no connections".to_string()),
    };
    let mut upstream = match tunnel {
        Ok(stream) => stream,
        Err(e) => {
            (egress.gate.warn)(format!("egress proxy: {e}"));
            return text(StatusCode::BAD_GATEWAY, format!("octo egress proxy: {e}"));
        }
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
    Response::new(empty())
}

fn denied(attempt: &OutboundAttempt) -> Response<WasiBody> {
    text(
        StatusCode::FORBIDDEN,
        format!(
            "octo egress proxy: {} denied: {}",
            attempt.destination, attempt.reason
        ),
    )
}

fn text(status: StatusCode, line: String) -> Response<WasiBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{line}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty() -> WasiBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
