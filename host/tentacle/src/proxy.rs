//! The tentacle's two proxies: the polling proxy (its connections to the server, `tentacle
//! polling-proxy`) and the web request proxy (plugins' HTTP and scripts' `HTTP_PROXY`/`HTTPS_PROXY`,
//! `tentacle proxy`). Same flags as `octo proxy`; HTTP only; passwords are stored in `tentacle.toml`
//! (mode 0600) and shown as `********`.

use std::sync::Arc;

use octo_comms::proxy::{ProxyConfig, system::SystemProxy};
use octo_runtime::WebProxy;
use serde::{Deserialize, Serialize};

/// The message for any SOCKS proxy.
pub const SOCKS_REFUSED: &str = "only HTTP proxies are supported (SOCKS is not)";
/// What a password is shown as.
pub const MASKED: &str = "********";

/// One proxy in `tentacle.toml` (`[pollingProxy]`, `[webProxy]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxySettings {
    /// `proxyEnable`.
    pub enabled: bool,
    /// `useSystemProxy`: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the agent's environment.
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
    /// `proxyPassword`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// `--proxyEnable`, `--proxyHost`, ... (kebab-case aliases too).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProxyFlags {
    /// Use a proxy.
    #[arg(long = "proxyEnable", visible_alias = "proxy-enable", value_name = "true|false", value_parser = parse_bool)]
    pub enable: Option<bool>,
    /// Use HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment.
    #[arg(long = "useSystemProxy", visible_alias = "use-system-proxy", value_name = "true|false", value_parser = parse_bool)]
    pub use_system: Option<bool>,
    /// The proxy type: http (SOCKS is not supported).
    #[arg(long = "proxyType", visible_alias = "proxy-type", value_name = "http")]
    pub kind: Option<String>,
    /// The proxy's host name or IP address.
    #[arg(long = "proxyHost", visible_alias = "proxy-host", value_name = "HOST")]
    pub host: Option<String>,
    /// The proxy's port.
    #[arg(long = "proxyPort", visible_alias = "proxy-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Basic authentication user name (empty: none).
    #[arg(
        long = "proxyUsername",
        visible_alias = "proxy-username",
        value_name = "USER"
    )]
    pub username: Option<String>,
    /// Basic authentication password (never printed).
    #[arg(
        long = "proxyPassword",
        visible_alias = "proxy-password",
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
}

impl ProxySettings {
    /// Nothing configured.
    pub fn is_unset(&self) -> bool {
        *self == ProxySettings::default()
    }

    /// Applies the flags; checks the result (nothing is changed on error).
    pub fn apply(&mut self, flags: &ProxyFlags) -> Result<(), String> {
        let mut next = self.clone();
        if let Some(kind) = &flags.kind {
            let kind = kind.trim().to_ascii_lowercase();
            if kind.starts_with("socks") {
                return Err(SOCKS_REFUSED.into());
            }
            if kind != "http" {
                return Err(format!("--proxyType: expected http, got {kind:?}"));
            }
        }
        if let Some(host) = &flags.host {
            let trimmed = host.trim();
            if trimmed.to_ascii_lowercase().starts_with("socks") {
                return Err(SOCKS_REFUSED.into());
            }
            let (h, port) = if trimmed.contains("://") {
                let parsed =
                    ProxyConfig::parse(trimmed).map_err(|e| format!("--proxyHost: {e}"))?;
                (parsed.host().to_string(), Some(parsed.port()))
            } else {
                ProxyConfig::new(trimmed, 1).map_err(|e| format!("--proxyHost: {e}"))?;
                (trimmed.to_string(), None)
            };
            next.host = Some(h);
            if flags.port.is_none() && port.is_some() {
                next.port = port;
            }
        }
        if let Some(port) = flags.port {
            next.port = Some(port);
        }
        if let Some(user) = &flags.username {
            next.username = Some(user.clone()).filter(|u| !u.is_empty());
            if next.username.is_none() {
                next.password = None;
            }
        }
        if let Some(password) = &flags.password {
            next.password = Some(password.clone()).filter(|p| !p.is_empty());
        }
        if let Some(system) = flags.use_system {
            next.use_system_proxy = system;
            next.enabled |= system;
        }
        if let Some(enable) = flags.enable {
            next.enabled = enable;
            if !enable {
                next.use_system_proxy = false;
            }
        }
        if next.enabled && !next.use_system_proxy && (next.host.is_none() || next.port.is_none()) {
            return Err(
                "--proxyEnable=true needs --proxyHost and --proxyPort (or --useSystemProxy=true)"
                    .into(),
            );
        }
        *self = next;
        Ok(())
    }

    /// A copy with the password masked.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        if let Some(p) = &mut copy.password {
            *p = MASKED.into();
        }
        copy
    }

    /// One line, password masked.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "disabled (direct connections)".into();
        }
        if self.use_system_proxy {
            return "the system proxy (HTTPS_PROXY / HTTP_PROXY / NO_PROXY)".into();
        }
        let host = self.host.as_deref().unwrap_or("?");
        let port = self.port.unwrap_or(0);
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("http://{u}:{MASKED}@{host}:{port}"),
            (Some(u), None) => format!("http://{u}@{host}:{port}"),
            _ => format!("http://{host}:{port}"),
        }
    }

    /// The proxy for an https (TLS) connection to `host`, if any.
    pub fn proxy_for(&self, host: &str) -> anyhow::Result<Option<ProxyConfig>> {
        match self.resolve()? {
            None => Ok(None),
            Some(WebProxy::Fixed(p)) => Ok(Some(p)),
            Some(WebProxy::System(s)) => Ok(s.proxy_for(true, host)?),
        }
    }

    /// As the runtime's [`WebProxy`], if enabled.
    pub fn resolve(&self) -> anyhow::Result<Option<WebProxy>> {
        if !self.enabled {
            return Ok(None);
        }
        if self.use_system_proxy {
            return Ok(Some(WebProxy::System(system_proxy())));
        }
        let (Some(host), Some(port)) = (&self.host, self.port) else {
            anyhow::bail!("a proxy is enabled without a host and port");
        };
        let config = ProxyConfig::from_fields(
            "http",
            host,
            port,
            self.username.as_deref(),
            self.password.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("the proxy {host}:{port}: {e}"))?;
        Ok(Some(WebProxy::Fixed(config)))
    }

    /// [`resolve`](Self::resolve), shared.
    pub fn web_proxy(&self) -> anyhow::Result<Option<Arc<WebProxy>>> {
        Ok(self.resolve()?.map(Arc::new))
    }
}

/// curl's variables, and `HTTP_PROXY` in upper case too (an agent is not a CGI program).
pub fn system_proxy() -> SystemProxy {
    SystemProxy::from_lookup(|name| {
        std::env::var(name).ok().or_else(|| {
            (name == "http_proxy")
                .then(|| std::env::var("HTTP_PROXY").ok())
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_socks_and_masking() {
        let mut p = ProxySettings::default();
        assert!(
            p.apply(&ProxyFlags {
                enable: Some(true),
                ..Default::default()
            })
            .is_err()
        );
        let e = p
            .apply(&ProxyFlags {
                enable: Some(true),
                host: Some("socks5://p:1080".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e, SOCKS_REFUSED);
        let e = p
            .apply(&ProxyFlags {
                kind: Some("SOCKS4".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e, SOCKS_REFUSED);
        p.apply(&ProxyFlags {
            enable: Some(true),
            host: Some("http://proxy:3128".into()),
            username: Some("u".into()),
            password: Some("pw".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.describe(), "http://u:********@proxy:3128");
        assert_eq!(p.redacted().password.as_deref(), Some(MASKED));
        assert_eq!(
            p.proxy_for("server").unwrap().unwrap().authority(),
            "proxy:3128"
        );
        p.apply(&ProxyFlags {
            enable: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(p.proxy_for("server").unwrap().is_none());
    }
}
