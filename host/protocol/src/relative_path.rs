//! Relative file paths for file transfer, refused unless they stay inside the directory they are
//! joined to.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a transfer path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelativePathError {
    /// Empty, or only separators.
    #[error("the file path is empty")]
    Empty,
    /// Longer than [`RelativePath::MAX_LEN`].
    #[error("the file path is longer than {} bytes", RelativePath::MAX_LEN)]
    TooLong,
    /// Starts with `/` (or a drive letter).
    #[error(
        "the file path {0:?} is absolute; give a path relative to the tentacle's files directory"
    )]
    Absolute(String),
    /// Has a `..` component, a `\`, a NUL or another control character.
    #[error(
        "the file path {0:?} leaves the tentacle's files directory or has forbidden characters"
    )]
    Forbidden(String),
}

/// A path of one or more normal components separated by `/`: no `..`, no absolute paths, no
/// backslashes, no control characters. `.` components and repeated separators are dropped.
/// Joined to a directory, it names something inside that directory (symbolic links are the
/// joining side's business).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelativePath {
    components: Vec<String>,
}

impl RelativePath {
    /// Longest accepted path, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Validates `input`.
    pub fn parse(input: &str) -> Result<Self, RelativePathError> {
        if input.len() > Self::MAX_LEN {
            return Err(RelativePathError::TooLong);
        }
        let shown = || input.chars().take(120).collect::<String>();
        if input.starts_with('/') || input.as_bytes().get(1) == Some(&b':') {
            return Err(RelativePathError::Absolute(shown()));
        }
        if input.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(RelativePathError::Forbidden(shown()));
        }
        let mut components = Vec::new();
        for part in input.split('/') {
            match part {
                "" | "." => continue,
                ".." => return Err(RelativePathError::Forbidden(shown())),
                normal => components.push(normal.to_owned()),
            }
        }
        if components.is_empty() {
            return Err(RelativePathError::Empty);
        }
        Ok(Self { components })
    }

    /// The components, in order.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// `root` joined with this path.
    pub fn join_to(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.components);
        path
    }
}

impl fmt::Display for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.components.join("/"))
    }
}

impl serde::Serialize for RelativePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RelativePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_kept_and_normalised() {
        let p = RelativePath::parse("a/./b//c.txt").unwrap();
        assert_eq!(p.to_string(), "a/b/c.txt");
        assert_eq!(
            p.join_to(Path::new("/home/t")),
            Path::new("/home/t/a/b/c.txt")
        );
        assert_eq!(
            RelativePath::parse("..hidden").unwrap().to_string(),
            "..hidden"
        );
    }

    #[test]
    fn traversal_and_odd_paths_are_refused() {
        use RelativePathError::*;
        type Check = fn(&RelativePathError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, Empty)),
            ("./", |e| matches!(e, Empty)),
            ("/etc/passwd", |e| matches!(e, Absolute(_))),
            ("C:/x", |e| matches!(e, Absolute(_))),
            ("..", |e| matches!(e, Forbidden(_))),
            ("a/../../x", |e| matches!(e, Forbidden(_))),
            ("a/..", |e| matches!(e, Forbidden(_))),
            ("..\\x", |e| matches!(e, Forbidden(_))),
            ("a\0b", |e| matches!(e, Forbidden(_))),
            ("a\nb", |e| matches!(e, Forbidden(_))),
        ];
        for (input, check) in cases {
            let err = RelativePath::parse(input).unwrap_err();
            assert!(check(&err), "{input:?}: {err}");
        }
        assert!(matches!(
            RelativePath::parse(&"a/".repeat(600)),
            Err(TooLong)
        ));
    }
}
