//! Community step templates: the library cache, `octo library list|show|install`, and the sync job.
//!
//! ```text
//! <home>/library/templates.json   the last sync: {"syncedAt", "source", "templates": [Library JSON...]}
//! <home>/steps/<Id>.json          installed templates, run by `octo run-step ID-or-name` via run-script
//! ```
//!
//! Both are written atomically. The only request is `GET {libraryFeed}/api/step-templates`
//! ([`crate::remote::LibraryFeed`]), gated by `communityStepTemplates`.

use crate::home::Home;
use crate::plugins::{load_settings, print_table};
use crate::remote::{Destination, LibraryFeed, block_on};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use octo_settings::Settings;
use octo_step_template::StepTemplate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

const CACHE_DIR: &str = "library";
const CACHE_FILE: &str = "templates.json";
const STEPS_DIR: &str = "steps";

/// `octo library ...`
#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// List the community step templates of the last sync (name, id, category contain TEXT).
    List(ListArgs),
    /// Show one template: description and parameters.
    Show(ShowArgs),
    /// Install a template as a step: `octo run-step ID-or-name --param NAME=VALUE` then runs it.
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Text to look for (case-insensitive).
    pub text: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Template id, name, or the name as a slug (e.g. service-check-running-bash).
    pub id: String,
    /// Print the template's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Template id, name, or the name as a slug.
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cache {
    synced_at: String,
    source: String,
    templates: Vec<Value>,
}

fn cache_path(home: &Home) -> PathBuf {
    home.root().join(CACHE_DIR).join(CACHE_FILE)
}

fn steps_dir(home: &Home) -> PathBuf {
    home.root().join(STEPS_DIR)
}

/// The sync job: fetch the library and replace the cache. Returns a one-line summary.
pub fn sync(home: &Home, settings: &Settings) -> anyhow::Result<String> {
    let feed = LibraryFeed::open(home, settings)?;
    let source = feed.templates_url();
    let body = block_on(feed.fetch_templates())??;
    let parsed: Value = serde_json::from_slice(&body)
        .with_context(|| format!("the community library {source} did not answer JSON"))?;
    let Value::Array(items) = parsed else {
        bail!("the community library {source} did not answer a JSON array of templates");
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
        synced_at: octo_feed::store::rfc3339(std::time::SystemTime::now()),
        source: source.clone(),
        templates,
    };
    let mut bytes = serde_json::to_vec_pretty(&cache)?;
    bytes.push(b'\n');
    crate::atomic_file::write(&cache_path(home), &bytes)?;
    Ok(format!(
        "synced {} templates ({runnable} runnable Bash templates) from {source}",
        cache.templates.len()
    ))
}

fn read_cache(home: &Home) -> anyhow::Result<Option<Cache>> {
    let path = cache_path(home);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("the library cache {} is corrupt; run `octo jobs run community-step-templates` to sync again", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The cache; synced first if there is none yet and the library is enabled.
fn cache(home: &Home) -> anyhow::Result<Cache> {
    if let Some(cache) = read_cache(home)? {
        return Ok(cache);
    }
    let settings = load_settings(home)?;
    if !Destination::CommunityLibrary.enabled(&settings) {
        Destination::CommunityLibrary
            .check(home, &settings)
            .context("the community library has never been synced")?;
    }
    eprintln!("the community library has not been synced yet; syncing now");
    let summary = sync(home, &settings)?;
    eprintln!("{summary}");
    read_cache(home)?.context("the library cache is missing after a sync")
}

fn parse(template: &Value) -> anyhow::Result<StepTemplate> {
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

fn find<'a>(templates: &'a [Value], query: &str) -> anyhow::Result<&'a Value> {
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
                bail!("no community step template named {query:?}; see `octo library list`")
            }
            bail!(
                "no community step template named {query:?}; did you mean {}?",
                close.join(", ")
            )
        }
        many => bail!(
            "{query:?} names {} templates; use an id: {}",
            many.len(),
            many.iter()
                .map(|t| text(t, "Id"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn run(home: &Home, command: LibraryCommand) -> anyhow::Result<ExitCode> {
    match command {
        LibraryCommand::List(args) => list(home, args),
        LibraryCommand::Show(args) => show(home, args),
        LibraryCommand::Install(args) => install(home, &args.id),
    }
}

fn list(home: &Home, args: ListArgs) -> anyhow::Result<ExitCode> {
    let cache = cache(home)?;
    let installed = installed_ids(home);
    let needle = args.text.as_deref().unwrap_or("").to_lowercase();
    let rows: Vec<Value> = cache
        .templates
        .iter()
        .filter(|t| {
            needle.is_empty()
                || ["Id", "Name", "Description", "Category"]
                    .iter()
                    .any(|f| text(t, f).to_lowercase().contains(&needle))
        })
        .map(|t| {
            let runnable = parse(t);
            serde_json::json!({
                "id": text(t, "Id"),
                "name": text(t, "Name"),
                "slug": slug(&text(t, "Name")),
                "version": text(t, "Version"),
                "category": text(t, "Category"),
                "runnable": runnable.is_ok(),
                "notRunnableBecause": runnable.err().map(|e| e.to_string()),
                "installed": installed.contains(&text(t, "Id").to_lowercase()),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![[
        "NAME".to_string(),
        "ID".into(),
        "VERSION".into(),
        "RUNNABLE".into(),
    ]];
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let mut runnable = if r["runnable"] == true { "yes" } else { "no" }.to_string();
        if r["installed"] == true {
            runnable.push_str(" (installed)");
        }
        table.push([s("name"), s("id"), s("version"), runnable]);
    }
    print_table(&table);
    println!(
        "{} of {} templates; synced {} from {}",
        rows.len(),
        cache.templates.len(),
        cache.synced_at,
        cache.source
    );
    Ok(ExitCode::SUCCESS)
}

fn show(home: &Home, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let cache = cache(home)?;
    let template = find(&cache.templates, &args.id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(template)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", text(template, "Name"));
    println!("  id:       {}", text(template, "Id"));
    println!("  slug:     {}", slug(&text(template, "Name")));
    println!("  version:  {}", text(template, "Version"));
    let category = text(template, "Category");
    if !category.is_empty() {
        println!("  category: {category}");
    }
    let description = text(template, "Description");
    if !description.is_empty() {
        println!("  {}", description.replace('\n', "\n  "));
    }
    match parse(template) {
        Ok(t) => {
            println!(
                "  runnable: yes ({} script, {} lines)",
                t.syntax,
                t.script_body.lines().count()
            );
            if t.parameters.is_empty() {
                println!("  parameters: none");
            } else {
                println!("  parameters:");
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
                    println!("    {} ({}) [{}]", p.name, p.label, notes.join(", "));
                }
            }
        }
        Err(e) => println!("  runnable: no: {}", crate::one_line(&e)),
    }
    Ok(ExitCode::SUCCESS)
}

fn install(home: &Home, query: &str) -> anyhow::Result<ExitCode> {
    let cache = cache(home)?;
    let raw = find(&cache.templates, query)?;
    let template = parse(raw).with_context(|| {
        format!(
            "cannot install {:?}: Octo runs Bash script templates only",
            text(raw, "Name")
        )
    })?;
    let file_id: String = template
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = steps_dir(home).join(format!("{file_id}.json"));
    let before = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let mut bytes = serde_json::to_vec_pretty(raw)?;
    bytes.push(b'\n');
    crate::atomic_file::write(&path, &bytes)?;
    match before {
        Some(old) if &old == raw => println!(
            "{:?} (version {}) is already installed",
            template.name, template.version
        ),
        Some(old) => println!(
            "updated {:?} from version {} to {}",
            template.name,
            text(&old, "Version"),
            template.version
        ),
        None => println!(
            "installed {:?} (version {}) as a step",
            template.name, template.version
        ),
    }
    let params: Vec<String> = template
        .parameters
        .iter()
        .filter(|p| p.is_required())
        .map(|p| format!(" --param {}=VALUE", p.name))
        .collect();
    println!(
        "run it with: octo run-step {}{}",
        slug(&template.name),
        params.join("")
    );
    Ok(ExitCode::SUCCESS)
}

fn installed_ids(home: &Home) -> std::collections::HashSet<String> {
    installed_templates(home)
        .into_iter()
        .map(|t| text(&t, "Id").to_lowercase())
        .collect()
}

fn installed_templates(home: &Home) -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(steps_dir(home)) else {
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
pub fn find_installed(home: &Home, name: &str) -> anyhow::Result<Option<StepTemplate>> {
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
