//! What `octo run-step PLUGIN` names: a component file, a template file, an installed plugin, a built-in
//! step, or an installed community template — in that order, so an installed version of a built-in step
//! wins over the embedded one (which stays the fallback), and a template never shadows a plugin id.

use crate::error::{Context, Result};
use crate::home::Home;
use octo_feed::Store;
use octo_step_template::StepTemplate;
use std::path::Path;

/// A step to run.
pub enum StepSource {
    /// A component, with where it came from for messages.
    Component {
        /// The component's bytes.
        bytes: Vec<u8>,
        /// Where it came from (`built-in run-script`, a path, `ID VERSION (installed)`).
        origin: String,
    },
    /// A Library step template, run by run-script.
    Template(StepTemplate),
}

impl StepSource {
    /// What `name` names; `store` is the plugin store if there is one (opened once by the caller).
    pub fn resolve(home: &Home, store: Option<&Store>, name: &str) -> Result<Self> {
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
            bail!(Invalid, "{name} is not a file");
        }
        if let Some(installed) = installed_plugin(store, name)? {
            return Ok(installed);
        }
        if let Some(builtin) = octo_builtin_plugins::find(name) {
            return Ok(StepSource::Component {
                bytes: builtin.bytes.to_vec(),
                origin: format!("built-in {}", builtin.id),
            });
        }
        // Last, so a community template can never shadow a plugin id.
        if let Some(template) = crate::library::find_installed(home, name)? {
            return Ok(StepSource::Template(template));
        }
        let builtins: Vec<&str> = octo_builtin_plugins::STEPS.iter().map(|p| p.id).collect();
        bail!(
            NotFound,
            "no file or built-in step named {name:?}, and no installed plugin or template by that name; give a .wasm component, a step template .json file, an id from `octo plugins list` or `octo library list`, or one of: {}",
            builtins.join(", ")
        )
    }

    /// The run-script component that runs templates: the installed one if any, else the embedded one.
    pub fn run_script(store: Option<&Store>) -> Result<(Vec<u8>, String)> {
        let id = octo_builtin_plugins::RUN_SCRIPT.id;
        Ok(match installed_plugin(store, id)? {
            Some(StepSource::Component { bytes, origin }) => (bytes, origin),
            _ => (
                octo_builtin_plugins::RUN_SCRIPT.bytes.to_vec(),
                format!("built-in {id}"),
            ),
        })
    }
}

/// The plugin installed in the store under `id`, with its bytes checked against the lock file's digest.
fn installed_plugin(store: Option<&Store>, id: &str) -> Result<Option<StepSource>> {
    let Some(store) = store else {
        return Ok(None);
    };
    let Some(lock) = store.get(id)? else {
        return Ok(None);
    };
    let bytes = store.read_blob(&lock.sha256)?;
    if octo_fsutil::sha256_hex(&bytes) != lock.sha256 {
        bail!(
            Invalid,
            "the installed {id} {} is corrupt (its sha256 is not {}); run `octo plugins verify`, then reinstall it or `octo plugins rollback {id}`",
            lock.version,
            lock.sha256
        );
    }
    Ok(Some(StepSource::Component {
        bytes,
        origin: format!("{id} {} (installed)", lock.version),
    }))
}
