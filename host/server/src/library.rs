//! Community step templates: the library cache, `octo library list|show|install`, and the sync job.
//!
//! ```text
//! <home>/library/templates.json   the last sync: {"syncedAt", "source", "templates": [Library JSON...]}
//! <home>/steps/<Id>.json          installed templates, run by `octo run-step ID-or-name` via run-script
//! ```
//!
//! Both are written atomically. The only request is `GET {libraryFeed}/api/step-templates`
//! ([`crate::feeds::LibraryFeed`]), gated by `communityStepTemplates`.

use crate::error::{Context, Result};
use crate::feeds::{LibraryFeed, block_on};
use crate::home::Home;
use crate::outbound::gate::Allowed;
use crate::sink::Sink;
use crate::table::write_table;
use octo_settings::Settings;
use octo_step_template::StepTemplate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cache {
    synced_at: String,
    source: String,
    templates: Vec<Value>,
}

/// The sync job: fetch the library and replace the cache. Returns a one-line summary.
pub fn sync(home: &Home, settings: &Settings, allowed: &Allowed) -> Result<String> {
    let feed = LibraryFeed::with(allowed, settings)?;
    let source = feed.templates_url();
    let body = block_on(feed.fetch_templates())??;
    let parsed: Value = serde_json::from_slice(&body)
        .with_context(|| format!("the community library {source} did not answer JSON"))?;
    let Value::Array(items) = parsed else {
        bail!(
            Failed,
            "the community library {source} did not answer a JSON array of templates"
        );
    };
    let total = items.len();
    let templates: Vec<Value> = items
        .into_iter()
        .filter(|t| t.get("Id").and_then(Value::as_str).is_some())
        .collect();
    if templates.len() < total {
        tracing::warn!(
            skipped = total - templates.len(),
            "library entries without an Id were skipped"
        );
    }
    let runnable = templates.iter().filter(|t| parse(t).is_ok()).count();
    let cache = Cache {
        synced_at: octo_fsutil::rfc3339(std::time::SystemTime::now()),
        source: source.clone(),
        templates,
    };
    let mut bytes = serde_json::to_vec_pretty(&cache)?;
    bytes.push(b'\n');
    let path = home.library_cache();
    octo_fsutil::write_atomic(&path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(format!(
        "synced {} templates ({runnable} runnable Bash or Python templates) from {source}",
        cache.templates.len()
    ))
}

fn read_cache(home: &Home) -> Result<Option<Cache>> {
    let path = home.library_cache();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("the library cache {} is corrupt; run `octo jobs run community-step-templates` to sync again", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The cache; synced first (through the gate) if there is none yet.
fn cache(home: &Home, sink: &Sink) -> Result<Cache> {
    if let Some(cache) = read_cache(home)? {
        return Ok(cache);
    }
    let settings = home.load_settings()?;
    let allowed = crate::outbound::gate::check(
        &crate::outbound::audit::AuditLog::in_home(home),
        &settings,
        octo_outbound::DestinationId::LibraryFeed,
    )
    .context("the community library has never been synced")?;
    sink.note("the community library has not been synced yet; syncing now");
    let summary = sync(home, &settings, &allowed)?;
    sink.note(&summary);
    read_cache(home)?.context("the library cache is missing after a sync")
}

fn parse(template: &Value) -> Result<StepTemplate> {
    Ok(StepTemplate::from_json(&serde_json::to_vec(template)?)?)
}

fn text(template: &Value, field: &str) -> String {
    match template.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The name as a command-line friendly slug: `Service - Check Running (Bash)` → `service-check-running-bash`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Whether `query` names `template`: its Id, its Name, or its Name's slug (all case-insensitive).
fn names(template: &Value, query: &str) -> bool {
    let id = text(template, "Id");
    let name = text(template, "Name");
    id.eq_ignore_ascii_case(query)
        || (!name.is_empty() && (name.eq_ignore_ascii_case(query) || slug(&name) == slug(query)))
}

fn find<'a>(templates: &'a [Value], query: &str) -> Result<&'a Value> {
    let by_id: Vec<&Value> = templates
        .iter()
        .filter(|t| text(t, "Id").eq_ignore_ascii_case(query))
        .collect();
    if let [one] = by_id.as_slice() {
        return Ok(one);
    }
    let matches: Vec<&Value> = templates.iter().filter(|t| names(t, query)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => {
            let needle = query.to_lowercase();
            let close: Vec<String> = templates
                .iter()
                .filter(|t| text(t, "Name").to_lowercase().contains(&needle))
                .take(3)
                .map(|t| format!("{:?}", text(t, "Name")))
                .collect();
            if close.is_empty() {
                bail!(
                    NotFound,
                    "no community step template named {query:?}; see `octo library list`"
                )
            }
            bail!(
                NotFound,
                "no community step template named {query:?}; did you mean {}?",
                close.join(", ")
            )
        }
        many => bail!(
            Invalid,
            "{query:?} names {} templates; use an id: {}",
            many.len(),
            many.iter()
                .map(|t| text(t, "Id"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `octo library list [TEXT]`: the templates of the last sync.
#[derive(Debug, Clone)]
pub struct TemplateList {
    /// One JSON object per template (the `--json` output).
    pub rows: Vec<Value>,
    /// How many templates the cache has.
    pub total: usize,
    /// When it was synced.
    pub synced_at: String,
    /// From where.
    pub source: String,
}

/// Lists the cached templates whose id, name, description or category contains `text` (synced first
/// if there is no cache yet).
pub fn list(home: &Home, text: Option<&str>, sink: &Sink) -> Result<TemplateList> {
    let cache = cache(home, sink)?;
    let installed = installed_ids(home);
    let needle = text.unwrap_or("").to_lowercase();
    let rows: Vec<Value> = cache
        .templates
        .iter()
        .filter(|t| {
            needle.is_empty()
                || ["Id", "Name", "Description", "Category"]
                    .iter()
                    .any(|f| self::text(t, f).to_lowercase().contains(&needle))
        })
        .map(|t| {
            let runnable = parse(t);
            serde_json::json!({
                "id": self::text(t, "Id"),
                "name": self::text(t, "Name"),
                "slug": slug(&self::text(t, "Name")),
                "version": self::text(t, "Version"),
                "category": self::text(t, "Category"),
                "runnable": runnable.is_ok(),
                "notRunnableBecause": runnable.err().map(|e| e.to_string()),
                "installed": installed.contains(&self::text(t, "Id").to_lowercase()),
            })
        })
        .collect();
    Ok(TemplateList {
        rows,
        total: cache.templates.len(),
        synced_at: cache.synced_at,
        source: cache.source,
    })
}

impl fmt::Display for TemplateList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = vec![[
            "NAME".to_string(),
            "ID".into(),
            "VERSION".into(),
            "RUNNABLE".into(),
        ]];
        for r in &self.rows {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let mut runnable = if r["runnable"] == true { "yes" } else { "no" }.to_string();
            if r["installed"] == true {
                runnable.push_str(" (installed)");
            }
            table.push([s("name"), s("id"), s("version"), runnable]);
        }
        write_table(f, &table)?;
        writeln!(
            f,
            "{} of {} templates; synced {} from {}",
            self.rows.len(),
            self.total,
            self.synced_at,
            self.source
        )
    }
}

/// `octo library show ID`: one template as the library has it.
#[derive(Debug, Clone)]
pub struct TemplateDetails(pub Value);

/// Finds one template (id, name or slug) in the cache.
pub fn show(home: &Home, id: &str, sink: &Sink) -> Result<TemplateDetails> {
    let cache = cache(home, sink)?;
    Ok(TemplateDetails(find(&cache.templates, id)?.clone()))
}

impl fmt::Display for TemplateDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let template = &self.0;
        writeln!(f, "{}", text(template, "Name"))?;
        writeln!(f, "  id:       {}", text(template, "Id"))?;
        writeln!(f, "  slug:     {}", slug(&text(template, "Name")))?;
        writeln!(f, "  version:  {}", text(template, "Version"))?;
        let category = text(template, "Category");
        if !category.is_empty() {
            writeln!(f, "  category: {category}")?;
        }
        let description = text(template, "Description");
        if !description.is_empty() {
            writeln!(f, "  {}", description.replace('\n', "\n  "))?;
        }
        match parse(template) {
            Ok(t) => {
                writeln!(
                    f,
                    "  runnable: yes ({} script, {} lines)",
                    t.syntax,
                    t.script_body.lines().count()
                )?;
                if t.parameters.is_empty() {
                    writeln!(f, "  parameters: none")?;
                } else {
                    writeln!(f, "  parameters:")?;
                    for p in &t.parameters {
                        let mut notes = Vec::new();
                        if p.is_required() {
                            notes.push("required".to_string());
                        } else if let Some(d) = &p.default_value {
                            notes.push(format!(
                                "default {:?}",
                                if p.sensitive { "********" } else { d.as_str() }
                            ));
                        }
                        if p.sensitive {
                            notes.push("sensitive".into());
                        }
                        writeln!(f, "    {} ({}) [{}]", p.name, p.label, notes.join(", "))?;
                    }
                }
            }
            Err(e) => writeln!(f, "  runnable: no: {}", e.one_line())?,
        }
        Ok(())
    }
}

/// What `octo library install` did.
#[derive(Debug, Clone)]
pub struct TemplateInstalled {
    /// The template.
    pub template: StepTemplate,
    /// The version it replaced, if another one was installed; `Some(same)` when unchanged.
    pub before: Option<String>,
    /// The same template was already installed.
    pub unchanged: bool,
}

impl fmt::Display for TemplateInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let template = &self.template;
        match &self.before {
            Some(_) if self.unchanged => writeln!(
                f,
                "{:?} (version {}) is already installed",
                template.name, template.version
            )?,
            Some(old) => writeln!(
                f,
                "updated {:?} from version {old} to {}",
                template.name, template.version
            )?,
            None => writeln!(
                f,
                "installed {:?} (version {}) as a step",
                template.name, template.version
            )?,
        }
        let params: Vec<String> = template
            .parameters
            .iter()
            .filter(|p| p.is_required())
            .map(|p| format!(" --param {}=VALUE", p.name))
            .collect();
        writeln!(
            f,
            "run it with: octo run-step {}{}",
            slug(&template.name),
            params.join("")
        )
    }
}

/// `octo library install ID`: makes a template a step `octo run-step` can run.
pub fn install(home: &Home, query: &str, sink: &Sink) -> Result<TemplateInstalled> {
    let cache = cache(home, sink)?;
    let raw = find(&cache.templates, query)?;
    let template = parse(raw).with_context(|| format!("cannot install {:?}", text(raw, "Name")))?;
    let path = home
        .steps()
        .join(format!("{}.json", file_stem(&template.id)));
    let before = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let mut bytes = serde_json::to_vec_pretty(raw)?;
    bytes.push(b'\n');
    octo_fsutil::write_atomic(&path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    remove_legacy_file(home, &template.id, &path);
    Ok(TemplateInstalled {
        unchanged: before.as_ref() == Some(raw),
        before: before.map(|old| text(&old, "Version")),
        template,
    })
}

/// The file name (without `.json`) an installed template is kept under. Letters, digits and `-` stay
/// as they are (a Library id is usually a GUID); every other byte becomes `_` and two hex digits, so two
/// different ids can never share a file and silently replace each other.
fn file_stem(id: &str) -> String {
    let mut stem = String::with_capacity(id.len());
    for c in id.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            stem.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                stem.push_str(&format!("_{b:02x}"));
            }
        }
    }
    stem
}

/// Earlier versions replaced every other character by a bare `_`. A file of that name that holds this
/// same template is removed once the template is kept under its new name, so it is not listed twice.
fn remove_legacy_file(home: &Home, id: &str, current: &std::path::Path) {
    let legacy: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let legacy = home.steps().join(format!("{legacy}.json"));
    if legacy == current {
        return;
    }
    let same_template = std::fs::read(&legacy)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|old| text(&old, "Id").eq_ignore_ascii_case(id));
    if same_template {
        let _ = std::fs::remove_file(&legacy);
    }
}

fn installed_ids(home: &Home) -> std::collections::HashSet<String> {
    installed_templates(home)
        .into_iter()
        .map(|t| text(&t, "Id").to_lowercase())
        .collect()
}

fn installed_templates(home: &Home) -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(home.steps()) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect()
}

/// The installed community template that `name` names (id, name or slug), for `octo run-step`.
pub fn find_installed(home: &Home, name: &str) -> Result<Option<StepTemplate>> {
    let templates = installed_templates(home);
    if !templates.iter().any(|t| names(t, name)) {
        return Ok(None);
    }
    let raw = find(&templates, name)?;
    Ok(Some(parse(raw).with_context(|| {
        format!("the installed step template {:?}", text(raw, "Name"))
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            slug("Service - Check Running (Bash)"),
            "service-check-running-bash"
        );
        assert_eq!(slug("  HTTP - Test URL (Bash) "), "http-test-url-bash");
        assert_eq!(slug(".NET Core"), "net-core");
    }

    #[test]
    fn different_ids_never_share_a_file() {
        // A Library GUID keeps its name.
        let guid = "a4a8c4d0-5b2f-4c1e-9b1a-0123456789ab";
        assert_eq!(file_stem(guid), guid);
        // These used to be `a_b` all three, so one install silently replaced the other.
        let stems = ["a.b", "a_b", "a/b", "a b", "a\u{e9}b"].map(file_stem);
        for (i, x) in stems.iter().enumerate() {
            assert!(
                x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            for y in &stems[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(file_stem("../x"), "_2e_2e_2fx");
    }

    #[test]
    fn finds_by_id_name_or_slug() {
        let templates = vec![
            serde_json::json!({"Id": "aaaa", "Name": "Service - Check Running (Bash)"}),
            serde_json::json!({"Id": "bbbb", "Name": "Other"}),
        ];
        assert_eq!(text(find(&templates, "AAAA").unwrap(), "Id"), "aaaa");
        assert_eq!(
            text(
                find(&templates, "service - check running (bash)").unwrap(),
                "Id"
            ),
            "aaaa"
        );
        assert_eq!(
            text(
                find(&templates, "service-check-running-bash").unwrap(),
                "Id"
            ),
            "aaaa"
        );
        let err = find(&templates, "Check").unwrap_err().to_string();
        assert!(err.contains("did you mean"), "{err}");
        assert!(find(&templates, "zzz").is_err());
    }
}
