//! The package's applications directory, `<home>/Applications/<package>/`: one directory per
//! deployment, `<version>` or `<version>_N` when that exists, made complete by a rename from a
//! temporary `.partial-…` directory beside it; a journal `.deployments` (one directory name per
//! line, oldest first) says which directories are finished deployments, and retention keeps the
//! newest of them.

/// The journal of finished deployments, in the applications directory.
pub const JOURNAL: &str = ".deployments";

/// Prefix of a directory that is still being extracted (or was left by a killed deployment).
pub const PARTIAL_PREFIX: &str = ".partial-";

/// The name of the next deployment of `version`, given the names already in the directory: the
/// version itself when no deployment of it is there, else `_N` after the highest `N` there (so a
/// newer deployment never takes an older one's name after retention removed it).
pub fn next_name<'a>(version: &str, existing: impl IntoIterator<Item = &'a str>) -> String {
    let mut any = false;
    let mut highest = 0u64;
    for name in existing {
        let name = name.strip_prefix(PARTIAL_PREFIX).unwrap_or(name);
        if name == version {
            any = true;
        } else if let Some(n) = name
            .strip_prefix(version)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            any = true;
            highest = highest.max(n);
        }
    }
    if any {
        format!("{version}_{}", highest + 1)
    } else {
        version.to_owned()
    }
}

/// The journal's names, oldest first (blank lines and duplicates dropped, the latest kept).
pub fn read_journal(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        names.retain(|n| n != line);
        names.push(line.to_owned());
    }
    names
}

/// The journal as text.
pub fn write_journal(names: &[String]) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// Split the journal into the names kept (the newest `keep`) and those to remove.
pub fn retention(names: &[String], keep: usize) -> (Vec<String>, Vec<String>) {
    let cut = names.len().saturating_sub(keep.max(1));
    (names[cut..].to_vec(), names[..cut].to_vec())
}

/// Whether a version can name a directory: no separators, not `.`/`..`, no control characters.
pub fn valid_component(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && !text.starts_with('.')
        && text.len() <= 200
        && !text
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_a_suffix_when_taken() {
        assert_eq!(next_name("1.0.0", []), "1.0.0");
        assert_eq!(next_name("1.0.0", ["1.0.0"]), "1.0.0_1");
        assert_eq!(next_name("1.0.0", ["1.0.0", "1.0.0_1", "2.0.0"]), "1.0.0_2");
        assert_eq!(next_name("1.0.0", ["1.0.0_2", "1.0.0_3"]), "1.0.0_4");
        assert_eq!(next_name("1.0.0", ["1.0.0.1", "1.0.0_x"]), "1.0.0");
    }

    #[test]
    fn retention_keeps_the_newest() {
        let names = read_journal("a\nb\n\nc\nb\nd\n");
        assert_eq!(names, ["a", "c", "b", "d"]);
        let (kept, gone) = retention(&names, 3);
        assert_eq!(kept, ["c", "b", "d"]);
        assert_eq!(gone, ["a"]);
        assert_eq!(retention(&names, 10).1, Vec::<String>::new());
        assert_eq!(write_journal(&kept), "c\nb\nd\n");
    }

    #[test]
    fn components() {
        assert!(valid_component("1.2.3-beta.1"));
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a\nb"] {
            assert!(!valid_component(bad), "{bad:?}");
        }
    }
}
