//! Moving plugins to newer versions: `octo plugins update [ID]`, and the built-in step template updates
//! job (`step-template-updates`, see [`crate::jobs`]).
//!
//! Both only ever move forward (never to a lower version), skip yanked versions and versions whose plugin
//! API this host does not implement, and keep the replaced version as `previous` for rollback.

use super::install::{Installed, install_entry};
use super::{builtin_version, compatible_with};
use crate::error::{Context, Error, Result};
use crate::feeds::{StepsFeed, block_on};
use crate::home::Home;
use crate::outbound::gate::Allowed;
use crate::sink::Sink;
use octo_feed::{Entry, FeedIndex};
use octo_settings::Settings;
use semver::Version;
use std::fmt;

/// The newest version of `id` that is not yanked, runs on this host, and that `accept`s.
pub fn newest<'a>(
    index: &'a FeedIndex,
    id: &str,
    accept: impl Fn(&Version) -> bool,
) -> Option<&'a Entry> {
    index
        .plugin(id)?
        .versions
        .iter()
        .filter(|e| !e.yanked && e.manifest.check_api_version().is_ok() && accept(&e.version))
        .max_by(|a, b| a.version.cmp(&b.version))
}

/// What `octo plugins update` did, plugin by plugin.
#[derive(Debug, Default)]
pub struct Updated {
    /// What happened to each plugin that did not fail (the lines `update` prints).
    pub lines: Vec<String>,
    /// One line per plugin whose update failed (it keeps its version).
    pub failures: Vec<String>,
}

impl Updated {
    /// Whether every plugin updated or was up to date.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Updated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// `octo plugins update [ID]`: every installed plugin (or ID) to the newest version its recorded
/// requirement allows. A plugin whose update fails keeps its version; the others still update.
pub fn update(home: &Home, id: Option<&str>, sink: &Sink) -> Result<Updated> {
    let settings = home.load_settings()?;
    let store = crate::store::open(home)?;
    let installed = store.list()?;
    let targets: Vec<(String, octo_feed::LockEntry)> = match id {
        Some(id) => match installed.get(id) {
            Some(lock) => vec![(id.to_string(), lock.clone())],
            None => bail!(
                NotFound,
                "plugin {id} is not installed{}; install it with `octo plugins install {id}`",
                if octo_builtin_plugins::find(id).is_some() {
                    " from the feed (the embedded built-in is in use)"
                } else {
                    ""
                }
            ),
        },
        None => installed.into_iter().collect(),
    };
    let mut report = Updated::default();
    if targets.is_empty() {
        report
            .lines
            .push("no plugins are installed; nothing to update\n".into());
        return Ok(report);
    }
    let feed = StepsFeed::open(home, &settings, sink).context("cannot update plugins")?;
    let result = block_on(async {
        let fetched = feed.fetch_index().await.context("cannot update plugins")?;
        for (id, lock) in &targets {
            if fetched.index.plugin(id).is_none() {
                report.lines.push(format!(
                    "{id} {}: not in the feed (installed from {}), left alone\n",
                    lock.version, lock.source
                ));
                continue;
            }
            let Some(entry) = newest(&fetched.index, id, |v| {
                lock.requirement.matches(v) && v > &lock.version
            }) else {
                report.lines.push(format!(
                    "{id} {} is up to date (requirement {})\n",
                    lock.version, lock.requirement
                ));
                continue;
            };
            match install_entry(&store, &feed, &fetched, entry, lock.requirement.clone()).await {
                Ok(installed) => report.lines.push(installed.report()),
                Err(e) => report.failures.push(format!(
                    "cannot update {id} to {}: {}; {} stays installed",
                    entry.version,
                    e.one_line(),
                    lock.version
                )),
            }
        }
        Ok::<_, Error>(())
    })?;
    // What did update is shared even when another update failed.
    store.publish()?;
    result?;
    Ok(report)
}

/// The built-in step template updates job: each built-in step moves to the newest semver-compatible
/// version in the feed (same major; for 0.x the same minor). One not installed from the feed yet gets the
/// newest version compatible with (and not older than) the embedded one. Returns a one-line summary.
pub fn update_builtins(
    home: &Home,
    settings: &Settings,
    allowed: &Allowed,
    sink: &Sink,
) -> Result<String> {
    let feed = StepsFeed::with(allowed, settings, sink)?;
    let store = crate::store::open(home)?;
    let result = block_on(async {
        let fetched = feed.fetch_index().await?;
        let mut summary = Vec::new();
        let mut errors = Vec::new();
        for builtin in octo_builtin_plugins::STEPS {
            let id = builtin.id;
            let current = store.get(id)?;
            let (floor, requirement, candidate) = match &current {
                Some(lock) => {
                    let compatible = compatible_with(&lock.version);
                    let candidate = newest(&fetched.index, id, |v| {
                        v > &lock.version && compatible.matches(v) && lock.requirement.matches(v)
                    });
                    (lock.version.clone(), lock.requirement.clone(), candidate)
                }
                None => {
                    let Some(embedded) = builtin_version(builtin) else {
                        continue;
                    };
                    let compatible = compatible_with(&embedded);
                    let candidate = newest(&fetched.index, id, |v| {
                        v >= &embedded && compatible.matches(v)
                    });
                    (embedded, compatible, candidate)
                }
            };
            let Some(entry) = candidate else {
                summary.push(format!("{id} {floor} is up to date"));
                continue;
            };
            match install_entry(&store, &feed, &fetched, entry, requirement).await {
                Ok(Installed { replaced, lock, .. }) => summary.push(match replaced {
                    Some(old) => format!("{id} {old} -> {}", lock.version),
                    None => format!("{id} {} installed from the feed", lock.version),
                }),
                Err(e) => errors.push(format!(
                    "{id} {} (staying on {floor}): {}",
                    entry.version,
                    e.one_line()
                )),
            }
        }
        if errors.is_empty() {
            Ok(summary.join("; "))
        } else {
            bail!(
                Failed,
                "{}{}",
                errors.join("; "),
                if summary.is_empty() {
                    String::new()
                } else {
                    format!(" (also: {})", summary.join("; "))
                }
            )
        }
    })?;
    // What did update is shared even when another update failed.
    store.publish()?;
    result
}
