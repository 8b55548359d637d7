//! Connections to tentacles: listening targets are dialled on demand and the connection kept;
//! polling tentacles arrive on the polling listener and are looked up by thumbprint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use octo_comms::endpoint::{self, Connected, DialTarget};
use octo_comms::identity::Thumbprint;
use octo_comms::rpc::{H2Options, RpcClient, RpcError};
use octo_comms::tls::TlsClient;
use tokio::sync::Notify;

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

/// Live connections.
pub struct Pool {
    tls: TlsClient,
    options: H2Options,
    /// By target name, with the named proxy it was dialled through (a change of proxy redials).
    listening: Mutex<HashMap<String, (Option<String>, RpcClient)>>,
    polling: Mutex<HashMap<Thumbprint, Vec<RpcClient>>>,
    arrived: Notify,
    home: Option<Home>,
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
        }
    }

    /// Named proxies (`octo proxies`) are read from the settings under `home` when dialling.
    pub fn with_home(mut self, home: &Home) -> Self {
        self.home = Some(home.clone());
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

    fn live_polling(&self, thumbprint: &Thumbprint) -> Option<RpcClient> {
        let mut polling = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        let list = polling.get_mut(thumbprint)?;
        list.retain(|c| !c.is_closed());
        list.last().cloned()
    }

    /// A connection to `target`: the open one, a new one to a listening tentacle, or (for a
    /// polling tentacle) the next one it opens within `wait`.
    pub async fn client(&self, target: &Target, wait: Duration) -> Result<RpcClient, ConnectError> {
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
