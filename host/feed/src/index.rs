//! The feed index: which plugins a feed has, in which versions, and where their blobs are.
//!
//! ```json
//! {"schema":1,"plugins":[{"id":"run-script","versions":[{"version":"0.1.0","sha256":"<hex>","size":123,
//!   "blob":"blobs/sha256/<hex>","yanked":false,"manifest":{"id":"run-script","version":"0.1.0",...}}]}]}
//! ```
//!
//! Blob paths are relative to the feed's base URL. Parsing checks the whole document (schema, digests,
//! blob paths, that each manifest agrees with the entry it is in), so later code can trust it.

use octo_manifest::Manifest;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The only index schema this crate reads and writes.
pub const SCHEMA: u32 = 1;

/// Why an index could not be parsed, or a requirement not resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// Not JSON, or a field is missing or of the wrong type.
    #[error("the feed index is malformed: {0}")]
    Malformed(String),
    /// A schema this host does not understand (a newer feed).
    #[error(
        "the feed index has schema {found}, but this host reads schema {supported}; upgrade Octo to use this feed"
    )]
    UnknownSchema {
        /// The schema in the document.
        found: u64,
        /// The schema this host reads.
        supported: u32,
    },
    /// The document parses but says something inconsistent or unsafe.
    #[error("the feed index is invalid: plugin {id}{}: {reason}", version.as_ref().map(|v| format!(" {v}")).unwrap_or_default())]
    Invalid {
        /// Plugin id the problem is in.
        id: String,
        /// Version the problem is in, if it is about one version.
        version: Option<Version>,
        /// What is wrong.
        reason: String,
    },
    /// No plugin with that id.
    #[error("the feed has no plugin {id:?}{}", did_you_mean(suggestions))]
    UnknownPlugin {
        /// The id asked for.
        id: String,
        /// Ids in the feed that look alike, closest first.
        suggestions: Vec<String>,
    },
    /// The plugin exists, but no non-yanked version satisfies the requirement.
    #[error(
        "no version of {id} matches {requirement} (yanked versions are never selected); available: {}",
        list_versions(available)
    )]
    NoMatch {
        /// Plugin id.
        id: String,
        /// The requirement as asked.
        requirement: VersionReq,
        /// Every version in the feed, newest first, with whether it is yanked.
        available: Vec<(Version, bool)>,
    },
    /// The component's own manifest differs from the one the index lists for it.
    #[error(
        "plugin {id} {version}: the component's manifest does not match the feed index ({field} differs); the feed is inconsistent, republish the plugin"
    )]
    ManifestMismatch {
        /// Plugin id.
        id: String,
        /// Plugin version.
        version: Version,
        /// The first field that differs.
        field: &'static str,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

fn list_versions(available: &[(Version, bool)]) -> String {
    if available.is_empty() {
        return "none".into();
    }
    available
        .iter()
        .map(|(v, yanked)| {
            if *yanked {
                format!("{v} (yanked)")
            } else {
                v.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed, validated feed index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedIndex {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The plugins, in the order of the document.
    pub plugins: Vec<Plugin>,
}

/// One plugin and all its published versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugin {
    /// Plugin id, e.g. `run-script`.
    pub id: String,
    /// Its versions, in the order of the document.
    pub versions: Vec<Entry>,
}

/// One published version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The plugin version (equals `manifest.version`).
    pub version: Version,
    /// Lowercase hex sha256 of the component.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// Path of the blob relative to the feed's base URL, e.g. `blobs/sha256/<hex>`.
    pub blob: String,
    /// A yanked version is never selected by [`FeedIndex::resolve`].
    #[serde(default)]
    pub yanked: bool,
    /// The component's manifest, repeated so the host can decide before downloading.
    pub manifest: Manifest,
}

impl FeedIndex {
    /// An index with no plugins.
    pub fn empty() -> Self {
        FeedIndex {
            schema: SCHEMA,
            plugins: Vec::new(),
        }
    }

    /// Parses and validates an index document.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        // Look at the schema first, so a newer feed says "unknown schema" rather than "missing field".
        #[derive(Deserialize)]
        struct Probe {
            schema: Option<serde_json::Value>,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Malformed(e.to_string()))?;
        match probe.schema {
            None => return Err(IndexError::Malformed("missing field `schema`".into())),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA)) => {}
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => {
                return Err(IndexError::UnknownSchema {
                    found: n.as_u64().unwrap_or_default(),
                    supported: SCHEMA,
                });
            }
            Some(other) => {
                return Err(IndexError::Malformed(format!(
                    "`schema` must be a number, not {other}"
                )));
            }
        }
        let index: FeedIndex =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Malformed(e.to_string()))?;
        index.validate()?;
        Ok(index)
    }

    /// The canonical encoding (pretty JSON with a trailing newline); what gets signed.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("an index always serialises");
        out.push(b'\n');
        out
    }

    /// Checks everything serde cannot: digests, blob paths, duplicates, manifests agreeing with entries.
    pub fn validate(&self) -> Result<(), IndexError> {
        let mut seen_ids = std::collections::HashSet::new();
        for plugin in &self.plugins {
            let invalid = |version: Option<&Version>, reason: String| IndexError::Invalid {
                id: plugin.id.clone(),
                version: version.cloned(),
                reason,
            };
            if !seen_ids.insert(plugin.id.as_str()) {
                return Err(invalid(None, "listed more than once".into()));
            }
            let mut seen_versions = std::collections::HashSet::new();
            for entry in &plugin.versions {
                let v = Some(&entry.version);
                if !seen_versions.insert(&entry.version) {
                    return Err(invalid(v, "version listed more than once".into()));
                }
                if !crate::is_sha256_hex(&entry.sha256) {
                    return Err(invalid(
                        v,
                        format!("sha256 {:?} is not 64 lowercase hex digits", entry.sha256),
                    ));
                }
                check_blob_path(&entry.blob).map_err(|reason| invalid(v, reason))?;
                if entry.manifest.id != plugin.id {
                    return Err(invalid(
                        v,
                        format!("its manifest says id {:?}", entry.manifest.id),
                    ));
                }
                if entry.manifest.version != entry.version {
                    return Err(invalid(
                        v,
                        format!("its manifest says version {}", entry.manifest.version),
                    ));
                }
                entry
                    .manifest
                    .validate()
                    .map_err(|e| invalid(v, e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The plugin with id `id`, if any.
    pub fn plugin(&self, id: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.id == id)
    }

    /// The highest non-yanked version of `id` that satisfies `requirement`.
    ///
    /// Yanked versions are skipped always, even for an exact `=x.y.z` requirement. Pre-releases match only
    /// as semver's `VersionReq` allows (when the requirement names a pre-release of the same x.y.z).
    pub fn resolve(&self, id: &str, requirement: &VersionReq) -> Result<&Entry, IndexError> {
        let plugin = self.plugin(id).ok_or_else(|| IndexError::UnknownPlugin {
            id: id.to_string(),
            suggestions: suggest(id, self.plugins.iter().map(|p| p.id.as_str())),
        })?;
        plugin
            .versions
            .iter()
            .filter(|e| !e.yanked && requirement.matches(&e.version))
            .max_by(|a, b| a.version.cmp(&b.version))
            .ok_or_else(|| {
                let mut available: Vec<(Version, bool)> = plugin
                    .versions
                    .iter()
                    .map(|e| (e.version.clone(), e.yanked))
                    .collect();
                available.sort_by(|a, b| b.0.cmp(&a.0));
                IndexError::NoMatch {
                    id: id.to_string(),
                    requirement: requirement.clone(),
                    available,
                }
            })
    }

    /// Adds a version; an identical entry already present is a no-op (returns `false`).
    ///
    /// Refuses to replace a version with different contents: published versions are immutable.
    pub fn add(&mut self, entry: Entry) -> Result<bool, IndexError> {
        let id = entry.manifest.id.clone();
        let position = match self.plugins.iter().position(|p| p.id == id) {
            Some(i) => i,
            None => {
                self.plugins.push(Plugin {
                    id: id.clone(),
                    versions: Vec::new(),
                });
                self.plugins.len() - 1
            }
        };
        let plugin = &mut self.plugins[position];
        if let Some(existing) = plugin.versions.iter().find(|e| e.version == entry.version) {
            if existing.sha256 == entry.sha256 {
                return Ok(false);
            }
            return Err(IndexError::Invalid {
                id,
                version: Some(entry.version),
                reason: format!(
                    "already published with sha256 {}, and this component is {}; publish it under a new version",
                    existing.sha256, entry.sha256
                ),
            });
        }
        plugin.versions.push(entry);
        plugin.versions.sort_by(|a, b| a.version.cmp(&b.version));
        self.validate()?;
        Ok(true)
    }

    /// Marks `id@version` yanked (or not). Errors if there is no such version.
    pub fn set_yanked(
        &mut self,
        id: &str,
        version: &Version,
        yanked: bool,
    ) -> Result<(), IndexError> {
        let suggestions = suggest(id, self.plugins.iter().map(|p| p.id.as_str()));
        let plugin = self
            .plugins
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| IndexError::UnknownPlugin {
                id: id.to_string(),
                suggestions,
            })?;
        let available: Vec<(Version, bool)> = plugin
            .versions
            .iter()
            .map(|e| (e.version.clone(), e.yanked))
            .collect();
        let entry = plugin
            .versions
            .iter_mut()
            .find(|e| &e.version == version)
            .ok_or_else(|| IndexError::NoMatch {
                id: id.to_string(),
                requirement: VersionReq::parse(&format!("={version}")).unwrap_or(VersionReq::STAR),
                available,
            })?;
        entry.yanked = yanked;
        Ok(())
    }
}

impl Entry {
    /// The absolute URL of the blob, given the feed's base URL (e.g. `https://feed.example/steps`).
    pub fn blob_url(&self, base_url: &str) -> String {
        format!("{}/{}", base_url.trim_end_matches('/'), self.blob)
    }

    /// Refuses a downloaded component whose embedded manifest differs from the index's copy.
    pub fn check_manifest(&self, actual: &Manifest) -> Result<(), IndexError> {
        let expected = &self.manifest;
        let field = if actual.id != expected.id {
            "id"
        } else if actual.version != expected.version {
            "version"
        } else if actual.kind != expected.kind {
            "kind"
        } else if actual.api_version != expected.api_version {
            "apiVersion"
        } else if actual.outbound != expected.outbound {
            "outbound"
        } else if actual.capabilities != expected.capabilities {
            "capabilities"
        } else {
            return Ok(());
        };
        Err(IndexError::ManifestMismatch {
            id: expected.id.clone(),
            version: expected.version.clone(),
            field,
        })
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.manifest.id, self.version)?;
        if self.yanked {
            f.write_str(" (yanked)")?;
        }
        Ok(())
    }
}

/// A blob path must stay under the feed's base URL.
fn check_blob_path(blob: &str) -> Result<(), String> {
    let bad = blob.is_empty()
        || blob.starts_with('/')
        || blob.contains("://")
        || blob.contains('\\')
        || blob.contains(['?', '#'])
        || blob.chars().any(|c| c.is_control() || c == ' ')
        || blob
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        Err(format!(
            "blob path {blob:?} must be a relative path like blobs/sha256/<hex>"
        ))
    } else {
        Ok(())
    }
}

/// Ids close to `wanted` (edit distance ≤ 2, or one contains the other), closest first, at most 3.
fn suggest<'a>(wanted: &str, ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = ids
        .filter_map(|id| {
            let d = levenshtein(wanted, id);
            let related = !wanted.is_empty() && (id.contains(wanted) || wanted.contains(id));
            (d <= 2 || related).then_some((d, id))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, id)| id.to_string())
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            prev = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, version: &str) -> Manifest {
        Manifest::from_json(
            format!(r#"{{"id":"{id}","version":"{version}","kind":"step","apiVersion":"0.1.0"}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn entry(id: &str, version: &str, yanked: bool) -> Entry {
        let sha = crate::sha256_hex(format!("{id}@{version}").as_bytes());
        Entry {
            version: version.parse().unwrap(),
            blob: format!("blobs/sha256/{sha}"),
            sha256: sha,
            size: 10,
            yanked,
            manifest: manifest(id, version),
        }
    }

    fn sample() -> FeedIndex {
        let mut index = FeedIndex::empty();
        for (id, v, yanked) in [
            ("run-script", "0.1.0", false),
            ("run-script", "0.1.3", false),
            ("run-script", "0.2.0", false),
            ("run-script", "0.1.4", true),
            ("http-health-check", "1.0.0", false),
            ("telemetry", "0.1.0", true),
        ] {
            index.add(entry(id, v, yanked)).unwrap();
        }
        index
    }

    fn req(s: &str) -> VersionReq {
        VersionReq::parse(s).unwrap()
    }

    #[test]
    fn round_trips_through_json() {
        let index = sample();
        let parsed = FeedIndex::parse(&index.to_json()).unwrap();
        assert_eq!(parsed, index);
    }

    #[test]
    fn parses_the_documented_shape() {
        let sha = "a".repeat(64);
        let doc = format!(
            r#"{{"schema":1,"plugins":[{{"id":"run-script","versions":[{{"version":"0.1.0","sha256":"{sha}","size":123,
            "blob":"blobs/sha256/{sha}","manifest":{{"id":"run-script","version":"0.1.0","kind":"step","apiVersion":"0.1.0"}}}}]}}]}}"#
        );
        let index = FeedIndex::parse(doc.as_bytes()).unwrap();
        let e = index.resolve("run-script", &req("^0.1")).unwrap();
        assert_eq!((e.size, e.yanked), (123, false));
        assert_eq!(
            e.blob_url("http://h:1/feed/"),
            format!("http://h:1/feed/blobs/sha256/{sha}")
        );
    }

    #[test]
    fn resolves_the_highest_non_yanked_match() {
        let index = sample();
        assert_eq!(
            index
                .resolve("run-script", &req("^0.1"))
                .unwrap()
                .version
                .to_string(),
            "0.1.3"
        );
        assert_eq!(
            index
                .resolve("run-script", &req("*"))
                .unwrap()
                .version
                .to_string(),
            "0.2.0"
        );
        assert_eq!(
            index
                .resolve("run-script", &req("=0.1.0"))
                .unwrap()
                .version
                .to_string(),
            "0.1.0"
        );
    }

    #[test]
    fn yanked_versions_are_never_selected_even_exactly() {
        let index = sample();
        let err = index.resolve("run-script", &req("=0.1.4")).unwrap_err();
        assert!(
            matches!(&err, IndexError::NoMatch { available, .. } if available.contains(&("0.1.4".parse().unwrap(), true)))
        );
        let msg = err.to_string();
        assert!(
            msg.contains("0.1.4 (yanked)")
                && msg.contains("never selected")
                && msg.contains("0.2.0"),
            "{msg}"
        );
        assert!(matches!(
            index.resolve("telemetry", &req("*")),
            Err(IndexError::NoMatch { .. })
        ));
    }

    #[test]
    fn no_match_lists_available_versions_newest_first() {
        let err = sample().resolve("run-script", &req("^1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no version of run-script matches ^1 (yanked versions are never selected); available: 0.2.0, 0.1.4 (yanked), 0.1.3, 0.1.0"
        );
    }

    #[test]
    fn unknown_plugin_suggests_close_ids() {
        let err = sample().resolve("run-scrpt", &req("*")).unwrap_err();
        assert_eq!(
            err,
            IndexError::UnknownPlugin {
                id: "run-scrpt".into(),
                suggestions: vec!["run-script".into()]
            }
        );
        assert!(err.to_string().contains("did you mean run-script?"));
        let err = sample().resolve("health-check", &req("*")).unwrap_err();
        assert!(err.to_string().contains("http-health-check"), "{err}");
        let err = sample().resolve("zzz", &req("*")).unwrap_err();
        assert_eq!(err.to_string(), "the feed has no plugin \"zzz\"");
    }

    #[test]
    fn malformed_and_unknown_schema() {
        assert!(matches!(
            FeedIndex::parse(b"not json"),
            Err(IndexError::Malformed(_))
        ));
        assert!(
            matches!(FeedIndex::parse(b"{}"), Err(IndexError::Malformed(m)) if m.contains("schema"))
        );
        assert!(matches!(
            FeedIndex::parse(br#"{"schema":"1","plugins":[]}"#),
            Err(IndexError::Malformed(_))
        ));
        assert_eq!(
            FeedIndex::parse(br#"{"schema":2,"whatever":true}"#),
            Err(IndexError::UnknownSchema {
                found: 2,
                supported: 1
            })
        );
        assert!(
            matches!(FeedIndex::parse(br#"{"schema":1}"#), Err(IndexError::Malformed(m)) if m.contains("plugins"))
        );
        assert!(matches!(
            FeedIndex::parse(
                br#"{"schema":1,"plugins":[{"id":"a","versions":[{"version":"1"}]}]}"#
            ),
            Err(IndexError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_inconsistent_or_unsafe_entries() {
        let check = |mutate: &dyn Fn(&mut FeedIndex), expect: &str| {
            let mut index = sample();
            mutate(&mut index);
            let err = FeedIndex::parse(&index.to_json()).unwrap_err();
            assert!(matches!(err, IndexError::Invalid { .. }), "{err:?}");
            assert!(
                err.to_string().contains(expect),
                "{err} should contain {expect}"
            );
        };
        check(
            &|i| i.plugins[0].versions[0].sha256 = "ABC".into(),
            "not 64 lowercase hex",
        );
        check(
            &|i| i.plugins[0].versions[0].blob = "../../etc/passwd".into(),
            "relative path",
        );
        check(
            &|i| i.plugins[0].versions[0].blob = "/blobs/x".into(),
            "relative path",
        );
        check(
            &|i| i.plugins[0].versions[0].blob = "https://evil.example/x".into(),
            "relative path",
        );
        check(
            &|i| i.plugins[0].versions[0].manifest.id = "other".into(),
            "manifest says id",
        );
        check(
            &|i| i.plugins[0].versions[0].manifest.version = "9.9.9".parse().unwrap(),
            "manifest says version",
        );
        check(
            &|i| {
                let p = i.plugins[0].clone();
                i.plugins.push(p)
            },
            "listed more than once",
        );
        check(
            &|i| {
                let e = i.plugins[0].versions[0].clone();
                i.plugins[0].versions.push(e)
            },
            "version listed more than once",
        );
    }

    #[test]
    fn add_is_idempotent_and_versions_are_immutable() {
        let mut index = sample();
        assert!(!index.add(entry("run-script", "0.1.0", false)).unwrap());
        let mut changed = entry("run-script", "0.1.0", false);
        changed.sha256 = "b".repeat(64);
        let err = index.add(changed).unwrap_err();
        assert!(
            err.to_string().contains("publish it under a new version"),
            "{err}"
        );
        assert!(index.add(entry("run-script", "0.3.0", false)).unwrap());
        assert_eq!(
            index
                .resolve("run-script", &req("*"))
                .unwrap()
                .version
                .to_string(),
            "0.3.0"
        );
    }

    #[test]
    fn yank_and_unyank() {
        let mut index = sample();
        index
            .set_yanked("run-script", &"0.2.0".parse().unwrap(), true)
            .unwrap();
        assert_eq!(
            index
                .resolve("run-script", &req("*"))
                .unwrap()
                .version
                .to_string(),
            "0.1.3"
        );
        index
            .set_yanked("run-script", &"0.1.4".parse().unwrap(), false)
            .unwrap();
        assert_eq!(
            index
                .resolve("run-script", &req("*"))
                .unwrap()
                .version
                .to_string(),
            "0.1.4"
        );
        assert!(matches!(
            index.set_yanked("nope", &"1.0.0".parse().unwrap(), true),
            Err(IndexError::UnknownPlugin { .. })
        ));
        assert!(matches!(
            index.set_yanked("run-script", &"7.0.0".parse().unwrap(), true),
            Err(IndexError::NoMatch { .. })
        ));
    }

    #[test]
    fn component_manifest_must_agree_with_the_index() {
        let e = entry("run-script", "0.1.0", false);
        assert!(e.check_manifest(&manifest("run-script", "0.1.0")).is_ok());
        let mut other = manifest("run-script", "0.1.0");
        other.capabilities.push(octo_manifest::Capability::Process);
        assert!(matches!(
            e.check_manifest(&other),
            Err(IndexError::ManifestMismatch {
                field: "capabilities",
                ..
            })
        ));
        assert!(matches!(
            e.check_manifest(&manifest("run-script", "0.1.1")),
            Err(IndexError::ManifestMismatch {
                field: "version",
                ..
            })
        ));
    }
}
