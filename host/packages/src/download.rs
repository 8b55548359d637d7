//! "What to download": a resolved package, as the server hands it to a tentacle for one run.
//!
//! A [`PackageDownload`] is plain data (serde, no credentials): the feed's kind and URL (so the
//! receiver can build a [`crate::PackageClient`] and knows which origin credentials belong to), the id,
//! the resolved version and the files with their URLs, sizes and sha256 when known. Credentials travel
//! separately ([`crate::Credentials`]), for that run only.
//!
//! ```json
//! {"feed":"nuget-org","kind":"nuget","feedUrl":"https://api.nuget.org/v3/index.json",
//!  "packageId":"Newtonsoft.Json","version":"13.0.3",
//!  "files":[{"name":"newtonsoft.json.13.0.3.nupkg",
//!            "url":"https://api.nuget.org/v3-flatcontainer/newtonsoft.json/13.0.3/newtonsoft.json.13.0.3.nupkg",
//!            "sha256":null,"size":null}]}
//! ```

use crate::feed::FeedKind;
use serde::{Deserialize, Serialize};

/// A resolved package: everything needed to fetch and verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageDownload {
    /// The feed's name (as configured on the server).
    pub feed: String,
    /// The feed's protocol.
    pub kind: FeedKind,
    /// The feed's URL (credentials go to its origin only).
    pub feed_url: String,
    /// The package id as asked for (NuGet: as given; the cache uses it lowercase).
    pub package_id: String,
    /// The resolved version: NuGet's normalised form, an OCI tag, or the exact HTTP version.
    pub version: String,
    /// OCI: the manifest's digest (`sha256:…`), pinning the version even if the tag moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The files: one for NuGet and HTTP; one per layer for OCI.
    pub files: Vec<PackageFile>,
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageFile {
    /// A plain file name (no `/`): `id.version.nupkg`, an OCI layer's title annotation (else its
    /// digest), or the last segment of the HTTP URL.
    pub name: String,
    /// Where to GET it.
    pub url: String,
    /// Lowercase hex sha256, when known before downloading (OCI layers, an HTTP sidecar, or a file the
    /// server already downloaded). A download that does not match is discarded.
    pub sha256: Option<String>,
    /// Lowercase hex SHA-512, when the feed publishes it (a NuGet registration's `packageHash`)
    /// and no sha256 is known: the download is verified against it instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// Size in bytes, when known before downloading.
    pub size: Option<u64>,
    /// The OCI layer's media type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl PackageDownload {
    /// `FEED:ID@VERSION`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}:{}@{}", self.feed, self.package_id, self.version)
    }

    /// The total size, if every file's size is known.
    pub fn total_size(&self) -> Option<u64> {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Whether every file's sha256 is known.
    pub fn fully_pinned(&self) -> bool {
        self.files.iter().all(|f| f.sha256.is_some())
    }

    /// Whether every file's download can be verified before use: its sha256 or its SHA-512 is
    /// known.
    pub fn verifiable(&self) -> bool {
        self.files
            .iter()
            .all(|f| f.sha256.is_some() || f.sha512.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let d = PackageDownload {
            feed: "f".into(),
            kind: FeedKind::Oci,
            feed_url: "http://127.0.0.1:5000".into(),
            package_id: "team/app".into(),
            version: "1.0.0".into(),
            manifest_digest: Some(format!("sha256:{}", "a".repeat(64))),
            files: vec![PackageFile {
                name: "app.zip".into(),
                url: "http://127.0.0.1:5000/v2/team/app/blobs/sha256:aa".into(),
                sha256: Some("a".repeat(64)),
                sha512: None,
                size: Some(3),
                media_type: Some("application/zip".into()),
            }],
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.contains(r#""kind":"oci""#) && json.contains(r#""packageId":"team/app""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<PackageDownload>(&json).unwrap(), d);
        assert_eq!(d.total_size(), Some(3));
        assert!(d.fully_pinned());
        assert_eq!(d.display_name(), "f:team/app@1.0.0");
    }
}
