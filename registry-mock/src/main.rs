//! `registry-mock`: publish a signed steps feed, and serve it with the other vendor endpoints.

use anyhow::Result;
use clap::{Parser, Subcommand};
use registry_mock::{publish, serve};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "registry-mock",
    version,
    about = "A steps feed, library, update, telemetry, experiences and dynamic-extensions server for Octo's tests and demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish components into a signed feed directory (merging with what is there); prints the public key.
    Publish {
        /// Directories (every *.wasm in them) or component files.
        #[arg(long, num_args = 1.., value_name = "DIR")]
        plugins: Vec<PathBuf>,
        /// The feed directory to write.
        #[arg(long, value_name = "FEED_DIR")]
        out: PathBuf,
        /// The ed25519 signing key (base64 seed), created with mode 0600 if missing [default: FEED_DIR.key].
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
        /// Mark a published version yanked (repeatable).
        #[arg(long, value_name = "ID@VERSION")]
        yank: Vec<String>,
    },
    /// Serve the feed and the vendor endpoints; prints one JSON line on stdout when ready.
    Serve {
        /// The feed directory (from `publish`).
        #[arg(long, value_name = "FEED_DIR")]
        feed: Option<PathBuf>,
        /// Library-format step templates [default: ../shared/library next to the repository].
        #[arg(long, value_name = "DIR")]
        library: Option<PathBuf>,
        /// Port (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Serve HTTPS with a generated self-signed certificate, written to the state directory.
        #[arg(long)]
        tls: bool,
        /// What the update check answers as the latest version.
        #[arg(long, default_value = "0.2.0", value_name = "X")]
        latest_version: String,
        /// Where the TLS certificate is written [default: a new directory under the system temp dir].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The feed signing key [default: FEED_DIR.key, or STATE_DIR/feed.key without --feed].
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
    },
}

/// Where the community library is by default: the shared folder next to the repository.
fn default_library() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/library")
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-mock: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Publish {
            plugins,
            out,
            key,
            yank,
        } => {
            let report = publish::publish(&publish::PublishOptions {
                plugins,
                out: out.clone(),
                key,
                yank,
            })?;
            for line in &report.lines {
                eprintln!("{line}");
            }
            if report.key_created {
                eprintln!("created a new feed signing key");
            }
            eprintln!(
                "wrote {}; pin this public key:",
                out.join("index.json").display()
            );
            println!("{}", report.public_key);
            Ok(())
        }
        Command::Serve {
            feed,
            library,
            port,
            host,
            tls,
            latest_version,
            state_dir,
            key,
        } => {
            let state_dir = state_dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("registry-mock-{}", std::process::id()))
            });
            let key_path = key.unwrap_or_else(|| match &feed {
                Some(feed) => publish::default_key_path(feed),
                None => state_dir.join("feed.key"),
            });
            let library_dir = library.or_else(|| {
                let dir = default_library();
                if dir.is_dir() {
                    return Some(dir);
                }
                tracing::warn!(
                    "no library directory: {} is missing (use --library DIR); serving an empty library",
                    dir.display()
                );
                None
            });
            let options = serve::ServeOptions {
                host,
                port,
                tls,
                state_dir,
                feed_dir: feed,
                library_dir,
                key_path,
                latest_version,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let server = serve::start(options).await?;
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{}", serde_json::to_string(&server.ready)?)?;
                stdout.flush()?;
                drop(stdout);
                shutdown_signal().await;
                tracing::info!("shutting down");
                server.task.abort();
                Ok(())
            })
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
