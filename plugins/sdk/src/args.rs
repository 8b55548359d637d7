//! Typed access to the arguments a step is run with.

use std::fmt;
use std::str::FromStr;

/// The arguments (`name = value` pairs) handed to [`Step::run`](crate::Step::run), after the host
/// applied the defaults from [`Step::describe`](crate::Step::describe) and checked required ones.
///
/// ```
/// # use octo_plugin_sdk::Args;
/// let args = Args::from_pairs([("url", "https://example.com"), ("port", "8080")]);
/// let url = args.required("url")?;                         // &str, must be present and non-empty
/// let port: u16 = args.get("port")?;                       // parsed; names the parameter on error
/// let retries: u32 = args.get_or("retries", 3)?;           // default when missing or empty
/// let note: Option<String> = args.optional("note")?;       // None when missing or empty
/// # assert_eq!((url, port, retries, note), ("https://example.com", 8080, 3, None));
/// # Ok::<(), octo_plugin_sdk::ArgError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Arguments from `(name, value)` pairs; useful in tests.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of `name`, if it was given. Names are matched exactly.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` was given (possibly with an empty value).
    pub fn contains(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// The value of a required text parameter: an error if it is missing or empty (after trimming
    /// whitespace). The value itself is returned untrimmed.
    pub fn required(&self, name: &str) -> Result<&str, ArgError> {
        match self.raw(name) {
            None => Err(ArgError::Missing { name: name.into() }),
            Some(v) if v.trim().is_empty() => Err(ArgError::Empty { name: name.into() }),
            Some(v) => Ok(v),
        }
    }

    /// The value of `name` parsed as `T`: an error if it is missing or does not parse.
    /// For `String` an empty value is fine; use [`Args::required`] to refuse it.
    pub fn get<T: FromArg>(&self, name: &str) -> Result<T, ArgError> {
        match self.raw(name) {
            None => Err(ArgError::Missing { name: name.into() }),
            Some(v) => parse(name, v),
        }
    }

    /// The value of `name` parsed as `T`, or `default` when it is missing or empty.
    pub fn get_or<T: FromArg>(&self, name: &str, default: T) -> Result<T, ArgError> {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// The value of `name` parsed as `T`, or `None` when it is missing or empty.
    pub fn optional<T: FromArg>(&self, name: &str) -> Result<Option<T>, ArgError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => parse(name, v).map(Some),
        }
    }

    /// All arguments in the order the host gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of arguments.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl From<Vec<crate::bindings::octo::plugin::types::Argument>> for Args {
    fn from(args: Vec<crate::bindings::octo::plugin::types::Argument>) -> Self {
        Self::from_pairs(args.into_iter().map(|a| (a.name, a.value)))
    }
}

fn parse<T: FromArg>(name: &str, value: &str) -> Result<T, ArgError> {
    T::from_arg(value).map_err(|reason| ArgError::Invalid {
        name: name.into(),
        value: value.into(),
        expected: T::EXPECTED,
        reason,
    })
}

/// A parameter that is missing or whose value does not parse. The message names the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// The parameter was not given.
    Missing {
        /// Parameter name.
        name: String,
    },
    /// The parameter is required but its value is empty.
    Empty {
        /// Parameter name.
        name: String,
    },
    /// The value does not parse as the expected type.
    Invalid {
        /// Parameter name.
        name: String,
        /// The value as given.
        value: String,
        /// What was expected, e.g. "an integer from 0 to 65535".
        expected: &'static str,
        /// Why parsing failed.
        reason: String,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Missing { name } => {
                write!(f, "parameter '{name}' is required but was not given")
            }
            ArgError::Empty { name } => write!(f, "parameter '{name}' is required but is empty"),
            ArgError::Invalid {
                name,
                value,
                expected,
                reason,
            } => write!(
                f,
                "parameter '{name}' must be {expected}, but is {value:?} ({reason})"
            ),
        }
    }
}

impl std::error::Error for ArgError {}

/// A type a parameter value can be parsed into. Implemented for `String`, `bool`, the integer and
/// float types, `PathBuf` and [`std::time::Duration`] (a number of seconds, fractions allowed).
pub trait FromArg: Sized {
    /// What a valid value looks like, for error messages ("an integer from 0 to 65535").
    const EXPECTED: &'static str;
    /// Parse the value; the error says why it does not parse.
    fn from_arg(value: &str) -> Result<Self, String>;
}

impl FromArg for String {
    const EXPECTED: &'static str = "text";
    fn from_arg(value: &str) -> Result<Self, String> {
        Ok(value.to_owned())
    }
}

impl FromArg for std::path::PathBuf {
    const EXPECTED: &'static str = "a path";
    fn from_arg(value: &str) -> Result<Self, String> {
        Ok(value.into())
    }
}

/// `True`/`False` as Octopus writes them; also `true`/`false`, `yes`/`no`, `1`/`0` (any case).
impl FromArg for bool {
    const EXPECTED: &'static str = "True or False";
    fn from_arg(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err("not a boolean".into()),
        }
    }
}

impl FromArg for std::time::Duration {
    const EXPECTED: &'static str = "a number of seconds";
    fn from_arg(value: &str) -> Result<Self, String> {
        let secs = f64::from_str(value.trim()).map_err(|e| e.to_string())?;
        std::time::Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
    }
}

macro_rules! from_arg_via_from_str {
    ($($t:ty => $expected:expr),* $(,)?) => {$(
        impl FromArg for $t {
            const EXPECTED: &'static str = $expected;
            fn from_arg(value: &str) -> Result<Self, String> {
                <$t>::from_str(value.trim()).map_err(|e| e.to_string())
            }
        }
    )*};
}

from_arg_via_from_str! {
    u8 => "an integer from 0 to 255",
    u16 => "an integer from 0 to 65535",
    u32 => "an integer from 0 to 4294967295",
    u64 => "a non-negative integer",
    u128 => "a non-negative integer",
    usize => "a non-negative integer",
    i8 => "an integer from -128 to 127",
    i16 => "an integer from -32768 to 32767",
    i32 => "an integer from -2147483648 to 2147483647",
    i64 => "an integer",
    i128 => "an integer",
    isize => "an integer",
    f32 => "a number",
    f64 => "a number",
    char => "a single character",
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args::from_pairs([
            ("port", "8080"),
            ("big", "70000"),
            ("empty", ""),
            ("flag", "True"),
            ("wait", "1.5"),
        ])
    }

    #[test]
    fn typed_access() {
        let a = args();
        assert_eq!(a.get::<u16>("port"), Ok(8080));
        assert_eq!(a.get::<bool>("flag"), Ok(true));
        assert_eq!(
            a.get::<std::time::Duration>("wait"),
            Ok(std::time::Duration::from_millis(1500))
        );
        assert_eq!(a.get_or::<u32>("empty", 7), Ok(7));
        assert_eq!(a.get_or::<u32>("absent", 7), Ok(7));
        assert_eq!(a.optional::<u32>("absent"), Ok(None));
        assert_eq!(a.get::<String>("empty"), Ok(String::new()));
    }

    #[test]
    fn errors_name_the_parameter() {
        let a = args();
        assert_eq!(
            a.get::<u16>("big").unwrap_err().to_string(),
            "parameter 'big' must be an integer from 0 to 65535, but is \"70000\" (number too large to fit in target type)"
        );
        assert_eq!(
            a.required("url").unwrap_err().to_string(),
            "parameter 'url' is required but was not given"
        );
        assert_eq!(
            a.required("empty").unwrap_err().to_string(),
            "parameter 'empty' is required but is empty"
        );
        assert!(
            a.get::<bool>("port")
                .unwrap_err()
                .to_string()
                .contains("must be True or False")
        );
    }
}
