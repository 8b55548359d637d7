//! NuGet v3, the parsing half: the service index, the flat container's versions list, and its URLs.
//!
//! ```text
//! GET {feed}                                  service index: resources[] with @id and @type
//!   → resource of type PackageBaseAddress/3.0.0 = {base}/
//! GET {base}/{id-lower}/index.json            {"versions": ["1.0.0", "1.1.0-beta", ...]}
//! GET {base}/{id-lower}/{ver-lower}/{id-lower}.{ver-lower}.nupkg
//! ```

use serde::Deserialize;

/// The resource type of the flat container.
pub const PACKAGE_BASE_ADDRESS: &str = "PackageBaseAddress/3.0.0";

/// A parsed service index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIndex {
    /// The `version` field (`3.0.0`).
    pub version: String,
    /// `(@type, @id)` of every resource, in document order (a resource with several types appears once
    /// per type).
    pub resources: Vec<(String, String)>,
}

/// Why a NuGet document did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NugetError {
    /// Not the JSON expected.
    #[error("not a NuGet v3 {what}: {reason}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The service index has no flat container.
    #[error("the service index has no {PACKAGE_BASE_ADDRESS} resource (is this a NuGet v3 feed?)")]
    NoPackageBaseAddress,
}

#[derive(Deserialize)]
struct RawIndex {
    version: String,
    #[serde(default)]
    resources: Vec<RawResource>,
}

#[derive(Deserialize)]
struct RawResource {
    #[serde(rename = "@id")]
    id: String,
    #[serde(rename = "@type")]
    kind: OneOrMany,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl ServiceIndex {
    /// Parses a service index document.
    pub fn parse(bytes: &[u8]) -> Result<Self, NugetError> {
        let raw: RawIndex = serde_json::from_slice(bytes).map_err(|e| NugetError::Malformed {
            what: "service index",
            reason: e.to_string(),
        })?;
        if !raw.version.starts_with("3.") {
            return Err(NugetError::Malformed {
                what: "service index",
                reason: format!("version {:?}, expected 3.x", raw.version),
            });
        }
        let mut resources = Vec::new();
        for r in raw.resources {
            match r.kind {
                OneOrMany::One(t) => resources.push((t, r.id)),
                OneOrMany::Many(ts) => resources.extend(ts.into_iter().map(|t| (t, r.id.clone()))),
            }
        }
        Ok(ServiceIndex {
            version: raw.version,
            resources,
        })
    }

    /// The flat container's base URL, with a trailing `/`.
    pub fn package_base_address(&self) -> Result<String, NugetError> {
        self.resources
            .iter()
            .find(|(t, _)| t == PACKAGE_BASE_ADDRESS)
            .map(|(_, id)| format!("{}/", id.trim_end_matches('/')))
            .ok_or(NugetError::NoPackageBaseAddress)
    }

    /// The distinct resource types, for `octo feeds test`.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.resources.iter().map(|(t, _)| t.as_str()).collect();
        types.dedup();
        types
    }
}

/// The `versions` of a flat container `index.json`.
pub fn parse_versions(bytes: &[u8]) -> Result<Vec<String>, NugetError> {
    #[derive(Deserialize)]
    struct Versions {
        versions: Vec<String>,
    }
    let v: Versions = serde_json::from_slice(bytes).map_err(|e| NugetError::Malformed {
        what: "versions list",
        reason: e.to_string(),
    })?;
    Ok(v.versions)
}

/// `{base}{id-lower}/index.json`. `id_lower` is a checked id ([`crate::PackageId::lower`]).
pub fn versions_url(base: &str, id_lower: &str) -> String {
    format!("{base}{id_lower}/index.json")
}

/// `{base}{id-lower}/{version}/{id-lower}.{version}.nupkg`, `version` normalised (lowercase).
pub fn package_url(base: &str, id_lower: &str, version: &str) -> String {
    format!("{base}{id_lower}/{version}/{id_lower}.{version}.nupkg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_index() {
        let doc = br#"{"version":"3.0.0","resources":[
            {"@id":"https://f.example/query","@type":"SearchQueryService"},
            {"@id":"https://f.example/flat","@type":["PackageBaseAddress/3.0.0","Other"]}]}"#;
        let index = ServiceIndex::parse(doc).unwrap();
        assert_eq!(
            index.package_base_address().unwrap(),
            "https://f.example/flat/"
        );
        assert_eq!(
            index.resource_types(),
            ["SearchQueryService", "PackageBaseAddress/3.0.0", "Other"]
        );
        let none = ServiceIndex::parse(br#"{"version":"3.0.0","resources":[]}"#).unwrap();
        assert_eq!(
            none.package_base_address(),
            Err(NugetError::NoPackageBaseAddress)
        );
        assert!(ServiceIndex::parse(b"<html>").is_err());
        assert!(ServiceIndex::parse(br#"{"version":"2.0.0"}"#).is_err());
    }

    #[test]
    fn versions_and_urls() {
        assert_eq!(
            parse_versions(br#"{"versions":["1.0.0","2.0.0-beta"]}"#).unwrap(),
            ["1.0.0", "2.0.0-beta"]
        );
        assert!(parse_versions(b"{}").is_err());
        assert_eq!(
            package_url("https://f/flat/", "my.pkg", "1.0.0-rc"),
            "https://f/flat/my.pkg/1.0.0-rc/my.pkg.1.0.0-rc.nupkg"
        );
        assert_eq!(
            versions_url("https://f/flat/", "my.pkg"),
            "https://f/flat/my.pkg/index.json"
        );
    }
}
