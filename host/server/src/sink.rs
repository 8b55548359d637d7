//! What a service tells its caller while it works: notes, finished jobs, download progress. The binary
//! passes a [`Sink`] that prints them; a library caller may collect them or pass [`Sink::silent`].
//! (What a command returns at its end is a report value instead; a step's log lines go through the
//! callback of its run.)

use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Something to show while a service works.
#[derive(Debug)]
pub enum Event<'a> {
    /// A line of information for a person (the binary prints it on stderr).
    Note(&'a str),
    /// A background job ran (or was skipped).
    Job(&'a JobRun),
    /// A download advanced: `done` of `total` bytes of `label`.
    Download {
        /// What is being downloaded (`run-script 0.1.1`).
        label: &'a str,
        /// Bytes so far.
        done: u64,
        /// Expected size.
        total: u64,
    },
    /// The download of `label` ended (complete or not).
    DownloadEnded {
        /// What was being downloaded.
        label: &'a str,
    },
}

/// Where [`Event`]s go.
#[derive(Clone)]
pub struct Sink(Arc<dyn Fn(Event<'_>) + Send + Sync>);

impl Sink {
    /// Hands every event to `f`.
    pub fn new(f: impl Fn(Event<'_>) + Send + Sync + 'static) -> Self {
        Sink(Arc::new(f))
    }

    /// Drops every event.
    pub fn silent() -> Self {
        Sink::new(|_| {})
    }

    /// Tells the caller.
    pub fn emit(&self, event: Event<'_>) {
        (self.0)(event)
    }

    /// A note.
    pub fn note(&self, line: &str) {
        self.emit(Event::Note(line))
    }
}

impl Default for Sink {
    fn default() -> Self {
        Sink::silent()
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// How a job run ended (see [`crate::jobs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It did its work.
    Ok,
    /// It failed; its message says why.
    Failed,
    /// The outbound gate refused it: it made no request.
    Skipped,
}

impl Outcome {
    /// `ok`, `failed` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One run of a job (see [`crate::jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job's name.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// Its summary, error, or why it was skipped.
    pub message: String,
}

impl fmt::Display for JobRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.name,
            self.outcome.as_str(),
            self.message
        )
    }
}
