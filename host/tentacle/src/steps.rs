//! Step runs: started by ticket (idempotent), run in the plugin sandbox, and recorded under
//! `work/<ticket>/` as they go:
//!
//! * `request.sha256`: the digest of the start request (its values are not kept: variables may be
//!   sensitive), to tell a retried start from a conflicting one;
//! * `log.jsonl`: one [`LogEntry`] per line, appended as the step logs;
//! * `state.json`: [`StepState`] and, once finished, the [`StepResult`]; rewritten atomically;
//! * `step/`: the plugin's work directory, removed as soon as the step ends (success, failure,
//!   deadline, cancel; by then every process it started is dead), since what a step writes there may
//!   hold secrets; a run found running after a restart loses it too. The journal stays until
//!   `complete`.
//!
//! When the tentacle starts, it reads every run back; a run whose state still says `running`
//! died with the previous process and becomes [`StepState::Unknown`] with its log intact.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octo_manifest::DestinationPattern;
use octo_protocol::{
    ErrorBody, ErrorCode, Failure, LogEntry, LogLevel, OutboundAttempt, StartStep, StatusRequest,
    StepResult, StepStarted, StepState, StepStatus, Ticket, Variable,
};
use octo_runtime::{CancelHandle, LogLine, Runtime, StepFailure, StepOutcome};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::packages::PackageCache;
use crate::plugins::PluginCache;
use crate::steps_policy::RemotePolicy;

const STATE_FILE: &str = "state.json";
const LOG_FILE: &str = "log.jsonl";
const REQUEST_FILE: &str = "request.sha256";
const STEP_DIR: &str = "step";

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    state: StepState,
    #[serde(default)]
    result: Option<StepResult>,
}

struct RunInner {
    state: StepState,
    lines: Vec<LogEntry>,
    result: Option<StepResult>,
    log_file: Option<fs::File>,
}

/// One run, live or read back from disk.
struct Run {
    dir: PathBuf,
    request_sha256: String,
    inner: Mutex<RunInner>,
    /// Bumped on every new line and state change; status calls wait on it.
    changed: watch::Sender<u64>,
    cancel: CancelHandle,
}

impl Run {
    fn lock(&self) -> std::sync::MutexGuard<'_, RunInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn append(&self, level: LogLevel, message: String) {
        {
            let mut inner = self.lock();
            let entry = LogEntry {
                sequence: inner.lines.len() as u64 + 1,
                time_ms: now_ms(),
                level,
                message,
            };
            if let Some(file) = inner.log_file.as_mut() {
                let mut text = serde_json::to_vec(&entry).expect("a log entry encodes");
                text.push(b'\n');
                // One write per line with O_APPEND: a crash leaves whole lines (a torn last
                // line is skipped when read back).
                if let Err(error) = file.write_all(&text) {
                    tracing::error!(%error, dir = %self.dir.display(), "cannot append to a step log");
                }
            }
            inner.lines.push(entry);
        }
        self.bump();
    }

    fn finish(&self, state: StepState, result: StepResult) {
        {
            let mut inner = self.lock();
            inner.state = state;
            inner.result = Some(result.clone());
            if let Some(file) = inner.log_file.take() {
                let _ = file.sync_all();
            }
            write_state(&self.dir, state, Some(result));
        }
        self.bump();
    }

    fn status(&self, ticket: &Ticket, after: u64) -> StepStatus {
        let inner = self.lock();
        let start = (after as usize).min(inner.lines.len());
        let end = (start + octo_protocol::MAX_STATUS_LINES).min(inner.lines.len());
        StepStatus {
            ticket: ticket.clone(),
            state: inner.state,
            lines: inner.lines[start..end].to_vec(),
            last_sequence: inner.lines.len() as u64,
            result: inner
                .state
                .is_terminal()
                .then(|| inner.result.clone().unwrap_or_default()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn write_state(dir: &Path, state: StepState, result: Option<StepResult>) {
    let file = StateFile { state, result };
    let bytes = serde_json::to_vec_pretty(&file).expect("state encodes");
    if let Err(error) = octo_fsutil::write_atomic(&dir.join(STATE_FILE), &bytes) {
        tracing::error!(%error, dir = %dir.display(), "cannot write a step's state");
    }
}

/// A refusal, as answered to the caller.
pub type Refusal = ErrorBody;

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    ErrorBody::new(code, message)
}

/// Every run this tentacle knows.
pub struct Steps {
    work: PathBuf,
    runs: Mutex<HashMap<Ticket, Arc<Run>>>,
    start_lock: tokio::sync::Mutex<()>,
    runtime: Arc<Runtime>,
    plugins: PluginCache,
    web_proxy: Mutex<Option<Arc<octo_runtime::WebProxy>>>,
    packages: Option<(PackageCache, PathBuf)>,
    downloads: Option<crate::download::DownloadLog>,
}

impl Steps {
    /// Steps started from now on send their web requests (and scripts get `HTTP_PROXY`/`HTTPS_PROXY`)
    /// through `proxy`, or directly with `None`.
    pub fn set_web_proxy(&self, proxy: Option<Arc<octo_runtime::WebProxy>>) {
        *self.web_proxy.lock().unwrap_or_else(|e| e.into_inner()) = proxy;
    }

    /// Opens the work directory and reads back every run in it.
    pub fn open(
        work: PathBuf,
        runtime: Arc<Runtime>,
        plugins: PluginCache,
    ) -> anyhow::Result<Self> {
        octo_fsutil::create_private_dir(&work)?;
        let mut runs = HashMap::new();
        for entry in fs::read_dir(&work)? {
            let entry = entry?;
            let Some(ticket) = entry
                .file_name()
                .to_str()
                .and_then(|n| Ticket::parse(n).ok())
            else {
                continue;
            };
            match recover(&entry.path()) {
                Ok(run) => {
                    runs.insert(ticket, Arc::new(run));
                }
                Err(error) => {
                    tracing::warn!(%ticket, %error, "cannot read a step run back; ignoring it")
                }
            }
        }
        Ok(Self {
            work,
            runs: Mutex::new(runs),
            start_lock: tokio::sync::Mutex::new(()),
            runtime,
            plugins,
            web_proxy: Mutex::new(None),
            packages: None,
            downloads: None,
        })
    }

    /// Steps that deploy a package take it from `cache` and deploy under `applications`.
    pub fn with_packages(mut self, cache: PackageCache, applications: PathBuf) -> Self {
        self.packages = Some((cache, applications));
        self
    }

    /// Package downloads the tentacle makes itself (acquisition `target`) are recorded in `log`.
    pub fn with_download_log(mut self, log: crate::download::DownloadLog) -> Self {
        self.downloads = Some(log);
        self
    }

    /// Checks a step's package: its files are named plainly and cached, unless the step says
    /// how to download them.
    fn check_package(
        &self,
        package: &octo_protocol::StepPackage,
    ) -> Result<(PackageCache, PathBuf), Refusal> {
        let (cache, applications) = self
            .packages
            .clone()
            .ok_or_else(|| refuse(ErrorCode::BadRequest, "this tentacle has no package cache"))?;
        let what = format!("package {} {}", package.id, package.version);
        // A direct download may name files only in its description (by a SHA-512 the feed
        // publishes, their sha256 unknown until downloaded).
        if package.files.is_empty() && package.direct.is_none() {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("{what} has no files"),
            ));
        }
        if let Some(bad) = package
            .files
            .iter()
            .find(|f| !octo_protocol::PackageFileRef::check_name(&f.name))
        {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("{what}: {:?} is not a plain file name", bad.name),
            ));
        }
        if package.direct.is_none()
            && let Some(missing) = cache.missing(package).first()
        {
            return Err(refuse(
                ErrorCode::PackageMissing,
                format!(
                    "{what}: this tentacle does not have {} (sha256 {})",
                    missing.name, missing.sha256
                ),
            ));
        }
        Ok((cache, applications))
    }

    fn get(&self, ticket: &Ticket) -> Result<Arc<Run>, Refusal> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ticket)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    ErrorCode::UnknownTicket,
                    format!("this tentacle has no step run with ticket {ticket}"),
                )
            })
    }

    /// Starts a run, or finds the one this ticket started before.
    pub async fn start(&self, request: StartStep) -> Result<StepStarted, Refusal> {
        let request_sha256 = octo_protocol::sha256_hex(
            &serde_json::to_vec(&request).expect("a start request encodes"),
        );
        let _serial = self.start_lock.lock().await;
        if let Ok(run) = self.get(&request.ticket) {
            if run.request_sha256 != request_sha256 {
                return Err(refuse(
                    ErrorCode::TicketConflict,
                    format!(
                        "ticket {} was already started with a different request",
                        request.ticket
                    ),
                ));
            }
            let state = run.lock().state;
            return Ok(StepStarted {
                ticket: request.ticket,
                state,
                already_started: true,
            });
        }
        let grants = request
            .grants
            .iter()
            .map(|g| {
                DestinationPattern::parse(g)
                    .map_err(|e| refuse(ErrorCode::BadRequest, format!("invalid grant {g:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bytes = self
            .plugins
            .read(&request.plugin)
            .map_err(|e| refuse(ErrorCode::Internal, format!("cannot read the plugin: {e}")))?
            .ok_or_else(|| {
                refuse(
                    ErrorCode::PluginMissing,
                    format!("this tentacle does not have plugin {}", request.plugin),
                )
            })?;
        // Grants as sent and, while the server is air-gapped, its internal networks: a granted name
        // is forwarded only to addresses inside them (the server's own check).
        let tcp_forwards: Vec<_> = grants
            .iter()
            .filter(|p| p.is_tcp())
            .filter_map(|p| p.exact_destination())
            .collect();
        let policy = RemotePolicy::new(grants, request.internal_networks.as_deref())
            .map_err(|e| refuse(ErrorCode::BadRequest, e))?;
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load_step(&bytes))
            .await
            .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| refuse(ErrorCode::PluginInvalid, e.to_string()))?;

        let package = match &request.package {
            Some(p) => Some((self.check_package(p)?, p.clone())),
            None => None,
        };

        let dir = self.work.join(request.ticket.as_str());
        let run = self.create_run(&dir, &request_sha256).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("cannot create the run's directory {}: {e}", dir.display()),
            )
        })?;
        let run = Arc::new(run);
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.ticket.clone(), run.clone());

        let sink_run = run.clone();
        let log = move |line: LogLine| sink_run.append(level_of(line.level), line.message);
        let mut step_request = octo_runtime::StepRequest {
            arguments: request.arguments.clone(),
            variables: request
                .variables
                .iter()
                .map(|v| octo_runtime::Variable {
                    name: v.name.clone(),
                    value: v.value.clone(),
                    sensitive: v.sensitive,
                })
                .collect(),
            deadline: Some(Duration::from_millis(request.deadline_ms.max(1))),
            // Granted raw TCP destinations: forwarded into a confined script's namespace.
            tcp_forwards,
            policy: Arc::new(policy),
            log: Arc::new(log),
            cancel: run.cancel.clone(),
            web_proxy: self
                .web_proxy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            script_network: match request.script_network {
                octo_protocol::ScriptNetwork::Audited => octo_runtime::ScriptNetwork::Audited,
                octo_protocol::ScriptNetwork::Confined => octo_runtime::ScriptNetwork::Confined,
            },
            ..octo_runtime::StepRequest::new(dir.join(STEP_DIR))
        };
        let runtime = self.runtime.clone();
        let ticket = request.ticket.clone();
        tracing::info!(%ticket, plugin = %request.plugin, "step started");
        let package_dir = dir.join("package");
        let step_dir = dir.join(STEP_DIR);
        let fetch = Fetch {
            web_proxy: step_request.web_proxy.clone(),
            log: self.downloads.clone().unwrap_or_else(|| {
                crate::download::DownloadLog::in_dir(&self.work.join("..").join("logs"))
            }),
        };
        tokio::spawn(async move {
            let mut _in_use = None;
            if let Some(((cache, applications), package)) = package {
                match prepare_package(
                    &cache,
                    &applications,
                    &package,
                    &package_dir,
                    run.clone(),
                    &fetch,
                )
                .await
                {
                    Ok((arguments, mounts, guard)) => {
                        step_request.arguments.extend(arguments);
                        step_request.mounts = mounts;
                        _in_use = Some(guard);
                    }
                    Err(message) => {
                        tracing::warn!(%ticket, %message, "package not available");
                        run.finish(
                            StepState::Failed,
                            StepResult {
                                failure: Some(Failure {
                                    kind: "failed".into(),
                                    message,
                                }),
                                ..StepResult::default()
                            },
                        );
                        return;
                    }
                }
            }
            let outcome = plugin.run(&runtime, step_request).await;
            remove_step_dir(&step_dir);
            let _ = fs::remove_dir_all(&package_dir);
            let (state, result) = summarize(outcome, run.cancel.is_cancelled());
            tracing::info!(%ticket, state = state.as_str(), "step finished");
            run.finish(state, result);
        });
        Ok(StepStarted {
            ticket: request.ticket,
            state: StepState::Running,
            already_started: false,
        })
    }

    fn create_run(&self, dir: &Path, request_sha256: &str) -> std::io::Result<Run> {
        use std::os::unix::fs::OpenOptionsExt;
        // A directory without a state file is a start that never finished: start afresh.
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        octo_fsutil::create_private_dir(&dir.join(STEP_DIR))?;
        octo_fsutil::write_atomic(&dir.join(REQUEST_FILE), request_sha256.as_bytes())?;
        let log_file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(dir.join(LOG_FILE))?;
        write_state(dir, StepState::Running, None);
        Ok(Run {
            dir: dir.to_path_buf(),
            request_sha256: request_sha256.to_owned(),
            inner: Mutex::new(RunInner {
                state: StepState::Running,
                lines: Vec::new(),
                result: None,
                log_file: Some(log_file),
            }),
            changed: watch::channel(0).0,
            cancel: CancelHandle::new(),
        })
    }

    /// The run's state and lines after `after_sequence`, waiting up to `wait_ms` for something
    /// new.
    pub async fn status(&self, request: StatusRequest) -> Result<StepStatus, Refusal> {
        let run = self.get(&request.ticket)?;
        let mut changed = run.changed.subscribe();
        let wait = Duration::from_millis(request.wait_ms.min(octo_protocol::MAX_STATUS_WAIT_MS));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            changed.borrow_and_update();
            let status = run.status(&request.ticket, request.after_sequence);
            if !status.lines.is_empty()
                || status.state.is_terminal()
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(status);
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Ok(run.status(&request.ticket, request.after_sequence));
            }
        }
    }

    /// Asks a run to stop; answers its state (without lines).
    pub fn cancel(&self, ticket: &Ticket) -> Result<StepStatus, Refusal> {
        let run = self.get(ticket)?;
        run.cancel.cancel();
        let mut status = run.status(ticket, u64::MAX);
        status.lines.clear();
        Ok(status)
    }

    /// Forgets a finished run and removes its directory.
    pub fn complete(&self, ticket: &Ticket) -> Result<(), Refusal> {
        let run = self.get(ticket)?;
        if !run.lock().state.is_terminal() {
            return Err(refuse(
                ErrorCode::StepRunning,
                format!("the step with ticket {ticket} is still running; cancel it first"),
            ));
        }
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ticket);
        fs::remove_dir_all(&run.dir).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("cannot remove {}: {e}", run.dir.display()),
            )
        })
    }

    /// How many runs are still going.
    pub fn running(&self) -> usize {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|r| !r.lock().state.is_terminal())
            .count()
    }
}

/// How the tentacle downloads a package itself: its web request proxy and where it records it.
struct Fetch {
    web_proxy: Option<Arc<octo_runtime::WebProxy>>,
    log: crate::download::DownloadLog,
}

/// Makes the step's package available (downloading what is missing when the step says how) and
/// returns deploy-package's arguments, mounts and the guard that keeps the files from pruning.
async fn prepare_package(
    cache: &PackageCache,
    applications: &Path,
    package: &octo_protocol::StepPackage,
    staging: &Path,
    run: Arc<Run>,
    fetch: &Fetch,
) -> Result<
    (
        std::collections::BTreeMap<String, String>,
        Vec<octo_runtime::Mount>,
        crate::packages::InUse,
    ),
    String,
> {
    let what = format!("package {} {}", package.id, package.version);
    let package = match &package.direct {
        // Also completes the files the description names only by SHA-512.
        Some(direct) => {
            crate::download::download_missing(
                cache.clone(),
                package.clone(),
                direct.clone(),
                fetch.web_proxy.clone(),
                fetch.log.clone(),
                Arc::new(move |m| run.note(m)),
            )
            .await?
        }
        None if !cache.missing(package).is_empty() => {
            return Err(format!("{what}: not in this tentacle's package cache"));
        }
        None => package.clone(),
    };
    let package = &package;
    let (dir, name, guard) = cache
        .use_package(package, staging)
        .map_err(|e| format!("{what}: cannot use the cached package: {e}"))?;
    let invocation = octo_builtin_plugins::deploy_package::invocation(
        applications,
        &dir,
        &name,
        &package.id,
        &package.version,
    )
    .map_err(|e| e.to_string())?;
    let mounts = invocation
        .mounts
        .into_iter()
        .map(|m| {
            if m.writable {
                octo_runtime::Mount::read_write(m.host, m.guest)
            } else {
                octo_runtime::Mount::read_only(m.host, m.guest)
            }
        })
        .collect();
    Ok((invocation.arguments, mounts, guard))
}

impl Run {
    /// Appends a line to the run's log (for the host's own messages, e.g. a download).
    pub(crate) fn note(&self, message: String) {
        self.append(LogLevel::Info, message);
    }
}

/// Reads a run back from its directory; a run that was `running` becomes `unknown`.
fn recover(dir: &Path) -> anyhow::Result<Run> {
    let state: StateFile = serde_json::from_slice(&fs::read(dir.join(STATE_FILE))?)?;
    let request_sha256 = fs::read_to_string(dir.join(REQUEST_FILE))?;
    let mut lines: Vec<LogEntry> = Vec::new();
    if let Ok(file) = fs::File::open(dir.join(LOG_FILE)) {
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<LogEntry>(&line) {
                Ok(entry) if entry.sequence == lines.len() as u64 + 1 => lines.push(entry),
                // A torn last line from a crash mid-write.
                _ => break,
            }
        }
    }
    let (state, result) = if state.state == StepState::Running {
        remove_step_dir(&dir.join(STEP_DIR));
        let result = StepResult {
            failure: Some(Failure {
                kind: "unknown".into(),
                message: "the tentacle stopped while the step was running; its result is unknown"
                    .into(),
            }),
            ..StepResult::default()
        };
        write_state(dir, StepState::Unknown, Some(result.clone()));
        (StepState::Unknown, Some(result))
    } else {
        (state.state, state.result)
    };
    Ok(Run {
        dir: dir.to_path_buf(),
        request_sha256,
        inner: Mutex::new(RunInner {
            state,
            lines,
            result,
            log_file: None,
        }),
        changed: watch::channel(0).0,
        cancel: CancelHandle::new(),
    })
}

/// Removes a step's work directory once the step is over; a failure is logged, never fatal.
fn remove_step_dir(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            "cannot remove the step's work directory {}: {e}",
            dir.display()
        ),
    }
}

fn level_of(level: octo_runtime::LogLevel) -> LogLevel {
    match level {
        octo_runtime::LogLevel::Trace => LogLevel::Trace,
        octo_runtime::LogLevel::Verbose => LogLevel::Verbose,
        octo_runtime::LogLevel::Info => LogLevel::Info,
        octo_runtime::LogLevel::Highlight => LogLevel::Highlight,
        octo_runtime::LogLevel::Warn => LogLevel::Warn,
        octo_runtime::LogLevel::Error => LogLevel::Error,
    }
}

/// The run's end state. A step that failed after it was asked to stop (e.g. its script was
/// killed) counts as cancelled.
fn summarize(outcome: StepOutcome, cancel_requested: bool) -> (StepState, StepResult) {
    let (state, failure) = match &outcome.result {
        Ok(()) => (StepState::Succeeded, None),
        Err(StepFailure::Cancelled) | Err(_) if cancel_requested => (
            StepState::Cancelled,
            Some(Failure {
                kind: "cancelled".into(),
                message: StepFailure::Cancelled.to_string(),
            }),
        ),
        Err(f) => (
            StepState::Failed,
            Some(Failure {
                kind: f.kind().into(),
                message: f.to_string(),
            }),
        ),
    };
    let result = StepResult {
        failure,
        outputs: outcome
            .outputs
            .iter()
            .map(|o| Variable {
                name: o.name.clone(),
                value: o.value.clone(),
                sensitive: o.sensitive,
            })
            .collect(),
        outbound: outcome
            .outbound
            .iter()
            .map(|a| OutboundAttempt {
                destination: a.destination.clone(),
                allowed: a.allowed,
                reason: a.reason.clone(),
                script: a.source == octo_runtime::RequestSource::Script,
            })
            .collect(),
        artifacts: outcome
            .artifacts
            .iter()
            .map(|a| octo_protocol::ArtifactInfo {
                name: a.name.clone(),
                path: a.path.display().to_string(),
            })
            .collect(),
    };
    (state, result)
}
