//! Package ids: checked before they go into a URL or a file name, so that an id can never be a path.
//!
//! - NuGet and plain HTTP: ASCII letters, digits, `.`, `_`, `-`; 1 to 100 characters; not starting with
//!   `.`, no `..` (NuGet's own rule, which also keeps ids out of paths). NuGet ids are case-insensitive:
//!   [`PackageId::lower`] is the form in URLs and in the cache.
//! - OCI: a repository name as the distribution spec has it: path components of lowercase letters and
//!   digits separated by `.`, `_`, `__` or runs of `-`, joined by single `/` (so `..`, a leading `/` and
//!   empty components are impossible); at most 255 characters.

use crate::feed::FeedKind;
use std::fmt;

/// A checked package id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackageId {
    kind: FeedKind,
    id: String,
}

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid package id {id:?}: {reason}")]
pub struct InvalidId {
    /// The id as given.
    pub id: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl PackageId {
    /// Checks `id` for a feed of `kind`.
    pub fn parse(kind: FeedKind, id: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            id: id.to_string(),
            reason,
        };
        match kind {
            FeedKind::Nuget | FeedKind::Http => {
                if id.is_empty() || id.len() > 100 {
                    return Err(invalid("it must have 1 to 100 characters"));
                }
                if !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    return Err(invalid(
                        "only letters, digits, '.', '_' and '-' are allowed (no path characters)",
                    ));
                }
                if id.starts_with('.') || id.contains("..") {
                    return Err(invalid("it may not start with '.' or contain '..'"));
                }
            }
            FeedKind::Oci => {
                if id.is_empty() || id.len() > 255 {
                    return Err(invalid("it must have 1 to 255 characters"));
                }
                if !id.split('/').all(oci_component_ok) {
                    return Err(invalid(
                        "an OCI repository is lowercase components ([a-z0-9] separated by '.', '_', '__' or '-') joined by '/'",
                    ));
                }
            }
        }
        Ok(PackageId {
            kind,
            id: id.to_string(),
        })
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Lowercase (NuGet's URL and cache form; OCI ids are lowercase already).
    pub fn lower(&self) -> String {
        self.id.to_ascii_lowercase()
    }

    /// The kind of feed it was checked for.
    pub fn kind(&self) -> FeedKind {
        self.kind
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

fn oci_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or one or more "-", between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nuget_ids() {
        let id = PackageId::parse(FeedKind::Nuget, "Newtonsoft.Json").unwrap();
        assert_eq!(id.lower(), "newtonsoft.json");
        for bad in [
            "", "../x", "a/b", "a\\b", ".hidden", "a..b", "a b", "x%2f", "é", "a:b",
        ] {
            assert!(PackageId::parse(FeedKind::Nuget, bad).is_err(), "{bad}");
            assert!(PackageId::parse(FeedKind::Http, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oci_repositories() {
        for good in ["app", "team/app", "a.b_c__d--e/f-1", "library/hello-world"] {
            assert!(PackageId::parse(FeedKind::Oci, good).is_ok(), "{good}");
        }
        for bad in [
            "", "/app", "app/", "a//b", "../x", "a/../b", "App", "a..b", "a___b", "-a", "a-",
            "a b", "a/./b",
        ] {
            assert!(PackageId::parse(FeedKind::Oci, bad).is_err(), "{bad}");
        }
    }
}
