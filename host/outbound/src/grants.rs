//! Administrator grants: which destinations a step plugin outside the built-in set may reach, and
//! which component the grant was given to.
//!
//! Stored as `grants.toml` in the home directory, next to `octo.toml` (a separate file, so `configure`
//! and `plugins grant` never rewrite each other's data):
//!
//! ```toml
//! [[grant]]
//! plugin = "my-step"
//! sha256 = "5f1c…"            # exactly this build of my-step
//! destinations = ["https://api.example.com:443", "https://*.corp.example:8443"]
//!
//! [[grant]]
//! plugin = "feed-step"
//! signedBy = "MCowBQYDK2VwAyEA…"   # any version installed from a feed/bundle signed with this key
//! destinations = ["https://api.example.com:443"]
//! ```
//!
//! A grant names the plugin id *and* the component it was given to ([`Binding`]): its sha256, or the
//! pinned feed key its signed provenance was verified with. A component that merely carries the same id
//! in its manifest (a local file, another build) gets nothing from it: [`GrantsFile::for_component`] is
//! the only way from the file to the [`Grants`] a decision reads, and it keeps only the grants bound to
//! the [`ComponentIdentity`] being run. Destinations are patterns (`scheme://host[:port]`, `*` and `*.domain`
//! wildcards, `:*` for any port) in their normalised form. A grant never widens what a plugin may do
//! beyond its manifest: the runtime checks the manifest first.
//!
//! Files from before grants were bound (`[grants] id = [...]`) are read as [`Binding::Unbound`]: such a
//! grant applies to nothing until the host binds it (the server binds it, once, to the component
//! installed under that id when it first reads the file) or an administrator grants it again.

use octo_manifest::{Destination, DestinationPattern};
use std::collections::BTreeMap;
use std::fmt;

/// Why a grants file or a grant is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantsError {
    /// Not valid TOML, or not the expected shape.
    #[error("not a valid grants file: {0}")]
    Syntax(String),
    /// A plugin id that cannot be one.
    #[error("{0:?} is not a plugin id (expected letters, digits, '.', '-' or '_')")]
    PluginId(String),
    /// A destination pattern that does not parse.
    #[error("{plugin}: {message}")]
    Destination {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// A grant whose component is not said right.
    #[error("{plugin}: {message}")]
    Binding {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// Checks a plugin id as the grants file accepts it.
pub fn check_plugin_id(id: &str) -> Result<(), GrantsError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(GrantsError::PluginId(id.to_string()))
    }
}

/// A sha256 digest as 64 lower-case hex digits.
fn check_sha256(plugin: &str, digest: &str) -> Result<String, GrantsError> {
    let digest = digest.to_ascii_lowercase();
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest)
    } else {
        Err(GrantsError::Binding {
            plugin: plugin.to_string(),
            message: format!("{digest:?} is not a sha256 digest (64 hex digits)"),
        })
    }
}

/// What a grant is tied to, besides the plugin id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Binding {
    /// Exactly the component with this sha256 (lower-case hex).
    Sha256(String),
    /// Any version of the plugin that the host installed from a steps feed or bundle whose index it
    /// verified with this pinned key (base64 ed25519): updates from that feed keep the grant; a file,
    /// or a feed signed with another key, does not.
    SignedBy(String),
    /// Written before grants were bound, and not bound since: applies to nothing.
    Unbound,
}

impl Binding {
    /// A digest binding, checked.
    pub fn sha256(plugin: &str, digest: &str) -> Result<Binding, GrantsError> {
        check_sha256(plugin, digest).map(Binding::Sha256)
    }

    /// Whether a run of `component` holds grants bound this way.
    pub fn covers(&self, component: &ComponentIdentity) -> bool {
        match self {
            Binding::Sha256(digest) => *digest == component.sha256,
            Binding::SignedBy(key) => component.signed_by.as_deref() == Some(key.as_str()),
            Binding::Unbound => false,
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Sha256(d) => write!(f, "sha256 {d}"),
            Binding::SignedBy(k) => write!(f, "signed by feed key {k}"),
            Binding::Unbound => f.write_str("no component (from before grants were bound)"),
        }
    }
}

/// The component a run is about, as the host established it from its bytes and the plugin store —
/// never from its manifest alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentIdentity {
    /// The id in its manifest.
    pub id: String,
    /// The sha256 of the bytes being run.
    pub sha256: String,
    /// The pinned feed key its provenance was verified with, when these bytes are exactly what the
    /// host installed under this id from a signed feed or bundle (and the key was recorded).
    pub signed_by: Option<String>,
}

/// One grant: a plugin id, the component, the destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    /// The plugin id.
    pub plugin: String,
    /// The component it was given to.
    pub binding: Binding,
    /// What it may reach, sorted.
    pub destinations: Vec<DestinationPattern>,
    /// Why the binding is what it is, when the host set it (a migrated grant).
    pub note: Option<String>,
}

impl GrantEntry {
    /// Whether a run of `component` holds this grant.
    pub fn covers(&self, component: &ComponentIdentity) -> bool {
        self.plugin == component.id && self.binding.covers(component)
    }
}

/// The grants file: every grant, with the component it is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantsFile {
    entries: Vec<GrantEntry>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    /// The pre-binding form: plugin id → destinations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    grants: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "grant", skip_serializing_if = "Vec::is_empty")]
    entries: Vec<StoredEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoredEntry {
    plugin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed_by: Option<String>,
    destinations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

fn pattern(plugin: &str, text: &str) -> Result<DestinationPattern, GrantsError> {
    DestinationPattern::parse(text).map_err(|e| GrantsError::Destination {
        plugin: plugin.to_string(),
        message: e.to_string(),
    })
}

impl GrantsFile {
    /// Parses `grants.toml` (either form; see the module documentation).
    pub fn parse(text: &str) -> Result<GrantsFile, GrantsError> {
        let file: File = toml::from_str(text)
            .map_err(|e| GrantsError::Syntax(e.message().replace('\n', " ")))?;
        let mut out = GrantsFile::default();
        for (plugin, patterns) in file.grants {
            check_plugin_id(&plugin)?;
            for p in patterns {
                out.grant(&plugin, &Binding::Unbound, pattern(&plugin, &p)?)?;
            }
        }
        for e in file.entries {
            check_plugin_id(&e.plugin)?;
            let binding = match (e.sha256, e.signed_by) {
                (Some(d), None) => Binding::sha256(&e.plugin, &d)?,
                (None, Some(k)) if !k.trim().is_empty() => Binding::SignedBy(k.trim().to_string()),
                _ => {
                    return Err(GrantsError::Binding {
                        plugin: e.plugin,
                        message:
                            "a grant names its component with exactly one of sha256 or signedBy"
                                .into(),
                    });
                }
            };
            for p in &e.destinations {
                out.grant(&e.plugin, &binding, pattern(&e.plugin, p)?)?;
            }
            if e.note.is_some() {
                out.set_note(&e.plugin, &binding, e.note);
            }
        }
        Ok(out)
    }

    /// The file's text (always the bound form; an unbound grant keeps the old form).
    pub fn to_toml(&self) -> String {
        let mut file = File::default();
        for e in &self.entries {
            let destinations: Vec<String> = e.destinations.iter().map(|p| p.to_string()).collect();
            let (sha256, signed_by) = match &e.binding {
                Binding::Sha256(d) => (Some(d.clone()), None),
                Binding::SignedBy(k) => (None, Some(k.clone())),
                Binding::Unbound => {
                    file.grants
                        .entry(e.plugin.clone())
                        .or_default()
                        .extend(destinations);
                    continue;
                }
            };
            file.entries.push(StoredEntry {
                plugin: e.plugin.clone(),
                sha256,
                signed_by,
                destinations,
                note: e.note.clone(),
            });
        }
        let body = toml::to_string(&file).expect("grants serialise");
        format!(
            "# Outbound destinations an administrator granted to step plugins outside the built-in set,\n\
             # each bound to the component granted (its sha256, or the feed key that signed it).\n\
             # Change with `octo plugins grant ID DESTINATION` / `octo plugins revoke ID DESTINATION`.\n{body}"
        )
    }

    /// Adds a grant; `false` if that component already had it.
    pub fn grant(
        &mut self,
        plugin: &str,
        binding: &Binding,
        pattern: DestinationPattern,
    ) -> Result<bool, GrantsError> {
        check_plugin_id(plugin)?;
        let entry = match self
            .entries
            .iter_mut()
            .position(|e| e.plugin == plugin && e.binding == *binding)
        {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(GrantEntry {
                    plugin: plugin.to_string(),
                    binding: binding.clone(),
                    destinations: Vec::new(),
                    note: None,
                });
                self.entries
                    .sort_by(|a, b| (&a.plugin, &a.binding).cmp(&(&b.plugin, &b.binding)));
                self.entries
                    .iter_mut()
                    .find(|e| e.plugin == plugin && e.binding == *binding)
                    .expect("just added")
            }
        };
        if entry.destinations.contains(&pattern) {
            return Ok(false);
        }
        entry.destinations.push(pattern);
        entry.destinations.sort_by_key(|p| p.to_string());
        Ok(true)
    }

    fn set_note(&mut self, plugin: &str, binding: &Binding, note: Option<String>) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.plugin == plugin && e.binding == *binding)
        {
            e.note = note;
        }
    }

    /// Removes `pattern` from every grant of `plugin`, whatever component; `false` if none had it.
    pub fn revoke(&mut self, plugin: &str, pattern: &DestinationPattern) -> bool {
        let mut removed = false;
        for e in self.entries.iter_mut().filter(|e| e.plugin == plugin) {
            let before = e.destinations.len();
            e.destinations.retain(|p| p != pattern);
            removed |= e.destinations.len() != before;
        }
        self.entries.retain(|e| !e.destinations.is_empty());
        removed
    }

    /// Binds the unbound grants of `plugin` to `binding`, with `note`; `false` if it had none.
    pub fn bind(&mut self, plugin: &str, binding: &Binding, note: &str) -> bool {
        let Some(i) = self
            .entries
            .iter()
            .position(|e| e.plugin == plugin && e.binding == Binding::Unbound)
        else {
            return false;
        };
        let old = self.entries.remove(i);
        for p in old.destinations {
            self.grant(plugin, binding, p).expect("the id was checked");
        }
        self.set_note(plugin, binding, Some(note.to_string()));
        true
    }

    /// The ids with grants that are not bound to any component.
    pub fn unbound(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.binding == Binding::Unbound)
            .map(|e| e.plugin.as_str())
    }

    /// Every grant.
    pub fn entries(&self) -> &[GrantEntry] {
        &self.entries
    }

    /// The grants a run of `component` holds: those of its id bound to it, and no others.
    pub fn for_component(&self, component: &ComponentIdentity) -> Grants {
        let mut grants = Grants::default();
        for e in self.entries.iter().filter(|e| e.covers(component)) {
            for p in &e.destinations {
                grants.add(&e.plugin, p.clone());
            }
        }
        grants
    }

    /// A grant of `plugin` that covers `destination` but is bound to another component than
    /// `component` (to explain a denial).
    pub fn held_by_another_build(
        &self,
        component: &ComponentIdentity,
        destination: &Destination,
    ) -> Option<&GrantEntry> {
        self.entries.iter().find(|e| {
            e.plugin == component.id
                && !e.binding.covers(component)
                && e.destinations.iter().any(|p| p.matches(destination))
        })
    }

    /// Every `(plugin, binding, pattern)`, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Binding, &DestinationPattern)> {
        self.entries.iter().flat_map(|e| {
            e.destinations
                .iter()
                .map(move |p| (e.plugin.as_str(), &e.binding, p))
        })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The grants that hold for one run, by plugin id: what [`GrantsFile::for_component`] kept for the
/// component being run (or, in tests and for a one-off question, grants made here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    by_plugin: BTreeMap<String, Vec<DestinationPattern>>,
}

impl Grants {
    fn add(&mut self, plugin: &str, pattern: DestinationPattern) {
        let list = self.by_plugin.entry(plugin.to_string()).or_default();
        if !list.contains(&pattern) {
            list.push(pattern);
            list.sort_by_key(|p| p.to_string());
        }
    }

    /// Adds a grant; `false` if it was already there.
    pub fn grant(
        &mut self,
        plugin: &str,
        pattern: DestinationPattern,
    ) -> Result<bool, GrantsError> {
        check_plugin_id(plugin)?;
        if self.for_plugin(plugin).contains(&pattern) {
            return Ok(false);
        }
        self.add(plugin, pattern);
        Ok(true)
    }

    /// A plugin's grants.
    pub fn for_plugin(&self, plugin: &str) -> &[DestinationPattern] {
        self.by_plugin.get(plugin).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first of a plugin's grants that covers `destination`.
    pub fn matching(&self, plugin: &str, destination: &Destination) -> Option<&DestinationPattern> {
        self.for_plugin(plugin)
            .iter()
            .find(|p| p.matches(destination))
    }

    /// Every `(plugin, pattern)`, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DestinationPattern)> {
        self.by_plugin
            .iter()
            .flat_map(|(id, ps)| ps.iter().map(move |p| (id.as_str(), p)))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_plugin.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> DestinationPattern {
        DestinationPattern::parse(s).unwrap()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn sha(d: &str) -> Binding {
        Binding::Sha256(d.into())
    }

    fn component(id: &str, sha256: &str, signed_by: Option<&str>) -> ComponentIdentity {
        ComponentIdentity {
            id: id.into(),
            sha256: sha256.into(),
            signed_by: signed_by.map(Into::into),
        }
    }

    #[test]
    fn round_trip_and_normalisation() {
        let mut g = GrantsFile::default();
        assert!(
            g.grant("my-step", &sha(A), pat("https://API.example.com"))
                .unwrap()
        );
        assert!(
            !g.grant("my-step", &sha(A), pat("https://api.example.com:443"))
                .unwrap()
        );
        assert!(
            g.grant("my-step", &sha(A), pat("http://*.corp.example:*"))
                .unwrap()
        );
        assert!(
            g.grant(
                "other",
                &Binding::SignedBy("KEY".into()),
                pat("http://10.0.0.1:8080")
            )
            .unwrap()
        );
        let text = g.to_toml();
        assert!(
            text.contains(&format!(
                "[[grant]]\nplugin = \"my-step\"\nsha256 = \"{A}\"\ndestinations = [\"http://*.corp.example:*\", \"https://api.example.com:443\"]"
            )),
            "{text}"
        );
        assert!(text.contains("signedBy = \"KEY\""), "{text}");
        assert_eq!(GrantsFile::parse(&text).unwrap(), g);
        assert_eq!(GrantsFile::parse("").unwrap(), GrantsFile::default());
    }

    /// Finding 7: a grant follows the component granted, not the id a manifest claims.
    #[test]
    fn a_grant_holds_only_for_the_component_it_is_bound_to() {
        let mut g = GrantsFile::default();
        g.grant("s", &sha(A), pat("https://*.example.com")).unwrap();
        g.grant(
            "f",
            &Binding::SignedBy("KEY".into()),
            pat("https://f.example.com"),
        )
        .unwrap();
        let d = Destination::from_url("https://a.example.com/x").unwrap();
        let granted = g.for_component(&component("s", A, None));
        assert!(granted.matching("s", &d).is_some());
        // The same id, other bytes: nothing; and the grant elsewhere is named.
        let relabelled = component("s", B, None);
        assert!(g.for_component(&relabelled).is_empty());
        assert_eq!(
            g.held_by_another_build(&relabelled, &d).map(|e| &e.binding),
            Some(&sha(A))
        );
        // The same bytes under another id: nothing either.
        assert!(g.for_component(&component("t", A, None)).is_empty());
        // Signed provenance: any build signed with that key (an update from the feed) holds it; an
        // unsigned build or one signed with another key does not.
        let f = Destination::from_url("https://f.example.com").unwrap();
        assert!(
            g.for_component(&component("f", B, Some("KEY")))
                .matching("f", &f)
                .is_some()
        );
        assert!(g.for_component(&component("f", B, None)).is_empty());
        assert!(
            g.for_component(&component("f", B, Some("OTHER")))
                .is_empty()
        );
    }

    #[test]
    fn old_files_are_unbound_until_bound() {
        let mut g = GrantsFile::parse(
            "[grants]\nmy-step = [\"https://api.example.com\"]\nother = [\"http://x:1\"]\n",
        )
        .unwrap();
        assert_eq!(g.unbound().collect::<Vec<_>>(), ["my-step", "other"]);
        assert!(g.for_component(&component("my-step", A, None)).is_empty());
        assert!(g.bind("my-step", &sha(A), "bound on first load"));
        assert!(!g.bind("my-step", &sha(A), "again"));
        let d = Destination::from_url("https://api.example.com").unwrap();
        assert!(
            g.for_component(&component("my-step", A, None))
                .matching("my-step", &d)
                .is_some()
        );
        let text = g.to_toml();
        let back = GrantsFile::parse(&text).unwrap();
        assert_eq!(back, g, "{text}");
        assert_eq!(
            back.entries()[0].note.as_deref(),
            Some("bound on first load")
        );
        assert_eq!(back.unbound().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn revoking_takes_a_destination_from_every_build() {
        let mut g = GrantsFile::default();
        g.grant("s", &sha(A), pat("https://*.example.com")).unwrap();
        g.grant("s", &sha(B), pat("https://*.example.com")).unwrap();
        assert!(!g.revoke("s", &pat("https://a.example.com")));
        assert!(g.revoke("s", &pat("https://*.example.com:443")));
        assert!(g.is_empty());
        assert!(!g.revoke("s", &pat("https://*.example.com")));
    }

    #[test]
    fn bad_files_and_ids() {
        assert!(matches!(
            GrantsFile::parse("[grants]\n\"a b\" = []\n"),
            Err(GrantsError::PluginId(_))
        ));
        assert!(matches!(
            GrantsFile::parse("[grants]\ns = [\"ftp://x\"]\n"),
            Err(GrantsError::Destination { plugin, .. }) if plugin == "s"
        ));
        assert!(matches!(
            GrantsFile::parse("other = 1\n"),
            Err(GrantsError::Syntax(_))
        ));
        assert!(matches!(
            GrantsFile::parse("[[grant]]\nplugin = \"s\"\ndestinations = []\n"),
            Err(GrantsError::Binding { .. })
        ));
        assert!(matches!(
            GrantsFile::parse("[[grant]]\nplugin = \"s\"\nsha256 = \"abc\"\ndestinations = []\n"),
            Err(GrantsError::Binding { .. })
        ));
        assert!(Grants::default().grant("", pat("https://x")).is_err());
        assert!(Grants::default().grant("..", pat("https://x")).is_err());
    }
}
