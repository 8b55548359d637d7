//! What a feed is: its kind, its URL and its credentials.

use crate::credentials::Credentials;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The protocol a feed speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// NuGet v3: the URL is the service index (`…/v3/index.json`).
    Nuget,
    /// An OCI distribution registry: the URL is the registry (`https://registry.example`), optionally with
    /// a namespace path that is put before every package id (`https://registry.example/team`).
    Oci,
    /// Plain HTTP(S): the URL is a template with `{id}` and `{version}`.
    Http,
}

impl FeedKind {
    /// `nuget`, `oci` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Nuget => "nuget",
            FeedKind::Oci => "oci",
            FeedKind::Http => "http",
        }
    }
}

impl fmt::Display for FeedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeedKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nuget" => Ok(FeedKind::Nuget),
            "oci" | "docker" => Ok(FeedKind::Oci),
            "http" | "https" => Ok(FeedKind::Http),
            other => Err(format!(
                "unknown feed type {other:?}; use nuget, oci or http"
            )),
        }
    }
}

/// One configured feed: what `octo feeds add` stores and what a client is built from.
/// `Debug` redacts the password (see [`Credentials`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSpec {
    /// The feed's name (`octo feeds add NAME`).
    pub name: String,
    /// Its protocol.
    pub kind: FeedKind,
    /// Its URL (see [`FeedKind`] for what it points at).
    pub url: String,
    /// Credentials, sent only to the origin of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// Checks a feed name: 1 to 64 characters of ASCII letters, digits, `-`, `_` and `.`, not starting with
/// `.` or `-`.
pub fn check_feed_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid feed name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_names() {
        assert_eq!("NuGet".parse::<FeedKind>(), Ok(FeedKind::Nuget));
        assert_eq!("oci".parse::<FeedKind>(), Ok(FeedKind::Oci));
        assert!("maven".parse::<FeedKind>().is_err());
        assert!(check_feed_name("my-feed.1").is_ok());
        for bad in ["", ".x", "a/b", "a b", "-x", &"x".repeat(65)] {
            assert!(check_feed_name(bad).is_err(), "{bad}");
        }
        let spec = FeedSpec {
            name: "n".into(),
            kind: FeedKind::Oci,
            url: "https://r".into(),
            credentials: Some(Credentials {
                username: "u".into(),
                password: "secret".into(),
            }),
        };
        assert!(!format!("{spec:?}").contains("secret"));
    }
}
