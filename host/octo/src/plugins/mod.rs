//! The plugin lifecycle: `octo plugins search|list|install|update|remove|rollback|verify|export|import`.
//!
//! Plugins live in octo-feed's content-addressed [`Store`] under `<home>/plugins` (`blobs/sha256/<hex>` +
//! `plugins.lock`). Everything that reaches the steps feed goes through [`crate::remote::StepsFeed`].
//!
//! - [`install`]: one verified install (feed entry, local file), the checks every component passes.
//! - [`update`]: picking newer versions; `plugins update` and the built-in step template updates job.
//! - [`bundle`]: offline bundles for air-gapped servers (`export` / `import`).

pub mod bundle;
pub mod install;
pub mod update;

use crate::home::Home;
use anyhow::Context;
use clap::{Args, Subcommand};
use octo_feed::Store;
use octo_feed::store::LockEntry;
use octo_manifest::{Capability, Manifest};
use octo_settings::Settings;
use semver::{Version, VersionReq};
use std::path::PathBuf;
use std::process::ExitCode;

/// The plugin lifecycle subcommands (added to `octo plugins`).
#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Search the steps feed (id and description contain TEXT; all plugins without it).
    Search(SearchArgs),
    /// List installed plugins, and the built-in ones still used from the binary.
    List(ListArgs),
    /// Install a plugin from the steps feed (ID or ID@REQUIREMENT), or a local component (--file).
    Install(InstallArgs),
    /// Update installed plugins (or one) to the newest version their requirement allows.
    Update(UpdateArgs),
    /// Uninstall a plugin (a built-in step falls back to the embedded version).
    Remove(IdArgs),
    /// Go back to the version an install or update replaced (again: forward).
    Rollback(IdArgs),
    /// Re-hash every installed component (current and previous versions).
    Verify,
    /// Write an offline bundle (components + the signed feed index) for an air-gapped server.
    Export(ExportArgs),
    /// Install the plugins of an offline bundle, checked against the pinned feed key.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Text to look for in ids and descriptions (case-insensitive).
    pub text: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// ID, ID@REQUIREMENT (semver, e.g. run-script@^0.1) or ID@VERSION (exactly that version).
    #[arg(value_name = "ID[@REQ]", required_unless_present = "file", conflicts_with = "file", value_parser = parse_spec)]
    pub spec: Option<PluginSpec>,
    /// Install this local component (.wasm with an octo:manifest section) instead.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Only this plugin.
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The plugin id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundle directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// What to put in (ID or ID@REQ); default: the newest version of every plugin in the feed.
    #[arg(value_name = "ID[@REQ]", value_parser = parse_spec)]
    pub specs: Vec<PluginSpec>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A bundle directory written by `octo plugins export`.
    pub dir: PathBuf,
}

/// `ID[@REQ]` from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Plugin id.
    pub id: String,
    /// The requirement, if one was given; a bare `X.Y.Z` means exactly that version (`=X.Y.Z`).
    pub requirement: Option<VersionReq>,
}

/// Parses `ID`, `ID@REQ` or `ID@X.Y.Z`.
pub fn parse_spec(s: &str) -> Result<PluginSpec, String> {
    let (id, req) = match s.split_once('@') {
        Some((id, req)) => (id.trim(), Some(req.trim())),
        None => (s.trim(), None),
    };
    if id.is_empty() {
        return Err(format!(
            "expected ID or ID@REQUIREMENT (e.g. run-script@^0.1), got {s:?}"
        ));
    }
    let requirement = match req {
        None => None,
        Some(req) => {
            Some(if let Ok(exact) = Version::parse(req) {
                VersionReq::parse(&format!("={exact}")).map_err(|e| e.to_string())?
            } else {
                VersionReq::parse(req)
                .map_err(|e| format!("{req:?} is not a semver requirement (e.g. ^0.1, ~1.2, >=1.0, <2, 1.2.3): {e}"))?
            })
        }
    };
    Ok(PluginSpec {
        id: id.to_string(),
        requirement,
    })
}

/// The settings, from `<home>/octo.toml` (all defaults if it is missing).
pub fn load_settings(home: &Home) -> anyhow::Result<Settings> {
    let path = Settings::path_in(home.root());
    Settings::load(&path).context("cannot read the settings")
}

/// The plugin store, `<home>/plugins`.
pub fn open_store(home: &Home) -> anyhow::Result<Store> {
    let root = home.private_dir("plugins")?;
    Store::open(&root).context("cannot open the plugin store")
}

/// The store if it exists, without creating it (for read-only callers such as `run-step`).
pub fn existing_store(home: &Home) -> anyhow::Result<Option<Store>> {
    let root = home.root().join("plugins");
    if !root.join("plugins.lock").is_file() {
        return Ok(None);
    }
    Ok(Some(
        Store::open(&root).context("cannot open the plugin store")?,
    ))
}

/// Whether an installed plugin came through a signed feed index or a signed bundle (its bytes were
/// checked against the pinned key's index). `install --file` entries did not: they are local and unsigned,
/// and must not be trusted like a feed-installed built-in (e.g. by the outbound policy).
pub fn from_signed_source(lock: &LockEntry) -> bool {
    !lock.source.starts_with("file:")
}

/// The requirement "compatible with `v`": same major; for 0.x the same minor (semver's caret).
pub fn compatible_with(v: &Version) -> VersionReq {
    VersionReq::parse(&format!("^{v}")).unwrap_or(VersionReq::STAR)
}

/// The embedded version of a built-in plugin.
pub fn builtin_version(builtin: &octo_builtin_plugins::BuiltinPlugin) -> Option<Version> {
    octo_manifest::read_manifest(builtin.bytes)
        .ok()
        .map(|m| m.version)
}

pub fn run(home: &Home, command: LifecycleCommand) -> anyhow::Result<ExitCode> {
    match command {
        LifecycleCommand::Search(args) => search(home, args),
        LifecycleCommand::List(args) => list(home, args),
        LifecycleCommand::Install(args) => install::command(home, args),
        LifecycleCommand::Update(args) => update::command(home, args),
        LifecycleCommand::Remove(args) => remove(home, &args.id),
        LifecycleCommand::Rollback(args) => rollback(home, &args.id),
        LifecycleCommand::Verify => verify(home),
        LifecycleCommand::Export(args) => bundle::export(home, args),
        LifecycleCommand::Import(args) => bundle::import(home, args),
    }
}

/// What `install` prints about a plugin: what it is, what it may reach, what it may do.
pub fn describe_manifest(manifest: &Manifest) -> String {
    let mut out = String::new();
    if !manifest.description.is_empty() {
        out.push_str(&format!("  {}\n", manifest.description));
    }
    out.push_str(&format!(
        "  kind: {}, plugin API {}\n",
        manifest.kind, manifest.api_version
    ));
    if manifest.outbound.is_empty() {
        out.push_str("  outbound destinations: none (it cannot reach the network)\n");
    } else {
        out.push_str("  outbound destinations it declares (each still needs the outbound policy's consent):\n");
        for d in &manifest.outbound {
            out.push_str(&format!("    {d}\n"));
        }
    }
    if manifest.capabilities.is_empty() {
        out.push_str("  capabilities: none beyond the sandbox\n");
    } else {
        let caps: Vec<&str> = manifest
            .capabilities
            .iter()
            .map(|c| match c {
                Capability::Process => "process (runs commands on the machine that runs the step)",
            })
            .collect();
        out.push_str(&format!("  capabilities: {}\n", caps.join(", ")));
    }
    out
}

fn search(home: &Home, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let settings = load_settings(home)?;
    let feed = crate::remote::StepsFeed::open(home, &settings)?;
    let fetched = crate::remote::block_on(feed.fetch_index())??;
    let installed = existing_store(home)?
        .map(|s| s.list())
        .transpose()?
        .unwrap_or_default();
    let needle = args.text.as_deref().unwrap_or("").to_lowercase();
    let mut rows = Vec::new();
    for plugin in &fetched.index.plugins {
        let newest = plugin
            .versions
            .iter()
            .filter(|e| !e.yanked)
            .max_by(|a, b| a.version.cmp(&b.version));
        let description = newest
            .map(|e| e.manifest.description.clone())
            .unwrap_or_default();
        if !needle.is_empty()
            && !plugin.id.to_lowercase().contains(&needle)
            && !description.to_lowercase().contains(&needle)
        {
            continue;
        }
        rows.push(serde_json::json!({
            "id": plugin.id,
            "latest": newest.map(|e| e.version.to_string()),
            "kind": newest.map(|e| e.manifest.kind.to_string()),
            "apiVersion": newest.map(|e| e.manifest.api_version.to_string()),
            "supported": newest.is_some_and(|e| e.manifest.check_api_version().is_ok()),
            "versions": plugin.versions.iter().map(|e| serde_json::json!({
                "version": e.version.to_string(), "yanked": e.yanked
            })).collect::<Vec<_>>(),
            "installed": installed.get(&plugin.id).map(|l| l.version.to_string()),
            "description": description,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no plugin in {} matches {:?}",
            feed.url(),
            args.text.unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![[
        "ID".to_string(),
        "LATEST".into(),
        "INSTALLED".into(),
        "DESCRIPTION".into(),
    ]];
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let mut latest = s("latest");
        if !r["supported"].as_bool().unwrap_or(false) && r["latest"].is_string() {
            latest.push_str(&format!(" (needs API {})", s("apiVersion")));
        }
        table.push([s("id"), latest, s("installed"), s("description")]);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

fn list(home: &Home, args: ListArgs) -> anyhow::Result<ExitCode> {
    let installed = existing_store(home)?
        .map(|s| s.list())
        .transpose()?
        .unwrap_or_default();
    let mut rows: Vec<serde_json::Value> =
        installed.iter().map(|(id, e)| lock_json(id, e)).collect();
    for builtin in octo_builtin_plugins::STEPS {
        if !installed.contains_key(builtin.id) {
            rows.push(serde_json::json!({
                "id": builtin.id,
                "version": builtin_version(builtin).map(|v| v.to_string()),
                "kind": "step",
                "source": "built-in (embedded)",
                "requirement": null,
                "previous": null,
                "installedAt": null,
                "sha256": octo_feed::sha256_hex(builtin.bytes),
                "signed": true,
            }));
        }
    }
    rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![[
        "ID".to_string(),
        "VERSION".into(),
        "KIND".into(),
        "PREVIOUS".into(),
        "SOURCE".into(),
    ]];
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let mut source = s("source");
        if r["signed"] == false {
            source.push_str(" (unsigned)");
        }
        table.push([
            s("id"),
            s("version"),
            s("kind"),
            r["previous"]["version"].as_str().unwrap_or("-").to_string(),
            source,
        ]);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

fn lock_json(id: &str, e: &LockEntry) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "version": e.version.to_string(),
        "kind": e.kind.to_string(),
        "source": e.source,
        "requirement": e.requirement.to_string(),
        "sha256": e.sha256,
        "previous": e.previous.as_ref().map(|p| serde_json::json!({
            "version": p.version.to_string(), "sha256": p.sha256, "source": p.source
        })),
        "installedAt": e.installed_at,
        "signed": from_signed_source(e),
    })
}

fn remove(home: &Home, id: &str) -> anyhow::Result<ExitCode> {
    let store = open_store(home)?;
    let removed = match store.remove(id) {
        Ok(removed) => removed,
        Err(octo_feed::StoreError::NotInstalled(_)) if octo_builtin_plugins::find(id).is_some() => {
            anyhow::bail!(
                "plugin {id} is not installed: the built-in {id} embedded in this binary is in use, and it cannot be removed"
            )
        }
        Err(e) => return Err(e.into()),
    };
    // Free what nothing references any more (blobs younger than the store's grace period stay).
    if let Err(e) = store.gc() {
        tracing::warn!(error = %e, "cleaning the plugin store failed");
    }
    print!("removed {id} {}", removed.version);
    if octo_builtin_plugins::find(id).is_some() {
        print!("; the built-in {id} embedded in this binary is used again");
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

fn rollback(home: &Home, id: &str) -> anyhow::Result<ExitCode> {
    let store = open_store(home)?;
    let before = store.get(id)?;
    let rolled = store
        .rollback(id)
        .with_context(|| format!("cannot roll back {id}"))?;
    println!(
        "rolled back {id} from {} to {} (run `octo plugins rollback {id}` again to return to {})",
        before.map(|b| b.version.to_string()).unwrap_or_default(),
        rolled.version,
        rolled
            .previous
            .as_ref()
            .map(|p| p.version.to_string())
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(home: &Home) -> anyhow::Result<ExitCode> {
    let Some(store) = existing_store(home)? else {
        println!("no plugins are installed; nothing to verify");
        return Ok(ExitCode::SUCCESS);
    };
    let plugins = store.list()?.len();
    let report = store.verify()?;
    if report.is_ok() {
        println!(
            "verified {} component(s) of {plugins} installed plugin(s): all intact",
            report.checked
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "error: {} problem(s) in the plugin store; reinstall the plugins named above (`octo plugins install ID@VERSION`) or roll them back",
        report.problems.len()
    );
    Ok(ExitCode::FAILURE)
}

/// Prints rows as left-aligned columns (the last one unpadded).
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse_spec("run-script").unwrap(),
            PluginSpec {
                id: "run-script".into(),
                requirement: None
            }
        );
        assert_eq!(
            parse_spec("run-script@^0.1").unwrap().requirement.unwrap(),
            VersionReq::parse("^0.1").unwrap()
        );
        assert_eq!(
            parse_spec("run-script@0.1.2")
                .unwrap()
                .requirement
                .unwrap()
                .to_string(),
            "=0.1.2"
        );
        assert_eq!(
            parse_spec("x@>=1.0, <2")
                .unwrap()
                .requirement
                .unwrap()
                .to_string(),
            ">=1.0, <2"
        );
        assert!(parse_spec("@1").is_err());
        assert!(parse_spec("x@banana").unwrap_err().contains("not a semver"));
    }

    #[test]
    fn compatible_is_caret() {
        let req = compatible_with(&Version::new(0, 1, 3));
        assert!(req.matches(&Version::new(0, 1, 9)));
        assert!(!req.matches(&Version::new(0, 2, 0)));
        assert!(!req.matches(&Version::new(0, 1, 2)));
        let req = compatible_with(&Version::new(1, 2, 0));
        assert!(req.matches(&Version::new(1, 9, 0)));
        assert!(!req.matches(&Version::new(2, 0, 0)));
    }
}
