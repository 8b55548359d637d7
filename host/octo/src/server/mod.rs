//! The server side of tentacle communication: `octo run` (the daemon: polling listener, listening
//! connections, remote step runs, and the admin API on a Unix socket in the home), and the CLI
//! commands that talk to it (`targets`, `run-step --target/--role`, `new-certificate`,
//! `show-thumbprint`).

pub mod admin;
pub mod commands;
mod daemon;
mod pool;
mod remote;

/// The subject name of the server's certificate.
pub const CERTIFICATE_NAME: &str = "Octo Server";

/// The identity directory in the home.
pub fn certs_dir(home: &crate::home::Home) -> std::path::PathBuf {
    home.root().join("certs")
}
