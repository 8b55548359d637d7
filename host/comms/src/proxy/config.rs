//! Proxy settings: parsing a proxy URL or fields into a [`ProxyConfig`] (no I/O). The password
//! never appears in `Debug` or `Display`.

use std::fmt;
use std::str::FromStr;

/// The port assumed when a proxy URL has none (as curl does).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// A proxy password. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyPassword(String);

impl ProxyPassword {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for the `Proxy-Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProxyPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ProxyPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Basic credentials for the proxy.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProxyCredentials {
    /// The user name.
    pub username: String,
    /// The password (redacted when printed).
    pub password: ProxyPassword,
}

/// An HTTP proxy reached with `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    host: String,
    port: u16,
    credentials: Option<ProxyCredentials>,
}

impl ProxyConfig {
    /// A proxy at `host:port` without credentials. `host` may be a name, an IPv4 address or an
    /// IPv6 address (with or without brackets).
    pub fn new(host: &str, port: u16) -> Result<Self, ProxyConfigError> {
        let host = host.trim();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        validate_host(host)?;
        if port == 0 {
            return Err(ProxyConfigError::InvalidPort("0".into()));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            credentials: None,
        })
    }

    /// From separate settings fields: a proxy type (`http`; anything `socks*` is refused), host,
    /// port and optional credentials (an empty user name means none).
    pub fn from_fields(
        kind: &str,
        host: &str,
        port: u16,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, ProxyConfigError> {
        check_scheme(&kind.trim().to_ascii_lowercase())?;
        let config = Self::new(host, port)?;
        Ok(match username.filter(|u| !u.is_empty()) {
            Some(user) => config.with_credentials(user, password.unwrap_or("")),
            None => config,
        })
    }

    /// Adds Basic credentials.
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some(ProxyCredentials {
            username: username.to_owned(),
            password: ProxyPassword::new(password),
        });
        self
    }

    /// Parses `http://user:pass@host:port`, `http://host:port`, or `host:port` (taken as HTTP).
    /// User name and password may be percent-encoded. The port defaults to
    /// [`DEFAULT_PROXY_PORT`]. `socks4://`, `socks5://` and the like are refused: only HTTP
    /// proxies are supported.
    pub fn parse(input: &str) -> Result<Self, ProxyConfigError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ProxyConfigError::Empty);
        }
        let rest = match input.split_once("://") {
            Some((scheme, rest)) => {
                check_scheme(&scheme.to_ascii_lowercase())?;
                rest
            }
            None => {
                if input.to_ascii_lowercase().starts_with("socks") {
                    return Err(ProxyConfigError::Socks);
                }
                input
            }
        };
        // Credentials first, so that a '/' in an unencoded password is not taken for a path
        // (and never ends up in an error message).
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        if let Some(i) = hostport.find(['/', '?', '#']) {
            return Err(ProxyConfigError::UnexpectedPath(hostport[i..].to_owned()));
        }
        let (host, port) = split_host_port(hostport)?;
        let mut config = Self::new(host, port)?;
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let user = percent_decode(user)?;
            let password = percent_decode(password)?;
            if !user.is_empty() {
                config = config.with_credentials(&user, &password);
            }
        }
        Ok(config)
    }

    /// The proxy's host (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials, if any.
    pub fn credentials(&self) -> Option<&ProxyCredentials> {
        self.credentials.as_ref()
    }

    /// `host:port` (IPv6 in brackets): how errors and logs name the proxy. Never has credentials.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The value of the `Proxy-Authorization` header, if there are credentials (for plain-HTTP
    /// requests sent to the proxy in absolute form). Never log it.
    pub fn basic_authorization(&self) -> Option<String> {
        use base64::Engine as _;
        self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }
}

impl fmt::Display for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credentials {
            Some(c) => write!(f, "http://{}:***@{}", c.username, self.authority()),
            None => write!(f, "http://{}", self.authority()),
        }
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyConfig({self})")
    }
}

impl FromStr for ProxyConfig {
    type Err = ProxyConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn check_scheme(scheme: &str) -> Result<(), ProxyConfigError> {
    match scheme {
        "http" => Ok(()),
        s if s.starts_with("socks") => Err(ProxyConfigError::Socks),
        "https" => Err(ProxyConfigError::UnsupportedScheme {
            scheme: scheme.to_owned(),
            hint: " (TLS to the proxy itself is not supported; use http:// - TLS still runs end to end through the tunnel)",
        }),
        _ => Err(ProxyConfigError::UnsupportedScheme {
            scheme: scheme.to_owned(),
            hint: "",
        }),
    }
}

fn validate_host(host: &str) -> Result<(), ProxyConfigError> {
    if host.is_empty() {
        return Err(ProxyConfigError::MissingHost);
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']'))
    {
        return Err(ProxyConfigError::InvalidHost(host.to_owned()));
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(ProxyConfigError::InvalidHost(host.to_owned()));
    }
    Ok(())
}

fn split_host_port(hostport: &str) -> Result<(&str, u16), ProxyConfigError> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ProxyConfigError::InvalidPort(p.to_owned()))
    };
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| ProxyConfigError::InvalidHost(hostport.to_owned()))?;
        return match after {
            "" => Ok((host, DEFAULT_PROXY_PORT)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, parse_port(p)?)),
                None => Err(ProxyConfigError::InvalidHost(hostport.to_owned())),
            },
        };
    }
    match hostport.rsplit_once(':') {
        // A bare IPv6 address without brackets has several colons and no port.
        Some(_) if hostport.matches(':').count() > 1 => Ok((hostport, DEFAULT_PROXY_PORT)),
        Some((host, port)) => Ok((host, parse_port(port)?)),
        None => Ok((hostport, DEFAULT_PROXY_PORT)),
    }
}

fn percent_decode(input: &str) -> Result<String, ProxyConfigError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(ProxyConfigError::InvalidPercentEncoding)?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ProxyConfigError::InvalidPercentEncoding)
}

/// Why a proxy setting is not usable. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyConfigError {
    /// The setting is empty.
    #[error("the proxy setting is empty")]
    Empty,
    /// A SOCKS proxy was given.
    #[error("only HTTP proxies are supported (SOCKS is not)")]
    Socks,
    /// A scheme other than `http`.
    #[error("unsupported proxy scheme {scheme:?}: only http:// proxies are supported{hint}")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
        /// Extra advice.
        hint: &'static str,
    },
    /// No host.
    #[error("the proxy setting has no host")]
    MissingHost,
    /// The host is not a valid name or address.
    #[error("the proxy host {0:?} is not a valid host name or address")]
    InvalidHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("the proxy port {0:?} is not a number from 1 to 65535")]
    InvalidPort(String),
    /// A path, query or fragment after the address.
    #[error("a proxy setting is only scheme, credentials, host and port; unexpected {0:?}")]
    UnexpectedPath(String),
    /// Bad `%xx` escapes in the user name or password.
    #[error("the proxy user name or password has an invalid %-escape")]
    InvalidPercentEncoding,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let p = ProxyConfig::parse("http://user:s3cr%40t@proxy.example:3128").unwrap();
        assert_eq!(p.host(), "proxy.example");
        assert_eq!(p.port(), 3128);
        let c = p.credentials().unwrap();
        assert_eq!(c.username, "user");
        assert_eq!(c.password.expose(), "s3cr@t");
        assert_eq!(
            p.basic_authorization().unwrap(),
            "Basic dXNlcjpzM2NyQHQ=" // user:s3cr@t
        );

        let p = ProxyConfig::parse(" HTTP://10.0.0.1:8080/ ").unwrap();
        assert_eq!((p.host(), p.port()), ("10.0.0.1", 8080));
        assert!(p.credentials().is_none());

        let p = ProxyConfig::parse("squid:3128").unwrap();
        assert_eq!(p.authority(), "squid:3128");
        let p = ProxyConfig::parse("http://squid").unwrap();
        assert_eq!(p.port(), DEFAULT_PROXY_PORT);

        let p = ProxyConfig::parse("http://[::1]:3128").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 3128));
        assert_eq!(p.authority(), "[::1]:3128");

        // An unencoded '@' in the password: the last '@' separates the host.
        let p = ProxyConfig::parse("http://u:p@ss@h:1").unwrap();
        assert_eq!(p.credentials().unwrap().password.expose(), "p@ss");
        let p = ProxyConfig::parse("http://u:p/ss@h:1").unwrap();
        assert_eq!(p.credentials().unwrap().password.expose(), "p/ss");
    }

    #[test]
    fn refuses_socks_and_other_schemes() {
        for input in [
            "socks5://h:1080",
            "socks4://h:1",
            "SOCKS5H://h",
            "socks://h",
            "socks",
        ] {
            let err = ProxyConfig::parse(input).unwrap_err();
            assert_eq!(err, ProxyConfigError::Socks, "{input}");
            assert_eq!(
                err.to_string(),
                "only HTTP proxies are supported (SOCKS is not)"
            );
        }
        assert!(matches!(
            ProxyConfig::from_fields("socks", "h", 1, None, None),
            Err(ProxyConfigError::Socks)
        ));
        let https = ProxyConfig::parse("https://h:443").unwrap_err();
        assert!(https.to_string().contains("end to end"), "{https}");
        assert!(matches!(
            ProxyConfig::parse("ftp://h:21"),
            Err(ProxyConfigError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn refuses_malformed_settings() {
        assert_eq!(ProxyConfig::parse(" "), Err(ProxyConfigError::Empty));
        assert_eq!(
            ProxyConfig::parse("http://:3128"),
            Err(ProxyConfigError::MissingHost)
        );
        assert!(matches!(
            ProxyConfig::parse("http://h:99999"),
            Err(ProxyConfigError::InvalidPort(_))
        ));
        assert!(matches!(
            ProxyConfig::parse("http://h:0"),
            Err(ProxyConfigError::InvalidPort(_))
        ));
        assert!(matches!(
            ProxyConfig::parse("http://h:1/path"),
            Err(ProxyConfigError::UnexpectedPath(_))
        ));
        assert!(matches!(
            ProxyConfig::parse("http://u:%zz@h:1"),
            Err(ProxyConfigError::InvalidPercentEncoding)
        ));
        assert!(matches!(
            ProxyConfig::parse("http://bad host:1"),
            Err(ProxyConfigError::InvalidHost(_))
        ));
    }

    #[test]
    fn password_never_printed() {
        let p = ProxyConfig::parse("http://alice:hunter2@proxy:3128").unwrap();
        let shown = format!("{p} {p:?} {:?} {}", p.credentials(), p.authority());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(p.to_string(), "http://alice:***@proxy:3128");
        let err = ProxyConfig::parse("http://alice:hunter2@proxy:abc").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn from_fields() {
        let p = ProxyConfig::from_fields("HTTP", "proxy", 3128, Some("u"), Some("p")).unwrap();
        assert_eq!(p.to_string(), "http://u:***@proxy:3128");
        let p = ProxyConfig::from_fields("http", "[::1]", 3128, Some(""), None).unwrap();
        assert_eq!(p.to_string(), "http://[::1]:3128");
    }
}
