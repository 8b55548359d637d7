//! OCI distribution, the parsing half: manifests and indexes (OCI and Docker v2 media types), digests,
//! the tags list, `Link` pagination, `WWW-Authenticate` challenges and token answers.
//!
//! ```text
//! GET /v2/                                     200, or 401 with the auth scheme
//! GET /v2/{repo}/tags/list?n=N                 {"name":…,"tags":[…]}, Link: <…>; rel="next"
//! GET /v2/{repo}/manifests/{tag|digest}        manifest or index; Docker-Content-Digest
//! GET /v2/{repo}/blobs/{digest}                the layer's bytes (often a redirect to storage)
//! 401 WWW-Authenticate: Bearer realm="…",service="…",scope="repository:{repo}:pull"
//!   → GET realm?service=…&scope=…  (Basic credentials if any) → {"token": …} or {"access_token": …}
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header for manifests: all four.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation oras puts the file name in.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Why an OCI document did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    /// Not the JSON expected.
    #[error("not a valid OCI {what}: {reason}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// The complaint.
        reason: String,
    },
    /// A media type this client does not handle.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// Not `sha256:` + 64 lowercase hex digits.
    #[error("unsupported or invalid digest {0:?} (only sha256 is supported)")]
    BadDigest(String),
}

/// A `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self, OciError> {
        match text.strip_prefix("sha256:") {
            Some(hex) if octo_feed::is_sha256_hex(hex) => Ok(Digest(text.to_string())),
            _ => Err(OciError::BadDigest(text.chars().take(100).collect())),
        }
    }

    /// From a hex sha256.
    pub fn from_hex(hex: &str) -> Result<Self, OciError> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content descriptor (a layer, a config, or a manifest in an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its annotations (e.g. [`TITLE_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
    /// `os/architecture` for a manifest in an index, if given.
    pub platform: Option<(String, String)>,
}

impl Descriptor {
    /// The `org.opencontainers.image.title` annotation, if it is a plain file name (no `/`, not `..`).
    pub fn title(&self) -> Option<&str> {
        self.annotations
            .get(TITLE_ANNOTATION)
            .map(String::as_str)
            .filter(|t| is_plain_file_name(t))
    }
}

/// Whether `name` can be used as a file name as it is: not empty, not `.`/`..`, no `/`, `\` or NUL.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\\', '\0'])
}

/// A parsed manifest document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An image (or artifact) manifest: config and layers.
    Image {
        /// The media type it was served as.
        media_type: String,
        /// `artifactType`, if any (oras sets it).
        artifact_type: Option<String>,
        /// The config descriptor.
        config: Descriptor,
        /// The layers, in order.
        layers: Vec<Descriptor>,
    },
    /// An index / manifest list.
    Index {
        /// The media type it was served as.
        media_type: String,
        /// The manifests it lists.
        manifests: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
}

impl RawDescriptor {
    fn into_descriptor(self) -> Result<Descriptor, OciError> {
        Ok(Descriptor {
            digest: Digest::parse(&self.digest)?,
            media_type: self.media_type,
            size: self.size,
            annotations: self.annotations,
            platform: self.platform.map(|p| (p.os, p.architecture)),
        })
    }
}

impl Manifest {
    /// Parses a manifest; `content_type` is the response's `Content-Type` (used when the document has
    /// no `mediaType` field, as OCI allows).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, OciError> {
        let malformed = |reason: String| OciError::Malformed {
            what: "manifest",
            reason,
        };
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if raw.schema_version != Some(2) {
            return Err(malformed(format!(
                "schemaVersion {:?}, expected 2",
                raw.schema_version
            )));
        }
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .filter(|c| !c.is_empty() && c != "application/json");
        let media_type = match (raw.media_type, content_type) {
            (Some(m), _) => m,
            (None, Some(c)) => c,
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) => OCI_MANIFEST.to_string(),
        };
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = raw
                    .config
                    .ok_or_else(|| malformed("no config".into()))?
                    .into_descriptor()?;
                let layers = raw
                    .layers
                    .unwrap_or_default()
                    .into_iter()
                    .map(RawDescriptor::into_descriptor)
                    .collect::<Result<_, _>>()?;
                Ok(Manifest::Image {
                    media_type,
                    artifact_type: raw.artifact_type,
                    config,
                    layers,
                })
            }
            OCI_INDEX | DOCKER_LIST => {
                let manifests = raw
                    .manifests
                    .ok_or_else(|| malformed("an index without manifests".into()))?
                    .into_iter()
                    .map(RawDescriptor::into_descriptor)
                    .collect::<Result<_, _>>()?;
                Ok(Manifest::Index {
                    media_type,
                    manifests,
                })
            }
            other => Err(OciError::UnsupportedMediaType(other.to_string())),
        }
    }
}

/// From an index, the manifest to use: the one for `linux/<arch>` (this machine's), else the only
/// image manifest, else the first. Attestation manifests (`unknown/unknown`) are skipped.
pub fn pick_from_index<'a>(manifests: &'a [Descriptor], arch: &str) -> Option<&'a Descriptor> {
    let usable: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_none_or(|(os, _)| os != "unknown"))
        .collect();
    usable
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|(os, a)| os == "linux" && a == arch)
        })
        .or_else(|| usable.first())
        .copied()
}

/// The OCI name of this machine's architecture (`amd64`, `arm64`, ...).
pub fn current_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The file name for a layer: its title annotation, else `<hex>` plus an extension from the media type
/// (`.tar.gz`, `.tar`, else none).
pub fn layer_file_name(layer: &Descriptor) -> String {
    if let Some(title) = layer.title() {
        return title.to_string();
    }
    let ext = if layer.media_type.ends_with("tar+gzip") || layer.media_type.ends_with(".tar.gzip") {
        ".tar.gz"
    } else if layer.media_type.ends_with(".tar") || layer.media_type.ends_with("tar") {
        ".tar"
    } else {
        ""
    };
    format!("{}{ext}", layer.digest.hex())
}

/// The tags of a `tags/list` answer (`tags` may be `null` for an empty repository).
pub fn parse_tags(bytes: &[u8]) -> Result<Vec<String>, OciError> {
    #[derive(Deserialize)]
    struct Tags {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let t: Tags = serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: "tags list",
        reason: e.to_string(),
    })?;
    Ok(t.tags.unwrap_or_default())
}

/// The `rel="next"` target of a `Link` header, resolved against `base` (the URL that answered).
pub fn next_link(link: &str, base: &str) -> Option<String> {
    for part in split_outside_quotes(link, ',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = split_outside_quotes(params, ';').into_iter().any(|p| {
            let p = p.trim();
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return url::Url::parse(base)
                .ok()?
                .join(target.trim())
                .ok()
                .map(|u| u.to_string());
        }
    }
    None
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercase (`basic`, `bearer`).
    pub scheme: String,
    /// Its parameters, names lowercase.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` value into its challenges (`Bearer realm="…",service="…", Basic realm="…"`).
/// Quoted strings may hold commas and `\"`.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    for item in split_outside_quotes(header, ',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        // "Scheme param=value" starts a challenge; "param=value" continues the current one.
        let (scheme, rest) = match item.split_once(char::is_whitespace) {
            Some((first, rest)) if !first.contains('=') => (Some(first), rest.trim()),
            _ if !item.contains('=') => (Some(item), ""),
            _ => (None, item),
        };
        if let Some(scheme) = scheme {
            out.push(Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
        if let (Some(current), Some((k, v))) = (out.last_mut(), rest.split_once('=')) {
            current
                .params
                .insert(k.trim().to_ascii_lowercase(), unquote(v.trim()));
        }
    }
    out
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A bearer challenge's token request URL: `realm?service=…&scope=…` (the challenge's scope, else
/// `repository:{repo}:pull`).
pub fn token_url(challenge: &Challenge, repository: &str) -> Option<String> {
    let realm = challenge.param("realm")?;
    let mut url = url::Url::parse(realm).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        let scope = challenge
            .param("scope")
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{repository}:pull"));
        query.append_pair("scope", &scope);
    }
    Some(url.to_string())
}

/// The token of a token server's answer (`token`, else `access_token`).
pub fn parse_token(bytes: &[u8]) -> Result<String, OciError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: "token answer",
        reason: e.to_string(),
    })?;
    a.token
        .or(a.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OciError::Malformed {
            what: "token answer",
            reason: "no token".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn oras_artifact_manifest() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.octo.package",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/zip","digest":"{D2}","size":10,
              "annotations":{{"org.opencontainers.image.title":"app.zip"}}}}]}}"#
        );
        let Manifest::Image {
            layers,
            artifact_type,
            ..
        } = Manifest::parse(doc.as_bytes(), None).unwrap()
        else {
            panic!("not an image")
        };
        assert_eq!(
            artifact_type.as_deref(),
            Some("application/vnd.octo.package")
        );
        assert_eq!(layers[0].title(), Some("app.zip"));
        assert_eq!(layer_file_name(&layers[0]), "app.zip");
        assert_eq!(layers[0].digest.hex(), &D2[7..]);
    }

    #[test]
    fn docker_manifest_and_index() {
        let doc = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{D2}","size":10,
              "annotations":{{"org.opencontainers.image.title":"../etc/passwd"}}}}]}}"#
        );
        let m = Manifest::parse(doc.as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        let Manifest::Image {
            media_type, layers, ..
        } = m
        else {
            panic!()
        };
        assert_eq!(media_type, DOCKER_MANIFEST);
        assert_eq!(layers[0].title(), None, "a title with a path is not used");
        assert_eq!(layer_file_name(&layers[0]), format!("{}.tar.gz", &D2[7..]));

        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"os":"unknown","architecture":"unknown"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":5,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        let Manifest::Index { manifests, .. } = Manifest::parse(index.as_bytes(), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            pick_from_index(&manifests, "amd64")
                .unwrap()
                .digest
                .as_str(),
            D2
        );
        assert!(Manifest::parse(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":2,"mediaType":"x/y"}"#, None),
            Err(OciError::UnsupportedMediaType(_))
        ));
        let bad_digest = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"md5:x","size":1},"layers":[]}"#;
        assert!(matches!(
            Manifest::parse(bad_digest, None),
            Err(OciError::BadDigest(_))
        ));
    }

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push", Basic realm="x\"y""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("x\"y"));
        assert_eq!(
            token_url(&c[0], "a/b").unwrap(),
            "https://auth.example/token?service=registry.example&scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
        let basic = parse_challenges("Basic realm=\"Registry Realm\"");
        assert_eq!(basic[0].scheme, "basic");
        assert_eq!(parse_challenges("Negotiate")[0].scheme, "negotiate");
        assert_eq!(parse_token(br#"{"access_token":"t"}"#).unwrap(), "t");
        assert!(parse_token(br#"{}"#).is_err());
    }

    #[test]
    fn links_and_tags() {
        assert_eq!(
            next_link(
                r#"</v2/a/tags/list?n=2&last=b>; rel="next""#,
                "http://r:5000/v2/a/tags/list?n=2"
            )
            .as_deref(),
            Some("http://r:5000/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"<http://x/p>; rel="prev""#, "http://r/"), None);
        assert_eq!(
            parse_tags(br#"{"name":"a","tags":["1","2"]}"#).unwrap(),
            ["1", "2"]
        );
        assert!(
            parse_tags(br#"{"name":"a","tags":null}"#)
                .unwrap()
                .is_empty()
        );
        assert!(Digest::parse("sha256:ABC").is_err());
    }
}
