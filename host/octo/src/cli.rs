//! The command line, as clap types. Parsing of values lives here; doing things lives in octo-server.

use clap::{Arg, ArgAction, ArgMatches, Args, Parser, Subcommand};
use octo_comms::identity::Thumbprint;
use octo_server::configure::{ConfigureOptions, FLAGS};
use octo_server::plugins::{PluginSpec, parse_spec};
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

impl Cli {
    /// Parses the process's arguments (on bad input clap prints its message and exits).
    ///
    /// `octo [--home DIR] run-step …` is parsed with a command line of run-step alone: clap builds
    /// every subcommand's arguments before it parses, about half a millisecond of each start, and
    /// run-step is the command whose start-up counts (issue 10). Same arguments, same values;
    /// anything it does not accept (help, a mistake) is parsed again by the whole command line,
    /// which gives the message.
    pub fn from_args() -> Cli {
        if names_run_step(std::env::args_os().skip(1))
            && let Ok(run_step) = RunStepCli::try_parse()
        {
            return run_step.into();
        }
        Cli::parse()
    }
}

/// Whether the command is run-step: the first argument other than `--home DIR`.
fn names_run_step(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    while let Some(arg) = args.next() {
        if arg == "--home" {
            args.next();
        } else if !arg.as_encoded_bytes().starts_with(b"--home=") {
            return arg == "run-step";
        }
    }
    false
}

/// [`Cli`] with run-step only (see [`Cli::from_args`]).
#[derive(Debug, Parser)]
#[command(name = "octo", version, propagate_version = true)]
struct RunStepCli {
    /// Octo's home directory (settings, plugins, caches, work directories). Default: $OCTO_HOME or ~/.octo
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: RunStepOnly,
}

#[derive(Debug, Subcommand)]
enum RunStepOnly {
    /// Run a step here, in the plugin sandbox: a .wasm component, a Library step template .json, or a
    /// built-in step (run-script, http-health-check).
    RunStep(Box<RunStepArgs>),
}

impl From<RunStepCli> for Cli {
    fn from(cli: RunStepCli) -> Cli {
        let RunStepOnly::RunStep(args) = cli.command;
        Cli {
            home: cli.home,
            command: Command::RunStep(args),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a step here, in the plugin sandbox: a .wasm component, a Library step template .json, or a
    /// built-in step (run-script, http-health-check).
    RunStep(Box<RunStepArgs>),
    /// Work with plugin components.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Community step templates from the library feed: list, show, install.
    Library {
        #[command(subcommand)]
        command: LibraryCommand,
    },
    /// Background jobs (step template updates, library sync, ...): list, run now, watch.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Tasks: every run of a step on targets and every job run, with each target's outcome and log.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// The nodes of a server sharing one PostgreSQL store: list, drain, cap (straight from the
    /// store; no daemon needed here).
    Nodes {
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// Change settings: the vendor switches (--upgradeCheck=false, ..., --airGapped=true), the
    /// endpoints (--feed, --updateUrl, ...), --commsListenPort and --database. Kebab-case aliases are
    /// accepted.
    Configure(ConfigureArgs),
    /// Print the settings (never a secret).
    ShowConfiguration(ShowConfigurationArgs),
    /// Every outbound destination: why it exists, its gate, allowed or denied now and why, last attempts.
    Outbound(JsonArgs),
    /// Run the server daemon: the polling listener and the admin socket the CLI uses.
    Run(RunArgs),
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
    Proxy(ProxyCommandArgs),
    /// Named proxies that listening targets are dialled through: add, list, remove.
    Proxies {
        #[command(subcommand)]
        command: ProxiesCommand,
    },
    /// Package feeds (NuGet v3, OCI registries, plain HTTP): add, list, remove, test.
    Feeds {
        #[command(subcommand)]
        command: FeedsCommand,
    },
    /// Packages from the feeds, in the server's package cache: versions, download, list, prune.
    Packages {
        #[command(subcommand)]
        command: PackagesCommand,
    },
    /// Deployment targets (tentacles): add, list, remove, health.
    Targets {
        #[command(subcommand)]
        command: TargetsCommand,
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

/// `octo show-configuration` options.
#[derive(Debug, Args)]
pub struct ShowConfigurationArgs {
    /// Print the settings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--json` alone.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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
    Lifecycle(LifecycleCommand),
    /// Let a step plugin (outside the built-in set) reach a destination its manifest declares. The
    /// grant is bound to the component: the one installed under ID, or the one named by --file/--sha256.
    Grant(GrantNewArgs),
    /// Take back a grant.
    Revoke(GrantArgs),
    /// List the administrator's grants.
    Grants(GrantsArgs),
}

/// The plugin lifecycle subcommands (added to `octo plugins`).
#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Search the steps feed (id and description contain TEXT; all plugins without it).
    Search(SearchArgs),
    /// List installed plugins, and the built-in ones still used from the binary.
    List(JsonArgs),
    /// Install a plugin from the steps feed (ID or ID@REQUIREMENT), or a local component (--file).
    Install(InstallArgs),
    /// Update installed plugins (or one) to the newest version their requirement allows.
    Update(UpdateArgs),
    /// Uninstall a plugin (a built-in step falls back to the embedded version).
    Remove(IdArgs),
    /// Go back to the version an install or update replaced (again: forward).
    Rollback(IdArgs),
    /// Re-hash every installed component (current and previous versions).
    Verify,
    /// Write an offline bundle (components + the signed feed index) for an air-gapped server.
    Export(ExportArgs),
    /// Install the plugins of an offline bundle, checked against the pinned feed key.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Text to look for in ids and descriptions (case-insensitive).
    pub text: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// ID, ID@REQUIREMENT (semver, e.g. run-script@^0.1) or ID@VERSION (exactly that version).
    #[arg(value_name = "ID[@REQ]", required_unless_present = "file", conflicts_with = "file", value_parser = parse_spec)]
    pub spec: Option<PluginSpec>,
    /// Install this local component (.wasm with an octo:manifest section) instead.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Only this plugin.
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The plugin id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundle directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// What to put in (ID or ID@REQ); default: the newest version of every plugin in the feed.
    #[arg(value_name = "ID[@REQ]", value_parser = parse_spec)]
    pub specs: Vec<PluginSpec>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A bundle directory written by `octo plugins export`.
    pub dir: PathBuf,
}

/// `octo plugins grant` / `revoke`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The plugin id (as in its manifest).
    #[arg(value_name = "ID")]
    pub plugin: String,
    /// scheme://host[:port]; `*` and `*.domain` wildcards, `:*` for any port.
    #[arg(value_name = "DESTINATION", value_parser = octo_server::outbound::grants::parse_pattern)]
    pub destination: octo_manifest::DestinationPattern,
}

/// `octo plugins grant`.
#[derive(Debug, Args)]
pub struct GrantNewArgs {
    #[command(flatten)]
    pub grant: GrantArgs,
    /// Bind the grant to this component file (the .wasm you will run) instead of the installed one.
    #[arg(long, value_name = "PATH", conflicts_with = "sha256")]
    pub file: Option<PathBuf>,
    /// Bind the grant to the component with this sha256 (64 hex digits).
    #[arg(long, value_name = "DIGEST")]
    pub sha256: Option<String>,
}

/// `octo plugins grants`.
#[derive(Debug, Args)]
pub struct GrantsArgs {
    /// Only this plugin's grants.
    #[arg(value_name = "ID")]
    pub plugin: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `octo library ...`
#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// List the community step templates of the last sync (name, id, category contain TEXT).
    List(LibraryListArgs),
    /// Show one template: description and parameters.
    Show(ShowTemplateArgs),
    /// Install a template as a step: `octo run-step ID-or-name --param NAME=VALUE` then runs it.
    Install(TemplateArgs),
}

#[derive(Debug, Args)]
pub struct LibraryListArgs {
    /// Text to look for (case-insensitive).
    pub text: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowTemplateArgs {
    /// Template id, name, or the name as a slug (e.g. service-check-running-bash).
    pub id: String,
    /// Print the template's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// Template id, name, or the name as a slug.
    pub id: String,
}

/// `octo jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List the jobs: interval, gate, last and next run.
    List(JsonArgs),
    /// Run jobs now (still subject to their settings switch).
    Run(JobsRunArgs),
    /// Run the scheduler in the foreground: start-up jobs now, then each job when it is due.
    Watch,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first.
    List(TasksListArgs),
    /// Show a task: each target's outcome and the log.
    Show(TasksShowArgs),
    /// Cancel a running task (its steps are cancelled on their targets).
    Cancel {
        /// The task's id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Every node: state (running, draining, offline), last heartbeat, running tasks, cap.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a node from claiming new tasks (its running ones finish); `--off` undoes it.
    Drain {
        /// The node's name.
        name: String,
        /// Claim tasks again.
        #[arg(long)]
        off: bool,
    },
    /// Set how many tasks a node runs at once.
    Cap {
        /// The node's name.
        name: String,
        /// The cap.
        cap: u32,
    },
}

#[derive(Debug, Args)]
pub struct TasksListArgs {
    /// Only tasks in this state: running, succeeded, failed, cancelled, unknown, skipped (repeatable).
    #[arg(long = "state", value_name = "STATE", value_parser = octo_server::tasks::parse_state)]
    pub states: Vec<octo_store::TaskState>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TasksShowArgs {
    /// The task's id.
    pub id: i64,
    /// Print log lines as they are stored until the task ends (goes on across a server restart).
    #[arg(long)]
    pub follow: bool,
    /// Print JSON (with --follow: the log lines on stderr, the task at the end on stdout).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["name", "all", "due"])))]
pub struct JobsRunArgs {
    /// The job to run.
    pub name: Option<String>,
    /// Every job.
    #[arg(long)]
    pub all: bool,
    /// Every job whose next run is due.
    #[arg(long)]
    pub due: bool,
}

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
    /// This node's name among the nodes sharing a PostgreSQL store (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// How long a node may go without a heartbeat before another marks its tasks "result
    /// unknown" (default 30s).
    #[arg(long = "node-timeout", alias = "nodeTimeout", value_name = "DURATION", value_parser = octo_server::duration::parse)]
    pub node_timeout: Option<std::time::Duration>,
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
    List(JsonArgs),
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

/// `octo proxy`: the flags every proxy command shares (octo-web-proxy), with octo's examples.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  octo proxy --proxyEnable=true --proxyHost proxy.corp --proxyPort 3128\n  \
    octo proxy --useSystemProxy=true      (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, upper or lower case)\n  \
    octo proxy --proxyEnable=false"
)]
pub struct ProxyCommandArgs {
    /// The web request proxy (feeds, plugins' HTTP, scripts' HTTP_PROXY/HTTPS_PROXY).
    #[command(flatten)]
    pub flags: octo_web_proxy::ProxyArgs,
}

/// `octo proxies`.
#[derive(Debug, Subcommand)]
pub enum ProxiesCommand {
    /// Add (or replace) a named proxy a listening target can be reached through.
    Add {
        /// Its name.
        name: String,
        /// The proxy's host name or IP address.
        #[arg(long)]
        host: String,
        /// The proxy's port.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Basic authentication user name.
        #[arg(long)]
        username: Option<String>,
        /// Basic authentication password (stored in octo.toml, mode 0600; never printed).
        #[arg(long)]
        password: Option<String>,
    },
    /// List the named proxies (passwords masked).
    List(JsonArgs),
    /// Remove a named proxy.
    Remove {
        /// Its name.
        name: String,
    },
}

/// The flags given to `octo configure`: one per row of octo-server's flag table.
#[derive(Debug, Default)]
pub struct ConfigureArgs {
    /// `(flag name, raw value)` in the order of the table.
    pub values: Vec<(&'static str, String)>,
}

impl ConfigureArgs {
    /// The options octo-server checks and applies.
    pub fn options(&self) -> octo_server::Result<ConfigureOptions> {
        let mut options = ConfigureOptions::default();
        for (name, value) in &self.values {
            options.set(name, value.clone())?;
        }
        Ok(options)
    }
}

impl clap::FromArgMatches for ConfigureArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = FLAGS
            .iter()
            .filter_map(|f| {
                matches
                    .get_one::<String>(f.name)
                    .map(|v| (f.name, v.clone()))
            })
            .collect();
        Ok(ConfigureArgs { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for ConfigureArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.after_help(
            "Values are checked before anything is written; the file is replaced atomically.\n\
             Examples:\n  octo configure --upgradeCheck=false --sendTelemetry=false\n  \
             octo configure --air-gapped=true\n  octo configure --feed=https://feed.internal/feed",
        );
        FLAGS.iter().fold(cmd, |cmd, f| {
            let mut arg = Arg::new(f.name)
                .long(f.name)
                .value_name(f.value_name())
                .help(f.help())
                .num_args(1)
                .allow_hyphen_values(false)
                .action(ArgAction::Set);
            if f.alias != f.name {
                arg = arg.visible_alias(f.alias);
            }
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
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

    /// A sensitive deployment variable: masked in every log line. Give just NAME to type the value on
    /// the terminal (no echo) or pass it as one line on stdin, so it never shows in `ps`.
    #[arg(long = "sensitive-variable", value_name = "NAME[=VALUE]", value_parser = parse_sensitive)]
    pub sensitive_variables: Vec<(String, Option<String>)>,

    /// Sensitive variables from a file of NAME=VALUE lines that only its owner can read (mode 0600).
    #[arg(long = "variables-file", value_name = "PATH")]
    pub variables_file: Option<PathBuf>,

    /// Grant the step this destination for this run only (scheme://host[:port], wildcards allowed), if its
    /// manifest declares it. Built-in steps need no grant; other steps need this or `octo plugins grant`.
    /// Never overrides --airGapped=true.
    #[arg(long = "allow-outbound", value_name = "DESTINATION", value_parser = parse_destination)]
    pub allow_outbound: Vec<octo_manifest::DestinationPattern>,

    /// Stop the step after this long (e.g. 90s, 10m, 1h). Default 10m.
    #[arg(long, value_name = "DURATION", value_parser = octo_server::duration::parse, default_value = "10m")]
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

    /// With --target/--role: print the task's id and return; the task runs on in the server
    /// (`octo tasks show ID --follow`).
    #[arg(long)]
    pub detach: bool,

    /// The environment the step deploys to: `Octopus.Environment.Name` in its scripts.
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,

    /// deploy-package: the package from a configured feed, FEED:ID[@VERSION] (a version or a range;
    /// the newest when left out).
    #[arg(
        long = "package",
        value_name = "FEED:ID@REQ",
        conflicts_with = "package_file"
    )]
    pub package: Option<octo_server::runs::package::FeedPackage>,

    /// deploy-package: a package file (.zip, .nupkg, .tar, .tar.gz, .tgz); the id and version come
    /// from its name (Acme.Web.1.2.3.zip) or --param Package.Id=ID --param Package.Version=V.
    #[arg(long = "package-file", value_name = "PATH")]
    pub package_file: Option<PathBuf>,

    /// deploy-package on targets: `server` downloads the package once and uploads it to each target
    /// that lacks it; `target` has each target download it through its own web request proxy.
    #[arg(long, value_name = "server|target", default_value = "server")]
    pub acquire: octo_server::runs::package::Acquire,
}

use octo_server::runs::package::PackageSource;

impl RunStepArgs {
    /// The options octo-server runs the step with; sensitive values not on the command line are read
    /// here (terminal, stdin, variables file).
    pub fn options(&self) -> anyhow::Result<octo_server::runs::run_step::RunStepOptions> {
        if self.detach && self.targets.is_empty() && self.roles.is_empty() {
            anyhow::bail!("--detach is for runs on targets: add --target NAME or --role ROLE");
        }
        let sensitive_variables =
            crate::secrets::resolve(&self.sensitive_variables, self.variables_file.as_deref())?;
        Ok(octo_server::runs::run_step::RunStepOptions {
            plugin: self.plugin.clone(),
            params: self.params.clone(),
            variables: self.variables.clone(),
            sensitive_variables,
            allow_outbound: self.allow_outbound.clone(),
            deadline: self.deadline,
            memory_limit_mib: self.memory_limit_mib,
            keep_work_dir: self.keep_work_dir,
            targets: self.targets.clone(),
            roles: self.roles.clone(),
            detach: self.detach,
            environment: self.environment.clone(),
            package: match (&self.package, &self.package_file) {
                (Some(feed), _) => Some(PackageSource::Feed(feed.clone())),
                (None, Some(path)) => Some(PackageSource::File(path.clone())),
                (None, None) => None,
            },
            acquire: self.acquire,
        })
    }
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

fn parse_sensitive(s: &str) -> Result<(String, Option<String>), String> {
    match s.split_once('=') {
        Some(_) => parse_pair(s).map(|(name, value)| (name, Some(value))),
        None if !s.trim().is_empty() => Ok((s.trim().to_string(), None)),
        None => Err("expected NAME or NAME=VALUE".into()),
    }
}

fn parse_destination(s: &str) -> Result<octo_manifest::DestinationPattern, String> {
    octo_manifest::DestinationPattern::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        RunStepCli::command().debug_assert();
    }

    #[test]
    fn run_step_alone_parses_as_the_whole_command_line_does() {
        let argvs: &[&[&str]] = &[
            &[
                "octo",
                "run-step",
                "run-script",
                "--param",
                "ScriptBody=echo hi",
            ],
            &[
                "octo",
                "--home",
                "/h",
                "run-step",
                "t.json",
                "--variable",
                "A=1",
                "--json",
            ],
            &[
                "octo",
                "--home=/h",
                "run-step",
                "x.wasm",
                "--deadline",
                "90s",
                "--memory-limit",
                "64",
            ],
            &[
                "octo", "run-step", "--home", "/h", "s", "--target", "a", "--role", "web",
                "--detach",
            ],
            &[
                "octo",
                "run-step",
                "deploy-package",
                "--package-file",
                "p.zip",
                "--acquire",
                "target",
            ],
            &[
                "octo",
                "run-step",
                "s",
                "--allow-outbound",
                "https://x.corp",
                "--keep-work-dir",
            ],
        ];
        for argv in argvs {
            assert!(names_run_step(argv[1..].iter().map(Into::into)), "{argv:?}");
            let whole = Cli::try_parse_from(*argv).unwrap();
            let alone = Cli::from(RunStepCli::try_parse_from(*argv).unwrap());
            assert_eq!(format!("{alone:?}"), format!("{whole:?}"));
        }
        // What the whole command line refuses, run-step alone refuses too (and the whole one then
        // says why).
        for argv in [
            &["octo", "run-step"][..],
            &["octo", "run-step", "s", "--memory-limit", "1"],
            &["octo", "run-step", "s", "--param", "novalue"],
            &["octo", "run-step", "--help"],
            &["octo", "run-step", "--version"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
            assert!(RunStepCli::try_parse_from(argv).is_err(), "{argv:?}");
        }
        for argv in [
            &["plugins", "list"][..],
            &["--home", "run-step"],
            &["-h", "run-step"],
            &[],
        ] {
            assert!(!names_run_step(argv.iter().map(Into::into)), "{argv:?}");
        }
    }

    #[test]
    fn run_step_alone_has_the_same_help() {
        use clap::CommandFactory;
        let help = |mut cli: clap::Command| {
            cli.build();
            cli.find_subcommand_mut("run-step")
                .unwrap()
                .render_long_help()
                .to_string()
        };
        assert_eq!(help(RunStepCli::command()), help(Cli::command()));
    }
}

/// `octo feeds …`.
#[derive(Debug, Subcommand)]
pub enum FeedsCommand {
    /// Add a package feed.
    #[command(after_help = "Examples:\n  \
        octo feeds add nuget-org --type nuget --url https://api.nuget.org/v3/index.json\n  \
        octo feeds add registry --type oci --url https://registry.corp:5000 --username ci --password\n  \
        octo feeds add files --type http --url 'https://files.corp/{id}/{id}-{version}.tar.gz'\n\n\
        --password without a value reads it from the terminal (no echo) or one line of stdin, so it is \
        not visible in `ps`.")]
    Add(FeedAddArgs),
    /// List the feeds (passwords are never shown: `password: set`).
    List(JsonArgs),
    /// Remove a feed.
    Remove {
        /// The feed's name.
        name: String,
    },
    /// Reach a feed and say what it found (NuGet resources, the OCI auth scheme, the HTTP answer).
    Test {
        /// The feed's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `octo feeds add`.
#[derive(Debug, Args)]
pub struct FeedAddArgs {
    /// Unique name.
    pub name: String,
    /// nuget, oci or http.
    #[arg(long = "type", value_parser = parse_feed_kind)]
    pub kind: octo_packages::FeedKind,
    /// NuGet: the service index (…/v3/index.json); OCI: the registry (optionally with a namespace
    /// path); http: a template with {id} and {version}.
    #[arg(long)]
    pub url: String,
    /// User name (Basic authentication; the token server for OCI).
    #[arg(long)]
    pub username: Option<String>,
    /// Password; without a value it is read from the terminal (no echo) or stdin. Stored in
    /// the store (the SQLite file is mode 0600), never printed.
    #[arg(long, num_args = 0..=1, requires = "username")]
    pub password: Option<Option<String>>,
    /// Read the password from one line of stdin.
    #[arg(long, conflicts_with = "password", requires = "username")]
    pub password_stdin: bool,
    /// The largest package accepted from this feed (e.g. 512MiB; default 4GiB).
    #[arg(long, value_parser = parse_size)]
    pub max_package_size: Option<u64>,
}

fn parse_feed_kind(s: &str) -> Result<octo_packages::FeedKind, String> {
    s.parse()
}

fn parse_size(s: &str) -> Result<u64, String> {
    octo_server::packages::parse_size(s)
}

/// `octo packages …`.
#[derive(Debug, Subcommand)]
pub enum PackagesCommand {
    /// List a package's versions on a feed (OCI: its tags).
    Versions {
        /// The feed's name.
        feed: String,
        /// The package id (OCI: the repository).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a package into the server's cache: ID (the latest stable version), ID@1.2.3,
    /// ID@[1.0,2.0), ID@1.*; OCI also ID@TAG and ID@sha256:….
    Download {
        /// The feed's name.
        feed: String,
        /// ID[@REQ].
        package: String,
        /// The largest package accepted (default: the feed's --max-package-size).
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the packages in the cache.
    List(JsonArgs),
    /// Remove cached packages (--all, --older-than 30d) and every file no package refers to.
    Prune {
        /// Remove every package.
        #[arg(long)]
        all: bool,
        /// Remove packages fetched longer ago than this (e.g. 30d, 12h).
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    octo_server::duration::parse(s)
}
