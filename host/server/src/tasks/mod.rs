//! Tasks: every run of a step on targets and every job run, kept in the store (`octo-store`) with
//! each target's part, its outcome and every log line. The daemon writes them (`server/`); these
//! services read them for `octo tasks list|show|cancel`, straight from the store, so they work
//! whether or not the daemon runs, and `show --follow` goes on across a daemon restart.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use octo_protocol::LogLevel;
use octo_store::{Location, LogLine, Store, Task, TaskFilter, TaskId, TaskState, TaskSummary};

use crate::admin::{self, AdminEvent, AdminRequest};
use crate::error::{Context, Result};
use crate::home::Home;

/// Where this home's store lives: the `database` setting, else `<home>/octo.db`.
pub fn location(home: &Home) -> Result<Location> {
    let settings = home.load_settings()?;
    Ok(match settings.database.as_deref() {
        Some(url) => Location::Postgres(octo_store::DatabaseUrl::parse(url)?),
        None => Location::Sqlite(home.database()),
    })
}

/// Opens (and migrates) this home's store.
pub async fn open_store(home: &Home) -> Result<Arc<dyn Store>> {
    home.create()?;
    let location = location(home)?;
    Ok(octo_store::open(&location).await?)
}

/// The stored word of a log level (`info`, `warn`, …).
pub fn level_word(level: LogLevel) -> String {
    serde_json::to_value(level)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "info".into())
}

/// Parses `--state`.
pub fn parse_state(word: &str) -> Result<TaskState, String> {
    TaskState::parse(word).ok_or_else(|| {
        format!("unknown task state {word:?}; expected queued, running, succeeded, failed, cancelled, unknown or skipped")
    })
}

/// Runs `f` on a runtime of its own (the CLI has none).
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// `octo tasks list`.
#[derive(Debug, Clone)]
pub struct TaskList(pub Vec<TaskSummary>);

/// `octo tasks list [--state S]… [--limit N]`: newest first.
pub fn list(home: &Home, states: &[TaskState], limit: usize) -> Result<TaskList> {
    block_on(async {
        let store = open_store(home).await?;
        let filter = TaskFilter {
            states: states.to_vec(),
            limit,
        };
        Ok(TaskList(store.list_tasks(&filter).await?))
    })
}

impl fmt::Display for TaskList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "No tasks.");
        }
        let header = ["ID", "KIND", "STATE", "TARGETS", "CREATED", "WHAT"].map(String::from);
        let rows: Vec<[String; 6]> = std::iter::once(header)
            .chain(self.0.iter().map(|t| {
                [
                    t.id.to_string(),
                    t.kind.to_string(),
                    t.state.to_string(),
                    t.targets.to_string(),
                    t.created.clone(),
                    t.name.clone(),
                ]
            }))
            .collect();
        crate::table::write_table(f, &rows)
    }
}

impl TaskList {
    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
}

/// `octo tasks show`: a task, its parts' outcomes, and (unless it was followed) its log.
#[derive(Debug, Clone)]
pub struct TaskReport {
    /// The task.
    pub task: Task,
    /// Its log, in the order stored (`None` when it was streamed while following).
    pub log: Option<Vec<LogLine>>,
}

/// `octo tasks show ID`.
pub fn show(home: &Home, id: TaskId) -> Result<TaskReport> {
    block_on(async {
        let store = open_store(home).await?;
        let task = find(store.as_ref(), id).await?;
        let mut log = Vec::new();
        let mut position = 0;
        loop {
            let page = store.log_after(id, position, 10_000).await?;
            let Some((last, _)) = page.last() else { break };
            position = *last;
            log.extend(page.into_iter().map(|(_, l)| l));
        }
        Ok(TaskReport {
            task,
            log: Some(log),
        })
    })
}

async fn find(store: &dyn Store, id: TaskId) -> Result<Task> {
    store
        .task(id)
        .await?
        .ok_or_else(|| err!(NotFound, "no task {id}; see `octo tasks list`"))
}

/// How long `--follow` keeps trying while the store cannot be read (e.g. PostgreSQL restarting).
const FOLLOW_PATIENCE: Duration = Duration::from_secs(120);

/// `octo tasks show ID --follow`: hands each log line to `each` as it is stored, until the task has
/// ended and its log is read to the end. It reads the store, not the daemon: a daemon restart
/// in between only pauses the lines. It keeps a cursor per target (the last sequence seen), so a
/// line is neither skipped nor repeated whatever the order in which several writers (nodes, or
/// connections) committed lines.
pub fn follow(home: &Home, id: TaskId, each: &mut dyn FnMut(&LogLine)) -> Result<TaskReport> {
    block_on(async {
        let store = open_store(home).await?;
        let task = find(store.as_ref(), id).await?;
        let mut cursors: Vec<(String, u64)> =
            task.parts.iter().map(|p| (p.target.clone(), 0)).collect();
        let mut failing_since: Option<Instant> = None;
        loop {
            let step = async {
                // The task first: every line stored before it was read comes after.
                let task = find(store.as_ref(), id).await?;
                loop {
                    let page = store.log_since(id, &cursors, 1_000).await?;
                    if page.is_empty() {
                        break;
                    }
                    for line in &page {
                        if let Some(c) = cursors.iter_mut().find(|(t, _)| *t == line.target) {
                            c.1 = c.1.max(line.sequence);
                        }
                        each(line);
                    }
                }
                Ok::<_, crate::Error>(task)
            }
            .await;
            match step {
                Ok(task) => {
                    failing_since = None;
                    if task.state.is_terminal() {
                        return Ok(TaskReport { task, log: None });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > FOLLOW_PATIENCE {
                        return Err(error).context(format!("cannot follow task {id}"));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

/// `octo tasks cancel ID`: through the daemon when it runs (the task's steps are cancelled on their
/// targets at once), else recorded in the store for the daemon to act on when it starts.
pub fn cancel(home: &Home, id: TaskId) -> Result<String> {
    if std::os::unix::net::UnixStream::connect(home.socket()).is_ok() {
        let mut answer = Err(err!(Failed, "the server did not answer"));
        admin::call(
            home,
            &AdminRequest::CancelTask { id },
            |event| match event {
                AdminEvent::Ok { message } => answer = Ok(message),
                AdminEvent::Error { message } => answer = Err(crate::Error::Failed(message)),
                _ => {}
            },
        )?;
        return answer;
    }
    block_on(async {
        let store = open_store(home).await?;
        let task = find(store.as_ref(), id).await?;
        if task.state.is_terminal() {
            bail!(Invalid, "task {id} has already ended ({})", task.state);
        }
        store.request_cancel(id).await?;
        Ok(format!(
            "The server is not running; task {id} will be cancelled when `octo run` starts."
        ))
    })
}

/// One target's outcome as text, indented (shared by `tasks show` and `run-step`'s summary).
pub fn write_outcome(
    f: &mut fmt::Formatter<'_>,
    indent: &str,
    outcome: &octo_store::PartOutcome,
) -> fmt::Result {
    if !outcome.outputs.is_empty() {
        writeln!(f, "{indent}Output variables:")?;
        for o in &outcome.outputs {
            writeln!(f, "{indent}  {} = {}", o.name, o.value)?;
        }
    }
    if !outcome.artifacts.is_empty() {
        writeln!(f, "{indent}Artifacts:")?;
        for a in &outcome.artifacts {
            writeln!(f, "{indent}  {} ({})", a.name, a.path)?;
        }
    }
    let denied: Vec<_> = outcome.outbound.iter().filter(|a| !a.allowed).collect();
    if !denied.is_empty() {
        writeln!(f, "{indent}Denied outbound requests:")?;
        for a in denied {
            writeln!(f, "{indent}  {}: {}", a.destination, a.reason)?;
        }
    }
    Ok(())
}

impl fmt::Display for TaskReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.task;
        writeln!(f, "Task {} ({}): {}", t.id, t.kind, t.state)?;
        writeln!(f, "  What:    {}", t.name)?;
        writeln!(f, "  Created: {}", t.created)?;
        if let Some(ended) = &t.ended {
            writeln!(f, "  Ended:   {ended}")?;
        }
        if let Some(node) = &t.node {
            writeln!(f, "  Node:    {node}")?;
        }
        if let Some(message) = &t.message {
            writeln!(f, "  Result:  {message}")?;
        }
        if t.cancel_requested {
            writeln!(f, "  Cancel requested")?;
        }
        for part in &t.parts {
            match &part.outcome.failure {
                Some(why) => writeln!(f, "  [{}] {}: {why}", part.target, part.state)?,
                None => writeln!(f, "  [{}] {}", part.target, part.state)?,
            }
            write_outcome(f, "    ", &part.outcome)?;
        }
        if let Some(log) = &self.log {
            if !log.is_empty() {
                writeln!(f, "Log:")?;
            }
            for line in log {
                writeln!(f, "  {}", line_text(line))?;
            }
        }
        Ok(())
    }
}

/// `[target] message`, with the level for lines that are not plain information.
pub fn line_text(line: &LogLine) -> String {
    match line.level.as_str() {
        "info" | "highlight" => format!("[{}] {}", line.target, line.message),
        level => format!("[{}] {level}: {}", line.target, line.message),
    }
}

impl TaskReport {
    /// The `--json` document: the task, each target's outcome, and the log when there is one.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(&self.task).unwrap_or_default();
        if let (Some(log), Some(object)) = (&self.log, value.as_object_mut()) {
            object.insert("log".into(), serde_json::to_value(log).unwrap_or_default());
        }
        value
    }
}
