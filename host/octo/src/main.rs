//! `octo`: the Octo server's command line.

mod atomic_file;
mod cli;
mod configure;
mod home;
mod jobs;
mod library;
mod outbound;
mod pack;
mod plugins;
mod proxy;
mod remote;
mod run_step;
mod server;
mod step_source;
mod targets;
mod vendor;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCTO_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: what failed and why; causes are joined rather than printed as a backtrace.
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let home = home::Home::resolve(cli.home.as_deref())?;
    match cli.command {
        cli::Command::RunStep(args) => run_step::run(&home, args),
        cli::Command::Plugins { command } => match command {
            cli::PluginsCommand::Pack(args) => pack::pack(args).map(|()| ExitCode::SUCCESS),
            cli::PluginsCommand::Inspect(args) => pack::inspect(args).map(|()| ExitCode::SUCCESS),
            cli::PluginsCommand::Lifecycle(command) => plugins::run(&home, command),
            cli::PluginsCommand::Grant(args) => outbound::grants::grant(&home, args),
            cli::PluginsCommand::Revoke(args) => outbound::grants::revoke(&home, args),
            cli::PluginsCommand::Grants(args) => outbound::grants::list(&home, args),
        },
        cli::Command::Library { command } => library::run(&home, command),
        cli::Command::Jobs { command } => jobs::run(&home, command),
        cli::Command::Configure(args) => configure::configure(&home, args),
        cli::Command::ShowConfiguration(args) => configure::show(&home, args),
        cli::Command::Outbound(args) => outbound::report::run(&home, args),
        cli::Command::Run(args) => server::commands::run(&home, args),
        cli::Command::NewCertificate => server::commands::new_certificate(&home),
        cli::Command::ShowThumbprint { json } => server::commands::show_thumbprint(&home, json),
        cli::Command::Proxy(args) => proxy::configure(&home, args),
        cli::Command::Proxies { command } => proxy::proxies(&home, command),
        cli::Command::Targets { command } => server::commands::targets(&home, command),
        cli::Command::CheckUpdates { json } => {
            let settings = plugins::load_settings(&home)?;
            let status = vendor::check_updates(&home, &settings)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{}", vendor::describe_update(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Telemetry {
            command: cli::TelemetryCommand::Preview,
        } => {
            println!("{}", vendor::telemetry_preview(&home)?);
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Status { json } => vendor::status(&home, json).map(|()| ExitCode::SUCCESS),
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
