//! Running one step on one target: start (idempotent by ticket; the component is sent when the
//! tentacle lacks it), then long-poll its status, passing every log line on exactly once, through
//! dropped connections and tentacle restarts, until the run ends or contact is lost for good.
//! When the CLI that asked for the run goes away, the run is cancelled on the tentacle and
//! still followed to its end (so it is completed and its directory removed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use octo_comms::backoff::Backoff;
use octo_comms::rpc::{RpcClient, RpcError};
use octo_protocol::{
    Completed, ErrorBody, ErrorCode, LogCursor, PackagePresence, PackageQuery, StartStep,
    StatusRequest, StepStarted, StepState, StepStatus, Stored, TicketRequest, paths,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pool::Pool;
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

struct Runner<'a> {
    pool: &'a Pool,
    target: &'a Target,
    events: &'a mpsc::UnboundedSender<AdminEvent>,
    backoff: Backoff,
}

impl Runner<'_> {
    fn note(&self, message: impl Into<String>) {
        let _ = self.events.send(AdminEvent::Note {
            target: self.target.name.clone(),
            message: message.into(),
        });
    }

    fn result(&self, state: StepState, message: Option<String>) -> StepState {
        let _ = self.events.send(AdminEvent::Result {
            target: self.target.name.clone(),
            state,
            message,
        });
        state
    }

    async fn connect(&mut self) -> Result<RpcClient, String> {
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

enum SendError {
    Lost(RpcError),
    Refused(String),
}

/// Uploads the package files the tentacle lacks (it answers which by digest).
async fn send_package(runner: &Runner<'_>, client: &RpcClient, job: &Job) -> Result<(), SendError> {
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
        let reader = tokio::fs::File::open(path).await.map_err(|e| {
            SendError::Refused(format!("{what}: cannot read {}: {e}", path.display()))
        })?;
        match client
            .upload::<_, Stored>(&paths::package_put(file, package), reader)
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

/// Runs `job` on `target` as `ticket`; sends events; returns the end state.
pub async fn run_on_target(
    pool: Arc<Pool>,
    target: Target,
    job: Arc<Job>,
    ticket: octo_protocol::Ticket,
    events: mpsc::UnboundedSender<AdminEvent>,
    cancel: CancellationToken,
) -> StepState {
    let mut runner = Runner {
        pool: &pool,
        target: &target,
        events: &events,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(3)),
    };
    let budget = reconnect_budget();
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

    // 1. Start (retried until it is known to have started).
    let mut last_contact = Instant::now();
    let mut sent_plugin = false;
    let mut sent_package = false;
    loop {
        if cancel.is_cancelled() {
            return runner.result(
                StepState::Cancelled,
                Some("cancelled before the step started".into()),
            );
        }
        if last_contact.elapsed() > budget {
            return runner.result(
                StepState::Failed,
                Some(format!(
                    "could not reach the tentacle for {}s; the step was not started",
                    budget.as_secs()
                )),
            );
        }
        let client = match runner.connect().await {
            Ok(c) => c,
            Err(e) => {
                runner.note(format!("cannot connect: {e}; retrying"));
                runner.pause().await;
                continue;
            }
        };
        match client
            .call_json::<_, StepStarted>(paths::STEP_START, &start)
            .await
        {
            Ok(_) => break,
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
                            return runner.result(
                                StepState::Failed,
                                Some(format!("the tentacle refused the plugin: {e}")),
                            );
                        }
                    }
                }
                Some(body) if body.error == ErrorCode::PackageMissing && !sent_package => {
                    match send_package(&runner, &client, &job).await {
                        Ok(()) => sent_package = true,
                        Err(SendError::Lost(e)) => runner.lost(&e),
                        Err(SendError::Refused(message)) => {
                            return runner.result(StepState::Failed, Some(message));
                        }
                    }
                }
                Some(body) => return runner.result(StepState::Failed, Some(body.message)),
                None if e.is_connection_failure() => {
                    runner.lost(&e);
                    runner.note("the connection dropped while starting the step; retrying");
                    runner.pause().await;
                }
                None => return runner.result(StepState::Failed, Some(e.to_string())),
            },
        }
        last_contact = Instant::now();
    }

    // 2. Follow the log until the run ends.
    runner.backoff.reset();
    let mut cursor = LogCursor::new();
    let mut last_contact = Instant::now();
    let mut reported_loss = false;
    let mut cancel_sent = false;
    loop {
        if last_contact.elapsed() > budget {
            return runner.result(
                StepState::Unknown,
                Some(format!(
                    "lost contact with the tentacle for {}s while the step ran; its result is unknown",
                    budget.as_secs()
                )),
            );
        }
        let client = match runner.connect().await {
            Ok(c) => c,
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
                    return runner.result(
                        StepState::Unknown,
                        Some(
                            "the tentacle no longer knows this step run; its result is unknown"
                                .into(),
                        ),
                    );
                }
                Some(body) => return runner.result(StepState::Unknown, Some(body.message)),
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
        for line in cursor.take(status.lines) {
            let _ = events.send(AdminEvent::Log {
                target: target.name.clone(),
                sequence: line.sequence,
                level: line.level,
                message: line.message,
            });
        }
        if status.state.is_terminal() && cursor.last() >= status.last_sequence {
            let _ = client
                .call_json::<_, Completed>(paths::STEP_COMPLETE, &TicketRequest { ticket })
                .await;
            let message = status.result.and_then(|r| r.failure).map(|f| f.message);
            return runner.result(status.state, message);
        }
    }
}
