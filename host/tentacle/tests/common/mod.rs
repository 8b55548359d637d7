//! A real `tentacle` process in a temporary home, and an in-process "server" that talks to it
//! with octo-comms, for the protocol tests.
#![allow(dead_code)]

pub mod octo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use octo_comms::endpoint::{self, Connected, DialTarget};
use octo_comms::identity::{Identity, Thumbprint};
use octo_comms::rpc::{H2Options, RpcClient, RpcError};
use octo_comms::tls::TlsClient;
use octo_comms::trust::TrustStore;
use octo_protocol::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A generous bound so that a broken test fails instead of hanging (not a timing assertion).
pub const LIVENESS: Duration = Duration::from_secs(60);

pub fn tentacle_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tentacle")
}

/// Runs `tentacle --home HOME ARGS...` to completion; returns stdout, panics on failure.
pub fn tentacle_cmd(home: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(tentacle_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tentacle {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running `tentacle agent`; killed when dropped.
pub struct Tentacle {
    pub home: PathBuf,
    pub child: Child,
    pub address: Option<SocketAddr>,
    pub thumbprint: Thumbprint,
}

impl Tentacle {
    /// Configures a listening tentacle on 127.0.0.1:`port` (0: any) that trusts `server`.
    pub fn configure_listening(home: &Path, port: u16, server: Thumbprint) {
        tentacle_cmd(
            home,
            &[
                "configure",
                "--port",
                &port.to_string(),
                "--listen-address",
                "127.0.0.1",
                "--trust",
                &server.to_string(),
            ],
        );
    }

    /// Starts the agent in `home` and waits until it is ready.
    pub async fn start(home: &Path) -> Self {
        let mut child = Command::new(tentacle_bin())
            .arg("--home")
            .arg(home)
            .arg("agent")
            .env("TENTACLE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut address, mut thumbprint) = (None, None);
        tokio::time::timeout(LIVENESS, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(a) = line.strip_prefix("listening ") {
                    address = Some(a.parse().unwrap());
                } else if let Some(t) = line.strip_prefix("thumbprint ") {
                    thumbprint = Some(Thumbprint::parse(t).unwrap());
                } else if line == "ready" {
                    return;
                }
            }
            panic!("the tentacle exited before it was ready");
        })
        .await
        .expect("the tentacle did not get ready");
        // Keep draining stdout so the agent never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            home: home.to_path_buf(),
            child,
            address,
            thumbprint: thumbprint.unwrap(),
        }
    }

    /// A new listening tentacle in a fresh home trusting `server`; returns it with its home.
    pub async fn listening(server: Thumbprint) -> (Self, tempfile::TempDir) {
        let home = tempfile::tempdir().unwrap();
        Self::configure_listening(home.path(), 0, server);
        (Self::start(home.path()).await, home)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    pub fn address(&self) -> SocketAddr {
        self.address.expect("listening")
    }
}

/// The in-process server side: an identity and a TLS client trusting one tentacle.
pub struct Server {
    pub identity: Identity,
}

impl Server {
    pub fn new() -> Self {
        Self {
            identity: Identity::generate("octo-test-server").unwrap(),
        }
    }

    pub fn thumbprint(&self) -> Thumbprint {
        self.identity.thumbprint()
    }

    pub async fn try_connect(
        &self,
        address: SocketAddr,
        expected: Thumbprint,
    ) -> Result<Connected, RpcError> {
        let tls = TlsClient::new(&self.identity, TrustStore::from_thumbprints([expected]))
            .unwrap()
            .with_handshake_timeout(Duration::from_secs(10));
        endpoint::connect_listening(
            &DialTarget::new(address.ip().to_string(), address.port()),
            &tls,
            Some(expected),
            &H2Options::default(),
        )
        .await
    }

    pub async fn connect(&self, tentacle: &Tentacle) -> RpcClient {
        self.try_connect(tentacle.address(), tentacle.thumbprint)
            .await
            .unwrap()
            .client
    }
}

/// The refusal in an RPC error, when the tentacle answered with one.
pub fn refusal(error: &RpcError) -> Option<(u16, ErrorBody)> {
    match error {
        RpcError::Status {
            status, message, ..
        } => ErrorBody::parse(message).map(|b| (status.as_u16(), b)),
        _ => None,
    }
}

pub fn run_script_bytes() -> &'static [u8] {
    octo_builtin_plugins::RUN_SCRIPT.bytes
}

pub fn ticket(name: &str) -> Ticket {
    Ticket::parse(name).unwrap()
}

/// A start request for run-script with `script`.
pub fn script_step(ticket_name: &str, script: &str) -> StartStep {
    StartStep {
        ticket: ticket(ticket_name),
        plugin: Sha256Digest::of(run_script_bytes()),
        arguments: [("ScriptBody".to_owned(), script.to_owned())].into(),
        variables: vec![],
        grants: vec![],
        deadline_ms: 60_000,
        script_network: Default::default(),
        internal_networks: None,
        package: None,
    }
}

/// Uploads run-script.
pub async fn put_run_script(client: &RpcClient) -> Stored {
    let bytes = run_script_bytes();
    client
        .upload(
            &paths::plugin_put(&Sha256Digest::of(bytes)),
            std::io::Cursor::new(bytes),
        )
        .await
        .unwrap()
}

/// Long-polls until the run ends; returns every line (exactly once) and the final status.
pub async fn follow(client: &RpcClient, ticket: &Ticket) -> (Vec<LogEntry>, StepStatus) {
    let mut cursor = LogCursor::new();
    let mut all = Vec::new();
    tokio::time::timeout(LIVENESS, async {
        loop {
            let status: StepStatus = client
                .call_json(
                    paths::STEP_STATUS,
                    &StatusRequest {
                        ticket: ticket.clone(),
                        after_sequence: cursor.last(),
                        wait_ms: 10_000,
                    },
                )
                .await
                .unwrap();
            all.extend(cursor.take(status.lines.clone()));
            if status.state.is_terminal() && cursor.last() == status.last_sequence {
                return (all, status);
            }
        }
    })
    .await
    .expect("the step did not finish")
}

pub fn messages(lines: &[LogEntry]) -> Vec<String> {
    lines.iter().map(|l| l.message.clone()).collect()
}
