//! Outbound destinations and the patterns plugins declare for them.
//!
//! A destination is an origin: scheme (`http`/`https`, or `tcp` for a raw TCP destination an
//! administrator grants to a confined step's scripts; `tcp` always names its port), host and port. A pattern may use `*` for the whole
//! host, `*.example.com` for any subdomain, `:*` for any port, and `{{parameter}}` templates that the
//! host resolves from a step's own arguments before matching (so `{{url}}` grants exactly the origin of
//! the URL the user configured, and nothing else).

use std::fmt;
use std::net::IpAddr;

/// A pattern or destination that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DestinationError {
    /// Not of the form `scheme://host[:port]`.
    #[error("expected scheme://host[:port], got {0:?}")]
    Syntax(String),
    /// Scheme other than http, https or tcp.
    #[error("only http, https and tcp destinations are supported, not {0:?}")]
    Scheme(String),
    /// A `tcp://` destination without a port.
    #[error("a tcp destination names its port (tcp://host:port), got {0:?}")]
    TcpPort(String),
    /// Bad port number.
    #[error("bad port {0:?}")]
    Port(String),
    /// Bad host name.
    #[error("bad host {0:?}")]
    Host(String),
    /// A `{{name}}` template refers to an argument the step was not given.
    #[error("the destination uses parameter {0:?}, which has no value")]
    MissingParameter(String),
    /// An argument used in a template would widen the grant (wildcards, spaces, user info).
    #[error("the value of parameter {0:?} cannot be used as a destination")]
    UnsafeParameter(String),
    /// An unterminated or empty `{{...}}`.
    #[error("malformed template in {0:?}")]
    Template(String),
}

/// `http`, `https` or `tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
    /// A raw TCP connection (granted to a confined step's scripts, forwarded by the host); never a
    /// `wasi:http` request.
    Tcp,
}

impl Scheme {
    fn parse(s: &str) -> Result<Self, DestinationError> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Scheme::Http),
            "https" => Ok(Scheme::Https),
            "tcp" => Ok(Scheme::Tcp),
            _ => Err(DestinationError::Scheme(s.to_string())),
        }
    }

    /// The port used when none is written (`tcp` has none: 0, and its destinations must name one).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Tcp => 0,
        }
    }

    /// `http`, `https` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
        }
    }
}

/// A concrete place a request goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// http or https.
    pub scheme: Scheme,
    /// Normalised host: lowercase name without a trailing dot, or a canonical IP (IPv6 in brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
}

impl Destination {
    /// Builds a destination from parts, normalising the host.
    pub fn new(scheme: &str, host: &str, port: Option<u16>) -> Result<Self, DestinationError> {
        let scheme = Scheme::parse(scheme)?;
        if scheme == Scheme::Tcp && port.is_none_or(|p| p == 0) {
            return Err(DestinationError::TcpPort(format!("tcp://{host}")));
        }
        Ok(Destination {
            scheme,
            host: normalise_host(host)?,
            port: port.unwrap_or(scheme.default_port()),
        })
    }

    /// Parses a URL and keeps its origin. Paths, queries and user info are ignored.
    pub fn from_url(input: &str) -> Result<Self, DestinationError> {
        let url = url::Url::parse(input.trim())
            .map_err(|_| DestinationError::Syntax(input.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| DestinationError::Syntax(input.to_string()))?;
        Destination::new(url.scheme(), host, url.port())
    }

    /// `host:port` as it is dialled and sent as the `Host` header: the normalised host (no trailing
    /// dot, no user info), IPv6 in brackets, and always the port.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `Host` header for a request to this destination: the normalised host, with the port
    /// only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            self.authority()
        }
    }

    /// Whether the host is an IP address rather than a name.
    pub fn is_ip_literal(&self) -> bool {
        self.host.starts_with('[') || self.host.parse::<IpAddr>().is_ok()
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    Any,
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
    Exact(String),
}

/// A declared or granted destination, possibly with wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestinationPattern {
    scheme: Scheme,
    host: HostPattern,
    /// `None` = any port.
    port: Option<u16>,
}

impl DestinationPattern {
    /// Whether it names raw TCP destinations (`tcp://host:port`).
    pub fn is_tcp(&self) -> bool {
        self.scheme == Scheme::Tcp
    }

    /// The one destination it names, when it has no wildcard (host and port exact).
    pub fn exact_destination(&self) -> Option<Destination> {
        match (&self.host, self.port) {
            (HostPattern::Exact(host), Some(port)) => Some(Destination {
                scheme: self.scheme,
                host: host.clone(),
                port,
            }),
            _ => None,
        }
    }

    /// Parses a pattern without templates: `https://*.example.com`, `http://localhost:*`, `https://*`.
    pub fn parse(input: &str) -> Result<Self, DestinationError> {
        let syntax = || DestinationError::Syntax(input.to_string());
        let trimmed = input.trim();
        let (scheme, rest) = trimmed.split_once("://").ok_or_else(syntax)?;
        let scheme = Scheme::parse(scheme)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') {
            return Err(syntax());
        }
        let (host, port) = split_host_port(authority).ok_or_else(syntax)?;
        let port = match port {
            None if scheme == Scheme::Tcp => {
                return Err(DestinationError::TcpPort(input.to_string()));
            }
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| DestinationError::Port(p.into()))?,
            ),
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Subdomains(normalise_host(suffix)?)
        } else {
            HostPattern::Exact(normalise_host(host)?)
        };
        Ok(DestinationPattern { scheme, host, port })
    }

    /// Resolves `{{name}}` templates with `lookup`, then parses the result.
    ///
    /// A template that is the whole entry takes the origin of the argument's URL. Argument values may not
    /// contain wildcards, white space or user info: a user's input must never widen a grant.
    pub fn resolve(
        template: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DestinationError> {
        let trimmed = template.trim();
        if let Some(name) = whole_template(trimmed) {
            let value =
                lookup(name).ok_or_else(|| DestinationError::MissingParameter(name.to_string()))?;
            check_value(name, &value)?;
            let dest = Destination::from_url(&value)?;
            return Ok(DestinationPattern::exact(&dest));
        }
        let resolved = substitute(trimmed, |name| {
            let value =
                lookup(name).ok_or_else(|| DestinationError::MissingParameter(name.to_string()))?;
            check_value(name, &value)?;
            Ok(value)
        })?;
        DestinationPattern::parse(&resolved)
    }

    /// Checks that a manifest entry is well formed, templates included, without argument values.
    pub fn check_template(template: &str) -> Result<(), DestinationError> {
        let trimmed = template.trim();
        if whole_template(trimmed).is_some() {
            return Ok(());
        }
        let resolved = substitute(trimmed, |_| Ok("placeholder".to_string()))?;
        DestinationPattern::parse(&resolved).map(|_| ())
    }

    /// The pattern that matches exactly `destination`.
    pub fn exact(destination: &Destination) -> Self {
        DestinationPattern {
            scheme: destination.scheme,
            host: HostPattern::Exact(destination.host.clone()),
            port: Some(destination.port),
        }
    }

    /// Whether `destination` is covered by this pattern.
    pub fn matches(&self, destination: &Destination) -> bool {
        if self.scheme != destination.scheme || self.port.is_some_and(|p| p != destination.port) {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == destination.host,
            // Subdomains are names: `*.0.0.1` must not match the IP literal 127.0.0.1.
            HostPattern::Subdomains(suffix) => {
                !destination.is_ip_literal()
                    && destination
                        .host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
            }
        }
    }
}

impl DestinationPattern {
    /// The pattern matching exactly the destinations both patterns match, if one pattern can say it
    /// (it always can: schemes and ports are single values or any, hosts nest or are disjoint).
    pub fn intersect(&self, other: &DestinationPattern) -> Option<DestinationPattern> {
        if self.scheme != other.scheme {
            return None;
        }
        let port = match (self.port, other.port) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) | (None, Some(a)) => Some(a),
            (None, None) => None,
        };
        let under = |name: &str, suffix: &str| {
            name.strip_suffix(suffix)
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
        };
        let host = match (&self.host, &other.host) {
            (HostPattern::Any, h) | (h, HostPattern::Any) => h.clone(),
            (HostPattern::Exact(a), HostPattern::Exact(b)) if a == b => {
                HostPattern::Exact(a.clone())
            }
            (HostPattern::Exact(a), HostPattern::Subdomains(s))
            | (HostPattern::Subdomains(s), HostPattern::Exact(a))
                if under(a, s) =>
            {
                HostPattern::Exact(a.clone())
            }
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) if a == b || under(a, b) => {
                HostPattern::Subdomains(a.clone())
            }
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) if under(b, a) => {
                HostPattern::Subdomains(b.clone())
            }
            _ => return None,
        };
        Some(DestinationPattern {
            scheme: self.scheme,
            host,
            port,
        })
    }
}

impl fmt::Display for DestinationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Subdomains(s) => write!(f, "*.{s}")?,
            HostPattern::Exact(h) => f.write_str(h)?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

fn whole_template(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

fn substitute(
    s: &str,
    mut value_of: impl FnMut(&str) -> Result<String, DestinationError>,
) -> Result<String, DestinationError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| DestinationError::Template(s.to_string()))?;
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(DestinationError::Template(s.to_string()));
        }
        out.push_str(&value_of(name)?);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(DestinationError::Template(s.to_string()));
    }
    out.push_str(rest);
    Ok(out)
}

fn check_value(name: &str, value: &str) -> Result<(), DestinationError> {
    if value.is_empty() || value.contains(['*', '{', '}']) || value.chars().any(char::is_whitespace)
    {
        return Err(DestinationError::UnsafeParameter(name.to_string()));
    }
    Ok(())
}

/// Splits `host[:port]`, handling `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let host = &authority[..v6.len() + 2];
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

fn normalise_host(host: &str) -> Result<String, DestinationError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(name)
    } else {
        Err(DestinationError::Host(host.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_destinations_name_their_port() {
        let p = DestinationPattern::parse("tcp://DB.internal:5432").unwrap();
        assert_eq!(p.to_string(), "tcp://db.internal:5432");
        let d = Destination::new("tcp", "db.internal", Some(5432)).unwrap();
        assert!(p.matches(&d));
        assert_eq!(d.to_string(), "tcp://db.internal:5432");
        // Not an http destination of the same host and port.
        assert!(!p.matches(&Destination::new("http", "db.internal", Some(5432)).unwrap()));
        assert!(matches!(
            DestinationPattern::parse("tcp://db.internal"),
            Err(DestinationError::TcpPort(_))
        ));
        assert!(Destination::new("tcp", "db.internal", None).is_err());
        assert!(DestinationPattern::parse("ftp://x").is_err());
    }

    fn dest(url: &str) -> Destination {
        Destination::from_url(url).unwrap()
    }

    fn pat(p: &str) -> DestinationPattern {
        DestinationPattern::parse(p).unwrap()
    }

    #[test]
    fn intersections_match_what_both_match() {
        let cases = [
            (
                "https://*:*",
                "https://*.corp.example:*",
                Some("https://*.corp.example:*"),
            ),
            (
                "https://*.corp.example",
                "https://a.b.corp.example:*",
                Some("https://a.b.corp.example:443"),
            ),
            (
                "https://*.b.corp.example:*",
                "https://*.corp.example:8443",
                Some("https://*.b.corp.example:8443"),
            ),
            (
                "https://*.corp.example:*",
                "https://*.b.corp.example:*",
                Some("https://*.b.corp.example:*"),
            ),
            ("https://corp.example", "https://*.corp.example", None),
            ("https://a.example", "https://b.example", None),
            ("https://a.example:1", "https://a.example:2", None),
            ("http://a.example:*", "https://a.example:*", None),
            (
                "http://127.0.0.1:*",
                "http://*:8080",
                Some("http://127.0.0.1:8080"),
            ),
        ];
        for (a, b, expected) in cases {
            for (x, y) in [(a, b), (b, a)] {
                let got = pat(x).intersect(&pat(y)).map(|p| p.to_string());
                assert_eq!(got.as_deref(), expected, "{x} ∩ {y}");
            }
        }
    }

    #[test]
    fn destinations_normalise() {
        assert_eq!(
            dest("HTTPS://Example.COM./x?y").to_string(),
            "https://example.com:443"
        );
        assert_eq!(
            dest("http://127.0.0.1:8080/health").to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(dest("http://[::1]:9/").to_string(), "http://[::1]:9");
        // User info does not change the host.
        assert_eq!(dest("https://good.com@evil.com/").host, "evil.com");
        // What is audited is what is dialled: the host without its trailing dot.
        assert_eq!(
            dest("http://localhost.:8080/").authority(),
            "localhost:8080"
        );
        assert_eq!(dest("http://[::1]:9/").authority(), "[::1]:9");
        assert_eq!(
            dest("https://x:y@Example.com.:443/").host_header(),
            "example.com"
        );
        assert_eq!(
            dest("http://localhost.:8080/").host_header(),
            "localhost:8080"
        );
        assert!(dest("http://[::1]:9/").is_ip_literal());
        assert!(dest("http://127.0.0.1/").is_ip_literal());
        assert!(!dest("http://localhost/").is_ip_literal());
        assert!(Destination::from_url("ftp://x").is_err());
    }

    #[test]
    fn exact_patterns() {
        let p = pat("https://api.example.com");
        assert!(p.matches(&dest("https://api.example.com/v1")));
        assert!(!p.matches(&dest("http://api.example.com")));
        assert!(!p.matches(&dest("https://api.example.com:8443")));
        assert!(!p.matches(&dest("https://example.com")));
        assert!(pat("http://[::1]:*").matches(&dest("http://[0:0::1]:1234")));
    }

    #[test]
    fn wildcards() {
        let p = pat("https://*.example.com");
        assert!(p.matches(&dest("https://a.example.com")));
        assert!(p.matches(&dest("https://a.b.example.com")));
        assert!(!p.matches(&dest("https://example.com")));
        assert!(!p.matches(&dest("https://badexample.com")));
        assert!(pat("https://*:*").matches(&dest("https://anything:1")));
        assert!(pat("http://localhost:*").matches(&dest("http://localhost:5")));
        // A subdomain wildcard never matches an IP literal.
        assert!(!pat("http://*.0.0.1:*").matches(&dest("http://127.0.0.1:5")));
        assert!(!pat("http://*.1:*").matches(&dest("http://[::1]:5")));
        assert!(pat("http://*:*").matches(&dest("http://127.0.0.1:5")));
        assert_eq!(
            pat("https://*.Example.com:*").to_string(),
            "https://*.example.com:*"
        );
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://",
            "https://a:0",
            "https://a:99999",
            "https://u@h",
            "https://a b",
            "https://::1",
        ] {
            assert!(DestinationPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_resolve_from_arguments() {
        let args = |n: &str| match n {
            "url" => Some("http://127.0.0.1:8080/health".to_string()),
            "host" => Some("api.example.com".to_string()),
            "wild" => Some("*.example.com".to_string()),
            _ => None,
        };
        let p = DestinationPattern::resolve("{{url}}", args).unwrap();
        assert_eq!(p.to_string(), "http://127.0.0.1:8080");
        let p = DestinationPattern::resolve("https://{{host}}:8443", args).unwrap();
        assert!(p.matches(&dest("https://api.example.com:8443")));
        assert_eq!(
            DestinationPattern::resolve("{{nope}}", args).unwrap_err(),
            DestinationError::MissingParameter("nope".into())
        );
        assert_eq!(
            DestinationPattern::resolve("https://{{wild}}", args).unwrap_err(),
            DestinationError::UnsafeParameter("wild".into())
        );
        assert!(DestinationPattern::check_template("https://{{host}}:443").is_ok());
        assert!(DestinationPattern::check_template("{{url}}").is_ok());
        assert!(DestinationPattern::check_template("https://{{host").is_err());
        assert!(DestinationPattern::check_template("https://{{}}").is_err());
    }
}
