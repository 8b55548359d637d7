//! The CLI commands of the server side: `run`, `new-certificate`, `show-thumbprint`,
//! `targets …`, and `run-step --target/--role` (through the daemon).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand};
use octo_comms::identity::{Identity, Thumbprint};
use octo_protocol::{LogLevel, StepState, Variable};

use super::admin::{self, AdminEvent, AdminRequest, RemoteRun};
use crate::home::Home;
use crate::targets::{self, Reach, Target};

/// `octo run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Port for polling tentacles (default: the `commsListenPort` setting, 10943).
    #[arg(
        long = "comms-listen-port",
        alias = "commsListenPort",
        value_name = "PORT"
    )]
    pub comms_listen_port: Option<u16>,
    /// Address to listen on for polling tentacles.
    #[arg(
        long = "listen-address",
        default_value = "0.0.0.0",
        value_name = "ADDR"
    )]
    pub listen_address: String,
}

/// `octo targets …`.
#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Add a listening tentacle (the server dials it).
    AddListening {
        /// Unique name.
        name: String,
        /// Where it listens: https://HOST:PORT.
        #[arg(long)]
        url: String,
        /// Its certificate thumbprint (`tentacle show-thumbprint`).
        #[arg(long)]
        thumbprint: Thumbprint,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Dial it through this named proxy (`octo proxies add`); TLS stays end to end.
        #[arg(long, value_name = "PROXY")]
        proxy: Option<String>,
    },
    /// Change the named proxy a listening target is dialled through.
    SetProxy {
        /// The target's name.
        name: String,
        /// The named proxy (`octo proxies list`).
        #[arg(required_unless_present = "none", conflicts_with = "none")]
        proxy: Option<String>,
        /// Dial it directly.
        #[arg(long)]
        none: bool,
    },
    /// Add a polling tentacle (it dials the server).
    AddPolling {
        /// Unique name.
        name: String,
        /// Its certificate thumbprint.
        #[arg(long)]
        thumbprint: Thumbprint,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List the targets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a target (its live connections close).
    Remove {
        /// The target's name.
        name: String,
    },
    /// Check targets (all by default) through the running server.
    Health {
        /// Target names.
        names: Vec<String>,
    },
}

/// Loads the server identity, creating it on first use.
pub fn identity(home: &Home) -> anyhow::Result<Identity> {
    Ok(Identity::load_or_create(
        &super::certs_dir(home),
        super::CERTIFICATE_NAME,
    )?)
}

/// `octo run`.
pub fn run(home: &Home, args: RunArgs) -> anyhow::Result<ExitCode> {
    home.private_dir("")?;
    let port = match args.comms_listen_port {
        Some(port) => port,
        None => {
            octo_settings::Settings::load(&octo_settings::Settings::path_in(home.root()))?
                .comms_listen_port
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(super::daemon::run(home.root(), &args.listen_address, port))?;
    Ok(ExitCode::SUCCESS)
}

/// `octo new-certificate`.
pub fn new_certificate(home: &Home) -> anyhow::Result<ExitCode> {
    let id = Identity::regenerate(&super::certs_dir(home), super::CERTIFICATE_NAME)?;
    println!("{}", id.thumbprint());
    eprintln!("A new certificate was created; tentacles must trust the new thumbprint.");
    Ok(ExitCode::SUCCESS)
}

/// `octo show-thumbprint`.
pub fn show_thumbprint(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    home.private_dir("")?;
    let id = identity(home)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "thumbprint": id.thumbprint().to_string() })
        );
    } else {
        println!("{}", id.thumbprint());
    }
    Ok(ExitCode::SUCCESS)
}

fn notify_daemon(home: &Home) {
    if admin::socket_path(home.root()).exists()
        && let Err(e) = admin::call(home.root(), &AdminRequest::Reload, |_| {})
    {
        eprintln!("note: the running server was not told about the change: {e:#}");
    }
}

fn check_proxy_exists(home: &Home, name: &str) -> anyhow::Result<()> {
    let settings = octo_settings::Settings::load(&octo_settings::Settings::path_in(home.root()))?;
    crate::proxy::lookup_named(&settings, name).map(|_| ())
}

/// `octo targets …`.
pub fn targets(home: &Home, command: TargetsCommand) -> anyhow::Result<ExitCode> {
    home.private_dir("")?;
    let path = targets::path_in(home.root());
    match command {
        TargetsCommand::AddListening {
            name,
            url,
            thumbprint,
            roles,
            proxy,
        } => {
            if let Some(proxy) = &proxy {
                check_proxy_exists(home, proxy)?;
            }
            let mut all = targets::load(&path)?;
            all.add(Target {
                name: name.clone(),
                reach: Reach::Listening { url },
                thumbprint,
                roles,
                proxy: proxy.clone(),
            })?;
            targets::save(&path, &all)?;
            notify_daemon(home);
            match proxy {
                Some(proxy) => {
                    println!("Added listening target {name} (through the proxy {proxy})")
                }
                None => println!("Added listening target {name}"),
            }
        }
        TargetsCommand::SetProxy { name, proxy, none } => {
            let proxy = if none { None } else { proxy };
            if let Some(proxy) = &proxy {
                check_proxy_exists(home, proxy)?;
            }
            let mut all = targets::load(&path)?;
            all.set_proxy(&name, proxy.clone())?;
            targets::save(&path, &all)?;
            notify_daemon(home);
            match proxy {
                Some(proxy) => println!("{name} is now dialled through the proxy {proxy}"),
                None => println!("{name} is now dialled directly"),
            }
        }
        TargetsCommand::AddPolling {
            name,
            thumbprint,
            roles,
        } => {
            let mut all = targets::load(&path)?;
            all.add(Target {
                name: name.clone(),
                reach: Reach::Polling,
                thumbprint,
                roles,
                proxy: None,
            })?;
            targets::save(&path, &all)?;
            notify_daemon(home);
            println!("Added polling target {name}");
        }
        TargetsCommand::List { json } => {
            let all = targets::load(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.targets.is_empty() {
                println!("No targets; add one with `octo targets add-listening` or `add-polling`.");
            } else {
                for t in &all.targets {
                    println!(
                        "{:<20} {:<40} {} roles: {}",
                        t.name,
                        t.describe_reach(),
                        t.thumbprint,
                        if t.roles.is_empty() {
                            "-".to_owned()
                        } else {
                            t.roles.join(",")
                        }
                    );
                }
            }
        }
        TargetsCommand::Remove { name } => {
            let mut all = targets::load(&path)?;
            all.remove(&name)?;
            targets::save(&path, &all)?;
            notify_daemon(home);
            println!("Removed target {name}");
        }
        TargetsCommand::Health { names } => {
            let ok = admin::call(
                home.root(),
                &AdminRequest::Health { targets: names },
                |e| match e {
                    AdminEvent::Health {
                        target,
                        ok,
                        detail,
                        millis,
                    } => println!(
                        "{target:<20} {:<7} {millis:>9.1} ms  {detail}",
                        if ok { "healthy" } else { "FAILED" }
                    ),
                    AdminEvent::Error { message } => eprintln!("error: {message}"),
                    _ => {}
                },
            )?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `run-step` resolved, to run on targets.
pub struct RemoteStep {
    /// The component.
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub origin: String,
    /// Parameter values.
    pub arguments: BTreeMap<String, String>,
    /// Variables.
    pub variables: Vec<octo_runtime::Variable>,
    /// Granted destinations.
    pub grants: Vec<String>,
    /// Deadline.
    pub deadline: std::time::Duration,
    /// Target names.
    pub targets: Vec<String>,
    /// Target roles.
    pub roles: Vec<String>,
}

/// `octo run-step PLUGIN --target NAME | --role ROLE`: runs through the daemon, printing each
/// target's log live, prefixed by its name. Non-zero exit if any target did not succeed.
pub fn run_remote(home: &Home, step: RemoteStep) -> anyhow::Result<ExitCode> {
    let request = AdminRequest::RunStep(RemoteRun {
        plugin_base64: base64::engine::general_purpose::STANDARD.encode(&step.bytes),
        origin: step.origin,
        arguments: step.arguments,
        variables: step
            .variables
            .into_iter()
            .map(|v| Variable {
                name: v.name,
                value: v.value,
                sensitive: v.sensitive,
            })
            .collect(),
        grants: step.grants,
        deadline_ms: step.deadline.as_millis() as u64,
        targets: step.targets,
        roles: step.roles,
    });
    let mut failed = 0usize;
    let mut succeeded = 0usize;
    let ok = admin::call(home.root(), &request, |event| {
        let mut out = std::io::stdout().lock();
        match event {
            AdminEvent::Log {
                target,
                level,
                message,
                ..
            } => {
                let label = match level {
                    LogLevel::Info | LogLevel::Highlight => String::new(),
                    other => format!("{}: ", other.label()),
                };
                let _ = writeln!(out, "[{target}] {label}{message}");
            }
            AdminEvent::Note { target, message } => eprintln!("[{target}] ({message})"),
            AdminEvent::Result {
                target,
                state,
                message,
            } => {
                if state == StepState::Succeeded {
                    succeeded += 1;
                    let _ = writeln!(out, "[{target}] Step succeeded");
                } else {
                    failed += 1;
                    let why = message.unwrap_or_default();
                    match state {
                        StepState::Unknown => {
                            eprintln!("[{target}] error: result unknown: {why}")
                        }
                        _ => eprintln!("[{target}] error: step {}: {why}", state.as_str()),
                    }
                }
            }
            AdminEvent::Error { message } => eprintln!("error: {message}"),
            _ => {}
        }
        let _ = out.flush();
    })
    .context("cannot run the step through the server")?;
    if succeeded + failed > 1 {
        println!("{succeeded} succeeded, {failed} did not");
    }
    Ok(if ok && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
