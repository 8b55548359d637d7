//! `tentacle`: the Octo deployment agent's command line. The commands mirror Octopus
//! Tentacle's (`configure`, `poll-server`, `agent`, `new-certificate`, `show-thumbprint`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use octo_comms::identity::{Identity, Thumbprint};
use tentacle::agent;
use tentacle::home::Home;
use tentacle::settings;

/// Octo Tentacle: the deployment agent.
#[derive(Debug, Parser)]
#[command(name = "tentacle", version, about, propagate_version = true)]
struct Cli {
    /// The tentacle's home directory. Default: $TENTACLE_HOME or ~/.tentacle
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Change how the tentacle listens and which servers it trusts.
    Configure(ConfigureArgs),
    /// Poll a server: dial it and serve it on that connection.
    PollServer(PollServerArgs),
    /// Run the agent (listening and/or polling, as configured) until stopped.
    Agent,
    /// Replace this tentacle's certificate (servers must then trust the new thumbprint).
    NewCertificate,
    /// Print this tentacle's certificate thumbprint (created on first use).
    ShowThumbprint {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the settings (proxy passwords masked).
    ShowConfiguration,
    /// The proxy for connections to polled servers: --proxyEnable=true|false, --proxyHost, --proxyPort,
    /// --proxyUsername, --proxyPassword, --useSystemProxy=true. HTTP only; TLS stays end to end.
    PollingProxy(octo_web_proxy::ProxyArgs),
    /// The web request proxy for plugins' HTTP and scripts (HTTP_PROXY/HTTPS_PROXY): same flags.
    Proxy(octo_web_proxy::ProxyArgs),
    /// The package cache: `list` what is cached, `prune` to a size budget (least recently used first).
    #[command(subcommand)]
    Packages(PackagesCommand),
    /// Every connection this tentacle opens by itself: the polling connections, when configured.
    Outbound {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PackagesCommand {
    /// The cached package files, least recently used first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used package files until the cache is within a budget.
    Prune {
        /// The budget in MiB (default: packageCacheMib in tentacle.toml, else 10240); 0 empties the cache.
        #[arg(long = "budget-mib", value_name = "MIB")]
        budget_mib: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct ConfigureArgs {
    /// TCP port to listen on.
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (default 0.0.0.0).
    #[arg(long = "listen-address", alias = "listenAddress", value_name = "ADDR")]
    listen_address: Option<String>,
    /// Do not listen (polling only); `--noListen=false` listens again.
    #[arg(long = "noListen", alias = "no-listen", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    no_listen: Option<bool>,
    /// Trust a server thumbprint.
    #[arg(long, value_name = "THUMBPRINT")]
    trust: Vec<Thumbprint>,
    /// Stop trusting a server thumbprint (its live connections close).
    #[arg(
        long = "remove-trust",
        alias = "removeTrust",
        value_name = "THUMBPRINT"
    )]
    remove_trust: Vec<Thumbprint>,
    /// Trust no server any more (applied before --trust).
    #[arg(long = "reset-trust", alias = "resetTrust")]
    reset_trust: bool,
    /// Connections opened to each polled server.
    #[arg(long = "polling-connection-count", alias = "pollingConnectionCount", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    polling_connection_count: Option<u32>,
}

#[derive(Debug, Args)]
struct PollServerArgs {
    /// The server's polling address, https://HOST:PORT.
    #[arg(
        long = "server-comms-address",
        alias = "serverCommsAddress",
        value_name = "URL"
    )]
    server_comms_address: String,
    /// The server's certificate thumbprint.
    #[arg(
        long = "server-thumbprint",
        alias = "serverThumbprint",
        value_name = "THUMBPRINT"
    )]
    server_thumbprint: Thumbprint,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENTACLE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let mut parts: Vec<String> = Vec::new();
            for cause in e.chain() {
                let text = cause.to_string().replace('\n', " ");
                if !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
            }
            eprintln!("error: {}", parts.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn packages(home: &Home, command: PackagesCommand) -> anyhow::Result<()> {
    let settings = settings::load(&home.settings())?;
    let cache =
        tentacle::packages::PackageCache::new(home.packages(), settings.package_cache_budget());
    match command {
        PackagesCommand::List { json } => {
            let records = cache.list().context("cannot read the package cache")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else if records.is_empty() {
                println!("No packages are cached.");
            } else {
                for r in &records {
                    let feed = if r.feed.is_empty() { "(file)" } else { &r.feed };
                    println!(
                        "{} {} {} {} {} bytes sha256 {}",
                        feed, r.id, r.version, r.name, r.size, r.sha256
                    );
                }
            }
        }
        PackagesCommand::Prune { budget_mib } => {
            let budget = budget_mib
                .map(|m| m.saturating_mul(1 << 20))
                .unwrap_or(settings.package_cache_budget());
            let removed = cache
                .prune(budget)
                .context("cannot prune the package cache")?;
            for r in &removed {
                println!(
                    "removed {} {} {} ({} bytes)",
                    r.id, r.version, r.name, r.size
                );
            }
            println!("{} package files removed", removed.len());
        }
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(cli.home.as_deref())?;
    octo_fsutil::create_private_dir(home.root())
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    match cli.command {
        Command::Configure(args) => configure(&home, args)?,
        Command::PollServer(args) => {
            let path = home.settings();
            let mut s = settings::load(&path)?;
            s.poll_server(&args.server_comms_address, args.server_thumbprint)?;
            settings::save(&path, &s)?;
            println!(
                "This tentacle will poll {} (thumbprint {}) when the agent runs.",
                args.server_comms_address, args.server_thumbprint
            );
        }
        Command::Agent => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_agent(&home))?;
        }
        Command::NewCertificate => {
            let id = Identity::regenerate(&home.certs(), agent::CERTIFICATE_NAME)?;
            println!("{}", id.thumbprint());
            eprintln!("A new certificate was created; servers must trust the new thumbprint.");
        }
        Command::ShowThumbprint { json } => {
            let id = agent::identity(&home)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "thumbprint": id.thumbprint().to_string() })
                );
            } else {
                println!("{}", id.thumbprint());
            }
        }
        Command::ShowConfiguration => {
            print!("{}", settings::load(&home.settings())?.redacted().to_toml());
        }
        Command::Packages(command) => packages(&home, command)?,
        Command::PollingProxy(flags) => set_proxy(&home, &flags, true)?,
        Command::Proxy(flags) => set_proxy(&home, &flags, false)?,
        Command::Outbound { json } => {
            let s = settings::load(&home.settings())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&tentacle::outbound::rows(&s))?
                );
            } else {
                print!("{}", tentacle::outbound::text(&s));
                let downloads = tentacle::download::DownloadLog::in_dir(&home.logs()).last(20);
                if !downloads.is_empty() {
                    println!(
                        "Package downloads (acquisition target), the last {}:",
                        downloads.len()
                    );
                    for d in &downloads {
                        println!(
                            "  {} {} {} from feed {} via {}: {}",
                            d.time,
                            d.package,
                            d.destination,
                            d.feed,
                            d.via,
                            if d.ok {
                                "ok".to_owned()
                            } else {
                                format!("failed: {}", d.error)
                            }
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_proxy(home: &Home, flags: &octo_web_proxy::ProxyArgs, polling: bool) -> anyhow::Result<()> {
    let path = home.settings();
    let mut s = settings::load(&path)?;
    let (which, proxy) = if polling {
        ("polling proxy", &mut s.polling_proxy)
    } else {
        ("web request proxy", &mut s.web_proxy)
    };
    proxy.apply(flags)?;
    let shown = proxy.describe();
    settings::save(&path, &s)?;
    println!("{which}: {shown} (the agent uses it from its next start)");
    Ok(())
}

fn configure(home: &Home, args: ConfigureArgs) -> anyhow::Result<()> {
    let path = home.settings();
    let mut s = settings::load(&path)?;
    if let Some(port) = args.port {
        s.port = port;
    }
    if let Some(address) = args.listen_address {
        s.listen_address = address;
    }
    if let Some(no_listen) = args.no_listen {
        s.listen = !no_listen;
    }
    if let Some(n) = args.polling_connection_count {
        s.polling_connection_count = n;
    }
    if args.reset_trust {
        s.trusted.clear();
        s.servers.clear();
    }
    for t in &args.remove_trust {
        if !s.remove_trust(t) {
            eprintln!("note: {t} was not trusted");
        }
    }
    for t in args.trust {
        s.trust(t);
    }
    settings::save(&path, &s)?;
    println!("Saved {}", path.display());
    Ok(())
}

async fn run_agent(home: &Home) -> anyhow::Result<()> {
    let running = agent::start(home).await?;
    // Machine-readable lines on stdout, for scripts and tests.
    println!("thumbprint {}", running.thumbprint);
    if let Some(address) = running.listening {
        println!("listening {address}");
    }
    println!("ready");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    running.shutdown.cancel();
    Ok(())
}
