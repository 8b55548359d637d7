//! File patterns as Octopus takes them for `Octopus.Action.SubstituteInFiles.TargetFiles` and
//! `Octopus.Action.Package.JsonConfigurationVariablesTargets`: one pattern per line, relative to
//! the deployment directory, `/` or `\` as separator; `*` matches within one path component, `?`
//! one character, `**` any number of components (none included).

/// The patterns of a multi-line setting (blank lines ignored).
pub fn patterns(setting: &str) -> Vec<String> {
    setting
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('\\', "/").trim_start_matches("./").to_owned())
        .collect()
}

/// Whether `path` (components joined by `/`) matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    match_components(&pat, &parts)
}

fn match_components(pat: &[&str], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|skip| match_components(rest, &parts[skip..])),
        Some((first, rest)) => match parts.split_first() {
            Some((part, tail)) => {
                match_one(first.as_bytes(), part.as_bytes()) && match_components(rest, tail)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one component (case-sensitive, as on Linux).
fn match_one(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("appsettings.json", "appsettings.json"));
        assert!(!matches("appsettings.json", "config/appsettings.json"));
        assert!(matches("*.config", "web.config"));
        assert!(!matches("*.config", "a/web.config"));
        assert!(matches("**/*.config", "web.config"));
        assert!(matches("**/*.config", "a/b/web.config"));
        assert!(matches("config/**", "config/a/b"));
        assert!(matches("conf?g/*.xml", "config/a.xml"));
        assert!(!matches("conf?g/*.xml", "config/a.json"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
    }

    #[test]
    fn pattern_lines() {
        assert_eq!(
            patterns("  a.json \r\n\n.\\conf\\*.xml\n./b"),
            ["a.json", "conf/*.xml", "b"]
        );
    }
}
