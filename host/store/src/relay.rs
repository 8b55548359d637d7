//! The relay of calls to polling tentacles between nodes sharing one PostgreSQL database (the
//! part Redis plays in Halibut's multi-node queue): a node that must call a polling tentacle
//! connected to another node puts the call in `pending_requests` and `NOTIFY`s
//! `octo_relay_request` with the tentacle's thumbprint; the node holding the tentacle claims it
//! (`FOR UPDATE SKIP LOCKED`, so exactly one node does), performs it, writes the answer into the
//! row and `NOTIFY`s `octo_relay_response` with the row's id; the caller reads the answer and
//! deletes the row. The claiming node beats a heartbeat on the row while the call runs, so the
//! caller notices a node that died with its call.
//!
//! This module only moves opaque bytes: what they mean (and their encryption) is the server's.
//! Notifications can be missed (a dropped listening connection): every waiter also polls.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, broadcast};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::error::{Error, Result};
use crate::url::DatabaseUrl;

/// The channel a node listens on for new requests (payload: the tentacle's thumbprint).
const REQUEST_CHANNEL: &str = "octo_relay_request";
/// The channel a caller listens on for answers (payload: the request's id).
const RESPONSE_CHANNEL: &str = "octo_relay_response";

/// A wake-up from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulse {
    /// A request for the tentacle with this thumbprint was queued.
    Request(String),
    /// The request with this id was answered.
    Response(String),
    /// The listening connection was (re)established: pulses may have been missed meanwhile.
    Listening,
}

/// A request a node claimed.
#[derive(Debug)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// The tentacle's thumbprint.
    pub target: String,
    /// The caller's node.
    pub requested_by: String,
    /// The request bytes (no longer in the table).
    pub request: Vec<u8>,
}

/// Where a request stands, as its caller sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Not claimed yet; `expired` once its pickup deadline passed.
    Waiting {
        /// Whether no node may claim it any more.
        expired: bool,
    },
    /// Claimed by a node that last beat its heartbeat `silent` ago.
    Claimed {
        /// The node.
        by: String,
        /// Time since its last heartbeat.
        silent: Duration,
    },
    /// Answered.
    Answered {
        /// The node that answered.
        by: String,
        /// The answer's bytes.
        response: Vec<u8>,
    },
    /// The row is gone (removed by a purge).
    Gone,
}

/// The queue in a PostgreSQL database.
pub struct RelayQueue {
    url: DatabaseUrl,
    client: Mutex<Option<Arc<Client>>>,
    pulses: broadcast::Sender<Pulse>,
}

impl RelayQueue {
    /// Connects (the store has run the migrations) and starts listening for pulses; the
    /// listening connection is opened again when it breaks, for as long as the process runs.
    pub async fn connect(url: &DatabaseUrl) -> Result<Arc<Self>> {
        let client = crate::postgres::connect(url).await?;
        let (pulses, _) = broadcast::channel(1024);
        let queue = Arc::new(Self {
            url: url.clone(),
            client: Mutex::new(Some(Arc::new(client))),
            pulses: pulses.clone(),
        });
        let url = url.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(200);
            loop {
                match listen(&url, &pulses).await {
                    Ok(()) => pause = Duration::from_millis(200),
                    Err(error) => tracing::warn!(%error, "relay: cannot listen for notifications"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
        Ok(queue)
    }

    /// Pulses from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Pulse> {
        self.pulses.subscribe()
    }

    /// The query connection, opened again when it broke.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut guard = self.client.lock().await;
        if let Some(client) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(crate::postgres::connect(&self.url).await?);
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Queues a request for the tentacle `target` (a thumbprint) under `id` (unique, chosen by the
    /// caller) and wakes the nodes; a node may claim it for `pickup` from now.
    pub async fn push(
        &self,
        id: &str,
        target: &str,
        requested_by: &str,
        request: &[u8],
        pickup: Duration,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .query(
                "WITH queued AS (
                     INSERT INTO pending_requests (id, target, requested_by, request, deadline)
                     VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
                     RETURNING target)
                 SELECT pg_notify('octo_relay_request', target) FROM queued",
                &[&id, &target, &requested_by, &request, &pickup.as_secs_f64()],
            )
            .await?;
        Ok(())
    }

    /// Claims the oldest request for one of `targets` whose pickup deadline has not passed, for
    /// node `node`; its request bytes are removed from the table as it is claimed.
    pub async fn claim(&self, targets: &[String], node: &str) -> Result<Option<Claimed>> {
        if targets.is_empty() {
            return Ok(None);
        }
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH next AS (
                     SELECT id, request FROM pending_requests
                     WHERE target = ANY($1) AND claimed_by IS NULL AND deadline > now()
                     ORDER BY created LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 UPDATE pending_requests p
                 SET claimed_by = $2, heartbeat = now(), request = NULL
                 FROM next WHERE p.id = next.id
                 RETURNING p.id, p.target, p.requested_by, next.request",
                &[&targets, &node],
            )
            .await?;
        Ok(row.map(|r| Claimed {
            id: r.get(0),
            target: r.get(1),
            requested_by: r.get(2),
            request: r.get::<_, Option<Vec<u8>>>(3).unwrap_or_default(),
        }))
    }

    /// The claiming node is still at it; false when the caller has given up (the row is gone).
    pub async fn heartbeat(&self, id: &str, node: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE pending_requests SET heartbeat = now() WHERE id = $1 AND claimed_by = $2",
                &[&id, &node],
            )
            .await?;
        Ok(n == 1)
    }

    /// Stores the answer to request `id` and wakes its caller.
    pub async fn respond(&self, id: &str, response: &[u8]) -> Result<()> {
        let client = self.client().await?;
        client
            .query(
                "WITH answered AS (
                     UPDATE pending_requests SET response = $2, heartbeat = now()
                     WHERE id = $1 RETURNING id)
                 SELECT pg_notify('octo_relay_response', id) FROM answered",
                &[&id, &response],
            )
            .await?;
        Ok(())
    }

    /// Where request `id` stands.
    pub async fn state(&self, id: &str) -> Result<RequestState> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT claimed_by, response,
                        COALESCE(EXTRACT(EPOCH FROM now() - heartbeat), 0)::float8,
                        deadline < now()
                 FROM pending_requests WHERE id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(RequestState::Gone);
        };
        let by: Option<String> = row.get(0);
        let response: Option<Vec<u8>> = row.get(1);
        let silent: f64 = row.get(2);
        Ok(match (by, response) {
            (None, _) => RequestState::Waiting {
                expired: row.get(3),
            },
            (Some(by), Some(response)) => RequestState::Answered { by, response },
            (Some(by), None) => RequestState::Claimed {
                by,
                silent: Duration::from_secs_f64(silent.max(0.0)),
            },
        })
    }

    /// Takes back request `id` if no node has claimed it yet; false when one has (the caller
    /// must then wait for its answer: the call may be running).
    pub async fn withdraw(&self, id: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM pending_requests WHERE id = $1 AND claimed_by IS NULL",
                &[&id],
            )
            .await?;
        Ok(n == 1)
    }

    /// Removes request `id` (its caller is done with it).
    pub async fn remove(&self, id: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM pending_requests WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }

    /// Removes the requests created more than `age` ago (callers that went away).
    pub async fn purge(&self, age: Duration) -> Result<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM pending_requests WHERE created < now() - make_interval(secs => $1)",
                &[&age.as_secs_f64()],
            )
            .await?)
    }
}

/// One listening connection: LISTEN on both channels and forward notifications until it breaks.
async fn listen(url: &DatabaseUrl, pulses: &broadcast::Sender<Pulse>) -> Result<()> {
    let config = url.config()?;
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::Unreachable {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    let forward = {
        let pulses = pulses.clone();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let pulse = match n.channel() {
                            REQUEST_CHANNEL => Pulse::Request(n.payload().to_owned()),
                            RESPONSE_CHANNEL => Pulse::Response(n.payload().to_owned()),
                            _ => continue,
                        };
                        let _ = pulses.send(pulse);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::warn!(%error, "relay: the listening connection ended");
                        return;
                    }
                    None => return,
                }
            }
        })
    };
    client
        .batch_execute(&format!(
            "LISTEN {REQUEST_CHANNEL}; LISTEN {RESPONSE_CHANNEL}"
        ))
        .await?;
    let _ = pulses.send(Pulse::Listening);
    let _ = forward.await;
    drop(client);
    Ok(())
}
