//! The command line, as clap types. Parsing of values lives here; doing things lives elsewhere.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Octo: deployments to tentacles, with steps as sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "octo", version, about, propagate_version = true)]
pub struct Cli {
    /// Octo's home directory (settings, plugins, caches, work directories). Default: $OCTO_HOME or ~/.octo
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a step here, in the plugin sandbox: a .wasm component, a Library step template .json, or a
    /// built-in step (run-script, http-health-check).
    RunStep(RunStepArgs),
    /// Work with plugin components.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Community step templates from the library feed: list, show, install.
    Library {
        #[command(subcommand)]
        command: crate::library::LibraryCommand,
    },
    /// Background jobs (step template updates, library sync, ...): list, run now, watch.
    Jobs {
        #[command(subcommand)]
        command: crate::jobs::JobsCommand,
    },
    /// Change settings: the vendor switches (--upgradeCheck=false, ..., --airGapped=true), the
    /// endpoints (--feed, --updateUrl, ...) and --commsListenPort. Kebab-case aliases are accepted.
    Configure(crate::configure::ConfigureArgs),
    /// Print the settings (never a secret).
    ShowConfiguration(crate::configure::ShowConfigurationArgs),
    /// Every outbound destination: why it exists, its gate, allowed or denied now and why, last attempts.
    Outbound(crate::outbound::report::OutboundArgs),
    /// Run the server daemon: the polling listener and the admin socket the CLI uses.
    Run(crate::server::commands::RunArgs),
    /// Replace the server's certificate (tentacles must then trust the new thumbprint).
    NewCertificate,
    /// Print the server's certificate thumbprint (created on first use).
    ShowThumbprint {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The web request proxy (feeds, plugins' HTTP, scripts' HTTP_PROXY): --proxyEnable=true|false,
    /// --proxyHost, --proxyPort, --proxyUsername, --proxyPassword, --useSystemProxy=true. HTTP only.
    Proxy(crate::proxy::ProxyArgs),
    /// Named proxies that listening targets are dialled through: add, list, remove.
    Proxies {
        #[command(subcommand)]
        command: crate::proxy::ProxiesCommand,
    },
    /// Deployment targets (tentacles): add, list, remove, health.
    Targets {
        #[command(subcommand)]
        command: crate::server::commands::TargetsCommand,
    },
    /// Check now whether a newer Octo exists (the update-check plugin; needs upgradeCheck=true). Sends
    /// the version and the installation id only.
    CheckUpdates {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Anonymous usage counts (the telemetry plugin).
    Telemetry {
        #[command(subcommand)]
        command: TelemetryCommand,
    },
    /// This server's version, the last update check and the in-app messages last fetched (no request).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TelemetryCommand {
    /// Print exactly the JSON the telemetry job would send; sends nothing.
    Preview,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Embed an octo:manifest section into a component built with any toolchain.
    Pack(PackArgs),
    /// Print a component's manifest.
    Inspect(InspectArgs),
    #[command(flatten)]
    Lifecycle(crate::plugins::LifecycleCommand),
    /// Let a step plugin (outside the built-in set) reach a destination its manifest declares.
    Grant(crate::outbound::grants::GrantArgs),
    /// Take back a grant.
    Revoke(crate::outbound::grants::GrantArgs),
    /// List the administrator's grants.
    Grants(crate::outbound::grants::GrantsArgs),
}

#[derive(Debug, Args)]
pub struct RunStepArgs {
    /// A .wasm component, a step template .json file, or the id of a built-in step.
    pub plugin: String,

    /// A step parameter (for a template: one of its parameters).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,

    /// A deployment variable the step can read.
    #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub variables: Vec<(String, String)>,

    /// A sensitive deployment variable: masked in every log line.
    #[arg(long = "sensitive-variable", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub sensitive_variables: Vec<(String, String)>,

    /// Grant the step this destination for this run only (scheme://host[:port], wildcards allowed), if its
    /// manifest declares it. Built-in steps need no grant; other steps need this or `octo plugins grant`.
    /// Never overrides --airGapped=true.
    #[arg(long = "allow-outbound", value_name = "DESTINATION", value_parser = parse_destination)]
    pub allow_outbound: Vec<octo_manifest::DestinationPattern>,

    /// Stop the step after this long (e.g. 90s, 10m, 1h). Default 10m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub deadline: Duration,

    /// Memory limit for the plugin, in MiB.
    #[arg(long = "memory-limit", value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub memory_limit_mib: u32,

    /// Keep the step's work directory afterwards and print where it is.
    #[arg(long)]
    pub keep_work_dir: bool,

    /// Print the outcome as JSON on stdout (logs go to stderr).
    #[arg(long)]
    pub json: bool,

    /// Run on this target through the running server instead of here (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,

    /// Run on every target with this role through the running server (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The component (.wasm) to pack.
    pub component: PathBuf,
    /// The manifest JSON file.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// Where to write the packed component.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    pub component: PathBuf,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

fn parse_destination(s: &str) -> Result<octo_manifest::DestinationPattern, String> {
    octo_manifest::DestinationPattern::parse(s).map_err(|e| e.to_string())
}

/// `90`, `90s`, `10m`, `1h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 90s, 10m or 1h, got {s:?}"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_pair("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
