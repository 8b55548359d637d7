//! `octo plugins grant|revoke|grants`: administrator grants (format: see [`octo_outbound::grants`]),
//! in `<home>/grants.toml`, changed under a lock and written atomically (mode 0600) — or, when the
//! home shares a PostgreSQL store with other nodes, in the store's `grants` document (the same TOML
//! text), changed with compare-and-swap (see [`crate::shared`]), so a grant made on one node applies
//! on every node from its next run. The file is imported into the document once (then renamed
//! `grants.toml.imported`).
//!
//! A grant is bound to the component granted: the one installed under the id (its sha256, or — when
//! it came from a signed feed or bundle whose key was recorded — that key, so updates from the same
//! feed keep the grant), or the file / digest the administrator names with `--file` / `--sha256`.
//!
//! A grants file from before grants were bound is bound once, when the server first reads it: each
//! id's grants to the component installed under that id at that moment (with a note in the file); an
//! id with nothing installed stays unbound and its grants apply to nothing until granted again.

use crate::error::{Context, Result};
use crate::home::Home;
use octo_feed::Store;
use octo_manifest::DestinationPattern;
use octo_outbound::grants::GrantEntry;
use octo_outbound::{Binding, ComponentIdentity, GrantsFile};
use std::fmt;
use std::path::Path;

/// The grants; none when the file does not exist. Grants of an older file are bound first (see the
/// module documentation); if that cannot be written they stay unbound (and apply to nothing).
pub fn load(home: &Home) -> Result<GrantsFile> {
    let grants = read(home)?;
    if grants.unbound().next().is_none() {
        return Ok(grants);
    }
    let store = crate::store::existing(home).ok().flatten();
    let migrated = update(home, |g| {
        bind_unbound(g, store.as_ref());
        Ok(g.clone())
    });
    Ok(migrated.unwrap_or(grants))
}

/// The `grants` document of a shared store: the grants file's TOML text.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SharedGrants {
    toml: String,
}

impl crate::shared::Shared for SharedGrants {
    const NAME: &'static str = "grants";

    fn old_file(home: &Home) -> std::path::PathBuf {
        home.grants()
    }

    fn parse_old(bytes: &[u8], path: &Path) -> Result<Self> {
        let toml = String::from_utf8_lossy(bytes).into_owned();
        GrantsFile::parse(&toml).with_context(|| format!("{}", path.display()))?;
        Ok(SharedGrants { toml })
    }
}

impl SharedGrants {
    fn grants(&self) -> Result<GrantsFile> {
        GrantsFile::parse(&self.toml).context("the store's grants document")
    }
}

/// Whether this home keeps its grants in a store shared with other nodes (PostgreSQL).
fn shared(home: &Home) -> Result<bool> {
    Ok(home.load_settings()?.database.is_some())
}

fn read(home: &Home) -> Result<GrantsFile> {
    if shared(home)? {
        return crate::shared::load_in::<SharedGrants>(home)?.grants();
    }
    let path = home.grants();
    match std::fs::read_to_string(&path) {
        Ok(text) => GrantsFile::parse(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GrantsFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Binds each unbound id's grants to what is installed under it now.
fn bind_unbound(grants: &mut GrantsFile, store: Option<&Store>) {
    let ids: Vec<String> = grants.unbound().map(str::to_string).collect();
    let when = octo_fsutil::rfc3339(std::time::SystemTime::now());
    for id in ids {
        if let Some(binding) = installed_binding(store, &id) {
            grants.bind(
                &id,
                &binding,
                &format!(
                    "bound on {when} to the component installed then: the grant was written before grants named their component"
                ),
            );
        }
    }
}

/// The binding for the component installed under `id`: its feed key when it came from a signed
/// feed or bundle that recorded one, else its digest.
fn installed_binding(store: Option<&Store>, id: &str) -> Option<Binding> {
    let lock = store?.get(id).ok().flatten()?;
    Some(match lock.source.signing_key() {
        Some(key) => Binding::SignedBy(key.to_string()),
        None => Binding::Sha256(lock.sha256),
    })
}

/// The component a run is about: its manifest id, its digest, and — when the bytes are exactly what
/// the store installed under that id from a signed feed or bundle — the key that signed it.
pub fn component(store: Option<&Store>, id: &str, bytes: &[u8]) -> ComponentIdentity {
    component_of_digest(store, id, octo_fsutil::sha256_hex(bytes))
}

/// [`component`] of a component whose sha256 (hex) is already known (the runtime computed it when it
/// loaded the component).
pub fn component_of_digest(store: Option<&Store>, id: &str, sha256: String) -> ComponentIdentity {
    let signed_by = store
        .and_then(|s| s.get(id).ok().flatten())
        .filter(|lock| lock.sha256 == sha256 && lock.source.is_signed())
        .and_then(|lock| lock.source.signing_key().map(str::to_string));
    ComponentIdentity {
        id: id.to_string(),
        sha256,
        signed_by,
    }
}

/// Locked read-modify-write of the grants file, or compare-and-swap of the shared document (where `f`
/// may run again on a fresh read); nothing is written if `f` fails.
fn update<T: Send>(
    home: &Home,
    mut f: impl FnMut(&mut GrantsFile) -> Result<T> + Send,
) -> Result<T> {
    if shared(home)? {
        return crate::shared::update_in::<SharedGrants, T>(home, |doc| {
            let mut grants = doc.grants()?;
            let result = f(&mut grants)?;
            doc.toml = grants.to_toml();
            Ok(result)
        });
    }
    let path = home.grants();
    octo_settings::file::with_lock(&path, || {
        let mut grants = read(home)?;
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

/// Which component `octo plugins grant` binds the grant to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget<'a> {
    /// The one installed under the id (`octo plugins list`).
    Installed,
    /// This component file (`--file`); its manifest id must be the id.
    File(&'a Path),
    /// This digest (`--sha256`).
    Sha256(&'a str),
}

/// What `octo plugins grant` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The plugin id.
    pub plugin: String,
    /// The component.
    pub binding: Binding,
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
            writeln!(
                f,
                "Granted {} to plugin {} ({}).",
                self.destination, self.plugin, self.binding
            )?;
        } else {
            writeln!(
                f,
                "Plugin {} ({}) already had {}.",
                self.plugin, self.binding, self.destination
            )?;
        }
        if let Binding::SignedBy(_) = self.binding {
            writeln!(
                f,
                "Note: updates of {} from a feed signed with that key keep the grant; a file or another feed's build does not.",
                self.plugin
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

/// The binding `octo plugins grant` records.
fn binding_for(home: &Home, plugin: &str, target: &GrantTarget<'_>) -> Result<Binding> {
    match target {
        GrantTarget::Sha256(digest) => Ok(Binding::sha256(plugin, digest)?),
        GrantTarget::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let manifest = octo_manifest::read_manifest(&bytes)
                .with_context(|| format!("{}", path.display()))?;
            if manifest.id != plugin {
                bail!(
                    Invalid,
                    "{} is plugin {}, not {plugin}; a grant names the plugin in the component's manifest",
                    path.display(),
                    manifest.id
                );
            }
            Ok(Binding::Sha256(octo_fsutil::sha256_hex(&bytes)))
        }
        GrantTarget::Installed => {
            let store = crate::store::existing(home)?;
            if let Some(binding) = installed_binding(store.as_ref(), plugin) {
                return Ok(binding);
            }
            if let Some(builtin) = octo_builtin_plugins::find(plugin) {
                return Ok(Binding::Sha256(octo_fsutil::sha256_hex(builtin.bytes)));
            }
            bail!(
                NotFound,
                "plugin {plugin} is not installed, so there is no component to bind the grant to; name it with `--file PATH` (the .wasm you will run) or `--sha256 DIGEST`"
            )
        }
    }
}

/// `octo plugins grant ID DESTINATION [--file PATH | --sha256 DIGEST]`.
pub fn grant(
    home: &Home,
    plugin: &str,
    destination: &DestinationPattern,
    target: &GrantTarget<'_>,
) -> Result<Granted> {
    octo_outbound::grants::check_plugin_id(plugin)?;
    let binding = binding_for(home, plugin, target)?;
    let added = update(home, |g| {
        Ok(g.grant(plugin, &binding, destination.clone())?)
    })?;
    let air_gapped = octo_settings::Settings::load(&home.settings()).is_ok_and(|s| s.air_gapped());
    Ok(Granted {
        plugin: plugin.to_string(),
        binding,
        destination: destination.clone(),
        added,
        air_gapped,
    })
}

/// `octo plugins revoke ID DESTINATION`: from every component of that id.
pub fn revoke(home: &Home, plugin: &str, destination: &DestinationPattern) -> Result<()> {
    update(home, |g| {
        if g.revoke(plugin, destination) {
            return Ok(());
        }
        let held: Vec<String> = g
            .iter()
            .filter(|(id, _, _)| *id == plugin)
            .map(|(_, _, p)| p.to_string())
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

/// `octo plugins grants [ID]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantList(pub Vec<GrantEntry>);

/// The grants of every plugin, or of `plugin`.
pub fn list(home: &Home, plugin: Option<&str>) -> Result<GrantList> {
    let grants = load(home)?;
    Ok(GrantList(
        grants
            .entries()
            .iter()
            .filter(|e| plugin.is_none_or(|p| p == e.plugin))
            .cloned()
            .collect(),
    ))
}

/// A binding as `--json` shows it.
pub fn binding_json(binding: &Binding) -> serde_json::Value {
    match binding {
        Binding::Sha256(d) => serde_json::json!({ "sha256": d }),
        Binding::SignedBy(k) => serde_json::json!({ "signedBy": k }),
        Binding::Unbound => serde_json::Value::Null,
    }
}

impl GrantList {
    /// `[{"plugin", "destination", "component", "note"?}]`, one object per destination.
    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .flat_map(|e| {
                e.destinations.iter().map(move |d| {
                    let mut v = serde_json::json!({
                        "plugin": e.plugin,
                        "destination": d.to_string(),
                        "component": binding_json(&e.binding),
                    });
                    if let Some(note) = &e.note {
                        v["note"] = note.clone().into();
                    }
                    v
                })
            })
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
            .map(|e| e.plugin.len())
            .max()
            .unwrap_or(0)
            .max(6);
        writeln!(f, "{:<width$}  DESTINATION  (COMPONENT)", "PLUGIN")?;
        for e in &self.0 {
            for d in &e.destinations {
                writeln!(f, "{:<width$}  {d}  ({})", e.plugin, e.binding)?;
            }
            if e.binding == Binding::Unbound {
                writeln!(
                    f,
                    "{:<width$}  ^ applies to nothing: grant again with `octo plugins grant {} DESTINATION --file PATH`",
                    "", e.plugin
                )?;
            }
            if let Some(note) = &e.note {
                writeln!(f, "{:<width$}  note: {note}", "")?;
            }
        }
        Ok(())
    }
}
