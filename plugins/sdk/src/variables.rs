//! Deployment variables: read them, and publish output variables for later steps.

use crate::bindings::octo::plugin::variables as wit;

/// A deployment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its name, e.g. `Octopus.Environment.Name`.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Whether the value is a secret (the host masks it in logs).
    pub sensitive: bool,
}

/// The value of the deployment variable `name`, or `None` when it is not defined.
pub fn get(name: &str) -> Option<String> {
    wit::get(name)
}

/// Every deployment variable visible to this step.
pub fn all() -> Vec<Variable> {
    wit::all()
        .into_iter()
        .map(|v| Variable {
            name: v.name,
            value: v.value,
            sensitive: v.sensitive,
        })
        .collect()
}

/// Set an output variable that later steps can read.
pub fn set_output(name: &str, value: &str) {
    wit::set_output(name, value, false);
}

/// Set a sensitive output variable: later steps can read it, and the host masks its value in every
/// log line from now on.
pub fn set_sensitive_output(name: &str, value: &str) {
    wit::set_output(name, value, true);
}
