//! Administrator grants: which destinations a step plugin outside the built-in set may reach.
//!
//! Stored as `grants.toml` in the home directory, next to `octo.toml` (a separate file, so `configure`
//! and `plugins grant` never rewrite each other's data):
//!
//! ```toml
//! [grants]
//! my-step = ["https://api.example.com:443", "https://*.corp.example:8443"]
//! ```
//!
//! Keys are plugin ids (manifest `id`); values are destination patterns (`scheme://host[:port]`, `*` and
//! `*.domain` wildcards, `:*` for any port) in their normalised form. A grant never widens what a plugin
//! may do beyond its manifest: the runtime checks the manifest first.

use octo_manifest::{Destination, DestinationPattern};
use std::collections::BTreeMap;

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
}

/// Every grant, by plugin id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    by_plugin: BTreeMap<String, Vec<DestinationPattern>>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    grants: BTreeMap<String, Vec<String>>,
}

/// Checks a plugin id as the grants file accepts it.
pub fn check_plugin_id(id: &str) -> Result<(), GrantsError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(GrantsError::PluginId(id.to_string()))
    }
}

impl Grants {
    /// Parses `grants.toml`.
    pub fn parse(text: &str) -> Result<Grants, GrantsError> {
        let file: File = toml::from_str(text)
            .map_err(|e| GrantsError::Syntax(e.message().replace('\n', " ")))?;
        let mut grants = Grants::default();
        for (plugin, patterns) in file.grants {
            check_plugin_id(&plugin)?;
            for p in patterns {
                let pattern =
                    DestinationPattern::parse(&p).map_err(|e| GrantsError::Destination {
                        plugin: plugin.clone(),
                        message: e.to_string(),
                    })?;
                grants.grant(&plugin, pattern)?;
            }
        }
        Ok(grants)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let file = File {
            grants: self
                .by_plugin
                .iter()
                .map(|(id, ps)| (id.clone(), ps.iter().map(|p| p.to_string()).collect()))
                .collect(),
        };
        let body = toml::to_string(&file).expect("grants serialise");
        format!(
            "# Outbound destinations an administrator granted to step plugins outside the built-in set.\n\
             # Change with `octo plugins grant ID DESTINATION` / `octo plugins revoke ID DESTINATION`.\n{body}"
        )
    }

    /// Adds a grant; `false` if it was already there.
    pub fn grant(
        &mut self,
        plugin: &str,
        pattern: DestinationPattern,
    ) -> Result<bool, GrantsError> {
        check_plugin_id(plugin)?;
        let list = self.by_plugin.entry(plugin.to_string()).or_default();
        if list.contains(&pattern) {
            return Ok(false);
        }
        list.push(pattern);
        list.sort_by_key(|p| p.to_string());
        Ok(true)
    }

    /// Removes a grant (exactly this pattern); `false` if there was none.
    pub fn revoke(&mut self, plugin: &str, pattern: &DestinationPattern) -> bool {
        let Some(list) = self.by_plugin.get_mut(plugin) else {
            return false;
        };
        let before = list.len();
        list.retain(|p| p != pattern);
        let removed = list.len() != before;
        if list.is_empty() {
            self.by_plugin.remove(plugin);
        }
        removed
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

    #[test]
    fn round_trip_and_normalisation() {
        let mut g = Grants::default();
        assert!(g.grant("my-step", pat("https://API.example.com")).unwrap());
        assert!(
            !g.grant("my-step", pat("https://api.example.com:443"))
                .unwrap()
        );
        assert!(g.grant("my-step", pat("http://*.corp.example:*")).unwrap());
        assert!(g.grant("other", pat("http://10.0.0.1:8080")).unwrap());
        let text = g.to_toml();
        assert!(
            text.contains(
                "my-step = [\"http://*.corp.example:*\", \"https://api.example.com:443\"]"
            ),
            "{text}"
        );
        assert_eq!(Grants::parse(&text).unwrap(), g);
        assert_eq!(Grants::parse("").unwrap(), Grants::default());
    }

    #[test]
    fn matching_and_revoking() {
        let mut g = Grants::default();
        g.grant("s", pat("https://*.example.com")).unwrap();
        let d = Destination::from_url("https://a.example.com/x").unwrap();
        assert!(g.matching("s", &d).is_some());
        assert!(g.matching("t", &d).is_none());
        assert!(!g.revoke("s", &pat("https://a.example.com")));
        assert!(g.revoke("s", &pat("https://*.example.com:443")));
        assert!(g.is_empty());
        assert!(!g.revoke("s", &pat("https://*.example.com")));
    }

    #[test]
    fn bad_files_and_ids() {
        assert!(matches!(
            Grants::parse("[grants]\n\"a b\" = []\n"),
            Err(GrantsError::PluginId(_))
        ));
        assert!(matches!(
            Grants::parse("[grants]\ns = [\"ftp://x\"]\n"),
            Err(GrantsError::Destination { plugin, .. }) if plugin == "s"
        ));
        assert!(matches!(
            Grants::parse("other = 1\n"),
            Err(GrantsError::Syntax(_))
        ));
        assert!(Grants::default().grant("", pat("https://x")).is_err());
    }
}
