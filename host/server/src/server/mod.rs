//! The daemon, `octo run`: the polling listener, connections to listening tentacles ([`pool`]), remote
//! step runs ([`remote`]), the admin socket the CLI talks to (protocol: [`crate::admin`]) and the job
//! scheduler; and the server's identity (`new-certificate`, `show-thumbprint`).

mod daemon;
mod pool;
mod relay;
mod remote;

use crate::error::Result;
use crate::home::Home;
use crate::sink::Sink;
use octo_comms::identity::{Identity, Thumbprint};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The subject name of the server's certificate.
pub const CERTIFICATE_NAME: &str = "Octo Server";

/// Loads the server identity, creating it on first use (shared by the nodes of a PostgreSQL store:
/// [`crate::shared::identity`]).
pub fn identity(home: &Home) -> Result<Identity> {
    crate::shared::identity::load_or_create(home, CERTIFICATE_NAME)
}

/// `octo show-thumbprint`: the server's thumbprint (the identity is created on first use).
pub fn thumbprint(home: &Home) -> Result<Thumbprint> {
    Ok(identity(home)?.thumbprint())
}

/// `octo new-certificate`: replaces the server's certificate; tentacles must trust the new thumbprint.
pub fn new_certificate(home: &Home) -> Result<Thumbprint> {
    Ok(crate::shared::identity::regenerate(home, CERTIFICATE_NAME)?.thumbprint())
}

/// How `octo run` listens.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Port for polling tentacles (default: the `commsListenPort` setting).
    pub comms_listen_port: Option<u16>,
    /// Address to listen on for polling tentacles.
    pub listen_address: String,
    /// This node's name (`--node`, default: the host name).
    pub node: Option<String>,
    /// How long a node may go without a heartbeat before its tasks are marked (`--nodeTimeout`).
    pub node_timeout: Option<std::time::Duration>,
}

/// What a started daemon tells its caller once it accepts connections.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The server's thumbprint.
    pub thumbprint: Thumbprint,
    /// Where polling tentacles connect.
    pub polling_address: SocketAddr,
    /// The admin socket.
    pub admin_socket: PathBuf,
}

/// `octo run`: runs the daemon until SIGINT/SIGTERM. `on_ready` is called once it listens; job runs
/// and notes go to `sink`.
pub fn run(
    home: &Home,
    options: &RunOptions,
    on_ready: impl FnOnce(&Ready),
    sink: &Sink,
) -> Result<()> {
    home.create()?;
    let port = match options.comms_listen_port {
        Some(port) => port,
        None => octo_settings::Settings::load(&home.settings())?.comms_listen_port,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let node = daemon::NodeOptions {
        name: options
            .node
            .clone()
            .unwrap_or_else(crate::nodes::default_name),
        timeout: options
            .node_timeout
            .unwrap_or(crate::nodes::DEFAULT_TIMEOUT),
    };
    rt.block_on(daemon::run(
        home,
        &options.listen_address,
        port,
        &node,
        on_ready,
        sink,
    ))
}
