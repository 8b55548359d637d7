//! Connections to tentacles: listening targets are dialled on demand and the connection kept;
//! polling tentacles arrive on the polling listener and are looked up by thumbprint.
//!
//! The routing hook: a call for a polling tentacle connected here goes straight to it; one for a
//! polling tentacle that is not connected here, when the store is shared (PostgreSQL, several
//! nodes), goes through the database to the node that holds it ([`super::relay`]). With SQLite
//! (one node) there is no relay: the pool waits for the tentacle to connect here, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octo_comms::endpoint::{self, Connected, DialTarget};
use octo_comms::identity::Thumbprint;
use octo_comms::rpc::{H2Options, RpcClient, RpcError};
use octo_comms::tls::TlsClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::sync::Notify;

use super::relay::{Relay, RelayedClient};

use crate::home::Home;
use crate::targets::{Reach, Target};

/// Why no connection to a target could be had. Only [`ConnectError::Untrusted`] is final: the
/// others may heal (the tentacle comes back, the network returns, a polling tentacle reconnects).
#[derive(Debug)]
pub enum ConnectError {
    /// The tentacle presented another certificate than the pinned thumbprint, or refused ours.
    Untrusted(RpcError),
    /// It could not be reached now.
    Unreachable(String),
}

impl ConnectError {
    /// Whether retrying may help.
    pub fn is_final(&self) -> bool {
        matches!(self, ConnectError::Untrusted(_))
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Untrusted(e) => e.fmt(f),
            ConnectError::Unreachable(e) => f.write_str(e),
        }
    }
}

impl From<RpcError> for ConnectError {
    fn from(e: RpcError) -> Self {
        if e.is_trust_failure() {
            ConnectError::Untrusted(e)
        } else {
            ConnectError::Unreachable(e.to_string())
        }
    }
}

/// Calls to one tentacle: on a connection held here, or relayed through the node that holds it.
#[derive(Clone)]
pub enum TentacleClient {
    /// A connection of this node.
    Direct(RpcClient),
    /// Through another node (a polling tentacle connected there).
    Relayed(RelayedClient),
}

impl TentacleClient {
    /// Whether calls go through another node.
    pub fn is_relayed(&self) -> bool {
        matches!(self, TentacleClient::Relayed(_))
    }

    /// POSTs `request` as JSON to `path` and decodes the JSON answer.
    pub async fn call_json<Req, Resp>(&self, path: &str, request: &Req) -> Result<Resp, RpcError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        match self {
            TentacleClient::Direct(client) => client.call_json(path, request).await,
            TentacleClient::Relayed(client) => client.call_json(path, request).await,
        }
    }

    /// POSTs the bytes of `reader` to `path` and decodes the JSON answer (relayed: up to
    /// [`super::relay::MAX_BODY`] bytes).
    pub async fn upload<R, Resp>(&self, path: &str, reader: R) -> Result<Resp, RpcError>
    where
        R: AsyncRead + Send + 'static,
        Resp: DeserializeOwned,
    {
        match self {
            TentacleClient::Direct(client) => client.upload(path, reader).await,
            TentacleClient::Relayed(client) => client.upload(path, reader).await,
        }
    }

    /// [`TentacleClient::upload`] of a whole file: read ahead in large chunks on a direct
    /// connection (bulk transfers), read into the sealed request when relayed.
    pub async fn upload_file<Resp>(&self, path: &str, file: std::fs::File) -> Result<Resp, RpcError>
    where
        Resp: DeserializeOwned,
    {
        match self {
            TentacleClient::Direct(client) => client.upload_file(path, file).await,
            TentacleClient::Relayed(client) => {
                client.upload(path, tokio::fs::File::from_std(file)).await
            }
        }
    }
}

/// Live connections.
pub struct Pool {
    tls: TlsClient,
    options: H2Options,
    /// By target name, with the named proxy it was dialled through (a change of proxy redials).
    listening: Mutex<HashMap<String, (Option<String>, RpcClient)>>,
    polling: Mutex<HashMap<Thumbprint, Vec<RpcClient>>>,
    arrived: Notify,
    home: Option<Home>,
    relay: Option<Arc<Relay>>,
}

impl Pool {
    /// A pool dialling with `tls`.
    pub fn new(tls: TlsClient, options: H2Options) -> Self {
        Self {
            tls,
            options,
            listening: Mutex::new(HashMap::new()),
            polling: Mutex::new(HashMap::new()),
            arrived: Notify::new(),
            home: None,
            relay: None,
        }
    }

    /// Named proxies (`octo proxies`) are read from the settings under `home` when dialling.
    pub fn with_home(mut self, home: &Home) -> Self {
        self.home = Some(home.clone());
        self
    }

    /// Calls for polling tentacles connected to other nodes go through `relay`.
    pub fn with_relay(mut self, relay: Arc<Relay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// The home given with [`Pool::with_home`].
    pub fn home(&self) -> Option<&Home> {
        self.home.as_ref()
    }

    /// The named proxy of a listening target, read now so a change applies to the next dial.
    fn proxy_of(&self, target: &Target) -> Result<Option<octo_comms::proxy::ProxyConfig>, String> {
        let Some(name) = &target.proxy else {
            return Ok(None);
        };
        let home = self
            .home
            .as_ref()
            .ok_or_else(|| format!("{}: named proxies are not available here", target.name))?;
        let settings =
            octo_settings::Settings::load(&home.settings()).map_err(|e| e.to_string())?;
        crate::proxy::lookup_named(&settings, name)
            .map(Some)
            .map_err(|e| e.one_line())
    }

    /// A polling tentacle connected.
    pub fn add_polling(&self, connected: Connected) {
        let mut polling = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        let list = polling.entry(connected.peer.thumbprint).or_default();
        list.retain(|c| !c.is_closed());
        list.push(connected.client);
        drop(polling);
        self.arrived.notify_waiters();
    }

    /// How many polling connections are open.
    pub fn polling_connections(&self) -> usize {
        self.polling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|l| l.iter().filter(|c| !c.is_closed()).count())
            .sum()
    }

    /// The polling tentacles connected here.
    pub fn polling_thumbprints(&self) -> Vec<Thumbprint> {
        let polling = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        polling
            .iter()
            .filter(|(_, list)| list.iter().any(|c| !c.is_closed()))
            .map(|(t, _)| *t)
            .collect()
    }

    /// The open connection of a polling tentacle connected here.
    pub fn live_polling(&self, thumbprint: &Thumbprint) -> Option<RpcClient> {
        let mut polling = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        let list = polling.get_mut(thumbprint)?;
        list.retain(|c| !c.is_closed());
        list.last().cloned()
    }

    /// Calls to `target`: its open connection, a new one to a listening tentacle, or, for a
    /// polling tentacle not connected here, the relay through the node that holds it (a node must
    /// take each call within `wait`) or, without a relay, the next connection it opens here within
    /// `wait`.
    pub async fn client(
        &self,
        target: &Target,
        wait: Duration,
    ) -> Result<TentacleClient, ConnectError> {
        if let Reach::Polling = target.reach {
            if let Some(client) = self.live_polling(&target.thumbprint) {
                return Ok(TentacleClient::Direct(client));
            }
            if let Some(relay) = &self.relay {
                return Ok(TentacleClient::Relayed(RelayedClient::new(
                    relay.clone(),
                    &target.name,
                    target.thumbprint,
                    wait,
                )));
            }
        }
        self.connection(target, wait)
            .await
            .map(TentacleClient::Direct)
    }

    /// A connection of this node to `target`.
    async fn connection(&self, target: &Target, wait: Duration) -> Result<RpcClient, ConnectError> {
        match &target.reach {
            Reach::Listening { .. } => {
                if let Some(client) = self
                    .listening
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&target.name)
                    .filter(|(proxy, c)| *proxy == target.proxy && !c.is_closed())
                {
                    return Ok(client.1.clone());
                }
                let (host, port) = target
                    .listening_address()
                    .expect("a listening target")
                    .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
                let proxy = self.proxy_of(target).map_err(ConnectError::Unreachable)?;
                let dial = DialTarget::new(host, port)
                    .with_proxy(proxy)
                    .with_connect_timeout(wait);
                let connected = endpoint::connect_listening(
                    &dial,
                    &self.tls,
                    Some(target.thumbprint),
                    &self.options,
                )
                .await?;
                self.listening
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        target.name.clone(),
                        (target.proxy.clone(), connected.client.clone()),
                    );
                Ok(connected.client)
            }
            Reach::Polling => {
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    let notified = self.arrived.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(client) = self.live_polling(&target.thumbprint) {
                        return Ok(client);
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(ConnectError::Unreachable(format!(
                            "the polling tentacle {} (thumbprint {}) is not connected",
                            target.name, target.thumbprint
                        )));
                    }
                }
            }
        }
    }

    /// Forgets a listening connection that failed, so the next call dials again.
    pub fn drop_listening(&self, name: &str) {
        self.listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}
