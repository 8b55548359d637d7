//! The admin API between the `octo` CLI and the daemon: one JSON request line on the Unix socket
//! `<home>/octo.sock`, answered by JSON event lines until [`AdminEvent::Done`]. The socket is
//! mode 0600 in a 0700 home: only the server's own user can use it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use crate::error::{Context, Error, Result};
use crate::home::Home;
use octo_protocol::{LogLevel, StepState, Variable};
use serde::{Deserialize, Serialize};

/// Largest request line the daemon reads (a run-step carries the component).
pub const MAX_REQUEST_LINE: usize = 512 * 1024 * 1024;

/// What the CLI asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Re-read `targets.json` (trust follows it: removed targets' connections close).
    Reload,
    /// Check targets (all when empty) with a capabilities call.
    Health {
        /// Target names.
        targets: Vec<String>,
    },
    /// Run a step on targets.
    RunStep(RemoteRun),
    /// Cancel a running task.
    CancelTask {
        /// The task.
        id: i64,
    },
}

/// A step to run on targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRun {
    /// The component, base64.
    pub plugin_base64: String,
    /// Where it came from, for messages.
    pub origin: String,
    /// Parameter values.
    pub arguments: std::collections::BTreeMap<String, String>,
    /// Deployment variables.
    pub variables: Vec<Variable>,
    /// Granted outbound destination patterns.
    pub grants: Vec<String>,
    /// Deadline in milliseconds.
    pub deadline_ms: u64,
    /// Target names.
    pub targets: Vec<String>,
    /// Target roles.
    pub roles: Vec<String>,
    /// Answer with the task's id at once and run it in the background (not cancelled when the
    /// CLI goes away).
    #[serde(default)]
    pub detach: bool,
    /// The package of a deploy-package run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Box<RemotePackage>>,
}

/// The package of a run on targets: what the tentacles get, and where the server has its files to
/// upload to the tentacles that lack them (none when each target downloads it itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePackage {
    /// What the start request carries.
    pub step: octo_protocol::StepPackage,
    /// The server's file for each of `step.files`, in order (empty for acquisition `target`).
    #[serde(default)]
    pub paths: Vec<std::path::PathBuf>,
}

/// What the daemon answers, line by line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum AdminEvent {
    /// The request was done.
    Ok {
        /// What was done.
        message: String,
    },
    /// The request failed as a whole.
    Error {
        /// Why.
        message: String,
    },
    /// The task a run-step created (the first event of a run).
    Task {
        /// Its id (`octo tasks show ID`).
        id: i64,
    },
    /// A log line of a target's step (each exactly once, in order).
    Log {
        /// Target name.
        target: String,
        /// Sequence in that target's log.
        sequence: u64,
        /// Severity.
        level: LogLevel,
        /// Text.
        message: String,
    },
    /// Something about the connection to a target (reconnecting, sending the plugin).
    Note {
        /// Target name.
        target: String,
        /// Text.
        message: String,
    },
    /// How a target's step ended.
    Result {
        /// Target name.
        target: String,
        /// The end state (`unknown` when the tentacle died with the step or could not be reached
        /// again).
        state: StepState,
        /// Why it did not succeed.
        message: Option<String>,
        /// Output variables it set (sensitive values masked).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outputs: Vec<octo_store::OutputVariable>,
        /// Artifacts it created.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<octo_store::Artifact>,
        /// Outbound requests it attempted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outbound: Vec<octo_store::OutboundAttempt>,
    },
    /// A target's health.
    Health {
        /// Target name.
        target: String,
        /// Whether it answered.
        ok: bool,
        /// The agent and platform, or the error.
        detail: String,
        /// Round trip in milliseconds (including connecting when there was no connection).
        millis: f64,
    },
    /// The last line.
    Done {
        /// Whether everything succeeded.
        ok: bool,
    },
}

/// Sends `request` to the daemon and hands each answer line to `each` until `Done`.
pub fn call(home: &Home, request: &AdminRequest, mut each: impl FnMut(AdminEvent)) -> Result<bool> {
    let path = home.socket();
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "the Octo server is not running (no {}); start it with `octo run`",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.flush()?;
    for line in BufReader::new(stream).lines() {
        let line = line.context("the connection to the server broke")?;
        let event: AdminEvent = serde_json::from_str(&line)
            .with_context(|| format!("unexpected answer from the server: {line}"))?;
        if let AdminEvent::Done { ok } = event {
            return Ok(ok);
        }
        each(event);
    }
    Err(Error::Failed(
        "the server closed the connection before finishing".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = AdminRequest::Health {
            targets: vec!["web1".into()],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"request":"health","targets":["web1"]}"#
        );
        let e = AdminEvent::Result {
            target: "web1".into(),
            state: StepState::Unknown,
            message: Some("lost".into()),
            outputs: vec![],
            artifacts: vec![],
            outbound: vec![],
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"result","target":"web1","state":"unknown","message":"lost"}"#
        );
    }
}
