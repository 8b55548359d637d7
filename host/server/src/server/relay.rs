//! Calls to a polling tentacle connected to another node, relayed through PostgreSQL
//! (`octo_store::relay`, modelled on Halibut's Redis pending-request queue).
//!
//! The caller ([`RelayedClient`]) seals the call (path, content type, body) with a key every node
//! derives from the shared server identity, queues it for the tentacle's thumbprint and waits for
//! the answer (notified, and polled as a fallback). The node holding the tentacle ([`serve`])
//! claims it with `SKIP LOCKED`, performs it on its polling connection as an opaque exchange,
//! beats a heartbeat on the row meanwhile, and writes back the sealed answer. The bytes in the
//! table are never readable without the server's private key, and a request's bytes leave the
//! table as it is claimed.
//!
//! Failures are connection failures to the caller (retried with backoff, as a dropped connection
//! is): no node claimed the call within the pickup time, or the claiming node stopped beating
//! its heartbeat. A call that was claimed is never withdrawn and queued again behind the claimer's
//! back: the caller waits for its answer or for the claimer's death, and what it retries then
//! (start by ticket, status, cancel, complete, put by digest) is idempotent on the tentacle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use octo_comms::identity::{Identity, Thumbprint};
use octo_comms::rpc::{RawAnswer, RpcError};
use octo_comms::seal::SealKey;
use octo_store::DatabaseUrl;
use octo_store::relay::{Claimed, Pulse, RelayQueue, RequestState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::broadcast;

use super::pool::Pool;
use crate::error::Result;

/// The largest body relayed (a plugin fits; a large package does not, see [`MAX_BODY`]'s refusal).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How often the claiming node beats its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a claiming node may be silent before the caller gives its call up.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polling interval behind the notifications (which can be missed).
const POLL: Duration = Duration::from_secs(2);

/// How long answered or abandoned rows may stay before any node purges them.
const PURGE_AGE: Duration = Duration::from_secs(600);

/// How long the answer may take after the claim, beyond the call's own timeout.
const SLACK: Duration = Duration::from_secs(10);

const JSON: &str = "application/json";
const OCTET_STREAM: &str = "application/octet-stream";

/// This node's side of the relay.
pub struct Relay {
    queue: Arc<RelayQueue>,
    key: SealKey,
    node: String,
    call_timeout: Duration,
}

impl Relay {
    /// Connects to the database at `url`. `identity` is the server's (every node shares it, so
    /// every node derives the same key); `node` is this node's name (`--node`), in messages.
    pub async fn connect(
        url: &DatabaseUrl,
        identity: &Identity,
        node: String,
        call_timeout: Duration,
    ) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            queue: RelayQueue::connect(url).await?,
            key: SealKey::derive(identity, "octo relay of calls to polling tentacles"),
            node,
            call_timeout,
        }))
    }
}

/// What a relayed call is.
#[derive(Serialize, Deserialize)]
struct RequestHead {
    path: String,
    octet_stream: bool,
    /// The body the caller would not relay (larger than [`MAX_BODY`]): the holder refuses, naming itself.
    too_large: Option<u64>,
}

/// What came of it.
#[derive(Serialize, Deserialize)]
struct ResponseHead {
    status: u16,
    /// The call did not reach the tentacle, or its connection failed (the caller retries).
    failure: Option<String>,
}

/// Head (JSON) and body in one message: a 4-byte big-endian head length, the head, the body.
fn frame(head: &impl Serialize, body: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(head).expect("a head serializes");
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    out
}

fn unframe<T: DeserializeOwned>(bytes: &[u8]) -> Option<(T, &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let head = bytes.get(4..4 + len)?;
    Some((serde_json::from_slice(head).ok()?, &bytes[4 + len..]))
}

/// What a sealed message is bound to: its row, its tentacle and its direction.
fn context(id: &str, target: &str, direction: &str) -> Vec<u8> {
    format!("{id}\n{target}\n{direction}").into_bytes()
}

/// A unique request id: this process's start, its pid and a counter (the node name is beside it
/// in the row).
fn new_id(node: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    });
    format!(
        "{node}-{start:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn closed(reason: String) -> RpcError {
    RpcError::Closed {
        reason: Some(reason),
    }
}

/// Deletes the row when the caller stops waiting (its answer read, or the call dropped).
struct RowGuard {
    queue: Arc<RelayQueue>,
    id: String,
}

impl Drop for RowGuard {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = queue.remove(&id).await;
            });
        }
    }
}

/// Calls to one polling tentacle through whichever node holds it.
#[derive(Clone)]
pub struct RelayedClient {
    relay: Arc<Relay>,
    name: String,
    thumbprint: Thumbprint,
    pickup: Duration,
}

impl RelayedClient {
    /// Calls to the tentacle `name` (`thumbprint`); a node must take each call within `pickup`.
    pub fn new(relay: Arc<Relay>, name: &str, thumbprint: Thumbprint, pickup: Duration) -> Self {
        Self {
            relay,
            name: name.to_owned(),
            thumbprint,
            pickup,
        }
    }

    /// As [`octo_comms::rpc::RpcClient::call_json`].
    pub async fn call_json<Req, Resp>(&self, path: &str, request: &Req) -> Result<Resp, RpcError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(request).map_err(RpcError::Encode)?;
        let head = RequestHead {
            path: path.to_owned(),
            octet_stream: false,
            too_large: None,
        };
        self.call(&head, &body).await?.into_json(path)
    }

    /// As [`octo_comms::rpc::RpcClient::upload`], for bodies up to [`MAX_BODY`]; a larger one is
    /// refused by the node holding the tentacle, which names itself.
    pub async fn upload<R, Resp>(&self, path: &str, reader: R) -> Result<Resp, RpcError>
    where
        R: AsyncRead + Send + 'static,
        Resp: DeserializeOwned,
    {
        let mut body = Vec::new();
        let read = Box::pin(reader)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body)
            .await
            .map_err(RpcError::Io)?;
        let too_large = (read > MAX_BODY).then_some(read as u64);
        if too_large.is_some() {
            body.clear();
        }
        let head = RequestHead {
            path: path.to_owned(),
            octet_stream: true,
            too_large,
        };
        self.call(&head, &body).await?.into_json(path)
    }

    async fn call(&self, head: &RequestHead, body: &[u8]) -> Result<RawAnswer, RpcError> {
        let relay = &self.relay;
        let target = self.thumbprint.to_string();
        let id = new_id(&relay.node);
        let sealed = relay
            .key
            .seal(&context(&id, &target, "request"), &frame(head, body))
            .map_err(|e| closed(e.to_string()))?;
        // Listen before queueing, so the answer's pulse cannot come first.
        let mut pulses = relay.queue.subscribe();
        relay
            .queue
            .push(&id, &target, &relay.node, &sealed, self.pickup)
            .await
            .map_err(|e| closed(format!("cannot relay the call through the database: {e}")))?;
        let _guard = RowGuard {
            queue: relay.queue.clone(),
            id: id.clone(),
        };
        let started = Instant::now();
        let limit = self.pickup + relay.call_timeout + SLACK;
        loop {
            let state = relay.queue.state(&id).await;
            match state {
                Ok(RequestState::Answered { by, response }) => {
                    let plain = relay
                        .key
                        .open(&context(&id, &target, "response"), &response)
                        .map_err(|e| closed(format!("node {by}: {e}")))?;
                    let (answer, body) = unframe::<ResponseHead>(&plain)
                        .ok_or_else(|| closed(format!("node {by} sent a malformed answer")))?;
                    if let Some(failure) = answer.failure {
                        return Err(closed(format!("through node {by}: {failure}")));
                    }
                    return Ok(RawAnswer {
                        status: answer.status,
                        body: body.to_vec(),
                    });
                }
                Ok(RequestState::Waiting { expired }) => {
                    if (expired || started.elapsed() >= self.pickup)
                        && relay.queue.withdraw(&id).await.unwrap_or(false)
                    {
                        return Err(RpcError::Timeout {
                            what: format!(
                                "waiting for a node holding the polling tentacle {} (not connected to node {})",
                                self.name, relay.node
                            ),
                            after: self.pickup,
                        });
                    }
                }
                Ok(RequestState::Claimed { by, silent }) if silent > HEARTBEAT_TIMEOUT => {
                    return Err(closed(format!(
                        "node {by}, which holds the polling tentacle {}, stopped answering (no heartbeat for {}s) while it relayed {}; it may or may not have reached the tentacle",
                        self.name,
                        silent.as_secs(),
                        head.path
                    )));
                }
                Ok(RequestState::Claimed { .. }) => {}
                Ok(RequestState::Gone) => {
                    return Err(closed(format!(
                        "the relayed call to {} vanished from the database",
                        self.name
                    )));
                }
                Err(error) => tracing::debug!(%error, "relay: cannot read the request's state"),
            }
            if started.elapsed() > limit {
                return Err(RpcError::Timeout {
                    what: format!("relayed call to {} on {}", head.path, self.name),
                    after: limit,
                });
            }
            wait_for_answer(&mut pulses, &id, POLL).await;
        }
    }
}

/// Waits until `id` is answered (notified), the notifications restart, or `poll` passes.
async fn wait_for_answer(pulses: &mut broadcast::Receiver<Pulse>, id: &str, poll: Duration) {
    let _ = tokio::time::timeout(poll, async {
        loop {
            match pulses.recv().await {
                Ok(Pulse::Response(answered)) if answered == id => return,
                Ok(Pulse::Listening) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    })
    .await;
}

/// The holder's side, for as long as the daemon runs: claims the calls queued for the polling
/// tentacles connected here, each performed on its own task.
pub async fn serve(relay: Arc<Relay>, pool: Arc<Pool>) {
    let mut pulses = relay.queue.subscribe();
    let mut last_purge: Option<Instant> = None;
    let mut warned = false;
    loop {
        let held: Vec<String> = pool
            .polling_thumbprints()
            .iter()
            .map(|t| t.to_string())
            .collect();
        loop {
            match relay.queue.claim(&held, &relay.node).await {
                Ok(Some(claimed)) => {
                    warned = false;
                    tokio::spawn(perform(relay.clone(), pool.clone(), claimed));
                }
                Ok(None) => break,
                Err(error) => {
                    if !warned {
                        tracing::warn!(%error, "relay: cannot claim calls; retrying");
                        warned = true;
                    }
                    break;
                }
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            last_purge = Some(Instant::now());
            if let Err(error) = relay.queue.purge(PURGE_AGE).await {
                tracing::debug!(%error, "relay: cannot purge old calls");
            }
        }
        // Until a call for a tentacle held here is queued (or a poll interval passes: a tentacle
        // may have connected, a pulse may have been missed).
        let _ = tokio::time::timeout(POLL, async {
            loop {
                match pulses.recv().await {
                    Ok(Pulse::Request(target)) if held.contains(&target) => return,
                    Ok(Pulse::Listening) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
    }
}

/// Performs one claimed call on the polling connection held here and writes back its answer.
async fn perform(relay: Arc<Relay>, pool: Arc<Pool>, claimed: Claimed) {
    let Claimed {
        id,
        target,
        requested_by,
        request,
    } = claimed;
    let (head, body) = match answer(&relay, &pool, &id, &target, &request).await {
        Some(answer) => answer,
        // The caller gave up meanwhile: nobody wants the answer.
        None => return,
    };
    let sealed = match relay
        .key
        .seal(&context(&id, &target, "response"), &frame(&head, &body))
    {
        Ok(sealed) => sealed,
        Err(error) => {
            tracing::warn!(%error, "relay: cannot seal an answer");
            return;
        }
    };
    for attempt in 0..5 {
        match relay.queue.respond(&id, &sealed).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, %requested_by, attempt, "relay: cannot store an answer");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
}

/// The answer to one claimed call; `None` when its caller gave up while it ran.
async fn answer(
    relay: &Relay,
    pool: &Pool,
    id: &str,
    target: &str,
    request: &[u8],
) -> Option<(ResponseHead, Vec<u8>)> {
    let refusal = |status: u16, message: String| {
        Some((
            ResponseHead {
                status,
                failure: None,
            },
            message.into_bytes(),
        ))
    };
    let failure = |message: String| {
        Some((
            ResponseHead {
                status: 0,
                failure: Some(message),
            },
            Vec::new(),
        ))
    };
    let node = &relay.node;
    let Ok(plain) = relay.key.open(&context(id, target, "request"), request) else {
        return refusal(
            502,
            format!(
                "node {node} cannot open the relayed call: the nodes do not share one server identity (copy the certs directory of one node's home to the others)"
            ),
        );
    };
    let Some((head, body)) = unframe::<RequestHead>(&plain) else {
        return refusal(
            502,
            format!("node {node} received a malformed relayed call"),
        );
    };
    if let Some(size) = head.too_large {
        return refusal(
            413,
            format!(
                "the polling tentacle is connected to node {node}: {size} bytes are more than the {MAX_BODY} bytes relayed between nodes; run the step through node {node}, or let the tentacle fetch the package itself (--acquire target)"
            ),
        );
    }
    let thumbprint = Thumbprint::parse(target).ok()?;
    let Some(client) = pool.live_polling(&thumbprint) else {
        return failure(format!(
            "the polling tentacle is no longer connected to node {node}"
        ));
    };
    let content_type = if head.octet_stream {
        OCTET_STREAM
    } else {
        JSON
    };
    let call = client.exchange(&head.path, content_type, body.to_vec());
    let beats = async {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            if let Ok(false) = relay.queue.heartbeat(id, node).await {
                return;
            }
        }
    };
    tokio::select! {
        result = call => match result {
            Ok(raw) => Some((ResponseHead { status: raw.status, failure: None }, raw.body)),
            Err(e) if e.is_connection_failure() => failure(e.to_string()),
            Err(e) => refusal(502, format!("node {node}: {e}")),
        },
        // The caller's row is gone: it gave up (dropping the call cancels its HTTP/2 stream).
        () = beats => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_head_and_any_body() {
        let head = ResponseHead {
            status: 200,
            failure: None,
        };
        let bytes = frame(&head, b"\0\x01body");
        let (back, body) = unframe::<ResponseHead>(&bytes).unwrap();
        assert_eq!(back.status, 200);
        assert_eq!(body, b"\0\x01body");
        assert!(unframe::<ResponseHead>(&bytes[..3]).is_none());
        assert!(unframe::<ResponseHead>(b"\0\0\0\x09{}").is_none());
    }

    #[test]
    fn ids_are_unique_within_a_process() {
        assert_ne!(new_id("a"), new_id("a"));
    }
}
