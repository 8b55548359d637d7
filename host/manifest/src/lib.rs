//! The plugin manifest: what a component says about itself before it runs.
//!
//! Every Octo plugin carries a small JSON document in a custom section named [`SECTION_NAME`]. The host
//! reads it without instantiating the component ([`read_manifest`]), refuses components that lack it or
//! that target an API version it does not support ([`Manifest::check_api_version`]), and uses the declared
//! outbound destinations ([`destination`]) and capabilities to decide what the plugin may do.
//!
//! This crate only parses and encodes bytes; it does no I/O.
#![deny(missing_docs)]

pub mod destination;
mod section;

pub use destination::{Destination, DestinationError, DestinationPattern};
pub use section::{
    ComponentLimits, SectionError, embed_manifest, read_manifest, read_manifest_within,
};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Name of the custom section that holds the manifest.
pub const SECTION_NAME: &str = "octo:manifest";

/// The plugin API version this host implements: the version of the `octo:plugin` WIT package.
pub const HOST_API_VERSION: semver::Version = semver::Version::new(0, 1, 0);

/// What kind of plugin a component is; each kind is one world in `wit/plugin.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// A deployment step (`step` world).
    Step,
    /// The update check (`update-check` world).
    UpdateCheck,
    /// Anonymous usage counts (`telemetry` world).
    Telemetry,
    /// In-app messages (`experiences` world).
    Experiences,
    /// Dynamic extensions / feature toggles (`dynamic-extensions` world).
    DynamicExtensions,
}

impl PluginKind {
    /// The kebab-case name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Step => "step",
            PluginKind::UpdateCheck => "update-check",
            PluginKind::Telemetry => "telemetry",
            PluginKind::Experiences => "experiences",
            PluginKind::DynamicExtensions => "dynamic-extensions",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host capability beyond the sandbox defaults that a plugin may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Run native commands on the machine that runs the step (`octo:plugin/process`).
    Process,
}

/// The manifest document, as stored in the custom section and repeated in the feed index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Stable identifier, e.g. `run-script`.
    pub id: String,
    /// The plugin's own version (semver).
    pub version: semver::Version,
    /// Which world the component implements.
    pub kind: PluginKind,
    /// The `octo:plugin` API version the component was built against.
    pub api_version: semver::Version,
    /// One line for listings.
    #[serde(default)]
    pub description: String,
    /// Outbound destinations the plugin needs, as patterns (see [`DestinationPattern`]).
    #[serde(default)]
    pub outbound: Vec<String>,
    /// Capabilities beyond the sandbox defaults.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
}

/// Why a manifest document is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The JSON is malformed or misses a required field.
    #[error("the plugin manifest is not valid: {0}")]
    Json(String),
    /// The id is empty, starts with `.` (so `.` and `..` are refused: ids name files and
    /// directories) or has characters other than `a-z 0-9 - _ .`.
    #[error(
        "the plugin id {0:?} is not valid: use lowercase letters, digits, '-', '_' and '.', not starting with '.'"
    )]
    BadId(String),
    /// An outbound entry is not a destination pattern.
    #[error("outbound destination {pattern:?} in the manifest is not valid: {reason}")]
    BadOutbound {
        /// The entry as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin targets an API this host does not implement.
    #[error(
        "plugin {id} {version} needs plugin API {wanted}, but this host supports {supported}; install a version of the plugin built for API {supported}"
    )]
    UnsupportedApi {
        /// Plugin id.
        id: String,
        /// Plugin version.
        version: String,
        /// The API version the plugin asks for.
        wanted: String,
        /// The API version this host implements.
        supported: String,
    },
    /// The component is of another kind than the caller needs.
    #[error("plugin {id} is a {actual} plugin, not a {expected} plugin")]
    WrongKind {
        /// Plugin id.
        id: String,
        /// What the caller wanted.
        expected: PluginKind,
        /// What the manifest says.
        actual: PluginKind,
    },
}

impl Manifest {
    /// Parses and validates a manifest document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The canonical JSON encoding (what `embed_manifest` writes).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// Checks the fields that serde cannot: id syntax and outbound patterns.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 128
            && !self.id.starts_with('.')
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !id_ok {
            return Err(ManifestError::BadId(self.id.clone()));
        }
        for pattern in &self.outbound {
            DestinationPattern::check_template(pattern).map_err(|e| {
                ManifestError::BadOutbound {
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        Ok(())
    }

    /// Refuses a plugin built for an API version this host does not implement.
    ///
    /// Compatible means: same major version and a minor (for 0.x: the same minor) no newer than the host's.
    pub fn check_api_version(&self) -> Result<(), ManifestError> {
        if api_compatible(&self.api_version, &HOST_API_VERSION) {
            Ok(())
        } else {
            Err(ManifestError::UnsupportedApi {
                id: self.id.clone(),
                version: self.version.to_string(),
                wanted: self.api_version.to_string(),
                supported: HOST_API_VERSION.to_string(),
            })
        }
    }

    /// Refuses a plugin of another kind than `expected`.
    pub fn check_kind(&self, expected: PluginKind) -> Result<(), ManifestError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(ManifestError::WrongKind {
                id: self.id.clone(),
                expected,
                actual: self.kind,
            })
        }
    }

    /// Whether the manifest declares `capability`.
    pub fn has_capability(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// Whether a plugin built for API `plugin` runs on a host implementing API `host`.
pub fn api_compatible(plugin: &semver::Version, host: &semver::Version) -> bool {
    if plugin.major != host.major || !plugin.pre.is_empty() {
        return false;
    }
    if host.major == 0 {
        plugin.minor == host.minor
    } else {
        plugin.minor <= host.minor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest::from_json(
            br#"{"id":"http-health-check","version":"0.1.0","kind":"step","apiVersion":"0.1.0",
                 "description":"GET a URL","outbound":["{{url}}"],"capabilities":[]}"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_and_round_trips() {
        let m = sample();
        assert_eq!(m.kind, PluginKind::Step);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn optional_lists_default_to_empty() {
        let m = Manifest::from_json(
            br#"{"id":"a","version":"1.0.0","kind":"telemetry","apiVersion":"0.1.0"}"#,
        )
        .unwrap();
        assert!(m.outbound.is_empty() && m.capabilities.is_empty());
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(
            Manifest::from_json(b"{"),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::from_json(br#"{"id":"a","version":"1","kind":"step","apiVersion":"0.1.0"}"#),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::from_json(
                br#"{"id":"a","version":"1.0.0","kind":"daemon","apiVersion":"0.1.0"}"#
            ),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::from_json(
                br#"{"id":"A B","version":"1.0.0","kind":"step","apiVersion":"0.1.0"}"#
            ),
            Err(ManifestError::BadId(_))
        ));
        for id in [".", "..", ".hidden"] {
            let doc =
                format!(r#"{{"id":"{id}","version":"1.0.0","kind":"step","apiVersion":"0.1.0"}}"#);
            assert!(
                matches!(
                    Manifest::from_json(doc.as_bytes()),
                    Err(ManifestError::BadId(_))
                ),
                "{id}"
            );
        }
        assert!(matches!(
            Manifest::from_json(
                br#"{"id":"a","version":"1.0.0","kind":"step","apiVersion":"0.1.0","outbound":["ftp://x"]}"#
            ),
            Err(ManifestError::BadOutbound { .. })
        ));
        assert!(matches!(
            Manifest::from_json(
                br#"{"id":"a","version":"1.0.0","kind":"step","apiVersion":"0.1.0","capabilities":["sockets"]}"#
            ),
            Err(ManifestError::Json(_))
        ));
    }

    #[test]
    fn api_versions() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert!(api_compatible(&v("0.1.0"), &v("0.1.3")));
        assert!(api_compatible(&v("0.1.5"), &v("0.1.3")));
        assert!(!api_compatible(&v("0.2.0"), &v("0.1.3")));
        assert!(api_compatible(&v("1.2.0"), &v("1.3.0")));
        assert!(!api_compatible(&v("1.4.0"), &v("1.3.0")));
        assert!(!api_compatible(&v("2.0.0"), &v("1.3.0")));
        assert!(!api_compatible(&v("0.1.0-rc.1"), &v("0.1.0")));
        let mut m = sample();
        m.api_version = v("9.0.0");
        let err = m.check_api_version().unwrap_err().to_string();
        assert!(
            err.contains("needs plugin API 9.0.0") && err.contains("supports 0.1.0"),
            "{err}"
        );
    }

    #[test]
    fn kind_check_names_both_kinds() {
        let err = sample()
            .check_kind(PluginKind::Telemetry)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "plugin http-health-check is a step plugin, not a telemetry plugin"
        );
    }
}
