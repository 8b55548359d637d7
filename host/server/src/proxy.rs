//! `octo proxy` (the web request proxy) and `octo proxies` (named proxies for listening targets), and
//! turning the stored settings into what the runtime and the feed client use.
//!
//! The rules, the flags and their validation are octo-web-proxy's (shared with `tentacle proxy`): only
//! HTTP proxies, credentials never inside the host, a port required. Passwords are stored in `octo.toml`
//! (mode 0600) and shown as `********` everywhere else.
//!
//! The feed client reaches every feed through a `CONNECT` tunnel, for `https` (TLS end to end) and plain
//! `http` alike, so one code path carries both. Plugins' plain-`http` requests use absolute form
//! (`octo_runtime::http_client`), as curl does.

use crate::error::{Context, Error, Result};
use crate::home::Home;
use octo_comms::proxy::ProxyConfig;
use octo_feed::Connector;
use octo_runtime::WebProxy;
use octo_settings::{NamedProxy, Settings};
use octo_web_proxy::{ProxyArgs, ProxySettingsError, describe_fields, split_host};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The web request proxy as `octo proxy` shows it (password masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebProxyReport(pub String);

impl fmt::Display for WebProxyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "web request proxy: {}", self.0)
    }
}

/// `octo proxy`: applies the flags (none: only reads) and describes the web request proxy.
pub fn configure(home: &Home, options: &ProxyArgs) -> Result<WebProxyReport> {
    let path = home.settings();
    if options.is_empty() {
        let settings = Settings::load(&path)?;
        return Ok(WebProxyReport(settings.web_proxy.describe()));
    }
    let mut message = None;
    let saved = crate::shared::settings::update(home, |s| {
        if let Err(e) = s.web_proxy.apply(options) {
            message = Some(e.to_string());
            return Err(octo_settings::SettingsError::invalid("webProxy", "refused"));
        }
        Ok(())
    });
    if let Some(m) = message {
        return Err(Error::Invalid(m));
    }
    let saved = saved?;
    Ok(WebProxyReport(saved.web_proxy.describe()))
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

/// The web request proxy the settings name, if enabled (octo-web-proxy's rules).
pub fn web_proxy(settings: &Settings) -> Result<Option<WebProxy>> {
    settings.web_proxy.resolve().map_err(|e| {
        err!(
            Invalid,
            "the web request proxy: {e}; run `octo proxy --proxyHost H --proxyPort P`"
        )
    })
}

/// A feed client connector through the web request proxy, if one is enabled
/// ([`octo_web_proxy::feed_connector`]).
pub fn feed_connector(settings: &Settings) -> Result<Option<Arc<dyn Connector>>> {
    Ok(web_proxy(settings)?.map(|proxy| octo_web_proxy::feed_connector(Some(proxy))))
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
    let (host, _) = split_host(&host).map_err(|e| match e {
        ProxySettingsError::Host(e) => err!(Invalid, "--host: {e}"),
        ProxySettingsError::CredentialsInHost => err!(
            Invalid,
            "--host: give the user name and password with --username/--password, not in the host"
        ),
        e => err!(Invalid, "--host: {e}"),
    })?;
    let proxy = NamedProxy {
        host,
        port,
        username: username.filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()),
    };
    named_config(&proxy)?;
    let shown = describe_named(&proxy);
    crate::shared::settings::update(home, |s| {
        s.proxies.insert(name.clone(), proxy.clone());
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
    crate::shared::settings::update(home, |s| {
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
