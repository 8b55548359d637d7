//! The crate's one error type.
//!
//! Callers match on the cause ([`Error::NotFound`], [`Error::Invalid`], [`Error::Denied`], the lower
//! crates' own errors); the binary prints the chain of [`std::error::Error::source`]s on one line.
//! [`Context`] adds what was being done (`cannot read the settings: ...`) without losing the cause.

use std::io;

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a service of octo-server can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something named does not exist: a target, a plugin, a job, a template, a proxy, a file.
    #[error("{0}")]
    NotFound(String),
    /// Input that is not acceptable: a flag value, a name, a spec, a bundle, a component.
    #[error("{0}")]
    Invalid(String),
    /// The outbound policy said no: no request was made.
    #[error("{0}")]
    Denied(String),
    /// Something did not work out: a plugin run, a feed answer, the daemon.
    #[error("{0}")]
    Failed(String),
    /// A file system operation failed.
    #[error("{what}")]
    Io {
        /// What was being done (`cannot read /x`).
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The settings file.
    #[error(transparent)]
    Settings(#[from] octo_settings::SettingsError),
    /// The steps feed, the library feed, or their HTTP client.
    #[error(transparent)]
    Feed(#[from] octo_feed::ClientError),
    /// The feed index (resolution, parsing).
    #[error(transparent)]
    Index(#[from] octo_feed::IndexError),
    /// A feed signature.
    #[error(transparent)]
    Signature(#[from] octo_feed::SignatureError),
    /// The plugin store.
    #[error(transparent)]
    Store(#[from] octo_feed::StoreError),
    /// A component's manifest.
    #[error(transparent)]
    Manifest(#[from] octo_manifest::ManifestError),
    /// A component's `octo:manifest` section.
    #[error(transparent)]
    Section(#[from] octo_manifest::SectionError),
    /// A component the plugin runtime cannot load.
    #[error(transparent)]
    Load(#[from] octo_runtime::LoadError),
    /// Administrator grants.
    #[error(transparent)]
    Grants(#[from] octo_outbound::grants::GrantsError),
    /// A step template.
    #[error(transparent)]
    Template(#[from] octo_step_template::TemplateError),
    /// Parameter values for a step template.
    #[error(transparent)]
    TemplateValues(#[from] octo_step_template::ValueError),
    /// The server's identity.
    #[error(transparent)]
    Identity(#[from] octo_comms::identity::IdentityError),
    /// The task store (SQLite or PostgreSQL).
    #[error(transparent)]
    Tasks(#[from] octo_store::Error),
    /// JSON that could not be read or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// What was being done, and the cause.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// Any other error of a lower crate.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Io {
            what: source.to_string(),
            source,
        }
    }
}

impl Error {
    /// Any error of a lower crate that has no variant of its own.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        match boxed.downcast::<Error>() {
            Ok(mine) => *mine,
            Err(other) => Error::Other(other),
        }
    }

    /// Wraps `self` with what was being done. An I/O error without a description takes it as its own.
    pub fn context(self, context: impl Into<String>) -> Self {
        let context = context.into();
        match self {
            Error::Io { what, source } if what == source.to_string() => Error::Io {
                what: context,
                source,
            },
            other => Error::Context {
                context,
                source: Box::new(other),
            },
        }
    }

    /// The innermost error of this crate (below every [`Error::Context`]).
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// The error and its causes on one line, `a: b: c` (a cause already contained in an earlier part is
    /// left out).
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// Any error and its causes on one line, `a: b: c`.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// `.context(..)` and `.with_context(|| ..)` on results and options, as the binary's anyhow has them.
pub trait Context<T> {
    /// Adds what was being done.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Adds what was being done, computed only on failure.
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// A missing value is [`Error::NotFound`], with the context as its message.
impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::NotFound(context.into()))
    }

    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::NotFound(f().into()))
    }
}

/// `bail!(Invalid, "format", args)`: returns `Err(Error::Invalid(format!(..)))`.
#[macro_export]
#[doc(hidden)]
macro_rules! bail {
    ($variant:ident, $($arg:tt)+) => {
        return Err($crate::Error::$variant(format!($($arg)+)))
    };
}

/// `err!(Invalid, "format", args)`: `Error::Invalid(format!(..))`.
#[macro_export]
#[doc(hidden)]
macro_rules! err {
    ($variant:ident, $($arg:tt)+) => {
        $crate::Error::$variant(format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_cause_on_one_line() {
        let e: Result<()> =
            Err(io::Error::new(io::ErrorKind::NotFound, "gone")).with_context(|| "cannot read /x");
        let e = e.unwrap_err();
        assert!(matches!(&e, Error::Io { what, .. } if what == "cannot read /x"));
        assert_eq!(e.one_line(), "cannot read /x: gone");
        let e = e.context("cannot start");
        assert_eq!(e.one_line(), "cannot start: cannot read /x: gone");
        assert!(matches!(e.root(), Error::Io { .. }));
        let missing: Result<u8> = None.context("no target named \"x\"");
        assert!(matches!(missing, Err(Error::NotFound(m)) if m == "no target named \"x\""));
    }
}
