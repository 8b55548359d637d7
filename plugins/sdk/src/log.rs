//! Writing to the step's log. The host masks sensitive values before anything is written.
//!
//! Use the functions, or the `format!`-style macros [`info!`](crate::info),
//! [`warn!`](crate::warn), [`error!`](crate::error), [`verbose!`](crate::verbose) and
//! [`trace!`](crate::trace).

use crate::bindings::octo::plugin::log::{Level as WitLevel, write as wit_write};

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Detail shown when the user asks for verbose output.
    Verbose,
    /// Normal progress.
    Info,
    /// Something looks wrong but the step goes on.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for WitLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => WitLevel::Trace,
            Level::Verbose => WitLevel::Verbose,
            Level::Info => WitLevel::Info,
            Level::Warn => WitLevel::Warn,
            Level::Error => WitLevel::Error,
        }
    }
}

/// Write one message at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    wit_write(level.into(), message.as_ref());
}

/// Write at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message);
}

/// Write at [`Level::Verbose`].
pub fn verbose(message: impl AsRef<str>) {
    write(Level::Verbose, message);
}

/// Write at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message);
}

/// Write at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message);
}

/// Write at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message);
}
