//! What `octo run-step PLUGIN` names: a component file, a template file, or a built-in step.

use anyhow::{Context, bail};
use octo_step_template::StepTemplate;
use std::path::Path;

/// A step to run.
pub enum StepSource {
    /// A component, with where it came from for messages.
    Component { bytes: Vec<u8>, origin: String },
    /// A Library step template, run by run-script.
    Template(StepTemplate),
}

impl StepSource {
    pub fn resolve(name: &str) -> anyhow::Result<Self> {
        let path = Path::new(name);
        if path.is_file() {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let looks_like_json = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
                || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            if looks_like_json {
                let template = StepTemplate::from_json(&bytes)
                    .with_context(|| format!("{}", path.display()))?;
                return Ok(StepSource::Template(template));
            }
            return Ok(StepSource::Component {
                bytes,
                origin: path.display().to_string(),
            });
        }
        if path.exists() {
            bail!("{name} is not a file");
        }
        if let Some(builtin) = octo_builtin_plugins::find(name) {
            return Ok(StepSource::Component {
                bytes: builtin.bytes.to_vec(),
                origin: format!("built-in {}", builtin.id),
            });
        }
        let builtins: Vec<&str> = octo_builtin_plugins::STEPS.iter().map(|p| p.id).collect();
        bail!(
            "no file or built-in step named {name:?}; give a .wasm component, a step template .json file, or one of: {}",
            builtins.join(", ")
        )
    }
}
