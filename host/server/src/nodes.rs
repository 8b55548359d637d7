//! Several `octo run` nodes on one store (PostgreSQL): each node's name and identity, and
//! `octo nodes list|drain|cap`, which talk to the store directly (they work on any machine that
//! reaches the database, whether or not a daemon runs there).
//!
//! A SQLite store has one node: `--node` there is only a name, and a second daemon on the same
//! file (the same home) is refused by the admin socket, as before.

use std::fmt;
use std::time::Duration;

use octo_store::NodeInfo;

use crate::error::Result;
use crate::home::Home;

/// How long a node may go without a heartbeat before its tasks are marked (`--nodeTimeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// This machine's host name: the default node name.
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The file of a home that names the node its daemon last ran as (`octo run --node NAME`).
fn node_file(home: &Home) -> std::path::PathBuf {
    home.root().join("node")
}

/// Remembers the node this home's daemon runs as, for the home's other commands (the outbound
/// audit names the node that made an attempt).
pub fn remember(home: &Home, name: &str) -> Result<()> {
    octo_fsutil::write_atomic(&node_file(home), name.as_bytes())?;
    Ok(())
}

/// The node this home is: the name its daemon last ran as, else the host name.
pub fn this_node(home: &Home) -> String {
    std::fs::read_to_string(node_file(home))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(default_name)
}

/// 16 random bytes as hex.
pub fn random_id() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The random id of this home (`<home>/node-id`, made once): a node restarted from the same
/// home takes its name back at once, another home must wait until the name's heartbeat is stale.
pub fn home_id(home: &Home) -> Result<String> {
    let path = home.root().join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let id = random_id()?;
    octo_fsutil::write_atomic_with_mode(&path, id.as_bytes(), 0o600)?;
    Ok(id)
}

/// Runs `f` on a runtime of its own (the CLI has none).
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// `octo nodes list`.
#[derive(Debug, Clone)]
pub struct NodeList(pub Vec<NodeInfo>);

/// `octo nodes list`: every node of the store, by name.
pub fn list(home: &Home) -> Result<NodeList> {
    block_on(async {
        let store = crate::tasks::open_store(home).await?;
        Ok(NodeList(store.nodes().await?))
    })
}

impl fmt::Display for NodeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "No nodes (start one with `octo run`).");
        }
        let header = ["NAME", "STATE", "HEARTBEAT", "TASKS", "CAP", "STARTED"].map(String::from);
        let rows: Vec<[String; 6]> = std::iter::once(header)
            .chain(self.0.iter().map(|n| {
                [
                    n.name.clone(),
                    n.state().to_string(),
                    format!("{:.1}s ago", n.heartbeat_age_ms.max(0) as f64 / 1000.0),
                    n.running.to_string(),
                    n.cap.to_string(),
                    n.started.clone(),
                ]
            }))
            .collect();
        crate::table::write_table(f, &rows)
    }
}

impl NodeList {
    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|n| {
                    let mut v = serde_json::to_value(n).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("state".into(), n.state().into());
                    }
                    v
                })
                .collect(),
        )
    }
}

/// `octo nodes drain NAME [--off]`: the node claims no new task (its running ones finish).
pub fn drain(home: &Home, name: &str, draining: bool) -> Result<String> {
    block_on(async {
        let store = crate::tasks::open_store(home).await?;
        if !store.set_node_draining(name, draining).await? {
            bail!(NotFound, "no node {name}; see `octo nodes list`");
        }
        Ok(if draining {
            format!("Node {name} is draining: it claims no new task.")
        } else {
            format!("Node {name} claims tasks again.")
        })
    })
}

/// `octo nodes cap NAME N`: at most N tasks at once on that node.
pub fn cap(home: &Home, name: &str, cap: u32) -> Result<String> {
    block_on(async {
        let store = crate::tasks::open_store(home).await?;
        if !store.set_node_cap(name, cap).await? {
            bail!(NotFound, "no node {name}; see `octo nodes list`");
        }
        Ok(format!("Node {name} runs at most {cap} tasks at once."))
    })
}
