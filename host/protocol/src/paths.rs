//! The call paths. Every call is a `POST`.
//!
//! | path | request body | answer body |
//! | --- | --- | --- |
//! | [`CAPABILITIES`] | [`Empty`](crate::Empty) | [`Capabilities`](crate::Capabilities) |
//! | [`STEP_START`] | [`StartStep`](crate::StartStep) | [`StepStarted`](crate::StepStarted) |
//! | [`STEP_STATUS`] | [`StatusRequest`](crate::StatusRequest) | [`StepStatus`](crate::StepStatus) |
//! | [`STEP_CANCEL`] | [`TicketRequest`](crate::TicketRequest) | [`StepStatus`](crate::StepStatus) (no lines) |
//! | [`STEP_COMPLETE`] | [`TicketRequest`](crate::TicketRequest) | [`Completed`](crate::Completed) |
//! | [`PLUGIN_HAS`] | [`PluginQuery`](crate::PluginQuery) | [`PluginPresence`](crate::PluginPresence) |
//! | [`plugin_put`]`(digest)` | the component's bytes | [`Stored`](crate::Stored) |
//! | [`PLUGIN_GET`] | [`PluginQuery`](crate::PluginQuery) | the component's bytes |
//! | [`file_upload`]`(path, digest)` | the file's bytes | [`Stored`](crate::Stored) |
//! | [`FILE_DOWNLOAD`] | [`FileDownload`](crate::FileDownload) | the file's bytes, digest in [`SHA256_HEADER`] |
//! | [`PACKAGE_HAS`] | [`PackageQuery`](crate::PackageQuery) | [`PackagePresence`](crate::PackagePresence) |
//! | [`package_put`]`(file)` | the package file's bytes | [`Stored`](crate::Stored) |

use crate::{RelativePath, RelativePathError, Sha256Digest, ValueError};

/// What the tentacle is and can do; also the health check.
pub const CAPABILITIES: &str = "/v1/capabilities";
/// Start a step (idempotent per ticket).
pub const STEP_START: &str = "/v1/steps/start";
/// A run's state and log lines after a sequence number (long poll).
pub const STEP_STATUS: &str = "/v1/steps/status";
/// Stop a run.
pub const STEP_CANCEL: &str = "/v1/steps/cancel";
/// Forget a finished run (its work directory is removed).
pub const STEP_COMPLETE: &str = "/v1/steps/complete";
/// Whether a plugin is cached.
pub const PLUGIN_HAS: &str = "/v1/plugins/has";
/// Prefix of the plugin upload path; see [`plugin_put`].
pub const PLUGIN_PUT_PREFIX: &str = "/v1/plugins/put/";
/// Download a cached plugin.
pub const PLUGIN_GET: &str = "/v1/plugins/get";
/// Path of the file upload call; its query names the file and digest, see [`file_upload`].
pub const FILE_UPLOAD: &str = "/v1/files/upload";
/// Download a file.
pub const FILE_DOWNLOAD: &str = "/v1/files/download";
/// Which package files a tentacle has cached.
pub const PACKAGE_HAS: &str = "/v1/packages/has";
/// Path of the package upload call; its query names the file, see [`package_put`].
pub const PACKAGE_PUT: &str = "/v1/packages/put";
/// Answer header of downloads: the hex SHA-256 of the body.
pub const SHA256_HEADER: &str = "x-octo-sha256";

/// Every call path a tentacle serves (prefixes end with `/`).
pub const ALL: &[&str] = &[
    CAPABILITIES,
    STEP_START,
    STEP_STATUS,
    STEP_CANCEL,
    STEP_COMPLETE,
    PLUGIN_HAS,
    PLUGIN_PUT_PREFIX,
    PLUGIN_GET,
    FILE_UPLOAD,
    FILE_DOWNLOAD,
    PACKAGE_HAS,
    PACKAGE_PUT,
];

/// The path (with query) that uploads one file of a package into the tentacle's package cache.
pub fn package_put(file: &crate::PackageFileRef, package: &crate::StepPackage) -> String {
    format!(
        "{PACKAGE_PUT}?sha256={}&name={}&feed={}&id={}&version={}",
        file.sha256,
        percent_encode(&file.name),
        percent_encode(&package.feed),
        percent_encode(&package.id),
        percent_encode(&package.version),
    )
}

/// What a package upload's query says: the file and the package it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagePut {
    /// The file (its size is what arrives).
    pub sha256: crate::Sha256Digest,
    /// Its plain file name.
    pub name: String,
    /// The feed (empty for a file the administrator gave).
    pub feed: String,
    /// The package id.
    pub id: String,
    /// Its version.
    pub version: String,
}

/// The query of a package upload; `None` when a part is missing, repeated, unknown or invalid.
pub fn parse_package_put(query: &str) -> Option<PackagePut> {
    let mut fields: [Option<String>; 5] = Default::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=')?;
        let slot = match key {
            "sha256" => 0,
            "name" => 1,
            "feed" => 2,
            "id" => 3,
            "version" => 4,
            _ => return None,
        };
        if fields[slot].replace(percent_decode(value)?).is_some() {
            return None;
        }
    }
    let [
        Some(sha256),
        Some(name),
        Some(feed),
        Some(id),
        Some(version),
    ] = fields
    else {
        return None;
    };
    let put = PackagePut {
        sha256: crate::Sha256Digest::parse(&sha256).ok()?,
        name,
        feed,
        id,
        version,
    };
    crate::PackageFileRef::check_name(&put.name).then_some(put)
}

/// The path that uploads the plugin with this digest.
pub fn plugin_put(digest: &Sha256Digest) -> String {
    format!("{PLUGIN_PUT_PREFIX}{digest}")
}

/// The digest named by a plugin upload path, if `path` is one.
pub fn parse_plugin_put(path: &str) -> Option<Result<Sha256Digest, ValueError>> {
    path.strip_prefix(PLUGIN_PUT_PREFIX)
        .map(Sha256Digest::parse)
}

/// The path (with query) that uploads a file to `path` with this digest.
pub fn file_upload(path: &RelativePath, digest: &Sha256Digest) -> String {
    format!(
        "{FILE_UPLOAD}?path={}&sha256={digest}",
        percent_encode(&path.to_string())
    )
}

/// Why an upload query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadQueryError {
    /// `path=` or `sha256=` is missing, repeated, or not percent-encoded UTF-8.
    #[error("the upload needs exactly one path= and one sha256= query parameter")]
    Malformed,
    /// The digest is not valid.
    #[error(transparent)]
    Digest(#[from] ValueError),
    /// The path is not an allowed relative path.
    #[error(transparent)]
    Path(#[from] RelativePathError),
}

/// The file path and digest in the query of a file upload call.
pub fn parse_file_upload(query: &str) -> Result<(RelativePath, Sha256Digest), UploadQueryError> {
    let (mut path, mut digest) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(UploadQueryError::Malformed)?;
        let value = percent_decode(value).ok_or(UploadQueryError::Malformed)?;
        let slot = match key {
            "path" => &mut path,
            "sha256" => &mut digest,
            _ => return Err(UploadQueryError::Malformed),
        };
        if slot.replace(value).is_some() {
            return Err(UploadQueryError::Malformed);
        }
    }
    let (Some(path), Some(digest)) = (path, digest) else {
        return Err(UploadQueryError::Malformed);
    };
    Ok((RelativePath::parse(&path)?, Sha256Digest::parse(&digest)?))
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_query_round_trips() {
        let path = RelativePath::parse("dir/a file%&=é.txt").unwrap();
        let digest = Sha256Digest::of(b"x");
        let full = file_upload(&path, &digest);
        let (p, q) = full.split_once('?').unwrap();
        assert_eq!(p, FILE_UPLOAD);
        assert_eq!(parse_file_upload(q).unwrap(), (path, digest));
    }

    #[test]
    fn bad_upload_queries_are_refused() {
        let d = Sha256Digest::of(b"x");
        for q in [
            String::new(),
            format!("sha256={d}"),
            "path=a".to_owned(),
            format!("path=a&path=b&sha256={d}"),
            format!("path=%zz&sha256={d}"),
            format!("path=a&sha256={d}&other=1"),
        ] {
            assert_eq!(
                parse_file_upload(&q).unwrap_err(),
                UploadQueryError::Malformed,
                "{q}"
            );
        }
        assert!(matches!(
            parse_file_upload(&format!("path=..%2F..%2Fetc%2Fpasswd&sha256={d}")),
            Err(UploadQueryError::Path(_))
        ));
        assert!(matches!(
            parse_file_upload("path=a&sha256=00"),
            Err(UploadQueryError::Digest(_))
        ));
    }

    #[test]
    fn package_put_round_trips() {
        let file = crate::PackageFileRef {
            name: "Acme Web.1.0.0.nupkg".into(),
            sha256: Sha256Digest::of(b"p"),
            size: 1,
        };
        let package = crate::StepPackage {
            feed: "nuget".into(),
            id: "Acme Web".into(),
            version: "1.0.0".into(),
            files: vec![file.clone()],
            direct: None,
        };
        let full = package_put(&file, &package);
        let (path, query) = full.split_once('?').unwrap();
        assert_eq!(path, PACKAGE_PUT);
        let put = parse_package_put(query).unwrap();
        assert_eq!(put.sha256, file.sha256);
        assert_eq!(put.name, file.name);
        assert_eq!((put.feed.as_str(), put.id.as_str()), ("nuget", "Acme Web"));
        assert!(parse_package_put(&query.replace("name=Acme", "name=..%2FAcme")).is_none());
        assert!(parse_package_put(&format!("{query}&x=1")).is_none());
        assert!(parse_package_put("sha256=00").is_none());
    }

    #[test]
    fn plugin_put_paths() {
        let d = Sha256Digest::of(b"component");
        assert_eq!(parse_plugin_put(&plugin_put(&d)), Some(Ok(d)));
        assert!(matches!(
            parse_plugin_put("/v1/plugins/put/../x"),
            Some(Err(_))
        ));
        assert_eq!(parse_plugin_put(STEP_START), None);
    }
}
