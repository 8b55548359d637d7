//! The names inside an archive, checked before anything is written: an entry lands inside the
//! deployment directory or is refused, naming the entry.
//!
//! Refused: an absolute name (`/etc/x`, `C:\x`, `\\server\x`), any `..` component, a NUL byte.
//! Accepted names are normalised: `\` is a separator (archives made on Windows), `.` and empty
//! components are dropped. A link target is resolved against the link's own directory and must
//! stay inside the deployment directory.

use std::fmt;

/// A normalised relative path inside the deployment directory: components joined by `/`, never
/// empty, never `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryPath(String);

/// Why an entry name or link target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRefusal {
    /// Starts at the root of a file system or a drive.
    Absolute,
    /// Has a `..` component that climbs out of (or could climb out of) the directory.
    ParentComponent,
    /// Contains a NUL byte.
    Nul,
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathRefusal::Absolute => "it is an absolute path",
            PathRefusal::ParentComponent => "it contains '..'",
            PathRefusal::Nul => "it contains a NUL byte",
        })
    }
}

impl EntryPath {
    /// Checks and normalises an entry's name; `Ok(None)` for a name that names the directory
    /// itself (`""`, `.`, `./`).
    pub fn parse(name: &str) -> Result<Option<EntryPath>, PathRefusal> {
        if name.contains('\0') {
            return Err(PathRefusal::Nul);
        }
        if is_absolute(name) {
            return Err(PathRefusal::Absolute);
        }
        let mut parts = Vec::new();
        for part in name.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => return Err(PathRefusal::ParentComponent),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(EntryPath(parts.join("/"))))
    }

    /// The path as `a/b/c`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Every proper ancestor, shortest first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(move |(i, _)| &self.0[..i])
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Where a link at this path pointing at `target` leads, as a path inside the directory;
    /// refused when it is absolute or climbs out. `Ok(None)` when it leads to the directory itself.
    pub fn resolve_link(&self, target: &str) -> Result<Option<EntryPath>, PathRefusal> {
        if target.contains('\0') {
            return Err(PathRefusal::Nul);
        }
        if is_absolute(target) {
            return Err(PathRefusal::Absolute);
        }
        let mut parts: Vec<&str> = self.0.split('/').collect();
        parts.pop(); // the link itself
        for part in target.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathRefusal::ParentComponent);
                    }
                }
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(EntryPath(parts.join("/"))))
    }
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_absolute(name: &str) -> bool {
    let b = name.as_bytes();
    name.starts_with('/')
        || name.starts_with('\\')
        || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> String {
        EntryPath::parse(name).unwrap().unwrap().0
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(ok("a/b/c.txt"), "a/b/c.txt");
        assert_eq!(ok("./a//b/./c"), "a/b/c");
        assert_eq!(ok("lib\\net8.0\\app.dll"), "lib/net8.0/app.dll");
        assert_eq!(ok("dir/"), "dir");
        assert_eq!(EntryPath::parse("./").unwrap(), None);
        assert_eq!(EntryPath::parse("").unwrap(), None);
        assert_eq!(ok("a..b/..c"), "a..b/..c");
    }

    #[test]
    fn escaping_names_are_refused() {
        for (name, why) in [
            ("../x", PathRefusal::ParentComponent),
            ("a/../../x", PathRefusal::ParentComponent),
            ("a/..", PathRefusal::ParentComponent),
            ("..\\x", PathRefusal::ParentComponent),
            ("/etc/x", PathRefusal::Absolute),
            ("\\\\server\\share", PathRefusal::Absolute),
            ("C:\\Windows", PathRefusal::Absolute),
            ("c:x", PathRefusal::Absolute),
            ("a\0b", PathRefusal::Nul),
        ] {
            assert_eq!(EntryPath::parse(name), Err(why), "{name}");
        }
    }

    #[test]
    fn ancestors_and_file_name() {
        let p = EntryPath::parse("a/b/c").unwrap().unwrap();
        assert_eq!(p.ancestors().collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(p.file_name(), "c");
        let p = EntryPath::parse("c").unwrap().unwrap();
        assert_eq!(p.ancestors().count(), 0);
    }

    #[test]
    fn link_targets_stay_inside() {
        let link = EntryPath::parse("bin/current").unwrap().unwrap();
        assert_eq!(
            link.resolve_link("../lib/app").unwrap().unwrap().as_str(),
            "lib/app"
        );
        assert_eq!(
            link.resolve_link("app").unwrap().unwrap().as_str(),
            "bin/app"
        );
        assert_eq!(link.resolve_link("..").unwrap(), None);
        assert_eq!(
            link.resolve_link("../.."),
            Err(PathRefusal::ParentComponent)
        );
        assert_eq!(link.resolve_link("/"), Err(PathRefusal::Absolute));
        assert_eq!(link.resolve_link("/etc/passwd"), Err(PathRefusal::Absolute));
    }
}
