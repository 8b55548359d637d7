//! What `octo run-step PLUGIN` names: a component file, a template file, an installed plugin, a built-in
//! step, or an installed community template — in that order, so an installed version of a built-in step
//! wins over the embedded one (which stays the fallback), and a template never shadows a plugin id.

use crate::error::{Context, Result};
use crate::home::Home;
use octo_feed::Store;
use octo_step_template::StepTemplate;
use std::borrow::Cow;
use std::path::Path;

/// A step to run.
pub enum StepSource {
    /// A component.
    Component(Component),
    /// A Library step template, run by run-script.
    Template(StepTemplate),
}

/// A component to run, with where it came from for messages.
pub struct Component {
    /// The component's bytes: a built-in's are borrowed from the binary, not copied.
    pub bytes: Cow<'static, [u8]>,
    /// Where it came from (`built-in run-script`, a path, `ID VERSION (installed)`).
    pub origin: String,
    /// Their sha256 (hex) when already known: a built-in's, computed when Octo was built, or an
    /// installed plugin's, checked against its lock entry on reading.
    pub sha256: Option<String>,
}

impl Component {
    fn builtin(builtin: &octo_builtin_plugins::BuiltinPlugin) -> Component {
        Component {
            bytes: Cow::Borrowed(builtin.bytes),
            origin: format!("built-in {}", builtin.id),
            sha256: Some(builtin.sha256.to_owned()),
        }
    }
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
            return Ok(StepSource::Component(Component {
                bytes: Cow::Owned(bytes),
                origin: path.display().to_string(),
                sha256: None,
            }));
        }
        if path.exists() {
            bail!(Invalid, "{name} is not a file");
        }
        if let Some(installed) = installed_plugin(store, name)? {
            return Ok(StepSource::Component(installed));
        }
        if let Some(builtin) = octo_builtin_plugins::find(name) {
            return Ok(StepSource::Component(Component::builtin(&builtin)));
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
    pub fn run_script(store: Option<&Store>) -> Result<Component> {
        let builtin = &octo_builtin_plugins::RUN_SCRIPT;
        Ok(installed_plugin(store, builtin.id)?.unwrap_or_else(|| Component::builtin(builtin)))
    }
}

/// The plugin installed in the store under `id`, with its bytes checked against the lock file's digest.
fn installed_plugin(store: Option<&Store>, id: &str) -> Result<Option<Component>> {
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
    Ok(Some(Component {
        bytes: Cow::Owned(bytes),
        origin: format!("{id} {} (installed)", lock.version),
        sha256: Some(lock.sha256),
    }))
}
