//! Where an installed plugin came from: [`Source`], a type, so that trust is decided by
//! [`Source::is_signed`] and never by reading a string.
//!
//! In `plugins.lock` a source is a small object, e.g. `{"type":"signedFeed","url":"…","key":"…"}`.
//! Lock files written before it was a type hold a string (`https://…/blobs/sha256/…`,
//! `bundle:DIR`, `file:PATH`, `builtin`); [`Source::from_legacy`] reads those once, at load.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Where an installed plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Source {
    /// Downloaded from a steps feed whose index was verified with the pinned key.
    SignedFeed {
        /// The blob's URL.
        url: String,
        /// The pinned feed key (base64 ed25519) the index was verified with; `None` for an entry
        /// written before the key was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Imported from an offline bundle whose index was verified with the pinned key.
    SignedBundle {
        /// The bundle's directory.
        path: String,
        /// The pinned feed key (base64 ed25519) the bundle's index was verified with; `None` for an
        /// entry written before the key was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Installed from a local file (`octo plugins install --file`): nothing checked a signature.
    LocalFile {
        /// The file it was read from.
        path: String,
    },
    /// The copy built into the binary.
    Embedded,
}

impl Source {
    /// Whether the plugin's bytes are vouched for: checked against an index signed with the pinned
    /// feed key (feed or bundle), or built into the binary. A local file never is.
    pub fn is_signed(&self) -> bool {
        match self {
            Source::SignedFeed { .. } | Source::SignedBundle { .. } | Source::Embedded => true,
            Source::LocalFile { .. } => false,
        }
    }

    /// The pinned feed key a signed feed or bundle install was verified with, when it was recorded
    /// (what a grant bound to signed provenance names).
    pub fn signing_key(&self) -> Option<&str> {
        match self {
            Source::SignedFeed { key, .. } | Source::SignedBundle { key, .. } => key.as_deref(),
            Source::LocalFile { .. } | Source::Embedded => None,
        }
    }

    /// Reads a source as lock files before this type wrote it. Only the three forms Octo wrote count
    /// as signed (`http(s)://` feed URLs, `bundle:`, `builtin`); anything else (`file:`, an empty or
    /// hand-edited value) is a local file.
    pub fn from_legacy(text: &str) -> Source {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            Source::SignedFeed {
                url: text.to_string(),
                key: None,
            }
        } else if let Some(path) = text.strip_prefix("bundle:") {
            Source::SignedBundle {
                path: path.to_string(),
                key: None,
            }
        } else if text == "builtin" {
            Source::Embedded
        } else {
            Source::LocalFile {
                path: text.strip_prefix("file:").unwrap_or(text).to_string(),
            }
        }
    }
}

/// How people see it (`octo plugins list`, install reports): the URL, `bundle:DIR`, `file:PATH` or
/// `builtin`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::SignedFeed { url, .. } => f.write_str(url),
            Source::SignedBundle { path, .. } => write!(f, "bundle:{path}"),
            Source::LocalFile { path } => write!(f, "file:{path}"),
            Source::Embedded => f.write_str("builtin"),
        }
    }
}

/// A source as stored: the typed object, or a string from an older lock file.
pub(crate) fn deserialize_stored<'de, D: Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Typed(Source),
        Legacy(String),
    }
    Ok(match Stored::deserialize(d)? {
        Stored::Typed(source) => source,
        Stored::Legacy(text) => Source::from_legacy(&text),
    })
}

/// A previous version recorded without a source: nothing says it was signed.
pub(crate) fn unknown() -> Source {
    Source::LocalFile {
        path: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_file_is_unsigned() {
        let feed = Source::SignedFeed {
            url: "https://feed/blobs/sha256/ab".into(),
            key: Some("KEY".into()),
        };
        let bundle = Source::SignedBundle {
            path: "/media/bundle".into(),
            key: None,
        };
        let file = Source::LocalFile {
            path: "/tmp/x.wasm".into(),
        };
        assert!(feed.is_signed() && bundle.is_signed() && Source::Embedded.is_signed());
        assert!(!file.is_signed());
        assert_eq!(file.to_string(), "file:/tmp/x.wasm");
        assert_eq!(bundle.to_string(), "bundle:/media/bundle");
        assert_eq!(Source::Embedded.to_string(), "builtin");
    }

    #[test]
    fn legacy_strings_are_read_into_the_type() {
        for (text, signed) in [
            ("https://feed.example/blobs/sha256/ab", true),
            ("http://127.0.0.1:1/blobs/sha256/ab", true),
            ("bundle:/media/bundle", true),
            ("builtin", true),
            ("file:/tmp/x.wasm", false),
            ("", false),
            ("somewhere else", false),
            // A file whose path merely looks like a feed is still a file.
            ("file:https://feed.example/x.wasm", false),
        ] {
            let source = Source::from_legacy(text);
            assert_eq!(source.is_signed(), signed, "{text:?}");
            if !text.is_empty() && text != "somewhere else" {
                assert_eq!(source.to_string(), text);
            }
        }
    }

    #[test]
    fn stored_as_a_tagged_object() {
        let source = Source::SignedFeed {
            url: "https://f/b".into(),
            key: Some("KEY".into()),
        };
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(
            json,
            r#"{"type":"signedFeed","url":"https://f/b","key":"KEY"}"#
        );
        let read =
            |json: &str| deserialize_stored(&mut serde_json::Deserializer::from_str(json)).unwrap();
        assert_eq!(read(&json), source);
        assert_eq!(
            read(r#""file:/x.wasm""#),
            Source::LocalFile {
                path: "/x.wasm".into()
            }
        );
        assert_eq!(read(r#"{"type":"embedded"}"#), Source::Embedded);
        assert_eq!(
            serde_json::to_string(&Source::LocalFile { path: "/x".into() }).unwrap(),
            r#"{"type":"localFile","path":"/x"}"#
        );
    }
}
