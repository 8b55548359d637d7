//! The JSON bodies of every call, and the error body of every refusal.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{RelativePath, Sha256Digest, Ticket};

/// A request body with no fields (`{}`), e.g. for [`crate::paths::CAPABILITIES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// What a tentacle is and can do (answer to [`crate::paths::CAPABILITIES`]); also the health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// [`crate::PROTOCOL_VERSION`] of the tentacle.
    pub protocol_version: u32,
    /// The agent's name and version, e.g. `tentacle 0.1.0`.
    pub agent: String,
    /// The call paths it serves.
    pub services: Vec<String>,
    /// `std::env::consts::OS` of the tentacle's machine.
    pub os: String,
    /// `std::env::consts::ARCH` of the tentacle's machine.
    pub arch: String,
    /// Largest JSON request body it reads.
    pub max_json_request: u64,
    /// Largest plugin it accepts.
    pub max_plugin_size: u64,
    /// Largest file it accepts in one upload.
    pub max_file_size: u64,
}

/// A deployment variable handed to a step. `Debug` masks sensitive values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Masked in every log line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variable")
            .field("name", &self.name)
            .field(
                "value",
                &if self.sensitive {
                    "********"
                } else {
                    &self.value
                },
            )
            .finish()
    }
}

/// Start a step (body of [`crate::paths::STEP_START`]). The server chooses the ticket, so a
/// start that is retried after a lost answer finds the run it already started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartStep {
    /// The run's name.
    pub ticket: Ticket,
    /// The step plugin component, by digest; the tentacle answers
    /// [`ErrorCode::PluginMissing`] if it does not have it.
    pub plugin: Sha256Digest,
    /// Parameter values by name.
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// Deployment variables.
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// Outbound destinations the server grants this run (exact destination patterns such as
    /// `https://example.com:443`); nothing else is allowed.
    #[serde(default)]
    pub grants: Vec<String>,
    /// How long the step may run, in milliseconds.
    pub deadline_ms: u64,
    /// How far the step's scripts reach the network on the tentacle (the server's effective
    /// `scriptNetwork`: confined while air-gapped). Absent means audited.
    #[serde(default, skip_serializing_if = "ScriptNetwork::is_audited")]
    pub script_network: ScriptNetwork,
    /// Sent only while the server is air-gapped: its `internalNetworks`, each entry as
    /// `octo configure --internalNetworks` takes it (`10.0.0.0/8`, `fd00::/8`, `*.corp.example`,
    /// `db.internal`). A confined script's connection to a granted `tcp://NAME:PORT` then goes only
    /// to those addresses NAME resolves to (on the tentacle) that lie inside these blocks, as on the
    /// server; an empty list lets none through. Absent (not air-gapped, or a server from before this
    /// field): resolved addresses are not checked. A tentacle from before this field ignores it and
    /// forwards a granted name to whatever it resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_networks: Option<Vec<String>>,
    /// The package a deploy-package step deploys: the tentacle answers
    /// [`ErrorCode::PackageMissing`] when it lacks a file and has no [`StepPackage::direct`]
    /// download, so the server uploads it ([`crate::paths::package_put`]) and starts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<StepPackage>,
}

/// The package of a step: what it is, its files by digest, and, when the tentacle is to download it
/// itself (acquisition `target`), how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPackage {
    /// The feed's name on the server (empty for a file the administrator gave).
    #[serde(default)]
    pub feed: String,
    /// The package id.
    pub id: String,
    /// The resolved version.
    pub version: String,
    /// Its files (one for a zip, nupkg or tar; one per layer for an OCI artifact).
    pub files: Vec<PackageFileRef>,
    /// Acquisition `target`: the tentacle downloads the files it lacks from the feed through its
    /// own web request proxy. Never stored by the tentacle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectDownload>,
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageFileRef {
    /// A plain file name (no `/`, not `.` or `..`).
    pub name: String,
    /// Its digest: the file is used only when its bytes have it.
    pub sha256: Sha256Digest,
    /// Its size in bytes; 0 when the feed does not say before the download (acquisition `target`
    /// from a plain HTTP feed).
    pub size: u64,
}

impl PackageFileRef {
    /// Whether `name` can name a file in a directory of its own.
    pub fn check_name(name: &str) -> bool {
        !name.is_empty()
            && name != "."
            && name != ".."
            && name.len() <= 255
            && !name.contains(['/', '\\', '\0'])
    }
}

/// How a tentacle downloads a package itself: octo-packages' `PackageDownload` (as JSON: this
/// crate stays free of feed clients) and the feed's credentials for this run only. `Debug` masks
/// the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectDownload {
    /// `octo_packages::PackageDownload`.
    pub download: serde_json::Value,
    /// The feed's user name, if it has credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The feed's password; masked in every log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl fmt::Debug for DirectDownload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectDownload")
            .field("download", &self.download)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

/// Names a package file (body of [`crate::paths::PACKAGE_HAS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageQuery {
    /// The file's digest.
    pub sha256: Sha256Digest,
}

/// Whether a tentacle has a package file cached (answer to [`crate::paths::PACKAGE_HAS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePresence {
    /// The file's digest.
    pub sha256: Sha256Digest,
    /// Whether it is cached.
    pub present: bool,
}

/// How far a step's scripts reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScriptNetwork {
    /// The tentacle's network, with HTTP(S) through the step's audited egress proxy.
    #[default]
    Audited,
    /// A network namespace whose only way out is the egress proxy; refused where namespaces are
    /// unavailable.
    Confined,
}

impl ScriptNetwork {
    /// Whether this is the default (left out of the JSON).
    pub fn is_audited(&self) -> bool {
        *self == ScriptNetwork::Audited
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Still running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully (see [`StepResult::failure`]).
    Failed,
    /// Stopped by a cancel call.
    Cancelled,
    /// The tentacle stopped while the step ran: its log up to then is kept, but whether it
    /// would have succeeded is not known.
    Unknown,
}

impl StepState {
    /// Whether the run has ended (nothing more will be logged).
    pub fn is_terminal(self) -> bool {
        self != StepState::Running
    }

    /// The lower-case word for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Unknown => "result unknown",
        }
    }
}

/// Answer to [`StartStep`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStarted {
    /// The run.
    pub ticket: Ticket,
    /// Its state now.
    pub state: StepState,
    /// `true` when this ticket had been started before (a retried start).
    pub already_started: bool,
}

/// Ask for a run's state and the log lines after `after_sequence` (body of
/// [`crate::paths::STEP_STATUS`]). With `wait_ms`, the answer waits (up to
/// [`crate::MAX_STATUS_WAIT_MS`]) until there is a new line or the run ends: a long poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequest {
    /// The run.
    pub ticket: Ticket,
    /// The last sequence number the caller has; `0` for all lines.
    #[serde(default)]
    pub after_sequence: u64,
    /// How long to wait for something new, in milliseconds.
    #[serde(default)]
    pub wait_ms: u64,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Very detailed diagnostics.
    Trace,
    /// Detail shown on request.
    Verbose,
    /// Normal output.
    Info,
    /// Normal output that stands out.
    Highlight,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Verbose => "verbose",
            LogLevel::Info | LogLevel::Highlight => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One log line of a run, already masked. Sequence numbers start at 1 and have no gaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Position in the run's log.
    pub sequence: u64,
    /// When it was written, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Severity.
    pub level: LogLevel,
    /// Text.
    pub message: String,
}

/// A run's state and a page of its log (answer to [`StatusRequest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The run.
    pub ticket: Ticket,
    /// Its state.
    pub state: StepState,
    /// Lines after the requested sequence, in order (at most [`crate::MAX_STATUS_LINES`]).
    pub lines: Vec<LogEntry>,
    /// The highest sequence written so far; when it is beyond the last line returned, ask
    /// again.
    pub last_sequence: u64,
    /// How it ended, once [`StepState::is_terminal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StepResult>,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// Why it did not succeed; `None` for success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Output variables it set.
    #[serde(default)]
    pub outputs: Vec<Variable>,
    /// Outbound requests it attempted.
    #[serde(default)]
    pub outbound: Vec<OutboundAttempt>,
    /// Artifacts it created (`new_octopusartifact`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactInfo>,
}

/// An artifact a step created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Its name.
    pub name: String,
    /// Its path, relative to the run's work directory.
    pub path: String,
}

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A stable word: `failed`, `invalid-arguments`, `trapped`, `deadline-exceeded`,
    /// `memory-limit-exceeded`, `cancelled`, `host-error`, `unknown`.
    pub kind: String,
    /// One line for the user.
    pub message: String,
}

/// One outbound request a step attempted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundAttempt {
    /// `scheme://host:port`.
    pub destination: String,
    /// Whether it was let through.
    pub allowed: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Made by a script the step started (through its egress proxy), not by the plugin itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub script: bool,
}

/// Names a run (body of [`crate::paths::STEP_CANCEL`] and [`crate::paths::STEP_COMPLETE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// The run.
    pub ticket: Ticket,
}

/// Answer to [`crate::paths::STEP_COMPLETE`]: the run's directory is gone; the ticket is
/// unknown from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The run.
    pub ticket: Ticket,
}

/// Names a plugin (body of [`crate::paths::PLUGIN_HAS`] and [`crate::paths::PLUGIN_GET`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginQuery {
    /// The component's digest.
    pub sha256: Sha256Digest,
}

/// Whether a tentacle has a plugin (answer to [`crate::paths::PLUGIN_HAS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginPresence {
    /// The component's digest.
    pub sha256: Sha256Digest,
    /// Whether it is cached.
    pub present: bool,
}

/// A stored plugin or file: what the receiver computed from the bytes it got (answer to
/// uploads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Where it was stored: a file's relative path, or the plugin digest.
    pub name: String,
    /// Bytes received.
    pub size: u64,
    /// Their digest (equal to the announced one, or the upload was refused).
    pub sha256: Sha256Digest,
}

/// Names a file to download (body of [`crate::paths::FILE_DOWNLOAD`]). The answer streams the
/// bytes with their digest in [`crate::paths::SHA256_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDownload {
    /// Relative to the tentacle's files directory.
    pub path: RelativePath,
}

/// Why a call was refused: the JSON body of every non-2xx answer from a tentacle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of refusal (callers match on this).
    pub error: ErrorCode,
    /// One line for the user.
    pub message: String,
}

impl ErrorBody {
    /// A refusal.
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }

    /// Reads the start of a refusal's body, as an RPC client reports it; `None` if it is not an
    /// [`ErrorBody`] (e.g. an answer from something that is not a tentacle).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text.trim()).ok()
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of refusal, with their HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The body is not valid for this call (400).
    BadRequest,
    /// The body is larger than allowed (413).
    TooLarge,
    /// No such call (404).
    UnknownCall,
    /// The ticket names no run (404).
    UnknownTicket,
    /// The plugin is not cached; put it first (404).
    PluginMissing,
    /// The plugin is cached but cannot be loaded (422).
    PluginInvalid,
    /// A package file of the step is not cached and the step does not say how to download it;
    /// upload it first (404).
    PackageMissing,
    /// The ticket was started with a different request (409).
    TicketConflict,
    /// The run has not ended yet (409).
    StepRunning,
    /// The bytes received do not have the announced digest (422).
    DigestMismatch,
    /// The file path is absolute, leaves the files directory, or goes through a link (403).
    PathRefused,
    /// No such file (404).
    FileNotFound,
    /// Something failed on the tentacle (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status this refusal is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnknownCall
            | ErrorCode::UnknownTicket
            | ErrorCode::PluginMissing
            | ErrorCode::PackageMissing
            | ErrorCode::FileNotFound => 404,
            ErrorCode::PluginInvalid | ErrorCode::DigestMismatch => 422,
            ErrorCode::TicketConflict | ErrorCode::StepRunning => 409,
            ErrorCode::PathRefused => 403,
            ErrorCode::Internal => 500,
        }
    }
}

/// The caller's side of "every log line exactly once": remembers the last sequence seen and
/// passes on only the lines after it, in order, across retries and reconnects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCursor {
    last: u64,
}

impl LogCursor {
    /// A cursor that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cursor that has passed on every line up to `last` (resuming from a stored position).
    pub fn after(last: u64) -> Self {
        Self { last }
    }

    /// The last sequence passed on: the `after_sequence` of the next status call.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The lines of `lines` not passed on before. A line that would leave a gap is not passed
    /// on (the next call asks again from the last one seen).
    pub fn take(&mut self, lines: Vec<LogEntry>) -> Vec<LogEntry> {
        let mut fresh = Vec::new();
        for line in lines {
            if line.sequence == self.last + 1 {
                self.last = line.sequence;
                fresh.push(line);
            }
        }
        fresh
    }
}
