//! NuGet v3, the parsing half: the service index, the flat container's versions list, and its URLs.
//!
//! ```text
//! GET {feed}                                  service index: resources[] with @id and @type
//!   → resource of type PackageBaseAddress/3.0.0 = {base}/
//! GET {base}/{id-lower}/index.json            {"versions": ["1.0.0", "1.1.0-beta", ...]}
//! GET {base}/{id-lower}/{ver-lower}/{id-lower}.{ver-lower}.nupkg
//! ```
//!
//! The flat container publishes no digest. The registration resource (`RegistrationsBaseUrl*`) may:
//!
//! ```text
//! GET {registrations}/{id-lower}/index.json   {"items": [page, ...]}
//!   page: {"@id": URL, "lower", "upper", "items": [leaf, ...]}   (items absent: GET the page's @id)
//!   leaf: {"catalogEntry": {"@id": URL, "version", "packageHash", "packageHashAlgorithm"} | URL}
//!   catalog leaf (GET catalogEntry's @id): {"version", "packageHash", "packageHashAlgorithm"}
//! ```
//!
//! `packageHash` is the base64 of the `.nupkg`'s SHA-512 when `packageHashAlgorithm` is `SHA512`
//! (the only algorithm NuGet uses); [`PublishedHash`] turns it into lowercase hex.

use serde::Deserialize;

/// The resource type of the flat container.
pub const PACKAGE_BASE_ADDRESS: &str = "PackageBaseAddress/3.0.0";

/// The resource types of the registration resource, preferred first (`3.6.0` lists SemVer 2.0.0
/// versions too).
pub const REGISTRATIONS_BASE_URL: [&str; 5] = [
    "RegistrationsBaseUrl/3.6.0",
    "RegistrationsBaseUrl/3.4.0",
    "RegistrationsBaseUrl/3.0.0-rc",
    "RegistrationsBaseUrl/3.0.0-beta",
    "RegistrationsBaseUrl",
];

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

    /// The registration resource's base URL, with a trailing `/`, if the feed has one.
    pub fn registrations_base_url(&self) -> Option<String> {
        REGISTRATIONS_BASE_URL.iter().find_map(|wanted| {
            self.resources
                .iter()
                .find(|(t, _)| t == wanted)
                .map(|(_, id)| format!("{}/", id.trim_end_matches('/')))
        })
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

/// `{registrations}{id-lower}/index.json`.
pub fn registration_url(base: &str, id_lower: &str) -> String {
    format!("{base}{id_lower}/index.json")
}

/// A package digest a feed publishes (`packageHash`), as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedHash {
    /// Lowercase hex of the SHA-512.
    pub sha512: String,
}

impl PublishedHash {
    /// `packageHash` (base64) with its `packageHashAlgorithm`: only `SHA512` (any case) of 64 bytes
    /// is accepted.
    pub fn parse(hash: &str, algorithm: &str) -> Result<Self, NugetError> {
        use base64::Engine as _;
        let malformed = |reason: String| NugetError::Malformed {
            what: "registration",
            reason,
        };
        if !algorithm.eq_ignore_ascii_case("SHA512") {
            return Err(malformed(format!(
                "packageHashAlgorithm {algorithm:?}, expected SHA512"
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hash.trim())
            .map_err(|e| malformed(format!("packageHash is not base64: {e}")))?;
        if bytes.len() != 64 {
            return Err(malformed(format!(
                "packageHash has {} bytes, a SHA-512 has 64",
                bytes.len()
            )));
        }
        Ok(Self {
            sha512: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// What a registration page or leaf says of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The version is listed with its digest.
    Hash(PublishedHash),
    /// The version is listed without a digest; its catalog leaf (this URL) may have it.
    CatalogLeaf(String),
    /// The version is listed, with neither a digest nor a catalog leaf.
    NoHash,
}

/// A registration index or page, as far as finding one version's digest goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationLookup {
    /// The version's entry.
    Found(Registered),
    /// Not inline: the page at this URL covers the version.
    Page(String),
    /// The document does not list the version.
    Absent,
}

#[derive(Deserialize)]
struct RawRegistration {
    #[serde(default)]
    items: Vec<RawPageOrLeaf>,
}

#[derive(Deserialize)]
struct RawPageOrLeaf {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    lower: Option<String>,
    #[serde(default)]
    upper: Option<String>,
    #[serde(default)]
    items: Option<Vec<RawPageOrLeaf>>,
    #[serde(rename = "catalogEntry", default)]
    catalog_entry: Option<RawCatalogEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCatalogEntry {
    Url(String),
    Entry(RawEntry),
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(rename = "packageHash", default)]
    package_hash: Option<String>,
    #[serde(rename = "packageHashAlgorithm", default)]
    package_hash_algorithm: Option<String>,
}

impl RawEntry {
    fn registered(&self) -> Result<Registered, NugetError> {
        match (&self.package_hash, &self.package_hash_algorithm) {
            (Some(hash), algorithm) => Ok(Registered::Hash(PublishedHash::parse(
                hash,
                algorithm.as_deref().unwrap_or("SHA512"),
            )?)),
            (None, _) => Ok(match &self.id {
                Some(url) => Registered::CatalogLeaf(url.clone()),
                None => Registered::NoHash,
            }),
        }
    }
}

/// Finds `version` in a registration index or page. `same_version` compares a listed version with
/// the wanted one (NuGet versions compare normalised); `in_range(lower, upper)` says whether a page
/// that is not inline covers it.
pub fn find_registered(
    bytes: &[u8],
    same_version: &dyn Fn(&str) -> bool,
    in_range: &dyn Fn(&str, &str) -> bool,
) -> Result<RegistrationLookup, NugetError> {
    let raw: RawRegistration =
        serde_json::from_slice(bytes).map_err(|e| NugetError::Malformed {
            what: "registration",
            reason: e.to_string(),
        })?;
    let mut pages = Vec::new();
    // An index holds pages; a page document holds leaves; an inline page holds leaves too.
    let mut leaves: Vec<&RawPageOrLeaf> = Vec::new();
    for item in &raw.items {
        if item.catalog_entry.is_some() {
            leaves.push(item);
        } else if let Some(items) = &item.items {
            leaves.extend(items.iter());
        } else if let (Some(id), Some(lower), Some(upper)) = (&item.id, &item.lower, &item.upper) {
            pages.push((id, lower, upper));
        }
    }
    for leaf in leaves {
        match &leaf.catalog_entry {
            Some(RawCatalogEntry::Entry(entry))
                if entry.version.as_deref().is_some_and(same_version) =>
            {
                return Ok(RegistrationLookup::Found(entry.registered()?));
            }
            Some(RawCatalogEntry::Url(url)) if url_names_version(url, same_version) => {
                return Ok(RegistrationLookup::Found(Registered::CatalogLeaf(
                    url.clone(),
                )));
            }
            _ => {}
        }
    }
    Ok(pages
        .into_iter()
        .find(|(_, lower, upper)| in_range(lower, upper))
        .map(|(id, _, _)| RegistrationLookup::Page(id.clone()))
        .unwrap_or(RegistrationLookup::Absent))
}

/// A catalog leaf's URL ends in `…/{version}.json`.
fn url_names_version(url: &str, same_version: &dyn Fn(&str) -> bool) -> bool {
    url.rsplit('/')
        .next()
        .and_then(|last| last.strip_suffix(".json"))
        .is_some_and(same_version)
}

/// The digest in a catalog leaf, if it has one.
pub fn parse_catalog_leaf(bytes: &[u8]) -> Result<Option<PublishedHash>, NugetError> {
    let entry: RawEntry = serde_json::from_slice(bytes).map_err(|e| NugetError::Malformed {
        what: "catalog leaf",
        reason: e.to_string(),
    })?;
    match entry.registered()? {
        Registered::Hash(hash) => Ok(Some(hash)),
        _ => Ok(None),
    }
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

    fn same(wanted: &'static str) -> impl Fn(&str) -> bool {
        move |v: &str| v.eq_ignore_ascii_case(wanted)
    }

    #[test]
    fn registrations_and_published_hashes() {
        use base64::Engine as _;
        let index = ServiceIndex::parse(
            br#"{"version":"3.0.0","resources":[
            {"@id":"https://f/reg","@type":"RegistrationsBaseUrl"},
            {"@id":"https://f/reg2/","@type":["RegistrationsBaseUrl/3.6.0"]}]}"#,
        )
        .unwrap();
        assert_eq!(index.registrations_base_url().unwrap(), "https://f/reg2/");
        assert_eq!(
            registration_url("https://f/reg2/", "a.b"),
            "https://f/reg2/a.b/index.json"
        );

        let digest = [7u8; 64];
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        let hex = "07".repeat(64);
        assert_eq!(PublishedHash::parse(&b64, "SHA512").unwrap().sha512, hex);
        assert!(PublishedHash::parse(&b64, "SHA256").is_err());
        assert!(PublishedHash::parse("AAAA", "SHA512").is_err());
        assert!(PublishedHash::parse("not base64!", "SHA512").is_err());

        let any = |_: &str, _: &str| true;
        // Inline page with the hash in the catalog entry.
        let doc = format!(
            r#"{{"items":[{{"@id":"https://f/p","lower":"1.0.0","upper":"2.0.0","items":[
                {{"catalogEntry":{{"@id":"https://f/c/1.0.0.json","version":"1.0.0"}}}},
                {{"catalogEntry":{{"version":"2.0.0","packageHash":"{b64}","packageHashAlgorithm":"SHA512"}}}}]}}]}}"#
        );
        assert_eq!(
            find_registered(doc.as_bytes(), &same("2.0.0"), &any).unwrap(),
            RegistrationLookup::Found(Registered::Hash(PublishedHash {
                sha512: hex.clone()
            }))
        );
        // Listed without a hash: its catalog leaf.
        assert_eq!(
            find_registered(doc.as_bytes(), &same("1.0.0"), &any).unwrap(),
            RegistrationLookup::Found(Registered::CatalogLeaf("https://f/c/1.0.0.json".into()))
        );
        assert_eq!(
            find_registered(doc.as_bytes(), &same("3.0.0"), &any).unwrap(),
            RegistrationLookup::Absent
        );
        // Pages not inline: the one whose range covers the version.
        let pages = br#"{"items":[{"@id":"https://f/p1","lower":"1.0.0","upper":"1.9.0"},
                                  {"@id":"https://f/p2","lower":"2.0.0","upper":"3.0.0"}]}"#;
        let in_second = |lower: &str, _: &str| lower == "2.0.0";
        assert_eq!(
            find_registered(pages, &same("2.5.0"), &in_second).unwrap(),
            RegistrationLookup::Page("https://f/p2".into())
        );
        // npm nuget-server's leaves: no hash, a catalog @id.
        let leaf = format!(
            r#"{{"version":"1.0.0","packageHash":"{b64}","packageHashAlgorithm":"SHA512"}}"#
        );
        assert_eq!(
            parse_catalog_leaf(leaf.as_bytes()).unwrap(),
            Some(PublishedHash { sha512: hex })
        );
        assert_eq!(parse_catalog_leaf(br#"{"version":"1.0.0"}"#).unwrap(), None);
        assert!(find_registered(b"<html>", &same("1.0.0"), &any).is_err());
    }
}
