//! Running one target's part of a task: start the step (idempotent by ticket; the component is sent
//! when the tentacle lacks it), then long-poll its status, storing every log line exactly once
//! (the store ignores a sequence it has) before passing it on, through dropped connections and
//! tentacle restarts, until the run ends or contact is lost for good. A part resumed after a server
//! restart skips the start and follows from the last stored sequence.
//!
//! Connection failures are retried with backoff; a tentacle whose certificate is not the pinned one,
//! or that refuses ours ([`ConnectError::Untrusted`]), ends the part at once with that cause.
//! When the CLI that asked for the run goes away, the run is cancelled on the tentacle and
//! still followed to its end (so it is completed and its directory removed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use octo_comms::backoff::Backoff;
use octo_comms::rpc::RpcError;
use octo_protocol::{
    Completed, ErrorBody, ErrorCode, LogCursor, PackagePresence, PackageQuery, StartStep,
    StatusRequest, StepResult, StepStarted, StepState, StepStatus, Stored, Ticket, TicketRequest,
    paths,
};
use octo_store::{PartOutcome, Store, TaskId, TaskState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pool::{ConnectError, Pool, TentacleClient};
use crate::admin::AdminEvent;
use crate::targets::Target;

/// How long to wait for one connection attempt (or for a polling tentacle to come back).
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Long-poll wait of each status call.
const STATUS_WAIT_MS: u64 = 20_000;

/// How long contact may be lost before the result is declared unknown:
/// `OCTO_RECONNECT_TIMEOUT` (e.g. `30s`), default 2 minutes.
fn reconnect_budget() -> Duration {
    std::env::var("OCTO_RECONNECT_TIMEOUT")
        .ok()
        .and_then(|v| crate::duration::parse(&v).ok())
        .unwrap_or(Duration::from_secs(120))
}

/// What one run needs, shared by its targets.
pub struct Job {
    /// The component.
    pub plugin: Vec<u8>,
    /// The server's file of each of `start.package`'s files, to upload where missing (empty when
    /// targets download the package themselves).
    pub package_paths: Vec<std::path::PathBuf>,
    /// The start request (the ticket is per target).
    pub start: StartStep,
}

fn refusal(error: &RpcError) -> Option<ErrorBody> {
    match error {
        RpcError::Status { message, .. } => ErrorBody::parse(message),
        _ => None,
    }
}

/// The store's word for a tentacle's end state.
pub fn task_state(state: StepState) -> TaskState {
    match state {
        StepState::Succeeded => TaskState::Succeeded,
        StepState::Failed => TaskState::Failed,
        StepState::Cancelled => TaskState::Cancelled,
        StepState::Running | StepState::Unknown => TaskState::Unknown,
    }
}

/// What the store keeps of a tentacle's result: sensitive output values masked.
fn outcome_of(result: Option<StepResult>, message: Option<String>) -> PartOutcome {
    let result = result.unwrap_or_default();
    PartOutcome {
        failure: message,
        outputs: result
            .outputs
            .iter()
            .map(|o| octo_store::OutputVariable::stored(&o.name, &o.value, o.sensitive))
            .collect(),
        artifacts: result
            .artifacts
            .into_iter()
            .map(|a| octo_store::Artifact {
                name: a.name,
                path: a.path,
            })
            .collect(),
        outbound: result
            .outbound
            .into_iter()
            .map(|a| octo_store::OutboundAttempt {
                destination: a.destination,
                allowed: a.allowed,
                reason: a.reason,
            })
            .collect(),
    }
}

/// One target's part of a task.
pub struct Part {
    /// The task.
    pub task: TaskId,
    /// Where it runs.
    pub target: Target,
    /// Its ticket on the target.
    pub ticket: Ticket,
    /// The step to start; `None` when resuming a part that an earlier run of the daemon started.
    pub job: Option<Arc<Job>>,
}

struct Runner<'a> {
    pool: &'a Pool,
    store: &'a dyn Store,
    task: TaskId,
    target: &'a Target,
    events: &'a mpsc::UnboundedSender<AdminEvent>,
    backoff: Backoff,
    /// The step's plugin id (from the component's manifest; unknown for a resumed part).
    plugin_id: Option<String>,
}

impl Runner<'_> {
    fn note(&self, message: impl Into<String>) {
        let _ = self.events.send(AdminEvent::Note {
            target: self.target.name.clone(),
            message: message.into(),
        });
    }

    /// Stores how the part ended, then tells the caller.
    async fn result(
        &self,
        state: StepState,
        message: Option<String>,
        result: Option<StepResult>,
    ) -> StepState {
        let result_outbound = result
            .as_ref()
            .map(|r| r.outbound.clone())
            .unwrap_or_default();
        let outcome = outcome_of(result, message.clone());
        let mut pause = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut told = false;
        while let Err(error) = self
            .store
            .finish_part(self.task, &self.target.name, task_state(state), &outcome)
            .await
        {
            if !told {
                self.note(format!("cannot store the result ({error}); retrying"));
                told = true;
            }
            tokio::time::sleep(pause.next_delay()).await;
        }
        self.audit_script_attempts(result_outbound);
        let _ = self.events.send(AdminEvent::Result {
            target: self.target.name.clone(),
            state,
            message,
            outputs: outcome.outputs,
            artifacts: outcome.artifacts,
            outbound: outcome.outbound,
        });
        state
    }

    /// Appends the attempts the target's scripts made (reported with the result) to this server's
    /// audit file, under the step scripts' row and marked with the target, so `octo outbound` shows
    /// them beside the server's own.
    fn audit_script_attempts(&self, attempts: Vec<octo_protocol::OutboundAttempt>) {
        let Some(home) = self.pool.home() else {
            return;
        };
        let log = crate::outbound::audit::AuditLog::in_home(home);
        let now = std::time::SystemTime::now();
        for attempt in attempts.iter().filter(|a| a.script) {
            log.record(
                &octo_outbound::audit::AuditRecord::new(
                    octo_outbound::DestinationId::StepScripts,
                    self.plugin_id.as_deref().unwrap_or("(unknown)"),
                    &attempt.destination,
                    attempt.allowed,
                    &attempt.reason,
                    now,
                )
                .on_target(&self.target.name),
            );
        }
    }

    /// Stores lines (each exactly once), then passes them on.
    async fn lines(&self, lines: Vec<octo_protocol::LogEntry>) {
        if lines.is_empty() {
            return;
        }
        let stored: Vec<octo_store::LogLine> = lines
            .iter()
            .map(|l| octo_store::LogLine {
                target: self.target.name.clone(),
                sequence: l.sequence,
                level: crate::tasks::level_word(l.level),
                message: l.message.clone(),
            })
            .collect();
        let mut pause = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut told = false;
        while let Err(error) = self
            .store
            .append_log(self.task, &self.target.name, &stored)
            .await
        {
            if !told {
                self.note(format!("cannot store log lines ({error}); retrying"));
                told = true;
            }
            tokio::time::sleep(pause.next_delay()).await;
        }
        for line in lines {
            let _ = self.events.send(AdminEvent::Log {
                target: self.target.name.clone(),
                sequence: line.sequence,
                level: line.level,
                message: line.message,
            });
        }
    }

    async fn connect(&mut self) -> Result<TentacleClient, ConnectError> {
        self.pool.client(self.target, CONNECT_WAIT).await
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff.next_delay()).await;
    }

    fn lost(&self, error: &RpcError) {
        if matches!(self.target.reach, crate::targets::Reach::Listening { .. }) {
            self.pool.drop_listening(&self.target.name);
        }
        tracing::debug!(target = %self.target.name, %error, "call failed");
    }
}

/// Runs one part; sends events; returns the end state (also stored).
pub async fn run_part(
    pool: Arc<Pool>,
    store: Arc<dyn Store>,
    part: Part,
    events: mpsc::UnboundedSender<AdminEvent>,
    cancel: CancellationToken,
) -> StepState {
    let target = part.target;
    let ticket = part.ticket;
    let mut runner = Runner {
        pool: &pool,
        store: store.as_ref(),
        task: part.task,
        target: &target,
        events: &events,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(3)),
        plugin_id: part
            .job
            .as_ref()
            .and_then(|job| octo_manifest::read_manifest(&job.plugin).ok())
            .map(|m| m.id),
    };
    let budget = reconnect_budget();

    // 1. Start (retried until it is known to have started).
    let mut cursor = LogCursor::new();
    if let Some(job) = &part.job {
        let mut start = StartStep {
            ticket: ticket.clone(),
            ..job.start.clone()
        };
        // Each target is `Octopus.Machine.Name` of its own run (unless the run names one itself).
        let machine = crate::runs::system_variables::MACHINE_NAME;
        if !start.variables.iter().any(|v| v.name == machine) {
            start.variables.push(octo_protocol::Variable {
                name: machine.to_owned(),
                value: target.name.clone(),
                sensitive: false,
            });
        }
        if let Some(state) = start_step(&mut runner, job, &start, budget, &cancel).await {
            return state;
        }
    } else {
        match store.last_sequence(part.task, &target.name).await {
            Ok(last) => cursor = LogCursor::after(last),
            Err(error) => {
                return runner
                    .result(
                        StepState::Unknown,
                        Some(format!("cannot read the stored log: {error}")),
                        None,
                    )
                    .await;
            }
        }
        runner.note(format!("resuming after line {}", cursor.last()));
    }

    // 2. Follow the log until the run ends.
    runner.backoff.reset();
    let mut last_contact = Instant::now();
    let mut reported_loss = false;
    let mut cancel_sent = false;
    loop {
        if last_contact.elapsed() > budget {
            return runner
                .result(
                    StepState::Unknown,
                    Some(format!(
                        "lost contact with the tentacle for {}s while the step ran; its result is unknown",
                        budget.as_secs()
                    )),
                    None,
                )
                .await;
        }
        let client = match runner.connect().await {
            Ok(c) => c,
            Err(e) if e.is_final() => {
                return runner
                    .result(
                        StepState::Unknown,
                        Some(format!("cannot connect: {e}")),
                        None,
                    )
                    .await;
            }
            Err(e) => {
                if !reported_loss {
                    runner.note(format!("lost the connection ({e}); reconnecting"));
                    reported_loss = true;
                }
                runner.pause().await;
                continue;
            }
        };
        let request = StatusRequest {
            ticket: ticket.clone(),
            after_sequence: cursor.last(),
            wait_ms: STATUS_WAIT_MS,
        };
        if cancel.is_cancelled() && !cancel_sent {
            match client
                .call_json::<_, StepStatus>(
                    paths::STEP_CANCEL,
                    &TicketRequest {
                        ticket: ticket.clone(),
                    },
                )
                .await
            {
                Ok(_) => cancel_sent = true,
                Err(e) => {
                    if let Some(body) = refusal(&e)
                        && body.error == ErrorCode::UnknownTicket
                    {
                        return runner
                            .result(
                                StepState::Unknown,
                                Some("the tentacle no longer knows this step run; its result is unknown".into()),
                                None,
                            )
                            .await;
                    }
                    runner.lost(&e);
                    runner.pause().await;
                    continue;
                }
            }
        }
        let call = client.call_json::<_, StepStatus>(paths::STEP_STATUS, &request);
        let answer = if cancel_sent {
            call.await
        } else {
            tokio::select! {
                answer = call => answer,
                // Interrupt the long poll to send the cancel at once.
                _ = cancel.cancelled() => continue,
            }
        };
        let status = match answer {
            Ok(status) => status,
            Err(e) => match refusal(&e) {
                Some(body) if body.error == ErrorCode::UnknownTicket => {
                    return runner
                        .result(
                            StepState::Unknown,
                            Some(
                                "the tentacle no longer knows this step run; its result is unknown"
                                    .into(),
                            ),
                            None,
                        )
                        .await;
                }
                Some(body) => {
                    return runner
                        .result(StepState::Unknown, Some(body.message), None)
                        .await;
                }
                None => {
                    runner.lost(&e);
                    if !reported_loss {
                        runner.note(format!("lost the connection ({e}); reconnecting"));
                        reported_loss = true;
                    }
                    runner.pause().await;
                    continue;
                }
            },
        };
        if reported_loss {
            runner.note(format!(
                "reconnected; resuming after line {}",
                cursor.last()
            ));
            reported_loss = false;
        }
        last_contact = Instant::now();
        runner.backoff.reset();
        runner.lines(cursor.take(status.lines)).await;
        if status.state.is_terminal() && cursor.last() >= status.last_sequence {
            let _ = client
                .call_json::<_, Completed>(paths::STEP_COMPLETE, &TicketRequest { ticket })
                .await;
            let message = status
                .result
                .as_ref()
                .and_then(|r| r.failure.as_ref())
                .map(|f| f.message.clone());
            return runner.result(status.state, message, status.result).await;
        }
    }
}

enum SendError {
    Lost(RpcError),
    Refused(String),
}

/// Uploads the package files the tentacle lacks (it answers which by digest).
async fn send_package(
    runner: &Runner<'_>,
    client: &TentacleClient,
    job: &Job,
) -> Result<(), SendError> {
    let Some(package) = &job.start.package else {
        return Err(SendError::Refused(
            "the tentacle asked for a package the step does not have".into(),
        ));
    };
    let what = format!("package {} {}", package.id, package.version);
    if job.package_paths.len() != package.files.len() {
        return Err(SendError::Refused(format!(
            "{what}: the tentacle does not have it and the server has no copy to send"
        )));
    }
    for (file, path) in package.files.iter().zip(&job.package_paths) {
        let presence = client
            .call_json::<_, PackagePresence>(
                paths::PACKAGE_HAS,
                &PackageQuery {
                    sha256: file.sha256,
                },
            )
            .await;
        match presence {
            Ok(p) if p.present => continue,
            Ok(_) => {}
            Err(e) if e.is_connection_failure() => return Err(SendError::Lost(e)),
            Err(e) => return Err(SendError::Refused(format!("{what}: {e}"))),
        }
        runner.note(format!(
            "sending {what} ({}, {} bytes, sha256 {})",
            file.name, file.size, file.sha256
        ));
        let reader = std::fs::File::open(path).map_err(|e| {
            SendError::Refused(format!("{what}: cannot read {}: {e}", path.display()))
        })?;
        match client
            .upload_file::<Stored>(&paths::package_put(file, package), reader)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_connection_failure() => return Err(SendError::Lost(e)),
            Err(e) => {
                let message = refusal(&e).map(|b| b.message).unwrap_or(e.to_string());
                return Err(SendError::Refused(format!(
                    "the tentacle refused {what}: {message}"
                )));
            }
        }
    }
    Ok(())
}

/// Starts the step; `Some(state)` when the part ended already (refused, unreachable, cancelled).
async fn start_step(
    runner: &mut Runner<'_>,
    job: &Job,
    start: &StartStep,
    budget: Duration,
    cancel: &CancellationToken,
) -> Option<StepState> {
    let mut last_contact = Instant::now();
    let mut sent_plugin = false;
    let mut sent_package = false;
    loop {
        if cancel.is_cancelled() {
            return Some(
                runner
                    .result(
                        StepState::Cancelled,
                        Some("cancelled before the step started".into()),
                        None,
                    )
                    .await,
            );
        }
        if last_contact.elapsed() > budget {
            return Some(
                runner
                    .result(
                        StepState::Failed,
                        Some(format!(
                            "could not reach the tentacle for {}s; the step was not started",
                            budget.as_secs()
                        )),
                        None,
                    )
                    .await,
            );
        }
        let client = match runner.connect().await {
            Ok(c) => c,
            Err(e) if e.is_final() => {
                // Retrying cannot heal a trust mismatch: end now, with the cause.
                return Some(
                    runner
                        .result(
                            StepState::Failed,
                            Some(format!("cannot connect: {e}; the step was not started")),
                            None,
                        )
                        .await,
                );
            }
            Err(e) => {
                runner.note(format!("cannot connect: {e}; retrying"));
                runner.pause().await;
                continue;
            }
        };
        match client
            .call_json::<_, StepStarted>(paths::STEP_START, start)
            .await
        {
            Ok(_) => return None,
            Err(e) => match refusal(&e) {
                Some(body) if body.error == ErrorCode::PluginMissing && !sent_plugin => {
                    runner.note(format!(
                        "sending the plugin ({} bytes, sha256 {})",
                        job.plugin.len(),
                        start.plugin
                    ));
                    match client
                        .upload::<_, Stored>(
                            &paths::plugin_put(&start.plugin),
                            std::io::Cursor::new(job.plugin.clone()),
                        )
                        .await
                    {
                        Ok(_) => sent_plugin = true,
                        Err(e) if e.is_connection_failure() => runner.lost(&e),
                        Err(e) => {
                            return Some(
                                runner
                                    .result(
                                        StepState::Failed,
                                        Some(format!("the tentacle refused the plugin: {e}")),
                                        None,
                                    )
                                    .await,
                            );
                        }
                    }
                }
                Some(body) if body.error == ErrorCode::PackageMissing && !sent_package => {
                    match send_package(runner, &client, job).await {
                        Ok(()) => sent_package = true,
                        Err(SendError::Lost(e)) => runner.lost(&e),
                        Err(SendError::Refused(message)) => {
                            return Some(
                                runner.result(StepState::Failed, Some(message), None).await,
                            );
                        }
                    }
                }
                Some(body) => {
                    return Some(
                        runner
                            .result(StepState::Failed, Some(body.message), None)
                            .await,
                    );
                }
                None if e.is_connection_failure() => {
                    runner.lost(&e);
                    runner.note(format!(
                        "the connection dropped while starting the step ({e}); retrying"
                    ));
                    runner.pause().await;
                    if client.is_relayed() {
                        // No node delivered it: as a failed connect, it counts against the budget.
                        continue;
                    }
                }
                None => {
                    return Some(
                        runner
                            .result(StepState::Failed, Some(e.to_string()), None)
                            .await,
                    );
                }
            },
        }
        last_contact = Instant::now();
    }
}
