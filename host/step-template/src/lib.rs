//! Community step templates in the Octopus Library JSON format.
//!
//! A template is a script step: `ActionType` `Octopus.Script`, a script body in
//! `Properties["Octopus.Action.Script.ScriptBody"]`, a syntax, and parameters with defaults. Octo runs the
//! Bash and Python ones with the built-in run-script plugin; each parameter becomes a deployment variable
//! that the script reads with `get_octopusvariable` or `#{Name}`.
//!
//! This crate only parses and validates; it does no I/O.
#![deny(missing_docs)]

use serde::Deserialize;
use std::collections::BTreeMap;

/// A template that Octo can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTemplate {
    /// The Library id (a GUID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The Library's own revision counter.
    pub version: u64,
    /// Script language: one Octo runs.
    pub syntax: ScriptSyntax,
    /// The script, exactly as in the template.
    pub script_body: String,
    /// Inputs, in template order.
    pub parameters: Vec<TemplateParameter>,
    /// Library category, if given.
    pub category: Option<String>,
}

/// The script languages Octo runs (`Octopus.Action.Script.Syntax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptSyntax {
    /// `Bash`.
    Bash,
    /// `Python`, run with `python3`.
    Python,
}

impl ScriptSyntax {
    /// The syntaxes Octo runs, as a template names them.
    pub const ALL: [ScriptSyntax; 2] = [ScriptSyntax::Bash, ScriptSyntax::Python];

    /// The name a template (and run-script's `Syntax` argument) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptSyntax::Bash => "Bash",
            ScriptSyntax::Python => "Python",
        }
    }

    /// The syntax named `name` (case-insensitive, surrounding spaces ignored), if Octo runs it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

impl std::fmt::Display for ScriptSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParameter {
    /// Variable name the script reads.
    pub name: String,
    /// Form label.
    pub label: String,
    /// Help text.
    pub help_text: String,
    /// Default value; `None` (or empty) means the user must supply one.
    pub default_value: Option<String>,
    /// A `Sensitive` control: masked in logs.
    pub sensitive: bool,
}

impl TemplateParameter {
    /// A parameter without a usable default needs a value from the user.
    pub fn is_required(&self) -> bool {
        self.default_value.as_deref().is_none_or(str::is_empty)
    }
}

/// Why a file is not a template Octo can run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// Not JSON, or a field has the wrong type.
    #[error("not a valid step template JSON file: {0}")]
    Json(String),
    /// A required field is missing or empty.
    #[error("the step template has no {0}")]
    Missing(&'static str),
    /// Another action type, e.g. a package deployment.
    #[error("the step template is a {0} template; only Octopus.Script templates can be run")]
    NotScript(String),
    /// A PowerShell, C# or F# script.
    #[error("the step template's script is {0}; Octo runs Bash and Python scripts only")]
    UnsupportedSyntax(String),
    /// Two parameters with the same name.
    #[error("the step template declares parameter {0:?} twice")]
    DuplicateParameter(String),
    /// The JSON is larger than the host accepts.
    #[error(
        "the step template is {size} bytes, more than the limit of {limit} bytes (limits.maxTemplateBytes)"
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The largest template JSON [`StepTemplate::from_json`] accepts (4 MiB; the community library's
/// largest is about 15 KB).
pub const DEFAULT_MAX_TEMPLATE_BYTES: usize = 4 * 1024 * 1024;

/// Values for running a template, keyed by parameter name.
pub type ParameterValues = BTreeMap<String, String>;

/// Why the given values do not fit the template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// A required parameter has no value.
    #[error("missing required parameter {name} ({label}); pass --param {name}=VALUE")]
    MissingRequired {
        /// Parameter name.
        name: String,
        /// Its label.
        label: String,
    },
    /// A value for a parameter the template does not have.
    #[error("the template has no parameter {name}; it accepts: {accepted}")]
    Unknown {
        /// The name given.
        name: String,
        /// Comma-separated accepted names.
        accepted: String,
    },
}

impl StepTemplate {
    /// Parses a Library-format template and checks that it is a Bash or Python script template. Refuses
    /// JSON larger than [`DEFAULT_MAX_TEMPLATE_BYTES`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, TemplateError> {
        Self::from_json_within(bytes, DEFAULT_MAX_TEMPLATE_BYTES)
    }

    /// [`StepTemplate::from_json`] with another size limit, in bytes.
    pub fn from_json_within(bytes: &[u8], max_bytes: usize) -> Result<Self, TemplateError> {
        if bytes.len() > max_bytes {
            return Err(TemplateError::TooLarge {
                size: bytes.len(),
                limit: max_bytes,
            });
        }
        let raw: RawTemplate =
            serde_json::from_slice(bytes).map_err(|e| TemplateError::Json(e.to_string()))?;
        let action_type = raw
            .action_type
            .ok_or(TemplateError::Missing("ActionType"))?;
        if action_type != "Octopus.Script" {
            return Err(TemplateError::NotScript(action_type));
        }
        let mut properties = raw.properties.unwrap_or_default();
        let script_body = properties
            .remove("Octopus.Action.Script.ScriptBody")
            .and_then(|v| v.into_string())
            .filter(|b| !b.trim().is_empty())
            .ok_or(TemplateError::Missing(
                "script body (Octopus.Action.Script.ScriptBody)",
            ))?;
        let syntax = properties
            .remove("Octopus.Action.Script.Syntax")
            .and_then(|v| v.into_string())
            .unwrap_or_else(|| "PowerShell".to_string()); // Octopus's default when unset
        let syntax = ScriptSyntax::ALL
            .into_iter()
            .find(|s| s.as_str() == syntax)
            .ok_or(TemplateError::UnsupportedSyntax(syntax))?;
        let id = raw
            .id
            .filter(|s| !s.is_empty())
            .ok_or(TemplateError::Missing("Id"))?;
        let name = raw
            .name
            .filter(|s| !s.is_empty())
            .ok_or(TemplateError::Missing("Name"))?;
        let mut parameters = Vec::new();
        for p in raw.parameters.unwrap_or_default() {
            let name = p
                .name
                .filter(|s| !s.is_empty())
                .ok_or(TemplateError::Missing("parameter Name"))?;
            if parameters
                .iter()
                .any(|q: &TemplateParameter| q.name == name)
            {
                return Err(TemplateError::DuplicateParameter(name));
            }
            let sensitive = p
                .display_settings
                .as_ref()
                .and_then(|d| d.get("Octopus.ControlType"))
                .and_then(|v| v.as_str())
                == Some("Sensitive");
            parameters.push(TemplateParameter {
                label: p.label.unwrap_or_else(|| name.clone()),
                name,
                help_text: p.help_text.unwrap_or_default(),
                default_value: p.default_value.and_then(|v| v.into_string()),
                sensitive,
            });
        }
        Ok(StepTemplate {
            id,
            name,
            description: raw.description.unwrap_or_default(),
            version: raw.version.unwrap_or(0),
            syntax,
            script_body,
            parameters,
            category: raw.category,
        })
    }

    /// The variables a run of this template sees: defaults overridden by `given`.
    ///
    /// Refuses names the template does not declare (a typo would otherwise be silently ignored) and
    /// required parameters left without a value.
    pub fn resolve_values(&self, given: &ParameterValues) -> Result<ParameterValues, ValueError> {
        for name in given.keys() {
            if !self.parameters.iter().any(|p| &p.name == name) {
                return Err(ValueError::Unknown {
                    name: name.clone(),
                    accepted: self.parameter_names(),
                });
            }
        }
        let mut values = ParameterValues::new();
        for p in &self.parameters {
            let value = given
                .get(&p.name)
                .cloned()
                .or_else(|| p.default_value.clone().filter(|d| !d.is_empty()));
            match value {
                Some(v) => {
                    values.insert(p.name.clone(), v);
                }
                None => {
                    return Err(ValueError::MissingRequired {
                        name: p.name.clone(),
                        label: p.label.clone(),
                    });
                }
            }
        }
        Ok(values)
    }

    fn parameter_names(&self) -> String {
        if self.parameters.is_empty() {
            return "(no parameters)".into();
        }
        self.parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Property values in the Library are strings, but some exports carry numbers, booleans or null.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Other(serde_json::Value),
}

impl Loose {
    fn into_string(self) -> Option<String> {
        match self {
            Loose::Text(s) => Some(s),
            Loose::Other(serde_json::Value::Null) => None,
            Loose::Other(serde_json::Value::Bool(b)) => {
                Some(if b { "True" } else { "False" }.into())
            }
            Loose::Other(v) => Some(v.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTemplate {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    action_type: Option<String>,
    version: Option<u64>,
    properties: Option<BTreeMap<String, Loose>>,
    parameters: Option<Vec<RawParameter>>,
    category: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawParameter {
    name: Option<String>,
    label: Option<String>,
    help_text: Option<String>,
    default_value: Option<Loose>,
    display_settings: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(extra_props: &str, params: &str) -> String {
        format!(
            r#"{{"Id":"abc","Name":"T","ActionType":"Octopus.Script","Version":3,
                "Properties":{{"Octopus.Action.Script.ScriptBody":"echo hi"{extra_props}}},
                "Parameters":[{params}]}}"#
        )
    }

    #[test]
    fn parses_a_bash_template() {
        let t = StepTemplate::from_json(
            template(
                r#","Octopus.Action.Script.Syntax":"Bash""#,
                r#"{"Name":"a","Label":"A","DefaultValue":"1"},
                   {"Name":"pw","DefaultValue":null,"DisplaySettings":{"Octopus.ControlType":"Sensitive"}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (t.id.as_str(), t.version, t.script_body.as_str()),
            ("abc", 3, "echo hi")
        );
        assert!(!t.parameters[0].is_required() && t.parameters[1].is_required());
        assert!(t.parameters[1].sensitive && !t.parameters[0].sensitive);
    }

    #[test]
    fn parses_a_python_template() {
        let t = StepTemplate::from_json(
            template(r#","Octopus.Action.Script.Syntax":"Python""#, "").as_bytes(),
        )
        .unwrap();
        assert_eq!(t.syntax, ScriptSyntax::Python);
        assert_eq!(t.syntax.to_string(), "Python");
        assert_eq!(ScriptSyntax::parse(" python "), Some(ScriptSyntax::Python));
        assert_eq!(ScriptSyntax::parse("PowerShell"), None);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        assert!(matches!(
            StepTemplate::from_json(b"{"),
            Err(TemplateError::Json(_))
        ));
        assert_eq!(
            StepTemplate::from_json(template("", "").as_bytes()),
            Err(TemplateError::UnsupportedSyntax("PowerShell".into()))
        );
        let err = StepTemplate::from_json(
            template(r#","Octopus.Action.Script.Syntax":"CSharp""#, "").as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the step template's script is CSharp; Octo runs Bash and Python scripts only"
        );
        let pkg =
            br#"{"Id":"x","Name":"x","ActionType":"Octopus.TentaclePackage","Properties":{}}"#;
        assert_eq!(
            StepTemplate::from_json(pkg),
            Err(TemplateError::NotScript("Octopus.TentaclePackage".into()))
        );
        let no_body = br#"{"Id":"x","Name":"x","ActionType":"Octopus.Script","Properties":{"Octopus.Action.Script.Syntax":"Bash"}}"#;
        assert!(matches!(
            StepTemplate::from_json(no_body),
            Err(TemplateError::Missing(_))
        ));
        let dup = template(
            r#","Octopus.Action.Script.Syntax":"Bash""#,
            r#"{"Name":"a"},{"Name":"a"}"#,
        );
        assert_eq!(
            StepTemplate::from_json(dup.as_bytes()),
            Err(TemplateError::DuplicateParameter("a".into()))
        );
    }

    #[test]
    fn refuses_a_template_over_the_size_limit() {
        let ok = template(r#","Octopus.Action.Script.Syntax":"Bash""#, "");
        assert!(StepTemplate::from_json_within(ok.as_bytes(), ok.len()).is_ok());
        let err = StepTemplate::from_json_within(ok.as_bytes(), ok.len() - 1).unwrap_err();
        assert!(matches!(err, TemplateError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("limits.maxTemplateBytes"), "{err}");
        // The default refuses 200 MB before parsing any of it.
        let huge = vec![b' '; 200 << 20];
        assert!(matches!(
            StepTemplate::from_json(&huge),
            Err(TemplateError::TooLarge { .. })
        ));
    }

    #[test]
    fn values_apply_defaults_and_check_required() {
        let t = StepTemplate::from_json(
            template(
                r#","Octopus.Action.Script.Syntax":"Bash""#,
                r#"{"Name":"a","DefaultValue":"1"},{"Name":"b","Label":"Bee"}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let err = t.resolve_values(&ParameterValues::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required parameter b (Bee); pass --param b=VALUE"
        );
        let given = ParameterValues::from([("b".to_string(), "2".to_string())]);
        let values = t.resolve_values(&given).unwrap();
        assert_eq!(values.get("a").map(String::as_str), Some("1"));
        let typo = ParameterValues::from([("c".to_string(), "2".to_string())]);
        assert_eq!(
            t.resolve_values(&typo).unwrap_err().to_string(),
            "the template has no parameter c; it accepts: a, b"
        );
    }

    /// Every real community template shipped beside the project parses.
    #[test]
    fn every_library_template_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/library");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("skipping: {} not found", dir.display());
            return;
        };
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let t = StepTemplate::from_json(&std::fs::read(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(t.syntax, ScriptSyntax::Bash);
                count += 1;
            }
        }
        assert!(
            count >= 30,
            "expected the community library, found {count} templates"
        );
    }
}
