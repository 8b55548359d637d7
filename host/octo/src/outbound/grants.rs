//! `octo plugins grant|revoke|grants`: administrator grants in `<home>/grants.toml` (format: see
//! [`octo_outbound::grants`]), changed under a lock and written atomically (mode 0600).

use crate::home::Home;
use anyhow::{Context, bail};
use clap::Args;
use octo_manifest::DestinationPattern;
use octo_outbound::Grants;
use std::path::PathBuf;
use std::process::ExitCode;

/// The grants file's name in the home.
pub const FILE_NAME: &str = "grants.toml";

/// `<home>/grants.toml`.
pub fn path(home: &Home) -> PathBuf {
    home.root().join(FILE_NAME)
}

/// The grants; none when the file does not exist.
pub fn load(home: &Home) -> anyhow::Result<Grants> {
    let path = path(home);
    match std::fs::read_to_string(&path) {
        Ok(text) => Grants::parse(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Grants::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Locked read-modify-write of the grants file; nothing is written if `f` fails.
fn update<T>(home: &Home, f: impl FnOnce(&mut Grants) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let path = path(home);
    octo_settings::file::with_lock(&path, || {
        let mut grants = load(home)?;
        let result = f(&mut grants)?;
        octo_settings::file::write_private_atomically(&path, grants.to_toml().as_bytes())?;
        Ok(result)
    })
}

/// `octo plugins grant` / `revoke`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The plugin id (as in its manifest).
    #[arg(value_name = "ID")]
    pub plugin: String,
    /// scheme://host[:port]; `*` and `*.domain` wildcards, `:*` for any port.
    #[arg(value_name = "DESTINATION", value_parser = parse_pattern)]
    pub destination: DestinationPattern,
}

/// `octo plugins grants`.
#[derive(Debug, Args)]
pub struct GrantsArgs {
    /// Only this plugin's grants.
    #[arg(value_name = "ID")]
    pub plugin: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_pattern(s: &str) -> Result<DestinationPattern, String> {
    if s.contains("{{") {
        return Err(
            "a grant is a concrete destination; {{parameter}} templates belong in manifests".into(),
        );
    }
    DestinationPattern::parse(s).map_err(|e| e.to_string())
}

/// `octo plugins grant ID DESTINATION`.
pub fn grant(home: &Home, args: GrantArgs) -> anyhow::Result<ExitCode> {
    octo_outbound::grants::check_plugin_id(&args.plugin)?;
    let pattern = args.destination.clone();
    let added = update(home, |g| Ok(g.grant(&args.plugin, pattern)?))?;
    if added {
        println!("Granted {} to plugin {}.", args.destination, args.plugin);
    } else {
        println!("Plugin {} already had {}.", args.plugin, args.destination);
    }
    if octo_settings::Settings::load(&octo_settings::Settings::path_in(home.root()))
        .is_ok_and(|s| s.air_gapped())
    {
        println!(
            "Note: this server is air-gapped, so plugins' requests stay denied until `octo configure --airGapped=false`."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `octo plugins revoke ID DESTINATION`.
pub fn revoke(home: &Home, args: GrantArgs) -> anyhow::Result<ExitCode> {
    update(home, |g| {
        if g.revoke(&args.plugin, &args.destination) {
            return Ok(());
        }
        let held: Vec<String> = g
            .for_plugin(&args.plugin)
            .iter()
            .map(ToString::to_string)
            .collect();
        if held.is_empty() {
            bail!("plugin {} has no grants", args.plugin);
        }
        bail!(
            "plugin {} has no grant {}; its grants: {}",
            args.plugin,
            args.destination,
            held.join(", ")
        )
    })?;
    println!("Revoked {} from plugin {}.", args.destination, args.plugin);
    Ok(ExitCode::SUCCESS)
}

/// `octo plugins grants [ID] [--json]`.
pub fn list(home: &Home, args: GrantsArgs) -> anyhow::Result<ExitCode> {
    let grants = load(home)?;
    let rows: Vec<(&str, String)> = grants
        .iter()
        .filter(|(id, _)| args.plugin.as_deref().is_none_or(|p| p == *id))
        .map(|(id, p)| (id, p.to_string()))
        .collect();
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(id, d)| serde_json::json!({ "plugin": id, "destination": d }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if rows.is_empty() {
        println!(
            "No grants. Built-in steps need none; grant others with `octo plugins grant ID DESTINATION`."
        );
    } else {
        let width = rows
            .iter()
            .map(|(id, _)| id.len())
            .max()
            .unwrap_or(0)
            .max(6);
        println!("{:<width$}  DESTINATION", "PLUGIN");
        for (id, d) in &rows {
            println!("{id:<width$}  {d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
