//! The live connections, per peer thumbprint, so that they can be listed and closed.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::identity::Thumbprint;

/// Which side opened the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

/// What is known about one live connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    /// Unique within its registry.
    pub id: u64,
    /// The peer's certificate thumbprint.
    pub peer: Thumbprint,
    /// The peer's address, when known (not through a proxy tunnel).
    pub remote: Option<SocketAddr>,
    /// Who dialled whom.
    pub direction: Direction,
    /// When the connection was registered.
    pub established: SystemTime,
}

struct Entry {
    info: ConnectionInfo,
    token: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

/// A shared registry of live connections. Cloning shares it.
#[derive(Clone, Default)]
pub struct ConnectionRegistry {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for ConnectionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRegistry")
            .field("connections", &self.lock().entries.len())
            .finish()
    }
}

impl ConnectionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The registry's invariants hold between statements, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a live connection. The connection's task must stop when the guard's token is
    /// cancelled, and drop the guard when it ends.
    pub fn register(
        &self,
        peer: Thumbprint,
        remote: Option<SocketAddr>,
        direction: Direction,
    ) -> ConnectionGuard {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let token = CancellationToken::new();
        inner.entries.insert(
            id,
            Entry {
                info: ConnectionInfo {
                    id,
                    peer,
                    remote,
                    direction,
                    established: SystemTime::now(),
                },
                token: token.clone(),
            },
        );
        ConnectionGuard {
            registry: self.clone(),
            id,
            token,
        }
    }

    /// Closes every live connection of `peer`; returns how many were signalled.
    pub fn close_peer(&self, peer: &Thumbprint) -> usize {
        let inner = self.lock();
        let mut closed = 0;
        for entry in inner.entries.values().filter(|e| &e.info.peer == peer) {
            entry.token.cancel();
            closed += 1;
        }
        if closed > 0 {
            tracing::info!(peer = %peer, connections = closed, "closing the connections of a peer that is no longer trusted");
        }
        closed
    }

    /// Closes one connection by id; returns whether it was live.
    pub fn close(&self, id: u64) -> bool {
        match self.lock().entries.get(&id) {
            Some(entry) => {
                entry.token.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes every live connection; returns how many were signalled.
    pub fn close_all(&self) -> usize {
        let inner = self.lock();
        inner.entries.values().for_each(|e| e.token.cancel());
        inner.entries.len()
    }

    /// The live connections, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut list: Vec<_> = self
            .lock()
            .entries
            .values()
            .map(|e| e.info.clone())
            .collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// The peers that have at least one live connection, sorted.
    pub fn peers(&self) -> Vec<Thumbprint> {
        let set: BTreeSet<_> = self.lock().entries.values().map(|e| e.info.peer).collect();
        set.into_iter().collect()
    }

    /// Whether `peer` has at least one live connection.
    pub fn is_connected(&self, peer: &Thumbprint) -> bool {
        self.lock().entries.values().any(|e| &e.info.peer == peer)
    }
}

/// Keeps a connection listed in its registry; dropping it unlists the connection.
#[derive(Debug)]
pub struct ConnectionGuard {
    registry: ConnectionRegistry,
    id: u64,
    token: CancellationToken,
}

impl ConnectionGuard {
    /// The connection's id in the registry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Cancelled when the connection must close (trust removed, or closed by the registry).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.registry.lock().entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_list_close_and_unlist() {
        let registry = ConnectionRegistry::new();
        let a = Thumbprint::from_bytes([1; 32]);
        let b = Thumbprint::from_bytes([2; 32]);
        let g1 = registry.register(a, None, Direction::Inbound);
        let g2 = registry.register(a, None, Direction::Outbound);
        let g3 = registry.register(b, None, Direction::Inbound);
        assert_eq!(registry.peers(), vec![a, b]);
        assert_eq!(registry.connections().len(), 3);
        assert_eq!(registry.close_peer(&a), 2);
        assert!(g1.token().is_cancelled() && g2.token().is_cancelled());
        assert!(!g3.token().is_cancelled());
        drop(g1);
        drop(g2);
        assert_eq!(registry.peers(), vec![b]);
        assert!(!registry.is_connected(&a));
        assert!(registry.close(g3.id()));
        drop(g3);
        assert!(registry.connections().is_empty());
    }
}
