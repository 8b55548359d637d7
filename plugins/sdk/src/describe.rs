//! What [`Step::describe`](crate::Step::describe) returns: a name, a description and parameters.

use crate::bindings::octo::plugin::types as wit;

/// Metadata for a step: its name, what it does and the parameters it takes.
///
/// ```
/// # use octo_plugin_sdk::{Description, Param};
/// let d = Description::new("HTTP health check")
///     .description("GET a URL until it returns the expected status")
///     .param(Param::new("url").label("URL").help("The address to check").required())
///     .param(Param::new("expectedStatus").default("200"));
/// # assert_eq!(d.params().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    name: String,
    description: String,
    params: Vec<Param>,
}

impl Description {
    /// A description with the step's display name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// What the step does. When left empty, [`step!`](crate::step) fills in the manifest's
    /// `description`.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Add a parameter.
    pub fn param(mut self, param: Param) -> Self {
        self.params.push(param);
        self
    }

    /// The parameters added so far.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    #[doc(hidden)]
    pub fn into_wit(mut self, fallback_description: &str) -> wit::StepDescription {
        if self.description.is_empty() {
            self.description = fallback_description.to_owned();
        }
        wit::StepDescription {
            name: self.name,
            description: self.description,
            parameters: self.params.into_iter().map(Param::into_wit).collect(),
        }
    }
}

/// One parameter of a step. The label defaults to the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    name: String,
    label: String,
    help: String,
    default: Option<String>,
    required: bool,
    sensitive: bool,
}

impl Param {
    /// A parameter called `name` (the name used on the command line and in `#{name}`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            label: String::new(),
            help: String::new(),
            default: None,
            required: false,
            sensitive: false,
        }
    }

    /// The short label shown in a form.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Longer help text.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// The value used when none is given.
    pub fn default(mut self, value: impl ToString) -> Self {
        self.default = Some(value.to_string());
        self
    }

    /// The step cannot run without a value.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The value is a secret: the host masks it in every log line.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn into_wit(self) -> wit::Parameter {
        wit::Parameter {
            label: if self.label.is_empty() {
                self.name.clone()
            } else {
                self.label
            },
            name: self.name,
            help_text: self.help,
            default_value: self.default,
            required: self.required,
            sensitive: self.sensitive,
        }
    }
}
