//! Service messages: how a script talks back to the host through its standard output.
//!
//! The Bash helpers that run-script defines (`set_octopusvariable`, `fail_step`, `new_octopusartifact`,
//! `write_verbose`, ...) print lines such as
//! `##octopus[setVariable name='QmFy' value='MQ==']`, attribute values being base64 of UTF-8 text. The host
//! parses every stdout line with [`parse_line`]; anything that is not a service message is ordinary
//! output.
#![deny(missing_docs)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const PREFIX: &str = "##octopus[";

/// A message a script sent to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMessage {
    /// `set_octopusvariable NAME VALUE [-sensitive]`: an output variable.
    SetVariable {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
        /// Masked in logs from now on.
        sensitive: bool,
    },
    /// `fail_step MESSAGE`: the message shown as the step's failure reason.
    ResultMessage {
        /// The text.
        message: String,
    },
    /// `new_octopusartifact PATH [NAME]`: a file to keep after the step.
    CreateArtifact {
        /// Path as the script gave it (absolute when it comes from the helper).
        path: String,
        /// Display name.
        name: String,
    },
    /// `##octopus[stdout-verbose]` and friends: the level of the following output lines.
    OutputLevel(OutputLevel),
    /// A well-formed message this host does not act on (kept so it can be logged at verbose level).
    Other {
        /// The message name.
        name: String,
    },
}

/// Level applied to ordinary output lines after a level switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLevel {
    /// `stdout-verbose`.
    Verbose,
    /// `stdout-default`: back to normal.
    Default,
    /// `stdout-highlight`.
    Highlight,
    /// `stdout-wait` (Python's `printwait`): shown as ordinary output.
    Wait,
    /// `stdout-warning`.
    Warning,
    /// `stdout-error`.
    Error,
}

/// Parses one output line; `None` when it is not a service message.
///
/// Attribute values are base64; a value that does not decode is kept as written rather than dropped.
pub fn parse_line(line: &str) -> Option<ServiceMessage> {
    let line = line.trim_end_matches(['\r', '\n']).trim_start();
    let body = line.strip_prefix(PREFIX)?.strip_suffix(']')?;
    let (name, rest) = match body.split_once(char::is_whitespace) {
        Some((n, r)) => (n, r),
        None => (body, ""),
    };
    if name.is_empty() {
        return None;
    }
    let attrs = parse_attributes(rest)?;
    let get = |key: &str| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let message = match name {
        "setVariable" => ServiceMessage::SetVariable {
            name: get("name")?,
            value: get("value").unwrap_or_default(),
            sensitive: get("sensitive").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        },
        "resultMessage" => ServiceMessage::ResultMessage {
            message: get("message").unwrap_or_default(),
        },
        "createArtifact" => {
            let path = get("path")?;
            let name = get("name")
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| basename(&path).to_string());
            ServiceMessage::CreateArtifact { path, name }
        }
        "stdout-verbose" => ServiceMessage::OutputLevel(OutputLevel::Verbose),
        "stdout-default" => ServiceMessage::OutputLevel(OutputLevel::Default),
        "stdout-highlight" => ServiceMessage::OutputLevel(OutputLevel::Highlight),
        "stdout-wait" => ServiceMessage::OutputLevel(OutputLevel::Wait),
        "stdout-warning" => ServiceMessage::OutputLevel(OutputLevel::Warning),
        "stdout-error" => ServiceMessage::OutputLevel(OutputLevel::Error),
        other => ServiceMessage::Other {
            name: other.to_string(),
        },
    };
    Some(message)
}

/// Encodes a value the way the helpers do, for tests and for hosts that emit messages themselves.
pub fn encode_value(value: &str) -> String {
    STANDARD.encode(value.as_bytes())
}

/// `key='base64' key2='base64'`; `None` if malformed (then the line is treated as plain output).
fn parse_attributes(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(attrs);
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim();
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let inner = &after[1..];
        let end = inner.find(quote)?;
        attrs.push((key.to_string(), decode(&inner[..end])));
        rest = &inner[end + 1..];
    }
}

fn decode(raw: &str) -> String {
    STANDARD
        .decode(raw.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| raw.to_string())
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> String {
        encode_value(s)
    }

    #[test]
    fn set_variable() {
        let line = format!(
            "##octopus[setVariable name='{}' value='{}']",
            b("Result"),
            b("a b=c")
        );
        assert_eq!(
            parse_line(&line),
            Some(ServiceMessage::SetVariable {
                name: "Result".into(),
                value: "a b=c".into(),
                sensitive: false
            })
        );
        let line = format!(
            "##octopus[setVariable name='{}' value='{}' sensitive='{}']\r",
            b("Pw"),
            b("s3"),
            b("True")
        );
        assert!(matches!(
            parse_line(&line),
            Some(ServiceMessage::SetVariable {
                sensitive: true,
                ..
            })
        ));
        // An empty value is legal (base64 of "" is "").
        let line = format!("##octopus[setVariable name='{}' value='']", b("Empty"));
        assert!(
            matches!(parse_line(&line), Some(ServiceMessage::SetVariable { ref value, .. }) if value.is_empty())
        );
    }

    #[test]
    fn result_and_artifact() {
        let line = format!(
            "##octopus[resultMessage message='{}']",
            b("Disk full — ünïcode")
        );
        assert_eq!(
            parse_line(&line),
            Some(ServiceMessage::ResultMessage {
                message: "Disk full — ünïcode".into()
            })
        );
        let line = format!(
            "##octopus[createArtifact path='{}' name='{}']",
            b("/w/out.txt"),
            b("")
        );
        assert_eq!(
            parse_line(&line),
            Some(ServiceMessage::CreateArtifact {
                path: "/w/out.txt".into(),
                name: "out.txt".into()
            })
        );
    }

    #[test]
    fn level_switches_and_unknown() {
        assert_eq!(
            parse_line("##octopus[stdout-verbose]"),
            Some(ServiceMessage::OutputLevel(OutputLevel::Verbose))
        );
        assert_eq!(
            parse_line("##octopus[stdout-default]\n"),
            Some(ServiceMessage::OutputLevel(OutputLevel::Default))
        );
        assert_eq!(
            parse_line("##octopus[stdout-wait]"),
            Some(ServiceMessage::OutputLevel(OutputLevel::Wait))
        );
        assert_eq!(
            parse_line("##octopus[progress percentage='NTA=']"),
            Some(ServiceMessage::Other {
                name: "progress".into()
            })
        );
    }

    #[test]
    fn ordinary_output_is_not_a_message() {
        for line in [
            "hello",
            "##octopus",
            "##octopus[]",
            "##octopus[setVariable name='x'",
            "echo ##octopus[stdout-verbose]",
            "##octopus[setVariable name=unquoted]",
            "##octopus[setVariable value='eA==']",
        ] {
            assert_eq!(parse_line(line), None, "{line}");
        }
    }

    #[test]
    fn undecodable_values_are_kept_verbatim() {
        assert_eq!(
            parse_line("##octopus[resultMessage message='not base64!']"),
            Some(ServiceMessage::ResultMessage {
                message: "not base64!".into()
            })
        );
    }
}
