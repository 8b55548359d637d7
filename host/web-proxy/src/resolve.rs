//! From settings to the proxy a connection uses.

use crate::ProxySettings;
use octo_comms::proxy::{ProxyConfig, ProxyConfigError, system::SystemProxy};

/// Where web requests go out: the runtime's plugins' requests and scripts, the server's feed client,
/// the tentacle's polling connections.
#[derive(Clone)]
pub enum WebProxy {
    /// Every request through this proxy.
    Fixed(ProxyConfig),
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`, as curl reads them.
    System(SystemProxy),
}

impl WebProxy {
    /// The proxy for a connection to `host` (`https`: TLS inside the tunnel), or `None` for a direct
    /// connection (the system proxy's `NO_PROXY`, or no variable set). Errors say why the system
    /// proxy's variable is unusable.
    pub fn proxy_for(&self, https: bool, host: &str) -> Result<Option<ProxyConfig>, String> {
        match self {
            WebProxy::Fixed(p) => Ok(Some(p.clone())),
            WebProxy::System(s) => s.proxy_for(https, host).map_err(|e| e.to_string()),
        }
    }

    /// The proxy password, so it can be masked in the step's log.
    pub fn password(&self) -> Option<&str> {
        match self {
            WebProxy::Fixed(p) => p.credentials().map(|c| c.password.expose()),
            WebProxy::System(_) => None,
        }
    }
}

impl std::fmt::Debug for WebProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebProxy::Fixed(p) => write!(f, "WebProxy::Fixed({p})"), // Display hides the password
            WebProxy::System(_) => f.write_str("WebProxy::System"),
        }
    }
}

/// The environment as "use the system proxy" reads it: curl's variables, and `HTTP_PROXY` in upper
/// case too (a server or an agent is not a CGI program).
pub fn system_proxy() -> SystemProxy {
    SystemProxy::from_lookup(|name| {
        std::env::var(name).ok().or_else(|| {
            (name == "http_proxy")
                .then(|| std::env::var("HTTP_PROXY").ok())
                .flatten()
        })
    })
}

impl ProxySettings {
    /// The proxy these settings name, if enabled: fixed, or the system proxy.
    pub fn resolve(&self) -> Result<Option<WebProxy>, ProxyConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        if self.use_system_proxy {
            return Ok(Some(WebProxy::System(system_proxy())));
        }
        let (Some(host), Some(port)) = (&self.host, self.port) else {
            return Err(ProxyConfigError::MissingHost);
        };
        ProxyConfig::from_fields(
            "http",
            host,
            port,
            self.username.as_deref(),
            self.password.as_deref(),
        )
        .map(|config| Some(WebProxy::Fixed(config)))
    }

    /// The proxy for an https (TLS) connection to `host`, if any (`NO_PROXY` honoured for the system
    /// proxy).
    pub fn proxy_for(&self, host: &str) -> Result<Option<ProxyConfig>, ProxyConfigError> {
        match self.resolve()? {
            None => Ok(None),
            Some(WebProxy::Fixed(p)) => Ok(Some(p)),
            Some(WebProxy::System(s)) => s.proxy_for(true, host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProxyArgs;

    #[test]
    fn resolves_fixed_and_disabled() {
        let mut p = ProxySettings::default();
        assert!(p.proxy_for("server").unwrap().is_none());
        p.apply(&ProxyArgs {
            enable: Some(true),
            host: Some("http://proxy:3128".into()),
            username: Some("u".into()),
            password: Some("p w".into()),
            ..Default::default()
        })
        .unwrap();
        let chosen = p.proxy_for("server").unwrap().unwrap();
        assert_eq!(chosen.authority(), "proxy:3128");
        let proxy = p.resolve().unwrap().unwrap();
        assert_eq!(proxy.password(), Some("p w"));
        assert!(!format!("{proxy:?}").contains("p w"));
        p.apply(&ProxyArgs {
            enable: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(p.resolve().unwrap().is_none());
    }

    #[test]
    fn an_ipv6_proxy_is_dialled_in_brackets() {
        let mut p = ProxySettings::default();
        p.apply(&ProxyArgs {
            enable: Some(true),
            host: Some("::1".into()),
            port: Some(3128),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            p.proxy_for("server").unwrap().unwrap().authority(),
            "[::1]:3128"
        );
    }
}
