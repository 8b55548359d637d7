//! The words a run is described in: log levels and lines, deployment and output variables, artifacts,
//! a step's description, cancellation, why a run failed and what came of it. Plain data, shared by steps
//! and vendor plugins.

use crate::outbound::OutboundAttempt;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    pub(crate) fn failed_early(failure: StepFailure) -> Self {
        StepOutcome {
            result: Err(failure),
            outputs: Vec::new(),
            artifacts: Vec::new(),
            outbound: Vec::new(),
        }
    }
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
