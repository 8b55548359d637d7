//! The plugin lifecycle: `octo plugins search|list|install|update|remove|rollback|verify|export|import`.
//!
//! Plugins live in octo-feed's content-addressed store under `<home>/plugins` (`blobs/sha256/<hex>` +
//! `plugins.lock`, see [`crate::store`]). Everything that reaches the steps feed goes through
//! [`crate::feeds::StepsFeed`].
//!
//! - [`install`]: one verified install (feed entry, local file), the checks every component passes.
//! - [`update`]: picking newer versions; `plugins update` and the built-in step template updates job.
//! - [`bundle`]: offline bundles for air-gapped servers (`export` / `import`).

pub mod bundle;
pub mod install;
pub mod update;

pub use install::Installed;

use crate::error::{Context, Result};
use crate::home::Home;
use crate::sink::Sink;
use crate::table::write_table;
use octo_feed::store::LockEntry;
use octo_manifest::{Capability, Manifest};
use semver::{Version, VersionReq};
use std::fmt;

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

/// `octo plugins search [TEXT]`: the feed's plugins whose id or description contains `text`.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// The feed asked.
    pub feed_url: String,
    /// What was looked for.
    pub text: String,
    /// One JSON object per plugin (`id`, `latest`, `kind`, `apiVersion`, `supported`, `versions`,
    /// `installed`, `description`): the `--json` output.
    pub rows: Vec<serde_json::Value>,
}

/// Searches the steps feed (through the gate).
pub fn search(home: &Home, text: Option<&str>, sink: &Sink) -> Result<SearchResult> {
    let settings = home.load_settings()?;
    let feed = crate::feeds::StepsFeed::open(home, &settings, sink)?;
    let fetched = crate::feeds::block_on(feed.fetch_index())??;
    let installed = crate::store::existing(home)?
        .map(|s| s.list())
        .transpose()?
        .unwrap_or_default();
    let needle = text.unwrap_or("").to_lowercase();
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
    Ok(SearchResult {
        feed_url: feed.url().to_string(),
        text: text.unwrap_or_default().to_string(),
        rows,
    })
}

impl fmt::Display for SearchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows.is_empty() {
            return writeln!(f, "no plugin in {} matches {:?}", self.feed_url, self.text);
        }
        let mut table = vec![[
            "ID".to_string(),
            "LATEST".into(),
            "INSTALLED".into(),
            "DESCRIPTION".into(),
        ]];
        for r in &self.rows {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            let mut latest = s("latest");
            if !r["supported"].as_bool().unwrap_or(false) && r["latest"].is_string() {
                latest.push_str(&format!(" (needs API {})", s("apiVersion")));
            }
            table.push([s("id"), latest, s("installed"), s("description")]);
        }
        write_table(f, &table)
    }
}

/// `octo plugins list`: installed plugins, and the built-in steps still used from the binary. One JSON
/// object per plugin (the `--json` output).
#[derive(Debug, Clone)]
pub struct PluginList(pub Vec<serde_json::Value>);

/// Lists installed and embedded plugins.
pub fn list(home: &Home) -> Result<PluginList> {
    let installed = crate::store::existing(home)?
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
                "sha256": octo_fsutil::sha256_hex(builtin.bytes),
                "signed": true,
            }));
        }
    }
    rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(PluginList(rows))
}

impl fmt::Display for PluginList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = vec![[
            "ID".to_string(),
            "VERSION".into(),
            "KIND".into(),
            "PREVIOUS".into(),
            "SOURCE".into(),
        ]];
        for r in &self.0 {
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
        write_table(f, &table)
    }
}

fn lock_json(id: &str, e: &LockEntry) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "version": e.version.to_string(),
        "kind": e.kind.to_string(),
        "source": e.source.to_string(),
        "requirement": e.requirement.to_string(),
        "sha256": e.sha256,
        "previous": e.previous.as_ref().map(|p| serde_json::json!({
            "version": p.version.to_string(), "sha256": p.sha256, "source": p.source.to_string()
        })),
        "installedAt": e.installed_at,
        "signed": e.source.is_signed(),
    })
}

/// `octo plugins remove ID`: what was removed.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The plugin id.
    pub id: String,
    /// The version that was installed.
    pub version: Version,
    /// A built-in embedded in the binary takes over again.
    pub builtin_again: bool,
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "removed {} {}", self.id, self.version)?;
        if self.builtin_again {
            write!(
                f,
                "; the built-in {} embedded in this binary is used again",
                self.id
            )?;
        }
        writeln!(f)
    }
}

/// Uninstalls a plugin (a built-in step falls back to the embedded version).
pub fn remove(home: &Home, id: &str) -> Result<Removed> {
    let store = crate::store::open(home)?;
    let removed = match store.remove(id) {
        Ok(removed) => removed,
        Err(octo_feed::StoreError::NotInstalled(_)) if octo_builtin_plugins::find(id).is_some() => {
            bail!(
                Invalid,
                "plugin {id} is not installed: the built-in {id} embedded in this binary is in use, and it cannot be removed"
            )
        }
        Err(e) => return Err(e.into()),
    };
    // Free what nothing references any more (blobs younger than the store's grace period stay).
    store.publish()?;
    if let Err(e) = store.gc() {
        tracing::warn!(error = %e, "cleaning the plugin store failed");
    }
    Ok(Removed {
        id: id.to_string(),
        version: removed.version,
        builtin_again: octo_builtin_plugins::find(id).is_some(),
    })
}

/// `octo plugins rollback ID`: from which version to which.
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// The plugin id.
    pub id: String,
    /// The version before.
    pub from: Option<Version>,
    /// The version now.
    pub to: Version,
    /// What another rollback would return to.
    pub again: Option<Version>,
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |v: &Option<Version>| v.as_ref().map(ToString::to_string).unwrap_or_default();
        writeln!(
            f,
            "rolled back {id} from {} to {} (run `octo plugins rollback {id}` again to return to {})",
            text(&self.from),
            self.to,
            text(&self.again),
            id = self.id,
        )
    }
}

/// Goes back to the version an install or update replaced (again: forward).
pub fn rollback(home: &Home, id: &str) -> Result<RolledBack> {
    let store = crate::store::open(home)?;
    let before = store.get(id)?;
    let rolled = store
        .rollback(id)
        .with_context(|| format!("cannot roll back {id}"))?;
    store.publish()?;
    Ok(RolledBack {
        id: id.to_string(),
        from: before.map(|b| b.version),
        to: rolled.version.clone(),
        again: rolled.previous.as_ref().map(|p| p.version.clone()),
    })
}

/// `octo plugins verify`: re-hashes every installed component.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Whether there is a plugin store at all.
    pub store_exists: bool,
    /// Installed plugins.
    pub plugins: usize,
    /// Components checked (current and previous versions).
    pub checked: usize,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

impl Verified {
    /// Whether everything is intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.store_exists {
            return writeln!(f, "no plugins are installed; nothing to verify");
        }
        if self.is_ok() {
            return writeln!(
                f,
                "verified {} component(s) of {} installed plugin(s): all intact",
                self.checked, self.plugins
            );
        }
        for problem in &self.problems {
            writeln!(f, "error: {problem}")?;
        }
        writeln!(
            f,
            "error: {} problem(s) in the plugin store; reinstall the plugins named above (`octo plugins install ID@VERSION`) or roll them back",
            self.problems.len()
        )
    }
}

/// Re-hashes every installed component (current and previous versions).
pub fn verify(home: &Home) -> Result<Verified> {
    let Some(store) = crate::store::existing(home)? else {
        return Ok(Verified {
            store_exists: false,
            plugins: 0,
            checked: 0,
            problems: Vec::new(),
        });
    };
    let plugins = store.list()?.len();
    let report = store.verify()?;
    Ok(Verified {
        store_exists: true,
        plugins,
        checked: report.checked,
        problems: report.problems.iter().map(ToString::to_string).collect(),
    })
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
