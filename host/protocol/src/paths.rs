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
];

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
