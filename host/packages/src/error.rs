//! [`PackageError`]: one line naming the feed, the package (when there is one) and the cause.

use crate::id::InvalidId;
use crate::version::InvalidVersion;
use octo_feed::ClientError;

/// A failure of a feed operation: `feed F, package P: cause`.
#[derive(Debug, thiserror::Error)]
#[error("feed {feed}{}: {cause}", package.as_ref().map(|p| format!(", package {p}")).unwrap_or_default())]
pub struct PackageError {
    /// The feed's name.
    pub feed: String,
    /// The package (`ID` or `ID@REQ`), if the operation was about one.
    pub package: Option<String>,
    /// What went wrong.
    pub cause: Cause,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The package id is not acceptable.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// The version or requirement did not parse.
    #[error(transparent)]
    InvalidVersion(#[from] InvalidVersion),
    /// The feed's configuration is unusable (URL, template).
    #[error("{0}")]
    InvalidFeed(String),
    /// 401 or 403.
    #[error("{}", unauthorized(*.status, *.credentials_sent))]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// Whether credentials were sent.
        credentials_sent: bool,
    },
    /// 404.
    #[error("not found ({what} answered 404)")]
    NotFound {
        /// What was asked for.
        what: String,
    },
    /// No version satisfies the requirement.
    #[error("no version matches {requirement}{}", available_list(available))]
    NoMatchingVersion {
        /// The requirement.
        requirement: String,
        /// Some of the versions there are (at most 10, highest first).
        available: Vec<String>,
    },
    /// A manifest's or blob's digest is not what it should be.
    #[error("digest mismatch: {0}")]
    DigestMismatch(String),
    /// The feed answered something this client does not understand.
    #[error("{0}")]
    Protocol(String),
    /// The operation does not exist for this kind of feed.
    #[error("{0}")]
    Unsupported(String),
    /// The HTTP client's error (unreachable, timeout, TLS, truncated, too large, wrong sha256, ...).
    #[error(transparent)]
    Client(Box<ClientError>),
}

fn unauthorized(status: u16, sent: bool) -> String {
    let word = if status == 403 {
        "403 Forbidden"
    } else {
        "401 Unauthorized"
    };
    if sent {
        format!(
            "the feed answered {word} to the configured credentials; check them (`octo feeds remove` then `octo feeds add … --username U --password`)"
        )
    } else {
        format!(
            "the feed answered {word} and no credentials are configured; add them (`octo feeds remove` then `octo feeds add … --username U --password`)"
        )
    }
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        " (the feed lists no versions)".to_string()
    } else {
        format!(" (available: {})", available.join(", "))
    }
}

impl Cause {
    /// The cause for a client error; `credentials_sent` says whether an `Authorization` went along.
    pub fn from_client(e: ClientError, credentials_sent: bool) -> Cause {
        match e {
            ClientError::Status { status, .. }
                if status.as_u16() == 401 || status.as_u16() == 403 =>
            {
                Cause::Unauthorized {
                    status: status.as_u16(),
                    credentials_sent,
                }
            }
            ClientError::Status { status, url, .. } if status.as_u16() == 404 => {
                Cause::NotFound { what: url }
            }
            ClientError::DigestMismatch { .. } => Cause::DigestMismatch(e.to_string()),
            other => Cause::Client(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_naming_feed_package_and_cause() {
        let e = PackageError {
            feed: "nuget".into(),
            package: Some("App@2.0".into()),
            cause: Cause::NoMatchingVersion {
                requirement: "2.0".into(),
                available: vec!["1.0.0".into()],
            },
        };
        assert_eq!(
            e.to_string(),
            "feed nuget, package App@2.0: no version matches 2.0 (available: 1.0.0)"
        );
        let e = PackageError {
            feed: "reg".into(),
            package: None,
            cause: Cause::Unauthorized {
                status: 401,
                credentials_sent: false,
            },
        };
        assert!(
            e.to_string()
                .starts_with("feed reg: the feed answered 401 Unauthorized and no credentials")
        );
        assert!(!e.to_string().contains('\n'));
    }
}
