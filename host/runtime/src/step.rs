//! Running a step plugin: arguments in, a [`StepOutcome`] out, whatever the plugin does.

use crate::Runtime;
use crate::bindings::{Step, StepPre, octo::plugin::types};
use crate::engine::{EPOCH_TICK, one_line};
use crate::limits::StoreLimits;
use crate::mask::Masker;
use crate::outbound::{AuditSink, MemoryAudit, OutboundAttempt, OutboundGate, OutboundPolicy};
use crate::state::{StepContext, StepLog, StepState};
use octo_manifest::{Capability, DestinationPattern, Manifest};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

/// Guest stdout/stderr kept per run (they are for panics and stray prints; steps log through `log`).
const GUEST_STDIO_CAPACITY: usize = 64 * 1024;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed diagnostics.
    Trace,
    /// Detail shown on request.
    Verbose,
    /// Normal output.
    Info,
    /// Normal output the script asked to stand out.
    Highlight,
    /// Something looks wrong but the step goes on.
    Warn,
    /// Something failed (including a command's standard error).
    Error,
}

impl LogLevel {
    /// Short fixed-width label.
    pub fn label(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Verbose => "verbose",
            LogLevel::Info => "info",
            LogLevel::Highlight => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One line of a step's log, already masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// Text, secrets replaced by `********`.
    pub message: String,
}

/// Receives a step's log lines as they happen.
pub trait LogSink: Send + Sync {
    /// One line.
    fn write(&self, line: LogLine);
}

impl<F: Fn(LogLine) + Send + Sync> LogSink for F {
    fn write(&self, line: LogLine) {
        self(line)
    }
}

/// A deployment variable handed to a step.
#[derive(Clone, PartialEq, Eq)]
pub struct Variable {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Masked in logs.
    pub sensitive: bool,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.sensitive {
            crate::mask::MASK
        } else {
            &self.value
        };
        f.debug_struct("Variable")
            .field("name", &self.name)
            .field("value", &value)
            .finish()
    }
}

/// An output variable a step set.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputVariable {
    /// Name.
    pub name: String,
    /// Value (print [`OutputVariable::display_value`] instead when showing it).
    pub value: String,
    /// Set with `-sensitive`.
    pub sensitive: bool,
}

impl OutputVariable {
    /// The value as it may be shown: masked when sensitive.
    pub fn display_value(&self) -> &str {
        if self.sensitive {
            crate::mask::MASK
        } else {
            &self.value
        }
    }
}

impl fmt::Debug for OutputVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputVariable")
            .field("name", &self.name)
            .field("value", &self.display_value())
            .finish()
    }
}

/// A file a step asked to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Display name.
    pub name: String,
    /// Where it is on the machine that ran the step.
    pub path: PathBuf,
}

/// One declared parameter of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterInfo {
    /// Name.
    pub name: String,
    /// Form label.
    pub label: String,
    /// Help text.
    pub help_text: String,
    /// Default.
    pub default_value: Option<String>,
    /// Must have a value.
    pub required: bool,
    /// Masked in logs.
    pub sensitive: bool,
}

/// What a step says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDescription {
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its parameters.
    pub parameters: Vec<ParameterInfo>,
}

/// Lets another task stop a running step (the command it runs is killed too).
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<tokio::sync::Notify>, Arc<std::sync::atomic::AtomicBool>);

impl CancelHandle {
    /// A fresh handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the step to stop.
    pub fn cancel(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify_waiters();
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.0.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Everything a run needs besides the plugin.
pub struct StepRequest {
    /// Parameter values by name (defaults are applied from `describe`).
    pub arguments: BTreeMap<String, String>,
    /// Deployment variables.
    pub variables: Vec<Variable>,
    /// The step's work directory: the only directory the plugin (and its commands) see. Must exist.
    pub work_dir: PathBuf,
    /// Overrides the runtime's step deadline.
    pub deadline: Option<Duration>,
    /// Decides outbound requests.
    pub policy: Arc<dyn OutboundPolicy>,
    /// Also records outbound attempts here (the outcome always lists them).
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Receives log lines live.
    pub log: Arc<dyn LogSink>,
    /// Stops the step from elsewhere.
    pub cancel: CancelHandle,
    /// Extra environment for commands the step runs.
    pub process_env: Vec<(String, String)>,
    /// The web request proxy for the plugin's HTTP; also handed to commands it runs as
    /// `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`.
    pub web_proxy: Option<Arc<crate::WebProxy>>,
}

impl StepRequest {
    /// A request with no arguments or variables, the deny-all policy and a log that drops lines.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        StepRequest {
            arguments: BTreeMap::new(),
            variables: Vec::new(),
            work_dir: work_dir.into(),
            deadline: None,
            policy: Arc::new(crate::outbound::DenyAll),
            audit: None,
            log: Arc::new(|_: LogLine| {}),
            cancel: CancelHandle::new(),
            process_env: Vec::new(),
            web_proxy: None,
        }
    }
}

/// Why a step did not succeed. `Display` is the one line shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepFailure {
    /// The step ran and reported failure.
    Failed(String),
    /// Arguments did not fit the step's parameters.
    InvalidArguments(String),
    /// The plugin trapped (panic, unreachable, bad memory access...).
    Trapped(String),
    /// Stopped at the deadline.
    DeadlineExceeded(Duration),
    /// Tried to use more memory than allowed.
    MemoryLimitExceeded(usize),
    /// Stopped by [`CancelHandle::cancel`].
    Cancelled,
    /// Something on the host side failed (work directory, instantiation).
    Host(String),
}

impl StepFailure {
    /// A stable kebab-case name for the failure, as JSON outcomes and tentacle states report it.
    pub fn kind(&self) -> &'static str {
        match self {
            StepFailure::Failed(_) => "failed",
            StepFailure::InvalidArguments(_) => "invalid-arguments",
            StepFailure::Trapped(_) => "trapped",
            StepFailure::DeadlineExceeded(_) => "deadline-exceeded",
            StepFailure::MemoryLimitExceeded(_) => "memory-limit-exceeded",
            StepFailure::Cancelled => "cancelled",
            StepFailure::Host(_) => "host-error",
        }
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepFailure::Failed(m) => write!(f, "{m}"),
            StepFailure::InvalidArguments(m) => write!(f, "{m}"),
            StepFailure::Trapped(m) => write!(f, "the plugin crashed: {m}"),
            StepFailure::DeadlineExceeded(d) => {
                write!(
                    f,
                    "the step was stopped after {} (its deadline)",
                    humanize(*d)
                )
            }
            StepFailure::MemoryLimitExceeded(limit) => {
                write!(
                    f,
                    "the plugin was stopped: it tried to use more than its memory limit of {} MiB",
                    limit / (1024 * 1024)
                )
            }
            StepFailure::Cancelled => write!(f, "the step was cancelled"),
            StepFailure::Host(m) => write!(f, "{m}"),
        }
    }
}

/// What came of a run.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// Success, or why not.
    pub result: Result<(), StepFailure>,
    /// Output variables set during the run (also when it failed).
    pub outputs: Vec<OutputVariable>,
    /// Artifacts the step asked to keep.
    pub artifacts: Vec<Artifact>,
    /// Every outbound request it attempted, allowed or denied.
    pub outbound: Vec<OutboundAttempt>,
}

impl StepOutcome {
    fn failed_early(failure: StepFailure) -> Self {
        StepOutcome {
            result: Err(failure),
            outputs: Vec::new(),
            artifacts: Vec::new(),
            outbound: Vec::new(),
        }
    }
}

struct Inner {
    manifest: Manifest,
    digest: String,
    pre: StepPre<StepState>,
    /// `describe` has no side effects (WIT contract), so its answer is kept after the first run.
    description: std::sync::OnceLock<types::StepDescription>,
}

/// A loaded, pre-instantiated step plugin. Cheap to clone; each run gets a fresh instance.
#[derive(Clone)]
pub struct StepPlugin(Arc<Inner>);

impl StepPlugin {
    pub(crate) fn new(manifest: Manifest, digest: String, pre: StepPre<StepState>) -> Self {
        StepPlugin(Arc::new(Inner {
            manifest,
            digest,
            pre,
            description: std::sync::OnceLock::new(),
        }))
    }

    /// The component's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.0.manifest
    }

    /// Hex sha256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.0.digest
    }

    /// Calls `describe` in a throwaway instance.
    pub async fn describe(&self, runtime: &Runtime) -> Result<StepDescription, StepFailure> {
        let dir = tempfile::tempdir()
            .map_err(|e| StepFailure::Host(format!("cannot create a work directory: {e}")))?;
        let request = StepRequest::new(dir.path());
        let (mut store, _audit) = self.new_store(runtime, &request, Vec::new())?;
        let instance = self.instantiate(&mut store).await?;
        let deadline = Duration::from_secs(10).min(runtime.config.step_deadline);
        let call = instance.call_describe(&mut store);
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(d)) => Ok(convert_description(d)),
            Ok(Err(e)) => Err(classify_trap(&e, &store, runtime)),
            Err(_) => Err(StepFailure::DeadlineExceeded(deadline)),
        }
    }

    /// Runs the step: describe, check and default the arguments, then `run`, all in one instance.
    pub async fn run(&self, runtime: &Runtime, request: StepRequest) -> StepOutcome {
        let deadline = request.deadline.unwrap_or(runtime.config.step_deadline);
        let started = Instant::now();
        let (mut store, audit) = match self.new_store(runtime, &request, Vec::new()) {
            Ok(s) => s,
            Err(f) => return StepOutcome::failed_early(f),
        };
        let result =
            tokio::time::timeout(deadline, self.run_in(&mut store, request.arguments)).await;
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(StepFailure::DeadlineExceeded(deadline)),
        };
        let result = result.map_err(|failure| match failure {
            StepFailure::Trapped(_) | StepFailure::Host(_) if request.cancel.is_cancelled() => {
                StepFailure::Cancelled
            }
            StepFailure::Trapped(_) if started.elapsed() >= deadline => {
                StepFailure::DeadlineExceeded(deadline)
            }
            StepFailure::Trapped(m) => classify_message(m, &store, runtime),
            other => other,
        });
        let state = store.data_mut();
        let log = state.ctx.log.clone();
        // A failing script's own result message (fail_step) beats the generic exit-code message.
        let result = match (result, state.ctx.result_message.take()) {
            (Err(StepFailure::Failed(_)), Some(message)) => Err(StepFailure::Failed(message)),
            (other, _) => other,
        };
        let memory_limit_hit = state.limits.memory_limit_hit;
        let result = result.map_err(|f| match f {
            StepFailure::Failed(m) if memory_limit_hit => StepFailure::Failed(format!(
                "{} (the plugin reached its memory limit of {} MiB)",
                log.mask(&m),
                runtime.config.memory_limit / (1024 * 1024)
            )),
            StepFailure::Failed(m) => StepFailure::Failed(log.mask(&m)),
            StepFailure::Trapped(m) => StepFailure::Trapped(log.mask(&m)),
            other => other,
        });
        StepOutcome {
            result,
            outputs: state.ctx.take_outputs(),
            artifacts: std::mem::take(&mut state.ctx.artifacts),
            outbound: audit.attempts(),
        }
    }

    async fn run_in(
        &self,
        store: &mut Store<StepState>,
        given: BTreeMap<String, String>,
    ) -> Result<(), StepFailure> {
        let instance = self.instantiate(store).await?;
        let description = match self.0.description.get() {
            Some(d) => d.clone(),
            None => {
                let d = instance
                    .call_describe(&mut *store)
                    .await
                    .map_err(|e| StepFailure::Trapped(trap_text(&e, store)))?;
                self.0.description.get_or_init(|| d).clone()
            }
        };
        let arguments = apply_parameters(&description, given)?;
        let ctx = &mut store.data_mut().ctx;
        for p in description.parameters.iter().filter(|p| p.sensitive) {
            if let Some((_, value)) = arguments.iter().find(|(n, _)| *n == p.name) {
                ctx.log.add_secret(value);
            }
        }
        let declared = self.resolve_declared(&arguments, &ctx.log);
        store.data_mut().gate.declared = declared;
        let args: Vec<types::Argument> = arguments
            .into_iter()
            .map(|(name, value)| types::Argument { name, value })
            .collect();
        match instance.call_run(&mut *store, &args).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StepFailure::Failed(message)),
            Err(e) => Err(StepFailure::Trapped(trap_text(&e, store))),
        }
    }

    /// The manifest's outbound patterns with this run's arguments filled in. An entry whose parameter has
    /// no value grants nothing.
    fn resolve_declared(
        &self,
        arguments: &[(String, String)],
        log: &StepLog,
    ) -> Vec<DestinationPattern> {
        let lookup = |name: &str| {
            arguments
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut declared = Vec::new();
        for entry in &self.0.manifest.outbound {
            match DestinationPattern::resolve(entry, lookup) {
                Ok(p) => declared.push(p),
                Err(e) => log.write(
                    LogLevel::Verbose,
                    &format!("outbound destination {entry} not granted: {e}"),
                ),
            }
        }
        declared
    }

    async fn instantiate(&self, store: &mut Store<StepState>) -> Result<Step, StepFailure> {
        self.0
            .pre
            .instantiate_async(&mut *store)
            .await
            .map_err(|e| {
                StepFailure::Host(format!(
                    "cannot instantiate plugin {}: {}",
                    self.0.manifest.id,
                    one_line(&e)
                ))
            })
    }

    fn new_store(
        &self,
        runtime: &Runtime,
        request: &StepRequest,
        declared: Vec<DestinationPattern>,
    ) -> Result<(Store<StepState>, Arc<MemoryAudit>), StepFailure> {
        new_store(runtime, &self.0.manifest, request, declared, true)
    }
}

/// A fresh store for one run of a plugin: no environment, no sockets, the outbound gate, the deadline and
/// the memory limit. `preopen` gives the plugin the request's work directory (steps); vendor plugins get
/// no filesystem at all.
pub(crate) fn new_store(
    runtime: &Runtime,
    manifest: &Manifest,
    request: &StepRequest,
    declared: Vec<DestinationPattern>,
    preopen: bool,
) -> Result<(Store<StepState>, Arc<MemoryAudit>), StepFailure> {
    {
        let deadline = request.deadline.unwrap_or(runtime.config.step_deadline);
        let mut masker = Masker::new();
        for v in request.variables.iter().filter(|v| v.sensitive) {
            masker.add(&v.value);
        }
        let log = StepLog::new(request.log.clone(), masker, &runtime.config.limits);
        let guest_stderr = MemoryOutputPipe::new(GUEST_STDIO_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(MemoryOutputPipe::new(GUEST_STDIO_CAPACITY))
            .stderr(guest_stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if preopen {
            wasi.preopened_dir(&request.work_dir, ".", FsPerms::ReadWrite)
                .map_err(|e| {
                    StepFailure::Host(format!(
                        "cannot open the work directory {}: {e}",
                        request.work_dir.display()
                    ))
                })?;
        }
        let audit = Arc::new(MemoryAudit::default());
        let mut sinks: Vec<Arc<dyn AuditSink>> = vec![audit.clone()];
        sinks.extend(request.audit.clone());
        let denied_log = log.clone();
        let warn_log = log.clone();
        let mut process_env = request.process_env.clone();
        if let Some(proxy) = &request.web_proxy {
            if let Some(password) = proxy.password() {
                log.add_secret(password); // scripts see it in HTTP(S)_PROXY; logs never do
            }
            process_env.extend(proxy.script_env());
        }
        let gate = OutboundGate {
            plugin_id: manifest.id.clone(),
            declared,
            policy: request.policy.clone(),
            audit: sinks,
            on_denied: Arc::new(move |a: &OutboundAttempt| {
                denied_log.write(
                    LogLevel::Warn,
                    &format!("Outbound request to {} denied: {}", a.destination, a.reason),
                );
            }),
            sender: crate::http_client::HttpSender::new(
                runtime.client_tls.clone(),
                request.web_proxy.clone(),
            ),
            warn: Arc::new(move |line: String| warn_log.write(LogLevel::Warn, &line)),
        };
        let started = Instant::now();
        let ctx = StepContext {
            plugin_id: manifest.id.clone(),
            variables: request.variables.clone(),
            log,
            process_granted: manifest.has_capability(Capability::Process),
            work_dir: request.work_dir.clone(),
            process_env,
            deadline: started + deadline,
            cancel: request.cancel.clone(),
            limits: runtime.config.limits,
            outputs: Default::default(),
            result_message: None,
            artifacts: Vec::new(),
            guest_stderr,
        };
        let state = StepState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimits::new(runtime.config.memory_limit),
            gate,
            ctx,
        };
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        // Yield to the executor every tick so timers (deadline) and cancellation are noticed even in a
        // loop that never calls the host; trap once the deadline or a cancellation is seen.
        let cancel = request.cancel.clone();
        let hard_deadline = started + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if cancel.is_cancelled() || Instant::now() >= hard_deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        debug_assert!(EPOCH_TICK < Duration::from_secs(1));
        Ok((store, audit))
    }
}

/// Applies defaults, refuses unknown names and missing required values.
fn apply_parameters(
    description: &types::StepDescription,
    mut given: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, StepFailure> {
    if let Some(unknown) = given
        .keys()
        .find(|k| !description.parameters.iter().any(|p| &p.name == *k))
    {
        let accepted: Vec<&str> = description
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        return Err(StepFailure::InvalidArguments(format!(
            "step {:?} has no parameter {unknown}; it accepts: {}",
            description.name,
            if accepted.is_empty() {
                "(none)".to_string()
            } else {
                accepted.join(", ")
            }
        )));
    }
    let mut arguments = Vec::new();
    for p in &description.parameters {
        match given.remove(&p.name).or_else(|| p.default_value.clone()) {
            Some(value) if !(p.required && value.is_empty()) => {
                arguments.push((p.name.clone(), value))
            }
            Some(_) | None if p.required => {
                return Err(StepFailure::InvalidArguments(format!(
                    "missing required parameter {} ({}); pass --param {}=VALUE",
                    p.name, p.label, p.name
                )));
            }
            _ => {}
        }
    }
    Ok(arguments)
}

fn convert_description(d: types::StepDescription) -> StepDescription {
    StepDescription {
        name: d.name,
        description: d.description,
        parameters: d
            .parameters
            .into_iter()
            .map(|p| ParameterInfo {
                name: p.name,
                label: p.label,
                help_text: p.help_text,
                default_value: p.default_value,
                required: p.required,
                sensitive: p.sensitive,
            })
            .collect(),
    }
}

/// The trap plus what the guest wrote to stderr (a Rust panic message lands there).
pub(crate) fn trap_text(e: &wasmtime::Error, store: &Store<StepState>) -> String {
    let trap = match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => one_line(e),
    };
    let stderr = store.data().ctx.guest_stderr.contents();
    let said = String::from_utf8_lossy(&stderr);
    let tail: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:"))
        .collect();
    if tail.is_empty() {
        return trap;
    }
    let mut said = tail[tail.len().saturating_sub(3)..].join(" ");
    if said.len() > 300 {
        let mut cut = 300;
        while !said.is_char_boundary(cut) {
            cut -= 1;
        }
        said.truncate(cut);
        said.push('…');
    }
    format!("{trap} (the plugin said: {said})")
}

fn classify_trap(e: &wasmtime::Error, store: &Store<StepState>, runtime: &Runtime) -> StepFailure {
    classify_message(trap_text(e, store), store, runtime)
}

pub(crate) fn classify_message(
    message: String,
    store: &Store<StepState>,
    runtime: &Runtime,
) -> StepFailure {
    if store.data().limits.memory_limit_hit {
        return StepFailure::MemoryLimitExceeded(runtime.config.memory_limit);
    }
    StepFailure::Trapped(message)
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else if secs > 0 {
        format!("{secs} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(params: Vec<(&str, Option<&str>, bool)>) -> types::StepDescription {
        types::StepDescription {
            name: "demo".into(),
            description: String::new(),
            parameters: params
                .into_iter()
                .map(|(name, default, required)| types::Parameter {
                    name: name.into(),
                    label: name.to_uppercase(),
                    help_text: String::new(),
                    default_value: default.map(String::from),
                    required,
                    sensitive: false,
                })
                .collect(),
        }
    }

    #[test]
    fn parameters_defaults_required_unknown() {
        let d = description(vec![
            ("url", None, true),
            ("status", Some("200"), false),
            ("opt", None, false),
        ]);
        let args =
            apply_parameters(&d, BTreeMap::from([("url".into(), "http://x".into())])).unwrap();
        assert_eq!(
            args,
            vec![
                ("url".into(), "http://x".into()),
                ("status".into(), "200".into())
            ]
        );
        let err = apply_parameters(&d, BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "missing required parameter url (URL); pass --param url=VALUE"
        );
        let err = apply_parameters(&d, BTreeMap::from([("nope".into(), "1".into())]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "step \"demo\" has no parameter nope; it accepts: url, status, opt"
        );
        let err =
            apply_parameters(&d, BTreeMap::from([("url".into(), String::new())])).unwrap_err();
        assert!(matches!(err, StepFailure::InvalidArguments(_)));
    }
}
