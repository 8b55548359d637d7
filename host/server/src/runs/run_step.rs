//! `octo run-step`: run one step in-process, or on targets through the running daemon.
//!
//! The command loads what it needs from the home once — the settings, the grants, the plugin store —
//! and hands it down to the step source, the outbound policy and the remote allow-list.

use super::package::{self, Acquire, LocalPackage, PackageSource};
use super::step_source::StepSource;
use super::system_variables;
use crate::admin::{self, AdminEvent, AdminRequest, RemoteRun};
use crate::error::{Context, Result};
use crate::home::Home;
use crate::outbound::audit::AuditLog;
use crate::outbound::policy::{self, SettingsPolicy};
use base64::Engine as _;
use octo_manifest::{DestinationPattern, Manifest};
use octo_protocol::StepState;
use octo_runtime::{LogLine, Runtime, RuntimeConfig, StepOutcome, StepRequest, Variable};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What `octo run-step` was asked.
#[derive(Debug, Clone)]
pub struct RunStepOptions {
    /// A .wasm component, a step template .json file, an installed plugin, a built-in step or an
    /// installed community template.
    pub plugin: String,
    /// Step parameters.
    pub params: Vec<(String, String)>,
    /// Deployment variables.
    pub variables: Vec<(String, String)>,
    /// Sensitive deployment variables (masked in every log line).
    pub sensitive_variables: Vec<(String, String)>,
    /// Grants for this run only; never override the air gap.
    pub allow_outbound: Vec<DestinationPattern>,
    /// When the step is stopped.
    pub deadline: Duration,
    /// The plugin's memory limit, MiB.
    pub memory_limit_mib: u32,
    /// Keep the work directory afterwards.
    pub keep_work_dir: bool,
    /// Run on these targets through the daemon.
    pub targets: Vec<String>,
    /// Run on every target with these roles through the daemon.
    pub roles: Vec<String>,
    /// With targets: return once the task is created (it runs on in the daemon).
    pub detach: bool,
    /// `Octopus.Environment.Name` for the step's scripts.
    pub environment: Option<String>,
    /// The package deploy-package deploys.
    pub package: Option<PackageSource>,
    /// How targets get a feed package.
    pub acquire: Acquire,
}

/// Where a run's streaming output goes.
pub trait RunOutput {
    /// A log line of an in-process run.
    fn log(&self, line: &LogLine);
    /// An event of a run on targets (log lines, notes, results).
    fn remote(&self, event: AdminEvent);
}

/// How `octo run-step` ended.
#[derive(Debug)]
pub enum StepRun {
    /// Run here.
    Local(Box<LocalRun>),
    /// Run on targets.
    Remote(RemoteSummary),
}

impl StepRun {
    /// Whether the step succeeded (everywhere).
    pub fn succeeded(&self) -> bool {
        match self {
            StepRun::Local(run) => run.outcome.result.is_ok(),
            StepRun::Remote(summary) => summary.ok && summary.failed() == 0,
        }
    }
}

/// An in-process run.
#[derive(Debug)]
pub struct LocalRun {
    /// The step's manifest.
    pub manifest: Manifest,
    /// What happened.
    pub outcome: StepOutcome,
    /// The kept work directory.
    pub kept: Option<PathBuf>,
    /// The engine and the compiled step, freed with the run (see [`LocalRun::leave_to_exit`]).
    sandbox: Sandbox,
}

/// What ran the step in-process: the engine (with its linker) and the compiled step.
struct Sandbox {
    _plugin: octo_runtime::StepPlugin,
    _runtime: Runtime,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sandbox")
    }
}

impl LocalRun {
    /// For a process about to exit: leaves the engine, compiled code and linker to the operating
    /// system, which frees a process's memory at exit faster than their destructors do (issue 10).
    /// Nothing in them writes anywhere when dropped; the work directory is already gone or kept.
    pub fn leave_to_exit(self: Box<Self>) {
        std::mem::forget(self.sandbox);
    }
}

/// A run on targets: the task, and each target's outcome as the daemon reported it.
#[derive(Debug, Clone, Default)]
pub struct RemoteSummary {
    /// The task the daemon created.
    pub task: Option<i64>,
    /// Each target's outcome, in the order they ended.
    pub targets: Vec<TargetOutcome>,
    /// The daemon reported no error of its own.
    pub ok: bool,
    /// The task runs on in the daemon (`--detach`).
    pub detached: bool,
}

/// How a step ended on one target.
#[derive(Debug, Clone)]
pub struct TargetOutcome {
    /// The target.
    pub target: String,
    /// Its end state.
    pub state: StepState,
    /// Why it did not succeed.
    pub message: Option<String>,
    /// Output variables, artifacts, outbound attempts (sensitive values masked).
    pub outcome: octo_store::PartOutcome,
}

impl RemoteSummary {
    /// Targets where it succeeded.
    pub fn succeeded(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.state == StepState::Succeeded)
            .count()
    }

    /// Targets where it did not.
    pub fn failed(&self) -> usize {
        self.targets.len() - self.succeeded()
    }

    /// The `--json` document: the task and every target's outcome.
    pub fn to_json(&self) -> serde_json::Value {
        let status = if self.detached {
            "running"
        } else if self.ok && self.failed() == 0 {
            "succeeded"
        } else {
            "failed"
        };
        serde_json::json!({
            "task": self.task,
            "status": status,
            "targets": self.targets.iter().map(|t| serde_json::json!({
                "target": t.target,
                "status": t.state,
                "message": t.message,
                "outputs": t.outcome.outputs,
                "artifacts": t.outcome.artifacts,
                "outbound": t.outcome.outbound,
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for RemoteSummary {
    /// After the streamed log: each target's output variables, artifacts and denied requests, then
    /// the count (the per-target result lines were streamed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detached {
            if let Some(id) = self.task {
                writeln!(f, "{id}")?;
            }
            return Ok(());
        }
        for t in &self.targets {
            let o = &t.outcome;
            if o.outputs.is_empty()
                && o.artifacts.is_empty()
                && o.outbound.iter().all(|a| a.allowed)
            {
                continue;
            }
            writeln!(f, "[{}]", t.target)?;
            crate::tasks::write_outcome(f, "  ", o)?;
        }
        if self.targets.len() > 1 {
            writeln!(
                f,
                "{} succeeded, {} did not",
                self.succeeded(),
                self.failed()
            )?;
        }
        Ok(())
    }
}

/// Runs the step: here, or (with targets or roles) through the daemon.
pub fn run(home: &Home, options: &RunStepOptions, output: &dyn RunOutput) -> Result<StepRun> {
    // Loaded once, handed down.
    let settings = home.load_settings()?;
    let grants = crate::outbound::grants::load(home)?;
    let store = crate::store::existing(home)?;

    let source = StepSource::resolve(home, store.as_ref(), &options.plugin)?;
    let mut variables: Vec<Variable> = Vec::new();
    let mut push_var = |name: String, value: String, sensitive: bool| {
        variables.retain(|v| v.name != name);
        variables.push(Variable {
            name,
            value,
            sensitive,
        });
    };
    // The system variables first, so that a variable given on the command line wins.
    let action = match &source {
        StepSource::Template(template) => template.name.clone(),
        StepSource::Component(component) => octo_manifest::read_manifest(&component.bytes)
            .map(|m| m.id)
            .unwrap_or_else(|_| options.plugin.clone()),
    };
    let on_targets = !options.targets.is_empty() || !options.roles.is_empty();
    let deployment_id = system_variables::new_deployment_id();
    let machine = (!on_targets).then(system_variables::host_name);
    for (name, value) in system_variables::system_variables(&system_variables::RunContext {
        action: &action,
        environment: options.environment.as_deref(),
        machine: machine.as_deref(),
        deployment_id: &deployment_id,
    }) {
        push_var(name, value, false);
    }
    for (name, value) in &options.variables {
        push_var(name.clone(), value.clone(), false);
    }
    for (name, value) in &options.sensitive_variables {
        push_var(name.clone(), value.clone(), true);
    }
    let params: BTreeMap<String, String> = options.params.iter().cloned().collect();

    // A template runs through run-script: its parameters become variables, its body an argument.
    let (bytes, origin, known_sha256, arguments) = match source {
        StepSource::Component(c) => (c.bytes, c.origin, c.sha256, params),
        StepSource::Template(template) => {
            let values = template
                .resolve_values(&params)
                .with_context(|| template.name.clone())?;
            for p in &template.parameters {
                if let Some(value) = values.get(&p.name) {
                    push_var(p.name.clone(), value.clone(), p.sensitive);
                }
            }
            let run_script = StepSource::run_script(store.as_ref())?;
            let arguments = BTreeMap::from([
                ("ScriptBody".to_string(), template.script_body.clone()),
                ("Syntax".to_string(), template.syntax.to_string()),
            ]);
            (
                run_script.bytes,
                format!("template {:?} via {}", template.name, run_script.origin),
                run_script.sha256,
                arguments,
            )
        }
    };

    let remote = !options.targets.is_empty() || !options.roles.is_empty();
    let package = match &options.package {
        None if options.plugin == octo_builtin_plugins::DEPLOY_PACKAGE.id => bail!(
            Invalid,
            "deploy-package deploys a package: give --package FEED:ID@VERSION or --package-file PATH"
        ),
        None => None,
        Some(_) if options.plugin != octo_builtin_plugins::DEPLOY_PACKAGE.id => bail!(
            Invalid,
            "--package and --package-file go with the deploy-package step, not {}",
            options.plugin
        ),
        Some(PackageSource::File(_)) if remote && options.acquire == Acquire::Target => bail!(
            Invalid,
            "--acquire target has each target download the package from its feed: give --package FEED:ID@VERSION, not a file"
        ),
        Some(PackageSource::Feed(spec)) if remote && options.acquire == Acquire::Target => {
            Some(Acquired::ForTargets(package::for_targets(home, spec)?))
        }
        Some(PackageSource::Feed(spec)) => Some(Acquired::Here(package::from_feed(home, spec)?)),
        Some(PackageSource::File(path)) => {
            Some(Acquired::Here(package::local_file(path, &options.params)?))
        }
    };

    if remote {
        let package = match package {
            None => None,
            Some(Acquired::ForTargets(step)) => Some(Box::new(crate::admin::RemotePackage {
                step,
                paths: Vec::new(),
            })),
            Some(Acquired::Here(local)) => Some(Box::new(crate::admin::RemotePackage {
                step: local.step_package()?,
                paths: local.files.iter().map(|f| f.path.clone()).collect(),
            })),
        };
        // The server decides; the tentacle's sandbox enforces exactly this list.
        let grants = policy::remote_grants(
            &settings,
            &grants,
            store.as_ref(),
            &bytes,
            &options.allow_outbound,
        )?;
        return run_remote(
            home,
            RemoteStep {
                bytes: bytes.into_owned(),
                origin,
                arguments,
                variables,
                grants: grants.iter().map(|p| p.to_string()).collect(),
                deadline: options.deadline,
                targets: options.targets.clone(),
                roles: options.roles.clone(),
                package,
                detach: options.detach,
            },
            output,
        )
        .map(StepRun::Remote);
    }

    let runtime = Runtime::new(RuntimeConfig {
        memory_limit: options.memory_limit_mib as usize * 1024 * 1024,
        step_deadline: options.deadline,
        max_instances: 4,
        // One instance, once: reserving a pool costs more than it saves (issue 10).
        allocation: octo_runtime::Allocation::OnDemand,
        cache_dir: Some(home.compiled_cache()?),
        trusted_certificates: Vec::new(),
        limits: octo_runtime::Limits::default()
            .with_settings(settings.limits.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(|e| err!(Failed, "{e} (octo.toml)"))?,
    })
    .map_err(|e| err!(Failed, "cannot start the plugin runtime: {e}"))?;
    // A built-in's digest (computed when Octo was built) or an installed plugin's (checked on
    // reading) needs no hashing again.
    let plugin = runtime
        .load_step_with_sha256(&bytes, known_sha256.as_deref())
        .with_context(|| origin.clone())?;

    let work_root = home.work()?;
    // Directories of runs that were killed before they could remove theirs go first.
    super::work_dirs::remove_abandoned(&work_root);
    let work = super::work_dirs::create(&work_root)
        .with_context(|| format!("cannot create a work directory in {}", work_root.display()))?;

    // Settings + administrator grants; --allow-outbound is a grant for this run that cannot override
    // the air gap. Built-in steps need no grant.
    let role = policy::step_role_of_digest(store.as_ref(), &plugin.manifest().id, plugin.digest());
    let web_proxy = crate::proxy::web_proxy(&settings)?;
    let script_network = script_network(&settings);
    // Decided at each request against the settings file of that moment (see `SettingsPolicy::live`).
    let live = octo_settings::LiveSettings::follow(&home.settings())
        .context("cannot read the settings")?;
    // Only the grants bound to this very component (its digest, or its signed provenance).
    let component = crate::outbound::grants::component_of_digest(
        store.as_ref(),
        &plugin.manifest().id,
        plugin.digest().to_owned(),
    );
    // Raw TCP destinations granted to this component (or for this run): forwarded into a confined
    // script's namespace, each connection still decided by the policy.
    let tcp_forwards: Vec<octo_manifest::Destination> = grants
        .for_component(&component)
        .for_plugin(&component.id)
        .iter()
        .chain(&options.allow_outbound)
        .filter(|p| p.is_tcp())
        .filter_map(|p| p.exact_destination())
        .collect();
    let policy = Arc::new(SettingsPolicy::for_component(
        Arc::new(live),
        &grants,
        component,
        options.allow_outbound.clone(),
        role,
    ));
    let manifest = plugin.manifest().clone();
    let mut arguments = arguments;
    let mut mounts = Vec::new();
    let _deployment = match &package {
        Some(Acquired::ForTargets(_)) => unreachable!("only for runs on targets"),
        Some(Acquired::Here(package)) => {
            let deployment = package::prepare_local(home, package)?;
            arguments.extend(deployment.arguments.clone());
            mounts = deployment.mounts.clone();
            Some(deployment)
        }
        None => None,
    };
    // The runtime's log callback must be 'static: lines come back over a channel and are handed to
    // `output` by the same task that drives the step, on this thread. One thread for everything: a
    // one-shot run gains nothing from worker threads, and each costs start-up and hand-offs (issue 10).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogLine>();
    let request = StepRequest {
        arguments,
        variables,
        deadline: Some(options.deadline),
        policy: policy.clone(),
        audit: Some(AuditLog::in_home(home).sink_for(policy)),
        log: Arc::new(move |line: LogLine| {
            let _ = tx.send(line);
        }),
        web_proxy: web_proxy.map(Arc::new),
        script_network,
        tcp_forwards,
        mounts,
        ..StepRequest::new(work.path())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        let run = plugin.run(&runtime, request);
        tokio::pin!(run);
        loop {
            tokio::select! {
                biased;
                Some(line) = rx.recv() => output.log(&line),
                outcome = &mut run => {
                    // Finished: pass on what is left (someone may still hold the sender).
                    while let Ok(line) = rx.try_recv() {
                        output.log(&line);
                    }
                    break outcome;
                }
            }
        }
    });
    let kept = options.keep_work_dir.then(|| work.keep());
    Ok(StepRun::Local(Box::new(LocalRun {
        manifest,
        outcome,
        kept,
        sandbox: Sandbox {
            _plugin: plugin,
            _runtime: runtime,
        },
    })))
}

impl fmt::Display for LocalRun {
    /// The summary after the log: outputs, artifacts, denied requests, the kept directory, and
    /// "Step succeeded" (a failure is the caller's error line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = &self.outcome;
        if !outcome.outputs.is_empty() {
            writeln!(f, "Output variables:")?;
            for o in &outcome.outputs {
                writeln!(f, "  {} = {}", o.name, o.display_value())?;
            }
        }
        if !outcome.artifacts.is_empty() {
            writeln!(f, "Artifacts:")?;
            for a in &outcome.artifacts {
                writeln!(f, "  {} ({})", a.name, a.path.display())?;
            }
        }
        let denied: Vec<_> = outcome.outbound.iter().filter(|a| !a.allowed).collect();
        if !denied.is_empty() {
            writeln!(f, "Denied outbound requests:")?;
            for a in denied {
                writeln!(f, "  {}: {}", a.destination, a.reason)?;
            }
        }
        if let Some(dir) = &self.kept {
            writeln!(f, "Work directory kept at {}", dir.display())?;
        }
        if outcome.result.is_ok() {
            writeln!(f, "Step succeeded")?;
        }
        Ok(())
    }
}

impl LocalRun {
    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        let outcome = &self.outcome;
        let (status, message) = match &outcome.result {
            Ok(()) => ("succeeded", None),
            Err(f) => (f.kind(), Some(f.to_string())),
        };
        serde_json::json!({
            "plugin": { "id": self.manifest.id, "version": self.manifest.version.to_string() },
            "status": status,
            "message": message,
            "outputs": outcome.outputs.iter().map(|o| serde_json::json!({
                "name": o.name, "value": o.display_value(), "sensitive": o.sensitive
            })).collect::<Vec<_>>(),
            "artifacts": outcome.artifacts.iter().map(|a| serde_json::json!({
                "name": a.name, "path": a.path.display().to_string()
            })).collect::<Vec<_>>(),
            "outbound": outcome.outbound.iter().map(|a| serde_json::json!({
                "destination": a.destination, "allowed": a.allowed, "reason": a.reason
            })).collect::<Vec<_>>(),
            "workDir": self.kept.as_ref().map(|p| p.display().to_string()),
        })
    }
}

/// What `run-step` resolved, to run on targets.
struct RemoteStep {
    bytes: Vec<u8>,
    origin: String,
    arguments: BTreeMap<String, String>,
    variables: Vec<Variable>,
    grants: Vec<String>,
    deadline: Duration,
    targets: Vec<String>,
    roles: Vec<String>,
    package: Option<Box<crate::admin::RemotePackage>>,
    detach: bool,
}

/// Runs through the daemon; each event goes to `output` as it comes.
fn run_remote(home: &Home, step: RemoteStep, output: &dyn RunOutput) -> Result<RemoteSummary> {
    let request = AdminRequest::RunStep(RemoteRun {
        plugin_base64: base64::engine::general_purpose::STANDARD.encode(&step.bytes),
        origin: step.origin,
        arguments: step.arguments,
        variables: step
            .variables
            .into_iter()
            .map(|v| octo_protocol::Variable {
                name: v.name,
                value: v.value,
                sensitive: v.sensitive,
            })
            .collect(),
        grants: step.grants,
        deadline_ms: step.deadline.as_millis() as u64,
        targets: step.targets,
        roles: step.roles,
        package: step.package,
        detach: step.detach,
    });
    let mut summary = RemoteSummary {
        detached: step.detach,
        ..RemoteSummary::default()
    };
    // The last line seen of each target, to go on from the store without repeating one.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let answer = admin::call(home, &request, |event| {
        match &event {
            AdminEvent::Task { id } => summary.task = Some(*id),
            AdminEvent::Log {
                target, sequence, ..
            } => {
                seen.insert(target.clone(), *sequence);
            }
            AdminEvent::Result {
                target,
                state,
                message,
                outputs,
                artifacts,
                outbound,
            } => summary.targets.push(TargetOutcome {
                target: target.clone(),
                state: *state,
                message: message.clone(),
                outcome: octo_store::PartOutcome {
                    failure: message.clone(),
                    outputs: outputs.clone(),
                    artifacts: artifacts.clone(),
                    outbound: outbound.clone(),
                },
            }),
            _ => {}
        }
        output.remote(event);
    });
    match (answer, summary.task) {
        (Ok(ok), _) => summary.ok = ok,
        // The daemon went away in the middle of the task (killed, restarted): the task is in the
        // store, and a restarted daemon resumes it; follow it there.
        (Err(error), Some(id)) if !step.detach => {
            output.remote(AdminEvent::Note {
                target: "server".into(),
                message: format!(
                    "{}; following task {id} in the store until the server resumes it",
                    error.one_line()
                ),
            });
            let report = crate::tasks::follow(home, id, &mut |line| {
                if seen
                    .get(&line.target)
                    .is_some_and(|last| line.sequence <= *last)
                {
                    return;
                }
                seen.insert(line.target.clone(), line.sequence);
                output.remote(AdminEvent::Log {
                    target: line.target.clone(),
                    sequence: line.sequence,
                    level: serde_json::from_value(serde_json::Value::String(line.level.clone()))
                        .unwrap_or(octo_protocol::LogLevel::Info),
                    message: line.message.clone(),
                });
            })?;
            for part in report.task.parts {
                if summary.targets.iter().any(|t| t.target == part.target) {
                    continue;
                }
                let state = match part.state {
                    octo_store::TaskState::Succeeded => StepState::Succeeded,
                    octo_store::TaskState::Failed => StepState::Failed,
                    octo_store::TaskState::Cancelled => StepState::Cancelled,
                    _ => StepState::Unknown,
                };
                let event = AdminEvent::Result {
                    target: part.target.clone(),
                    state,
                    message: part.outcome.failure.clone(),
                    outputs: part.outcome.outputs.clone(),
                    artifacts: part.outcome.artifacts.clone(),
                    outbound: part.outcome.outbound.clone(),
                };
                output.remote(event);
                summary.targets.push(TargetOutcome {
                    target: part.target,
                    state,
                    message: part.outcome.failure.clone(),
                    outcome: part.outcome,
                });
            }
            summary.ok = true;
        }
        (Err(error), _) => {
            return Err(error).context("cannot run the step through the server");
        }
    }
    Ok(summary)
}

/// A deploy-package run's package once acquired.
enum Acquired {
    /// On this machine (a file, or in the server's cache).
    Here(LocalPackage),
    /// Resolved for targets that download it themselves.
    ForTargets(octo_protocol::StepPackage),
}

/// The runtime's script network mode for the settings (confined while air-gapped).
pub fn script_network(settings: &octo_settings::Settings) -> octo_runtime::ScriptNetwork {
    match settings.effective_script_network() {
        octo_settings::ScriptNetwork::Audited => octo_runtime::ScriptNetwork::Audited,
        octo_settings::ScriptNetwork::Confined => octo_runtime::ScriptNetwork::Confined,
    }
}
