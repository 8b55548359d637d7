//! Octostache's filters (`#{Name | Filter args}`), as its own tests describe them. Each returns
//! `None` when it cannot apply — unknown name, wrong arguments, a value it cannot read — and the
//! whole tag is then written back unchanged.

/// Applies filter `name` (case-insensitive) to `value` (`None` when the expression has no
/// variable, as in `#{ | NowDateUtc}`) with `args`.
pub fn apply(name: &str, value: Option<&str>, args: &[String]) -> Option<String> {
    let name = name.to_ascii_lowercase();
    let no_args = args.is_empty();
    match name.as_str() {
        "append" | "prepend" if !no_args => {
            let extra = args.concat();
            let value = value.unwrap_or_default();
            Some(if name == "append" {
                format!("{value}{extra}")
            } else {
                format!("{extra}{value}")
            })
        }
        "nowdate" | "nowdateutc" => now(args),
        _ => {
            let value = value?;
            match (name.as_str(), args) {
                ("tolower", []) => Some(value.to_lowercase()),
                ("toupper", []) => Some(value.to_uppercase()),
                ("trim", []) => Some(value.trim().to_owned()),
                ("trim", [side]) => match side.to_ascii_lowercase().as_str() {
                    "start" => Some(value.trim_start().to_owned()),
                    "end" => Some(value.trim_end().to_owned()),
                    _ => None,
                },
                ("tobase64" | "base64", _) => to_base64(value, args),
                ("frombase64", _) => from_base64(value, args),
                ("htmlescape", []) => Some(escape(value, html_entity)),
                ("xmlescape", []) => Some(escape(value, xml_entity)),
                ("jsonescape", []) => Some(escape(value, json_entity)),
                ("uriescape", []) => Some(percent_encode(value, |b| {
                    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)
                })),
                ("uridataescape", []) => Some(percent_encode(value, |b| {
                    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
                })),
                ("truncate", [length]) => {
                    let length: usize = length.parse().ok()?;
                    Some(if value.chars().count() > length {
                        format!("{}...", value.chars().take(length).collect::<String>())
                    } else {
                        value.to_owned()
                    })
                }
                ("substring", [length]) => substring(value, "0", length),
                ("substring", [start, length]) => substring(value, start, length),
                ("replace", [pattern]) => replace(value, pattern, ""),
                ("replace", [pattern, with]) => replace(value, pattern, with),
                ("startswith", [s]) => Some(value.starts_with(s.as_str()).to_string()),
                ("endswith", [s]) => Some(value.ends_with(s.as_str()).to_string()),
                ("contains", [s]) => Some(value.contains(s.as_str()).to_string()),
                ("match", [pattern]) => regex_lite::Regex::new(pattern)
                    .ok()
                    .map(|r| r.is_match(value).to_string()),
                ("format", [format]) => format_number(value, None, format),
                ("format", [kind, format]) => format_number(value, Some(kind), format),
                _ => None,
            }
        }
    }
}

fn html_entity(c: char) -> Option<&'static str> {
    match c {
        '/' => Some("&#x2F;"),
        _ => xml_entity(c),
    }
}

fn xml_entity(c: char) -> Option<&'static str> {
    Some(match c {
        '&' => "&amp;",
        '<' => "&lt;",
        '>' => "&gt;",
        '"' => "&quot;",
        '\'' => "&apos;",
        _ => return None,
    })
}

fn json_entity(c: char) -> Option<&'static str> {
    Some(match c {
        '"' => "\\\"",
        '\r' => "\\r",
        '\t' => "\\t",
        '\n' => "\\n",
        '\\' => "\\\\",
        _ => return None,
    })
}

fn escape(value: &str, entity: fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match entity(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

fn percent_encode(value: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes of `value` in `encoding` (`utf8`, `utf-8` or `unicode`, i.e. UTF-16LE).
fn encode(value: &str, args: &[String]) -> Option<Vec<u8>> {
    match args {
        [] => Some(value.as_bytes().to_vec()),
        [encoding] => match encoding.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Some(value.as_bytes().to_vec()),
            "unicode" => Some(value.encode_utf16().flat_map(u16::to_le_bytes).collect()),
            _ => None,
        },
        _ => None,
    }
}

fn to_base64(value: &str, args: &[String]) -> Option<String> {
    Some(base64_encode(&encode(value, args)?))
}

fn from_base64(value: &str, args: &[String]) -> Option<String> {
    let bytes = base64_decode(value.trim())?;
    match args {
        [] => String::from_utf8(bytes).ok(),
        [encoding] => match encoding.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => String::from_utf8(bytes).ok(),
            "unicode" if bytes.len() % 2 == 0 => String::from_utf16(
                &bytes
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            )
            .ok(),
            _ => None,
        },
        _ => None,
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                BASE64[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Standard base64 (padding optional); `None` when it is not.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut n) = (0u32, 0);
    for c in text.bytes() {
        let v = BASE64.iter().position(|&a| a == c)? as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    (n < 6).then_some(out)
}

fn substring(value: &str, start: &str, length: &str) -> Option<String> {
    let start: usize = start.parse().ok()?;
    let length: usize = length.parse().ok()?;
    let chars: Vec<char> = value.chars().collect();
    (start + length <= chars.len()).then(|| chars[start..start + length].iter().collect())
}

/// Regular expression replace; `$1` in `with` is a group, as in .NET.
fn replace(value: &str, pattern: &str, with: &str) -> Option<String> {
    let regex = regex_lite::Regex::new(pattern).ok()?;
    // .NET reads `$1o` as group 1 then `o`; the regex crate would read a group named `1o`.
    let mut replacement = String::with_capacity(with.len());
    let mut chars = with.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            replacement.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if digits.is_empty() {
            match chars.peek() {
                Some('{') => replacement.push('$'),
                Some('$') => {
                    chars.next();
                    replacement.push_str("$$");
                }
                _ => replacement.push_str("$$"),
            }
        } else {
            replacement.push_str(&format!("${{{digits}}}"));
        }
    }
    Some(regex.replace_all(value, replacement.as_str()).into_owned())
}

/// `Format [Decimal|Double|Int32|Int64] F2|N0|D5|X|x`: .NET's standard numeric formats (invariant
/// culture). Dates and custom formats are not supported (the tag stays as written).
fn format_number(value: &str, kind: Option<&String>, format: &str) -> Option<String> {
    if let Some(kind) = kind {
        let kind = kind.to_ascii_lowercase();
        if !matches!(
            kind.as_str(),
            "decimal" | "double" | "single" | "float" | "int32" | "int64" | "int"
        ) {
            return None;
        }
    }
    let mut spec = format.chars();
    let letter = spec.next()?;
    let digits = spec.as_str();
    let precision: Option<usize> = if digits.is_empty() {
        None
    } else {
        Some(digits.parse().ok().filter(|p| *p <= 99)?)
    };
    let value = value.trim();
    match letter {
        'F' | 'f' | 'N' | 'n' => {
            let number: f64 = value.parse().ok().filter(|n: &f64| n.is_finite())?;
            let fixed = format!("{:.*}", precision.unwrap_or(2), number);
            Some(if matches!(letter, 'N' | 'n') {
                group_thousands(&fixed)
            } else {
                fixed
            })
        }
        'D' | 'd' => {
            let number: i128 = value.parse().ok()?;
            let width = precision.unwrap_or(0);
            let digits = format!("{:0width$}", number.unsigned_abs());
            Some(if number < 0 {
                format!("-{digits}")
            } else {
                digits
            })
        }
        'X' | 'x' => {
            let number: i128 = value.parse().ok().filter(|n: &i128| *n >= 0)?;
            let width = precision.unwrap_or(0);
            Some(if letter == 'X' {
                format!("{number:0width$X}")
            } else {
                format!("{number:0width$x}")
            })
        }
        _ => None,
    }
}

fn group_thousands(fixed: &str) -> String {
    let (sign, rest) = match fixed.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", fixed),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// `NowDate` / `NowDateUtc` with an optional .NET custom format (`yyyy`, `yy`, `MM`, `dd`, `HH`,
/// `mm`, `ss`, `fff`, other text as it is); without one, ISO 8601. The time is UTC either way
/// (a step has no time zone).
fn now(args: &[String]) -> Option<String> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let parts = civil(since.as_secs() as i64, since.subsec_millis());
    match args {
        [] => Some(format_date("yyyy-MM-ddTHH:mm:ss.fffZ", &parts)),
        [format] => Some(format_date(format, &parts)),
        _ => None,
    }
}

/// (year, month, day, hour, minute, second, millisecond) of a Unix time.
fn civil(secs: i64, millis: u32) -> [i64; 7] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        i64::from(millis),
    ]
}

fn format_date(format: &str, [y, mo, d, h, mi, s, ms]: &[i64; 7]) -> String {
    let tokens: [(&str, String); 9] = [
        ("yyyy", format!("{y:04}")),
        ("yy", format!("{:02}", y % 100)),
        ("MM", format!("{mo:02}")),
        ("dd", format!("{d:02}")),
        ("HH", format!("{h:02}")),
        ("mm", format!("{mi:02}")),
        ("ss", format!("{s:02}")),
        ("fff", format!("{ms:03}")),
        ("ff", format!("{:02}", ms / 10)),
    ];
    let mut out = String::new();
    let mut rest = format;
    'outer: while !rest.is_empty() {
        for (token, text) in &tokens {
            if let Some(r) = rest.strip_prefix(token) {
                out.push_str(text);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, value: &str, args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        apply(name, Some(value), &args)
    }

    #[test]
    fn case_trim_and_unknown() {
        assert_eq!(f("ToUpper", "Abc", &[]).unwrap(), "ABC");
        assert_eq!(f("tolower", "AbC", &[]).unwrap(), "abc");
        assert_eq!(
            f("Trim", " Octopus Deploy ", &[]).unwrap(),
            "Octopus Deploy"
        );
        assert_eq!(f("Trim", " a ", &["start"]).unwrap(), "a ");
        assert_eq!(f("Trim", " a ", &["End"]).unwrap(), " a");
        assert_eq!(f("Trim", " a ", &["Both"]), None);
        assert_eq!(f("ToBazooka", "a", &[]), None);
        assert_eq!(f("ToUpper", "a", &["6"]), None);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            f("HtmlEscape", "A&'bc</", &[]).unwrap(),
            "A&amp;&apos;bc&lt;&#x2F;"
        );
        assert_eq!(f("XmlEscape", "A&'bc", &[]).unwrap(), "A&amp;&apos;bc");
        assert_eq!(
            f("JsonEscape", "Test\"Test\r\n\t\\", &[]).unwrap(),
            "Test\\\"Test\\r\\n\\t\\\\"
        );
        assert_eq!(f("UriEscape", "A b:c+d/e", &[]).unwrap(), "A%20b:c+d/e");
        assert_eq!(
            f("UriDataEscape", "A b:c+d/e", &[]).unwrap(),
            "A%20b%3Ac%2Bd%2Fe"
        );
    }

    #[test]
    fn base64() {
        assert_eq!(f("ToBase64", "Foo Bar", &[]).unwrap(), "Rm9vIEJhcg==");
        assert_eq!(f("Base64", "Foo Bar", &["utf8"]).unwrap(), "Rm9vIEJhcg==");
        assert_eq!(f("ToBase64", "ab", &["unicode"]).unwrap(), "YQBiAA==");
        assert_eq!(f("ToBase64", "ab", &["latin1"]), None);
        assert_eq!(f("FromBase64", "Rm9vIEJhcg==", &[]).unwrap(), "Foo Bar");
        assert_eq!(f("FromBase64", "YQBiAA==", &["unicode"]).unwrap(), "ab");
        assert_eq!(f("FromBase64", "not base64!", &[]), None);
        for s in ["", "a", "ab", "abc", "ünï ✓"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
    }

    #[test]
    fn substring_truncate() {
        assert_eq!(f("Substring", "Octopus Deploy", &["7"]).unwrap(), "Octopus");
        assert_eq!(
            f("Substring", "Octopus Deploy", &["8", "6"]).unwrap(),
            "Deploy"
        );
        for bad in [
            &["20"][..],
            &["8", "7"],
            &["-1"],
            &["0", "a"],
            &["a"],
            &[],
            &["1", "2", "3"],
        ] {
            assert_eq!(f("Substring", "Octopus Deploy", bad), None, "{bad:?}");
        }
        assert_eq!(
            f("Truncate", "Octopus Deploy", &["7"]).unwrap(),
            "Octopus..."
        );
        assert_eq!(
            f("Truncate", "Octopus Deploy", &["50"]).unwrap(),
            "Octopus Deploy"
        );
        assert_eq!(f("Truncate", "Octopus Deploy", &["-1"]), None);
        assert_eq!(f("Truncate", "Octopus Deploy", &[]), None);
    }

    #[test]
    fn replace_and_match() {
        assert_eq!(f("Replace", "abc", &["abc", "def"]).unwrap(), "def");
        assert_eq!(f("Replace", "abc", &["a"]).unwrap(), "bc");
        assert_eq!(f("Replace", "ABC", &["abc", "def"]).unwrap(), "ABC");
        assert_eq!(f("Replace", "abc", &[]), None);
        assert_eq!(f("Replace", "a'b", &["[a-z]+", "1"]).unwrap(), "1'1");
        assert_eq!(f("Replace", "a(b", &["a\\(b", "d(e"]).unwrap(), "d(e");
        assert_eq!(
            f("Replace", "opuocts", &["o(.+)o([a-z]*)s", "o$2o$1s"]).unwrap(),
            "octopus"
        );
        assert_eq!(f("Replace", "ababa", &["^a", "x"]).unwrap(), "xbaba");
        assert_eq!(f("Replace", "ababa", &["a$", "x"]).unwrap(), "ababx");
        assert_eq!(f("Replace", "a", &["a", "$"]).unwrap(), "$");
        assert_eq!(f("Match", "abc def1", &["[0-9]+"]).unwrap(), "true");
        assert_eq!(f("Match", "abc def", &["ABC"]).unwrap(), "false");
        assert_eq!(f("StartsWith", "abc def", &["abc"]).unwrap(), "true");
        assert_eq!(f("EndsWith", "abc def", &["de"]).unwrap(), "false");
        assert_eq!(f("Contains", "abc def", &["c d"]).unwrap(), "true");
        assert_eq!(f("Contains", "abc def", &["a", "b"]), None);
    }

    #[test]
    fn append_prepend() {
        assert_eq!(apply("Append", None, &["foo".into()]).unwrap(), "foo");
        assert_eq!(
            f("Append", "bar", &["value1", "value2"]).unwrap(),
            "barvalue1value2"
        );
        assert_eq!(f("Prepend", "bar", &[" ", "x"]).unwrap(), " xbar");
        assert_eq!(f("Append", "bar", &[]), None);
        assert_eq!(apply("ToUpper", None, &[]), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(f("Format", "23.456", &["F2"]).unwrap(), "23.46");
        assert_eq!(f("Format", "1234567.891", &["N2"]).unwrap(), "1,234,567.89");
        assert_eq!(f("Format", "-1234", &["Decimal", "N0"]).unwrap(), "-1,234");
        assert_eq!(f("Format", "42", &["Int32", "D5"]).unwrap(), "00042");
        assert_eq!(f("Format", "255", &["X"]).unwrap(), "FF");
        assert_eq!(f("Format", "hello World", &["yyyy"]), None);
        assert_eq!(f("Format", "2030/05/22", &["DateTime", "yyyy"]), None);
    }

    #[test]
    fn dates() {
        assert_eq!(civil(0, 0), [1970, 1, 1, 0, 0, 0, 0]);
        assert_eq!(civil(1_900_000_000, 5), [2030, 3, 17, 17, 46, 40, 5]);
        assert_eq!(
            format_date("yyMMddHHmmss fff", &[2030, 3, 17, 17, 46, 40, 5]),
            "300317174640 005"
        );
        let year = apply("NowDateUtc", None, &["yyyy".into()]).unwrap();
        assert!(year.len() == 4 && year.starts_with('2'), "{year}");
    }
}
