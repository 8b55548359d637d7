//! The values the store keeps.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A task's number.
pub type TaskId = i64;

/// What a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// `octo run-step … --target/--role`.
    RunStep,
    /// A run of a scheduled job.
    Job,
}

/// How far a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Waiting for a node to claim it.
    Queued,
    /// Its parts are running.
    Running,
    /// Every part succeeded.
    Succeeded,
    /// A part failed.
    Failed,
    /// It was cancelled.
    Cancelled,
    /// A part's result is unknown (contact lost, the tentacle lost the run).
    Unknown,
    /// A job the outbound gate did not let run (it made no request).
    Skipped,
}

/// How far one target's part is (the same words).
pub type PartState = TaskState;

macro_rules! words {
    ($ty:ty { $($variant:ident = $word:literal),* $(,)? }) => {
        impl $ty {
            /// The stored word.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),* }
            }
            /// Parses the stored word.
            pub fn parse(word: &str) -> Option<Self> {
                match word { $($word => Some(Self::$variant),)* _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words!(TaskKind { RunStep = "run-step", Job = "job" });
words!(TaskState {
    Queued = "queued",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Cancelled = "cancelled",
    Unknown = "unknown",
    Skipped = "skipped",
});

impl TaskState {
    /// Whether it has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Running | TaskState::Queued)
    }
}

/// A task to record.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// What it is.
    pub kind: TaskKind,
    /// What runs (`hello-step 0.1.0 on web1, web2`, a job's name).
    pub name: String,
    /// One part per target.
    pub parts: Vec<NewPart>,
}

/// One target's part of a new task.
#[derive(Debug, Clone)]
pub struct NewPart {
    /// The target's name.
    pub target: String,
    /// The ticket the step runs under on that target.
    pub ticket: String,
}

/// One log line of a target's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The target.
    pub target: String,
    /// Its sequence in that target's log (from the tentacle's journal).
    pub sequence: u64,
    /// `verbose`, `info`, `warning`, `error`, `highlight`.
    pub level: String,
    /// The text (sensitive values already masked by the tentacle).
    pub message: String,
}

/// An output variable a step set. Sensitive values are stored masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputVariable {
    /// Name.
    pub name: String,
    /// Value (`********` when sensitive).
    pub value: String,
    /// Whether it is sensitive.
    pub sensitive: bool,
}

/// An artifact a step created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its name.
    pub name: String,
    /// Its path on the target.
    pub path: String,
}

/// An outbound request a step attempted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundAttempt {
    /// `https://host:port`.
    pub destination: String,
    /// Whether the policy allowed it.
    pub allowed: bool,
    /// Why.
    pub reason: String,
}

/// How one target's part ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartOutcome {
    /// Why it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Output variables.
    #[serde(default)]
    pub outputs: Vec<OutputVariable>,
    /// Artifacts.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Outbound attempts.
    #[serde(default)]
    pub outbound: Vec<OutboundAttempt>,
}

impl OutputVariable {
    /// What a sensitive value is stored and shown as.
    pub const MASK: &'static str = "********";

    /// An output as stored: a sensitive value is replaced by [`Self::MASK`].
    pub fn stored(name: &str, value: &str, sensitive: bool) -> Self {
        OutputVariable {
            name: name.to_string(),
            value: if sensitive {
                Self::MASK.to_string()
            } else {
                value.to_string()
            },
            sensitive,
        }
    }
}

/// One target's part of a stored task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPart {
    /// The target.
    pub target: String,
    /// The ticket on the target.
    pub ticket: String,
    /// How far it is.
    pub state: PartState,
    /// How it ended (empty while running).
    pub outcome: PartOutcome,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its number.
    pub id: TaskId,
    /// What it is.
    pub kind: TaskKind,
    /// What runs.
    pub name: String,
    /// How far it is.
    pub state: TaskState,
    /// Why it ended so (a job's summary, a task-level error).
    pub message: Option<String>,
    /// Whether cancelling was asked.
    pub cancel_requested: bool,
    /// When it was created (RFC 3339, UTC, milliseconds).
    pub created: String,
    /// When it ended.
    pub ended: Option<String>,
    /// The node that claimed it (none while queued, and for tasks from before nodes).
    #[serde(default)]
    pub node: Option<String>,
    /// Its parts, in target order.
    pub parts: Vec<TaskPart>,
}

/// A line of `octo tasks list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Its number.
    pub id: TaskId,
    /// What it is.
    pub kind: TaskKind,
    /// What runs.
    pub name: String,
    /// How far it is.
    pub state: TaskState,
    /// When it was created.
    pub created: String,
    /// When it ended.
    pub ended: Option<String>,
    /// How many targets.
    pub targets: usize,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only these states (all when empty).
    pub states: Vec<TaskState>,
    /// At most this many (newest first); 0 = no limit.
    pub limit: usize,
}

/// How a queued task may be claimed ([`crate::Store::enqueue_task`]).
#[derive(Debug, Clone, Default)]
pub struct Queue {
    /// What any node needs to run it (JSON the server writes and reads); `None` when only the
    /// node it is pinned to can run it (from its memory).
    pub spec: Option<String>,
    /// The sha256 of the kept component (`Store::put_component`) the spec names: it is not dropped
    /// while the task is unfinished.
    pub component: Option<String>,
    /// Only this node may claim it (a task with sensitive variables, or whose files live on the
    /// node that received it).
    pub pinned_node: Option<String>,
    /// Claimed by this node as it is recorded (the receiving node, when it has room): no other
    /// node is woken for it, so none can take it between the insert and a separate claim.
    pub claimed_by: Option<String>,
}

/// A task a node claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its number.
    pub id: TaskId,
    /// Its spec, when it was stored.
    pub spec: Option<String>,
}

/// A node starting (`octo run --node NAME`).
#[derive(Debug, Clone)]
pub struct NodeStart {
    /// Its name.
    pub name: String,
    /// Random per start.
    pub instance: String,
    /// Random per server home: a node restarted from the same home takes its name back at once.
    pub home_id: String,
    /// How long without a heartbeat before the node counts as gone.
    pub timeout: std::time::Duration,
}

/// What an administrator set for a node (`octo nodes drain|cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeControl {
    /// At most this many tasks at once.
    pub cap: u32,
    /// Claims no new task.
    pub draining: bool,
}

/// The task cap of a new node.
pub const DEFAULT_TASK_CAP: u32 = 50;

/// A line of `octo nodes list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its current start.
    pub instance: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Milliseconds since its last heartbeat (by the database's clock).
    pub heartbeat_age_ms: i64,
    /// Its heartbeat timeout.
    pub timeout_ms: i64,
    /// Its task cap.
    pub cap: u32,
    /// Whether it is draining.
    pub draining: bool,
    /// Tasks it is running.
    pub running: usize,
}

impl NodeInfo {
    /// `running`, `draining` or `offline` (no heartbeat within its timeout).
    pub fn state(&self) -> &'static str {
        if self.heartbeat_age_ms > self.timeout_ms {
            "offline"
        } else if self.draining {
            "draining"
        } else {
            "running"
        }
    }
}

/// A task of a dead node, marked by [`crate::Store::mark_dead_nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The node that stopped heartbeating.
    pub node: String,
    /// Its task.
    pub task: TaskId,
    /// The state it was given.
    pub state: TaskState,
}

/// Now in milliseconds since the epoch (SQLite's clock for heartbeats).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The failure of a part whose node stopped heartbeating.
pub(crate) fn dead_node_failure(node: &str, running: bool) -> String {
    if running {
        format!(
            "the node {node} that ran this part stopped heartbeating; its result is unknown (it is not run again)"
        )
    } else {
        format!(
            "the node {node} that this task was pinned to stopped heartbeating before it started (its sensitive variables were only in that node's memory); run it again"
        )
    }
}

/// Now, as stored.
pub(crate) fn now() -> String {
    octo_fsutil::rfc3339_millis(std::time::SystemTime::now())
}

pub(crate) fn state(word: &str) -> crate::Result<TaskState> {
    TaskState::parse(word).ok_or_else(|| crate::Error::Data(format!("task state {word:?}")))
}

pub(crate) fn kind(word: &str) -> crate::Result<TaskKind> {
    TaskKind::parse(word).ok_or_else(|| crate::Error::Data(format!("task kind {word:?}")))
}

/// The state a task (and its parts) is recorded in: running when claimed as it is recorded.
pub fn queued_or_running(queue: &Queue) -> TaskState {
    if queue.claimed_by.is_some() {
        TaskState::Running
    } else {
        TaskState::Queued
    }
}
