//! `octo plugins grant|revoke|grants`: administrator grants in `<home>/grants.toml` (format: see
//! [`octo_outbound::grants`]), changed under a lock and written atomically (mode 0600).

use crate::error::{Context, Result};
use crate::home::Home;
use octo_manifest::DestinationPattern;
use octo_outbound::Grants;
use std::fmt;

/// The grants; none when the file does not exist.
pub fn load(home: &Home) -> Result<Grants> {
    let path = home.grants();
    match std::fs::read_to_string(&path) {
        Ok(text) => Grants::parse(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Grants::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Locked read-modify-write of the grants file; nothing is written if `f` fails.
fn update<T>(home: &Home, f: impl FnOnce(&mut Grants) -> Result<T>) -> Result<T> {
    let path = home.grants();
    octo_settings::file::with_lock(&path, || {
        let mut grants = load(home)?;
        let result = f(&mut grants)?;
        octo_settings::file::write_private_atomically(&path, grants.to_toml().as_bytes())?;
        Ok(result)
    })
}

/// A grant as given on the command line: a concrete destination pattern, never a template.
pub fn parse_pattern(s: &str) -> std::result::Result<DestinationPattern, String> {
    if s.contains("{{") {
        return Err(
            "a grant is a concrete destination; {{parameter}} templates belong in manifests".into(),
        );
    }
    DestinationPattern::parse(s).map_err(|e| e.to_string())
}

/// What `octo plugins grant` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The plugin id.
    pub plugin: String,
    /// The destination.
    pub destination: DestinationPattern,
    /// False when the plugin already had it.
    pub added: bool,
    /// The server is air-gapped, so the grant counts only inside the internal networks for now.
    pub air_gapped: bool,
}

impl fmt::Display for Granted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.added {
            writeln!(f, "Granted {} to plugin {}.", self.destination, self.plugin)?;
        } else {
            writeln!(
                f,
                "Plugin {} already had {}.",
                self.plugin, self.destination
            )?;
        }
        if self.air_gapped {
            writeln!(
                f,
                "Note: this server is air-gapped, so the grant counts only inside its internal networks (`octo outbound` shows them; `octo configure --airGapped=false` lifts the air gap)."
            )?;
        }
        Ok(())
    }
}

/// `octo plugins grant ID DESTINATION`.
pub fn grant(home: &Home, plugin: &str, destination: &DestinationPattern) -> Result<Granted> {
    octo_outbound::grants::check_plugin_id(plugin)?;
    let pattern = destination.clone();
    let added = update(home, |g| Ok(g.grant(plugin, pattern)?))?;
    let air_gapped = octo_settings::Settings::load(&home.settings()).is_ok_and(|s| s.air_gapped());
    Ok(Granted {
        plugin: plugin.to_string(),
        destination: destination.clone(),
        added,
        air_gapped,
    })
}

/// `octo plugins revoke ID DESTINATION`.
pub fn revoke(home: &Home, plugin: &str, destination: &DestinationPattern) -> Result<()> {
    update(home, |g| {
        if g.revoke(plugin, destination) {
            return Ok(());
        }
        let held: Vec<String> = g
            .for_plugin(plugin)
            .iter()
            .map(ToString::to_string)
            .collect();
        if held.is_empty() {
            bail!(NotFound, "plugin {plugin} has no grants");
        }
        bail!(
            NotFound,
            "plugin {plugin} has no grant {destination}; its grants: {}",
            held.join(", ")
        )
    })
}

/// `octo plugins grants [ID]`: `(plugin, destination)` rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantList(pub Vec<(String, String)>);

/// The grants of every plugin, or of `plugin`.
pub fn list(home: &Home, plugin: Option<&str>) -> Result<GrantList> {
    let grants = load(home)?;
    Ok(GrantList(
        grants
            .iter()
            .filter(|(id, _)| plugin.is_none_or(|p| p == *id))
            .map(|(id, p)| (id.to_string(), p.to_string()))
            .collect(),
    ))
}

impl GrantList {
    /// `[{"plugin", "destination"}]`.
    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(id, d)| serde_json::json!({ "plugin": id, "destination": d }))
            .collect()
    }
}

impl fmt::Display for GrantList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "No grants. Built-in steps need none; grant others with `octo plugins grant ID DESTINATION`."
            );
        }
        let width = self
            .0
            .iter()
            .map(|(id, _)| id.len())
            .max()
            .unwrap_or(0)
            .max(6);
        writeln!(f, "{:<width$}  DESTINATION", "PLUGIN")?;
        for (id, d) in &self.0 {
            writeln!(f, "{id:<width$}  {d}")?;
        }
        Ok(())
    }
}
