//! NuGet-style versions and version requirements (also used for OCI tags that look like versions).
//!
//! A version is 1 to 4 dot-separated numbers, an optional `-prerelease` (dot-separated labels) and an
//! optional `+metadata`. The normalised form ([`Version::normalized`]) is what NuGet v3 puts in URLs:
//! leading zeros dropped, at least three numbers, the fourth only when it is not 0, no metadata,
//! lowercase (`01.2.0.0-Beta+abc` → `1.2.0-beta`). Versions are ordered by the numbers, then a release
//! above its prereleases, then prerelease labels (numeric ones numerically, below alphanumeric ones,
//! which compare case-insensitively); metadata does not count.
//!
//! A requirement ([`VersionReq`]) is one of:
//! - nothing, `latest` or `*`: the highest stable version (the highest prerelease if there is no stable
//!   one);
//! - an exact version (`1.2.3`, equal after normalisation);
//! - a NuGet interval: `[1.0,2.0)`, `(1.0,)`, `[,2.0]`, `[1.2.3]`;
//! - a floating version `1.2.*` / `1.*`: the highest stable version with those leading numbers.
//!
//! Intervals and floating versions take prereleases only when a bound is itself a prerelease.

use std::cmp::Ordering;
use std::fmt;

/// A parsed version.
#[derive(Debug, Clone)]
pub struct Version {
    numbers: [u64; 4],
    prerelease: Vec<String>,
    original: String,
}

/// Why a version or requirement did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {text:?}: {reason}")]
pub struct InvalidVersion {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl Version {
    /// Parses a version (see the module docs).
    pub fn parse(text: &str) -> Result<Self, InvalidVersion> {
        let invalid = |reason| InvalidVersion {
            text: text.to_string(),
            reason,
        };
        let t = text.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let without_meta = match t.split_once('+') {
            Some((v, meta)) => {
                if meta.is_empty() || !meta.split('.').all(label_ok) {
                    return Err(invalid("bad build metadata"));
                }
                v
            }
            None => t,
        };
        let (core, pre) = match without_meta.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (without_meta, None),
        };
        let mut numbers = [0u64; 4];
        let mut count = 0usize;
        #[allow(clippy::explicit_counter_loop)] // `count` is used after the loop
        for part in core.split('.') {
            if count == 4 {
                return Err(invalid("at most four numbers"));
            }
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("expected numbers separated by '.'"));
            }
            numbers[count] = part.parse().map_err(|_| invalid("number too large"))?;
            count += 1;
        }
        let prerelease = match pre {
            Some(pre) => {
                let labels: Vec<String> = pre.split('.').map(str::to_string).collect();
                if !labels.iter().all(|l| label_ok(l)) {
                    return Err(invalid("bad prerelease label"));
                }
                labels
            }
            None => Vec::new(),
        };
        Ok(Version {
            numbers,

            prerelease,
            original: text.trim().to_string(),
        })
    }

    /// NuGet's normalised form, lowercase (see the module docs).
    pub fn normalized(&self) -> String {
        let n = &self.numbers;
        let mut out = format!("{}.{}.{}", n[0], n[1], n[2]);
        if n[3] != 0 {
            out.push_str(&format!(".{}", n[3]));
        }
        if !self.prerelease.is_empty() {
            out.push('-');
            out.push_str(&self.prerelease.join(".").to_ascii_lowercase());
        }
        out
    }

    /// The text it was parsed from.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Whether it has a prerelease part.
    pub fn is_prerelease(&self) -> bool {
        !self.prerelease.is_empty()
    }
}

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers.cmp(&other.numbers).then_with(|| {
            match (self.is_prerelease(), other.is_prerelease()) {
                (false, false) => Ordering::Equal,
                (false, true) => Ordering::Greater,
                (true, false) => Ordering::Less,
                (true, true) => compare_labels(&self.prerelease, &other.prerelease),
            }
        })
    }
}

fn compare_labels(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

/// A bound of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The version.
    pub version: Version,
    /// Whether the version itself is in the interval.
    pub inclusive: bool,
}

/// What `ID@REQ` asks for (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionReq {
    /// The highest stable version.
    Latest,
    /// Exactly this version.
    Exact(Version),
    /// An interval; `None` is unbounded.
    Range {
        /// Lower bound.
        min: Option<Bound>,
        /// Upper bound.
        max: Option<Bound>,
    },
    /// `1.2.*`: these leading numbers.
    Floating(Vec<u64>),
}

impl VersionReq {
    /// Parses a requirement; `None` or blank is [`VersionReq::Latest`].
    pub fn parse(text: Option<&str>) -> Result<Self, InvalidVersion> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(VersionReq::Latest);
        };
        let invalid = |reason| InvalidVersion {
            text: text.to_string(),
            reason,
        };
        if text == "*" || text.eq_ignore_ascii_case("latest") {
            return Ok(VersionReq::Latest);
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            let numbers = prefix
                .split('.')
                .map(|p| {
                    p.parse::<u64>()
                        .map_err(|_| invalid("bad floating version"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if numbers.len() > 3 {
                return Err(invalid("bad floating version"));
            }
            return Ok(VersionReq::Floating(numbers));
        }
        let first = text.chars().next().unwrap_or(' ');
        if first == '[' || first == '(' {
            let last = text.chars().last().unwrap_or(' ');
            if !(last == ']' || last == ')') || text.len() < 3 {
                return Err(invalid("an interval ends with ']' or ')'"));
            }
            let inner = &text[1..text.len() - 1];
            let bound = |s: &str, inclusive| -> Result<Option<Bound>, InvalidVersion> {
                let s = s.trim();
                if s.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Bound {
                    version: Version::parse(s)?,
                    inclusive,
                }))
            };
            return match inner.split_once(',') {
                None => {
                    if first != '[' || last != ']' {
                        return Err(invalid("an exact interval is written [1.2.3]"));
                    }
                    Ok(VersionReq::Exact(Version::parse(inner)?))
                }
                Some((lo, hi)) => {
                    let min = bound(lo, first == '[')?;
                    let max = bound(hi, last == ']')?;
                    if min.is_none() && max.is_none() {
                        return Err(invalid("an interval needs at least one bound"));
                    }
                    Ok(VersionReq::Range { min, max })
                }
            };
        }
        Ok(VersionReq::Exact(Version::parse(text)?))
    }

    /// Whether `v` satisfies the requirement (for [`VersionReq::Latest`]: any version).
    pub fn matches(&self, v: &Version) -> bool {
        match self {
            VersionReq::Latest => true,
            VersionReq::Exact(want) => v == want,
            VersionReq::Range { min, max } => {
                let takes_pre = [min, max]
                    .iter()
                    .any(|b| b.as_ref().is_some_and(|b| b.version.is_prerelease()));
                if v.is_prerelease() && !takes_pre {
                    return false;
                }
                let lower = min.as_ref().is_none_or(|b| match v.cmp(&b.version) {
                    Ordering::Greater => true,
                    Ordering::Equal => b.inclusive,
                    Ordering::Less => false,
                });
                let upper = max.as_ref().is_none_or(|b| match v.cmp(&b.version) {
                    Ordering::Less => true,
                    Ordering::Equal => b.inclusive,
                    Ordering::Greater => false,
                });
                lower && upper
            }
            VersionReq::Floating(prefix) => {
                !v.is_prerelease() && prefix.iter().zip(v.numbers.iter()).all(|(a, b)| a == b)
            }
        }
    }

    /// The best version of `candidates` for this requirement: the highest that matches (for
    /// [`VersionReq::Latest`] the highest stable one, else the highest prerelease).
    pub fn select<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Version>,
    ) -> Option<&'a Version> {
        let matching: Vec<&Version> = candidates.into_iter().filter(|v| self.matches(v)).collect();
        if let VersionReq::Latest = self
            && let Some(best) = matching.iter().filter(|v| !v.is_prerelease()).max()
        {
            return Some(best);
        }
        matching.into_iter().max()
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionReq::Latest => f.write_str("latest"),
            VersionReq::Exact(v) => write!(f, "{v}"),
            VersionReq::Range { min, max } => {
                let (open, lo) = match min {
                    Some(b) => (if b.inclusive { '[' } else { '(' }, b.version.to_string()),
                    None => ('(', String::new()),
                };
                let (close, hi) = match max {
                    Some(b) => (if b.inclusive { ']' } else { ')' }, b.version.to_string()),
                    None => (')', String::new()),
                };
                write!(f, "{open}{lo},{hi}{close}")
            }
            VersionReq::Floating(prefix) => {
                let parts: Vec<String> = prefix.iter().map(u64::to_string).collect();
                write!(f, "{}.*", parts.join("."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn normalisation() {
        for (input, normal) in [
            ("1.0", "1.0.0"),
            ("01.2.0.0-Beta+abc", "1.2.0-beta"),
            ("1.2.3.4", "1.2.3.4"),
            ("1", "1.0.0"),
            ("v2.0.1", "2.0.1"),
            ("1.0.0-RC.1", "1.0.0-rc.1"),
        ] {
            assert_eq!(v(input).normalized(), normal, "{input}");
        }
        for bad in [
            "",
            "1.2.3.4.5",
            "a.b",
            "1..2",
            "1.0-",
            "1.0+",
            "1.0-be ta",
            "-1",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ordering() {
        let mut list: Vec<Version> = [
            "1.0.0",
            "1.0.0-beta.11",
            "1.0.0-beta.2",
            "1.0.0-alpha",
            "1.0.0.1",
            "0.9",
            "1.0.0-Beta",
        ]
        .iter()
        .map(|s| v(s))
        .collect();
        list.sort();
        let sorted: Vec<String> = list.iter().map(|v| v.original().to_string()).collect();
        assert_eq!(
            sorted,
            [
                "0.9",
                "1.0.0-alpha",
                "1.0.0-Beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0",
                "1.0.0.1"
            ]
        );
        assert_eq!(v("1.0"), v("1.0.0.0"));
        assert_eq!(v("1.0.0+a"), v("1.0.0+b"));
    }

    #[test]
    fn requirements() {
        let all: Vec<Version> = ["1.0.0", "1.5.0", "2.0.0", "2.1.0-beta", "1.5.1-rc"]
            .iter()
            .map(|s| v(s))
            .collect();
        let pick = |req: &str| {
            VersionReq::parse(Some(req))
                .unwrap()
                .select(&all)
                .map(|v| v.normalized())
        };
        assert_eq!(pick("latest").as_deref(), Some("2.0.0"));
        assert_eq!(pick("1.5").as_deref(), Some("1.5.0"));
        assert_eq!(pick("[1.0,2.0)").as_deref(), Some("1.5.0"));
        assert_eq!(pick("[1.0,2.0]").as_deref(), Some("2.0.0"));
        assert_eq!(pick("(,1.5)").as_deref(), Some("1.0.0"));
        assert_eq!(pick("[1.5.0]").as_deref(), Some("1.5.0"));
        assert_eq!(pick("1.*").as_deref(), Some("1.5.0"));
        assert_eq!(pick("2.1.0-beta").as_deref(), Some("2.1.0-beta"));
        assert_eq!(pick("[2.0.1-a,)").as_deref(), Some("2.1.0-beta"));
        assert_eq!(pick("3.0.0"), None);
        assert_eq!(pick("[3.0,)"), None);
        let pre_only = [v("1.0.0-a"), v("1.0.0-b")];
        assert_eq!(
            VersionReq::Latest
                .select(&pre_only)
                .map(|v| v.normalized())
                .as_deref(),
            Some("1.0.0-b")
        );
        for bad in ["[1.0", "(1.0)", "[,]", "x.*", "[a,b]"] {
            assert!(VersionReq::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            VersionReq::parse(Some("[1.0,2.0)")).unwrap().to_string(),
            "[1.0.0,2.0.0)"
        );
    }
}
