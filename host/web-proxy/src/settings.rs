//! The stored proxy settings, the rules they follow, and how the flags change them.

use crate::ProxyArgs;
use octo_comms::proxy::{ProxyConfig, ProxyConfigError};
use serde::{Deserialize, Serialize};

/// The message for any SOCKS proxy.
pub const SOCKS_REFUSED: &str = "only HTTP proxies are supported (SOCKS is not)";

/// What a password is shown as.
pub const MASKED: &str = "********";

/// One proxy as stored: `[webProxy]` in `octo.toml`, `[webProxy]` and `[pollingProxy]` in
/// `tentacle.toml`. Keys are the flag names without `proxy` (`enabled`, `useSystemProxy`, `host`,
/// `port`, `username`, `password`). The host is stored bare (an IPv6 address without brackets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxySettings {
    /// `proxyEnable`: use a proxy.
    pub enabled: bool,
    /// `useSystemProxy`: take it from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (as curl does) instead of
    /// `host`/`port`.
    pub use_system_proxy: bool,
    /// `proxyHost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `proxyPort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `proxyUsername`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `proxyPassword` (masked by [`ProxySettings::redacted`] and [`ProxySettings::describe`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Why proxy settings or flags were refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxySettingsError {
    /// A SOCKS type or host.
    #[error("only HTTP proxies are supported (SOCKS is not)")]
    Socks,
    /// A proxy type other than `http`.
    #[error("--proxyType: expected http, got {0:?} (only HTTP proxies are supported)")]
    Type(String),
    /// `user:password@` inside the host.
    #[error(
        "--proxyHost: give the user name and password with --proxyUsername/--proxyPassword, not in the host"
    )]
    CredentialsInHost,
    /// The host is not a host name or address (or the URL around it is not a proxy URL).
    #[error("--proxyHost: {0}")]
    Host(ProxyConfigError),
    /// The port is 0.
    #[error("--proxyPort: expected 1 to 65535")]
    Port,
    /// Enabled without a host.
    #[error("--proxyEnable=true needs --proxyHost (or --useSystemProxy=true)")]
    NeedsHost,
    /// Enabled without a port.
    #[error("--proxyEnable=true needs --proxyPort")]
    NeedsPort,
}

/// The one host check: a host name, an IPv4 address or an IPv6 address (brackets optional), never
/// SOCKS, never with credentials. Returns the host as stored (an IPv6 address without brackets).
pub fn check_host(host: &str) -> Result<String, ProxySettingsError> {
    let trimmed = host.trim();
    if trimmed.to_ascii_lowercase().starts_with("socks") {
        return Err(ProxySettingsError::Socks);
    }
    if trimmed.contains('@') {
        return Err(ProxySettingsError::CredentialsInHost);
    }
    let config = ProxyConfig::new(trimmed, 1).map_err(ProxySettingsError::Host)?;
    Ok(config.host().to_string())
}

/// `--proxyHost` as given: a host (see [`check_host`]) or an `http://host[:port]` URL. Returns the
/// host as stored and the port if the URL names one.
pub fn split_host(input: &str) -> Result<(String, Option<u16>), ProxySettingsError> {
    let trimmed = input.trim();
    let Some((_, rest)) = trimmed.split_once("://") else {
        return Ok((check_host(trimmed)?, None));
    };
    if trimmed.to_ascii_lowercase().starts_with("socks") {
        return Err(ProxySettingsError::Socks);
    }
    if rest.contains('@') {
        return Err(ProxySettingsError::CredentialsInHost);
    }
    let parsed = ProxyConfig::parse(trimmed).map_err(|e| match e {
        ProxyConfigError::Socks => ProxySettingsError::Socks,
        e => ProxySettingsError::Host(e),
    })?;
    // `ProxyConfig::parse` assumes a port when there is none; a stored proxy names its own.
    let authority = rest.trim_end_matches('/');
    let explicit_port = match authority.rfind(']') {
        Some(end) => authority[end..].starts_with("]:"),
        None => authority.contains(':'),
    };
    Ok((
        parsed.host().to_string(),
        explicit_port.then_some(parsed.port()),
    ))
}

/// `http://host:port` with `user:********@` when there are credentials; an IPv6 host in brackets.
pub fn describe_fields(host: &str, port: u16, user: Option<&str>, has_password: bool) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match user {
        Some(u) if has_password => format!("http://{u}:{MASKED}@{host}:{port}"),
        Some(u) => format!("http://{u}@{host}:{port}"),
        None => format!("http://{host}:{port}"),
    }
}

impl ProxySettings {
    /// Nothing configured (the table is then left out of the file).
    pub fn is_unset(&self) -> bool {
        *self == ProxySettings::default()
    }

    /// Checks stored settings (a hand-edited file): the host, the port, and that an enabled proxy
    /// has both (or uses the system proxy).
    pub fn validate(&self) -> Result<(), ProxySettingsError> {
        if let Some(host) = &self.host {
            check_host(host)?;
        }
        if self.port == Some(0) {
            return Err(ProxySettingsError::Port);
        }
        if self.enabled && !self.use_system_proxy {
            if self.host.is_none() {
                return Err(ProxySettingsError::NeedsHost);
            }
            if self.port.is_none() {
                return Err(ProxySettingsError::NeedsPort);
            }
        }
        Ok(())
    }

    /// Applies the flags and checks the result; on error nothing is changed.
    ///
    /// `--proxyHost http://host:port` sets the port too unless `--proxyPort` is given; an empty
    /// `--proxyUsername` removes the credentials; `--useSystemProxy=true` enables the proxy;
    /// `--proxyEnable=false` also turns the system proxy off.
    pub fn apply(&mut self, args: &ProxyArgs) -> Result<(), ProxySettingsError> {
        let mut next = self.clone();
        if let Some(kind) = &args.kind {
            let kind = kind.trim().to_ascii_lowercase();
            if kind.starts_with("socks") {
                return Err(ProxySettingsError::Socks);
            }
            if kind != "http" {
                return Err(ProxySettingsError::Type(kind));
            }
        }
        if let Some(host) = &args.host {
            let (host, port) = split_host(host)?;
            next.host = Some(host);
            if port.is_some() && args.port.is_none() {
                next.port = port;
            }
        }
        if let Some(port) = args.port {
            next.port = Some(port);
        }
        if let Some(user) = &args.username {
            next.username = Some(user.clone()).filter(|u| !u.is_empty());
            if next.username.is_none() {
                next.password = None;
            }
        }
        if let Some(password) = &args.password {
            next.password = Some(password.clone()).filter(|p| !p.is_empty());
        }
        if let Some(system) = args.use_system {
            next.use_system_proxy = system;
            next.enabled |= system;
        }
        if let Some(enable) = args.enable {
            next.enabled = enable;
            if !enable {
                next.use_system_proxy = false;
            }
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// A copy safe to print: the password replaced by [`MASKED`].
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        if let Some(p) = &mut copy.password {
            *p = MASKED.into();
        }
        copy
    }

    /// One line for people, password masked: `disabled (direct connections)`, the system proxy, or
    /// `http://user:********@host:port`.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "disabled (direct connections)".into();
        }
        if self.use_system_proxy {
            return "the system proxy (HTTPS_PROXY / HTTP_PROXY / NO_PROXY)".into();
        }
        describe_fields(
            self.host.as_deref().unwrap_or("?"),
            self.port.unwrap_or(0),
            self.username.as_deref(),
            self.password.is_some(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enable(host: &str, port: Option<u16>) -> ProxyArgs {
        ProxyArgs {
            enable: Some(true),
            host: Some(host.into()),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn enable_disable_system_and_masking() {
        let mut s = ProxySettings::default();
        let e = s
            .apply(&ProxyArgs {
                enable: Some(true),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("--proxyHost"), "{e}");
        assert!(s.is_unset(), "nothing changed on error");
        s.apply(&ProxyArgs {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..enable("proxy.corp", Some(3128))
        })
        .unwrap();
        assert_eq!(s.describe(), "http://u:********@proxy.corp:3128");
        assert_eq!(s.redacted().password.as_deref(), Some(MASKED));
        s.apply(&ProxyArgs {
            use_system: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert!(s.enabled && s.use_system_proxy);
        s.apply(&ProxyArgs {
            enable: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(!s.enabled && !s.use_system_proxy);
        assert_eq!(s.describe(), "disabled (direct connections)");
        // An empty user name removes the credentials.
        s.apply(&ProxyArgs {
            username: Some(String::new()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (None, None));
    }

    #[test]
    fn socks_is_refused_as_type_or_host() {
        for (kind, host) in [
            (Some("socks5"), "p"),
            (Some("SOCKS4"), "p"),
            (None, "socks5://p:1080"),
            (None, "socks4://p"),
            (None, "socks5h://p"),
        ] {
            let mut s = ProxySettings::default();
            let e = s
                .apply(&ProxyArgs {
                    kind: kind.map(Into::into),
                    ..enable(host, Some(1080))
                })
                .unwrap_err();
            assert_eq!(e.to_string(), SOCKS_REFUSED);
        }
        let e = ProxySettings::default()
            .apply(&ProxyArgs {
                kind: Some("https".into()),
                ..enable("p", Some(1))
            })
            .unwrap_err();
        assert!(e.to_string().contains("expected http"), "{e}");
    }

    #[test]
    fn credentials_in_the_host_are_refused() {
        for host in ["http://u:pw@proxy:3128", "u:pw@proxy", "http://@proxy:3128"] {
            let e = ProxySettings::default()
                .apply(&enable(host, None))
                .unwrap_err();
            assert_eq!(e, ProxySettingsError::CredentialsInHost, "{host}");
            let said = e.to_string();
            assert!(
                said.contains("--proxyUsername/--proxyPassword") && !said.contains("pw"),
                "{said}"
            );
        }
    }

    #[test]
    fn a_port_is_required_and_taken_from_a_url() {
        let e = ProxySettings::default()
            .apply(&enable("http://proxy", None))
            .unwrap_err();
        assert_eq!(e, ProxySettingsError::NeedsPort);
        let e = ProxySettings::default()
            .apply(&enable("proxy", None))
            .unwrap_err();
        assert_eq!(e, ProxySettingsError::NeedsPort);
        let mut s = ProxySettings::default();
        s.apply(&enable("http://proxy:3128/", None)).unwrap();
        assert_eq!((s.host.as_deref(), s.port), (Some("proxy"), Some(3128)));
        // --proxyPort wins over the URL's port.
        s.apply(&enable("http://other:3128", Some(8080))).unwrap();
        assert_eq!((s.host.as_deref(), s.port), (Some("other"), Some(8080)));
        assert_eq!(split_host("proxy").unwrap(), ("proxy".into(), None));
        assert_eq!(
            split_host("http://proxy:3128").unwrap(),
            ("proxy".into(), Some(3128))
        );
    }

    #[test]
    fn ipv6_hosts_are_stored_bare_and_shown_in_brackets() {
        for (host, port) in [
            ("::1", Some(3128)),
            ("[::1]", Some(3128)),
            ("http://[::1]:3128", None),
        ] {
            let mut s = ProxySettings::default();
            s.apply(&enable(host, port)).unwrap();
            assert_eq!(s.host.as_deref(), Some("::1"), "{host}");
            assert_eq!(s.describe(), "http://[::1]:3128", "{host}");
        }
        let e = ProxySettings::default()
            .apply(&enable("http://[::1]", None))
            .unwrap_err();
        assert_eq!(e, ProxySettingsError::NeedsPort);
    }

    #[test]
    fn bad_hosts_are_refused_by_one_check() {
        for host in [
            "",
            "  ",
            "proxy/path",
            "proxy:3128",
            "a b",
            "http://proxy:3128/path",
        ] {
            let e = ProxySettings::default()
                .apply(&enable(host, Some(1)))
                .unwrap_err();
            assert!(e.to_string().starts_with("--proxyHost: "), "{host}: {e}");
        }
    }

    #[test]
    fn the_stored_shape_is_the_settings_tables() {
        let mut s = ProxySettings::default();
        s.apply(&ProxyArgs {
            username: Some("u".into()),
            password: Some("pw".into()),
            ..enable("proxy", Some(3128))
        })
        .unwrap();
        let text = toml::to_string(&s).unwrap();
        assert_eq!(
            text,
            "enabled = true\nuseSystemProxy = false\nhost = \"proxy\"\nport = 3128\nusername = \"u\"\npassword = \"pw\"\n"
        );
        assert_eq!(toml::from_str::<ProxySettings>(&text).unwrap(), s);
        assert!(toml::from_str::<ProxySettings>("bogus = 1").is_err());
        let hand_edited: ProxySettings = toml::from_str("enabled = true\nhost = \"p\"").unwrap();
        assert_eq!(hand_edited.validate(), Err(ProxySettingsError::NeedsPort));
    }
}
