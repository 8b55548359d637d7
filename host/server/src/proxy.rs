//! `octo proxy` (the web request proxy) and `octo proxies` (named proxies for listening targets), and
//! turning the stored settings into what the runtime and the feed client use.
//!
//! Only HTTP proxies: a SOCKS type or a `socks*://` host is refused. Passwords are stored in `octo.toml`
//! (mode 0600) and shown as `********` everywhere else.
//!
//! The feed client reaches every feed through a `CONNECT` tunnel, for `https` (TLS end to end) and plain
//! `http` alike, so one code path carries both. Plugins' plain-`http` requests use absolute form
//! (`octo_runtime::http_client`), as curl does.

use crate::error::{Context, Error, Result};
use crate::home::Home;
use octo_comms::proxy::{
    DEFAULT_PROXY_TIMEOUT, ProxyConfig, connect_via_proxy, system::SystemProxy,
};
use octo_feed::{Connector, client::BoxedIo};
use octo_runtime::WebProxy;
use octo_settings::{MASKED, NamedProxy, Settings, WebProxySettings, check_proxy_host};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The message for any SOCKS proxy.
pub const SOCKS_REFUSED: &str = "only HTTP proxies are supported (SOCKS is not)";

/// The flags of `octo proxy` (the binary's `--proxyEnable`, `--useSystemProxy`, `--proxyType`,
/// `--proxyHost`, `--proxyPort`, `--proxyUsername`, `--proxyPassword`); `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Use a proxy for web requests.
    pub enable: Option<bool>,
    /// Use the proxy the environment names instead of a host.
    pub use_system: Option<bool>,
    /// The proxy type: `http` (SOCKS is refused).
    pub kind: Option<String>,
    /// The proxy's host (or `http://host:port`).
    pub host: Option<String>,
    /// The proxy's port.
    pub port: Option<u16>,
    /// Basic authentication user name (empty: none).
    pub username: Option<String>,
    /// Basic authentication password (empty: none).
    pub password: Option<String>,
}

impl ProxyOptions {
    /// Whether no flag was given (then `octo proxy` shows the current proxy).
    pub fn is_empty(&self) -> bool {
        self.enable.is_none()
            && self.use_system.is_none()
            && self.kind.is_none()
            && self.host.is_none()
            && self.port.is_none()
            && self.username.is_none()
            && self.password.is_none()
    }
}

/// Splits `http://host:port` given as a host; refuses SOCKS. Returns `(host, port from the URL)`.
pub fn split_host(host: &str) -> Result<(String, Option<u16>), String> {
    let trimmed = host.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("socks") {
        return Err(SOCKS_REFUSED.into());
    }
    if lower.contains("://") {
        let parsed = ProxyConfig::parse(trimmed).map_err(|e| e.to_string())?;
        if parsed.credentials().is_some() {
            return Err("give the user name and password with --proxyUsername/--proxyPassword, not in the host".into());
        }
        let explicit_port = trimmed
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.trim_end_matches('/').parse::<u16>().is_ok());
        return Ok((
            parsed.host().to_string(),
            explicit_port.then_some(parsed.port()),
        ));
    }
    check_proxy_host(trimmed)?;
    Ok((trimmed.to_string(), None))
}

/// Applies the flags to the stored web proxy settings; checks the result.
pub fn apply(settings: &mut WebProxySettings, args: &ProxyOptions) -> Result<(), String> {
    if let Some(kind) = &args.kind {
        let kind = kind.trim().to_ascii_lowercase();
        if kind.starts_with("socks") {
            return Err(SOCKS_REFUSED.into());
        }
        if kind != "http" {
            return Err(format!(
                "--proxyType: expected http, got {kind:?} ({SOCKS_REFUSED})"
            ));
        }
    }
    if let Some(host) = &args.host {
        let (host, port) = split_host(host).map_err(|e| format!("--proxyHost: {e}"))?;
        settings.host = Some(host);
        if port.is_some() && args.port.is_none() {
            settings.port = port;
        }
    }
    if let Some(port) = args.port {
        settings.port = Some(port);
    }
    if let Some(user) = &args.username {
        settings.username = Some(user.clone()).filter(|u| !u.is_empty());
        if settings.username.is_none() {
            settings.password = None;
        }
    }
    if let Some(password) = &args.password {
        settings.password = Some(password.clone()).filter(|p| !p.is_empty());
    }
    if let Some(system) = args.use_system {
        settings.use_system_proxy = system;
        if system {
            settings.enabled = true;
        }
    }
    if let Some(enable) = args.enable {
        settings.enabled = enable;
        if !enable {
            settings.use_system_proxy = false;
        }
    }
    if settings.enabled && !settings.use_system_proxy {
        if settings.host.is_none() {
            return Err("--proxyEnable=true needs --proxyHost (or --useSystemProxy=true)".into());
        }
        if settings.port.is_none() {
            return Err("--proxyEnable=true needs --proxyPort".into());
        }
    }
    Ok(())
}

/// One line describing the web proxy, password masked.
pub fn describe(p: &WebProxySettings) -> String {
    if !p.enabled {
        return "disabled (direct connections)".into();
    }
    if p.use_system_proxy {
        return "the system proxy (HTTPS_PROXY / HTTP_PROXY / NO_PROXY)".into();
    }
    describe_fields(
        p.host.as_deref().unwrap_or("?"),
        p.port.unwrap_or(0),
        p.username.as_deref(),
        p.password.is_some(),
    )
}

/// `http://host:port` with `user:********@` when there are credentials.
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

/// The web request proxy as `octo proxy` shows it (password masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebProxyReport(pub String);

impl fmt::Display for WebProxyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "web request proxy: {}", self.0)
    }
}

/// `octo proxy`: applies the options (none: only reads) and describes the web request proxy.
pub fn configure(home: &Home, options: &ProxyOptions) -> Result<WebProxyReport> {
    let path = home.settings();
    if options.is_empty() {
        let settings = Settings::load(&path)?;
        return Ok(WebProxyReport(describe(&settings.web_proxy)));
    }
    let mut message = None;
    let saved = Settings::update(&path, |s| {
        if let Err(e) = apply(&mut s.web_proxy, options) {
            message = Some(e);
            return Err(octo_settings::SettingsError::invalid("webProxy", "refused"));
        }
        Ok(())
    });
    if let Some(m) = message {
        return Err(Error::Invalid(m));
    }
    let saved = saved?;
    Ok(WebProxyReport(describe(&saved.web_proxy)))
}

/// The environment as "use the system proxy" reads it: curl's variables, and `HTTP_PROXY` in upper case
/// too (a server is not a CGI program).
pub fn system_proxy() -> SystemProxy {
    SystemProxy::from_lookup(|name| {
        std::env::var(name).ok().or_else(|| {
            (name == "http_proxy")
                .then(|| std::env::var("HTTP_PROXY").ok())
                .flatten()
        })
    })
}

/// The stored fields as a [`ProxyConfig`].
pub fn config_of(
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<ProxyConfig> {
    ProxyConfig::from_fields("http", host, port, username, password)
        .map_err(|e| err!(Invalid, "the proxy {host}:{port}: {e}"))
}

/// The web request proxy the settings name, if enabled.
pub fn web_proxy(settings: &Settings) -> Result<Option<WebProxy>> {
    let p = &settings.web_proxy;
    if !p.enabled {
        return Ok(None);
    }
    if p.use_system_proxy {
        return Ok(Some(WebProxy::System(system_proxy())));
    }
    let (Some(host), Some(port)) = (&p.host, p.port) else {
        bail!(
            Invalid,
            "the web request proxy is enabled without a host and port; run `octo proxy --proxyHost H --proxyPort P`"
        );
    };
    Ok(Some(WebProxy::Fixed(config_of(
        host,
        port,
        p.username.as_deref(),
        p.password.as_deref(),
    )?)))
}

/// A feed client connector that tunnels every connection through the web request proxy with `CONNECT`
/// (for the system proxy: `HTTP_PROXY` for port 80, else `HTTPS_PROXY`, `NO_PROXY` honoured).
pub fn feed_connector(settings: &Settings) -> Result<Option<Arc<dyn Connector>>> {
    let Some(proxy) = web_proxy(settings)? else {
        return Ok(None);
    };
    let proxy = Arc::new(proxy);
    let connector = move |host: String, port: u16| {
        let proxy = proxy.clone();
        async move {
            let chosen = match &*proxy {
                WebProxy::Fixed(p) => Some(p.clone()),
                WebProxy::System(s) => s
                    .proxy_for(port != 80, &host)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            };
            match chosen {
                Some(p) => {
                    let stream = connect_via_proxy(&p, &host, port, DEFAULT_PROXY_TIMEOUT)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok(Box::new(stream) as BoxedIo)
                }
                None => {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(Box::new(stream) as BoxedIo)
                }
            }
        }
    };
    Ok(Some(Arc::new(connector)))
}

/// A named proxy as a [`ProxyConfig`].
pub fn named_config(proxy: &NamedProxy) -> Result<ProxyConfig> {
    config_of(
        &proxy.host,
        proxy.port,
        proxy.username.as_deref(),
        proxy.password.as_deref(),
    )
}

/// A named proxy to add with `octo proxies add`.
#[derive(Debug, Clone)]
pub struct NewProxy {
    /// Its name.
    pub name: String,
    /// The proxy's host name or IP address.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// Basic authentication user name.
    pub username: Option<String>,
    /// Basic authentication password.
    pub password: Option<String>,
}

/// `octo proxies add`: adds (or replaces) a named proxy; returns how it is shown (password masked).
pub fn add_named(home: &Home, new: NewProxy) -> Result<String> {
    let NewProxy {
        name,
        host,
        port,
        username,
        password,
    } = new;
    if name.trim().is_empty() || name.contains(char::is_whitespace) {
        bail!(Invalid, "the proxy name must be non-empty, without spaces");
    }
    let (host, _) = split_host(&host).map_err(|e| err!(Invalid, "--host: {e}"))?;
    let proxy = NamedProxy {
        host,
        port,
        username: username.filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()),
    };
    named_config(&proxy)?;
    let shown = describe_named(&proxy);
    Settings::update(&home.settings(), |s| {
        s.proxies.insert(name.clone(), proxy);
        Ok(())
    })?;
    Ok(shown)
}

/// `http://host:port`, with the user and a masked password if any.
pub fn describe_named(p: &NamedProxy) -> String {
    describe_fields(&p.host, p.port, p.username.as_deref(), p.password.is_some())
}

/// `octo proxies list`: the named proxies, passwords redacted.
pub fn list_named(home: &Home) -> Result<BTreeMap<String, NamedProxy>> {
    let settings = Settings::load(&home.settings())?.redacted();
    Ok(settings.proxies.into_iter().collect())
}

/// `octo proxies remove`.
pub fn remove_named(home: &Home, name: &str) -> Result<()> {
    let mut found = false;
    Settings::update(&home.settings(), |s| {
        found = s.proxies.remove(name).is_some();
        Ok(())
    })?;
    if !found {
        bail!(
            NotFound,
            "there is no proxy named {name:?} (see `octo proxies list`)"
        );
    }
    Ok(())
}

/// Looks a named proxy up, with an error that says how to add it.
pub fn lookup_named(settings: &Settings, name: &str) -> Result<ProxyConfig> {
    let proxy = settings
        .proxies
        .get(name)
        .with_context(|| format!("there is no proxy named {name:?}; add it with `octo proxies add {name} --host H --port P`"))?;
    named_config(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ProxyOptions {
        ProxyOptions::default()
    }

    #[test]
    fn enable_disable_system() {
        let mut s = WebProxySettings::default();
        let e = apply(
            &mut s,
            &ProxyOptions {
                enable: Some(true),
                ..args()
            },
        )
        .unwrap_err();
        assert!(e.contains("--proxyHost"), "{e}");
        let mut s = WebProxySettings::default();
        apply(
            &mut s,
            &ProxyOptions {
                enable: Some(true),
                host: Some("proxy.corp".into()),
                port: Some(3128),
                username: Some("u".into()),
                password: Some("hunter2".into()),
                ..args()
            },
        )
        .unwrap();
        assert_eq!(describe(&s), "http://u:********@proxy.corp:3128");
        apply(
            &mut s,
            &ProxyOptions {
                use_system: Some(true),
                ..args()
            },
        )
        .unwrap();
        assert!(s.enabled && s.use_system_proxy);
        apply(
            &mut s,
            &ProxyOptions {
                enable: Some(false),
                ..args()
            },
        )
        .unwrap();
        assert!(!s.enabled && !s.use_system_proxy);
        assert_eq!(describe(&s), "disabled (direct connections)");
    }

    #[test]
    fn socks_is_refused() {
        for (kind, host) in [
            (Some("socks5"), None),
            (None, Some("socks5://p:1080")),
            (None, Some("socks4://p")),
        ] {
            let mut s = WebProxySettings::default();
            let e = apply(
                &mut s,
                &ProxyOptions {
                    enable: Some(true),
                    kind: kind.map(Into::into),
                    host: host.map(Into::into).or(Some("p".into())),
                    port: Some(1080),
                    ..args()
                },
            )
            .unwrap_err();
            assert!(e.contains(SOCKS_REFUSED), "{e}");
        }
    }

    #[test]
    fn host_as_url() {
        assert_eq!(
            split_host("http://proxy:3128").unwrap(),
            ("proxy".into(), Some(3128))
        );
        assert_eq!(split_host("proxy").unwrap(), ("proxy".into(), None));
    }
}
