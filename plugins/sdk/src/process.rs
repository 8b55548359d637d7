//! Running a native command on the machine that runs the step.
//!
//! Only plugins whose manifest declares the `process` capability may do this
//! (`step!(MyStep, capabilities = ["process"], ...)`); for others every call fails with
//! [`ProcessError::NotGranted`]. The command's output is streamed into the step's log by the host,
//! which also interprets `##octopus[...]` service messages on its standard output.
//!
//! ```no_run
//! # fn main() -> Result<(), octo_plugin_sdk::process::ProcessError> {
//! use octo_plugin_sdk::process::Command;
//! let code = Command::new("bash").arg("-c").arg("echo hi").env("GREETING", "hello").status()?;
//! Command::new("systemctl").args(["restart", "nginx"]).run()?; // an error unless it exits with 0
//! # let _ = code; Ok(()) }
//! ```

use std::fmt;

use crate::bindings::octo::plugin::process as wit;

/// A command to run. Build it, then call [`Command::status`] or [`Command::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    stdin: Option<Vec<u8>>,
}

impl Command {
    /// A command running `program` (looked up on the host's `PATH`, or an absolute path).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    /// Add one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable. The host starts from an almost empty environment (`PATH`,
    /// `HOME`, `LANG` and the proxy variables) and adds these.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Working directory, relative to the step's work directory (the default).
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Bytes written to the command's standard input, which is then closed.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The program this command runs.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Run the command to completion and return its exit code.
    pub fn status(&self) -> Result<i32, ProcessError> {
        let command = wit::Command {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            stdin: self.stdin.clone(),
        };
        wit::run(&command).map_err(|e| match e {
            wit::Error::NotGranted => ProcessError::NotGranted,
            wit::Error::SpawnFailed(reason) => ProcessError::SpawnFailed {
                program: self.program.clone(),
                reason,
            },
            wit::Error::Cancelled => ProcessError::Cancelled,
        })
    }

    /// Run the command to completion; an exit code other than 0 is an error.
    pub fn run(&self) -> Result<(), ProcessError> {
        match self.status()? {
            0 => Ok(()),
            code => Err(ProcessError::Failed {
                program: self.program.clone(),
                code,
            }),
        }
    }
}

/// Why a command did not run to a successful end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// The plugin's manifest does not declare the `process` capability.
    NotGranted,
    /// The command could not be started (program not found, bad working directory, ...).
    SpawnFailed {
        /// The program that was to run.
        program: String,
        /// What the host reported.
        reason: String,
    },
    /// The step was cancelled or ran past its deadline; the command was killed.
    Cancelled,
    /// The command exited with a non-zero code (only from [`Command::run`]).
    Failed {
        /// The program that ran.
        program: String,
        /// Its exit code.
        code: i32,
    },
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::NotGranted => f.write_str(
                "running a process was refused by the host: the plugin's manifest does not declare the \"process\" capability",
            ),
            ProcessError::SpawnFailed { program, reason } => {
                write!(f, "could not start '{program}': {reason}")
            }
            ProcessError::Cancelled => {
                f.write_str("the command was killed because the step was cancelled or ran past its deadline")
            }
            ProcessError::Failed { program, code } => {
                write!(f, "'{program}' exited with code {code}")
            }
        }
    }
}

impl std::error::Error for ProcessError {}
