//! `octo proxy` (the web request proxy) and `octo proxies` (named proxies for listening targets), and
//! turning the stored settings into what the runtime and the feed client use.
//!
//! Only HTTP proxies: a SOCKS type or a `socks*://` host is refused. Passwords are stored in `octo.toml`
//! (mode 0600) and shown as `********` everywhere else.
//!
//! The feed client reaches every feed through a `CONNECT` tunnel, for `https` (TLS end to end) and plain
//! `http` alike, so one code path carries both. Plugins' plain-`http` requests use absolute form
//! (`octo_runtime::http_client`), as curl does.

use crate::home::Home;
use anyhow::{Context, bail};
use octo_comms::proxy::{
    DEFAULT_PROXY_TIMEOUT, ProxyConfig, connect_via_proxy, system::SystemProxy,
};
use octo_feed::{Connector, client::BoxedIo};
use octo_runtime::WebProxy;
use octo_settings::{MASKED, NamedProxy, Settings, WebProxySettings, check_proxy_host};
use std::process::ExitCode;
use std::sync::Arc;

/// The message for any SOCKS proxy.
pub const SOCKS_REFUSED: &str = "only HTTP proxies are supported (SOCKS is not)";

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// The flags shared by `octo proxy` (and, with the same names, `tentacle proxy`/`polling-proxy`).
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  octo proxy --proxyEnable=true --proxyHost proxy.corp --proxyPort 3128\n  \
    octo proxy --useSystemProxy=true      (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, upper or lower case)\n  \
    octo proxy --proxyEnable=false"
)]
pub struct ProxyArgs {
    /// Use a proxy for web requests (feeds, plugins' HTTP, scripts' HTTP_PROXY/HTTPS_PROXY).
    #[arg(long = "proxyEnable", visible_alias = "proxy-enable", value_name = "true|false", value_parser = parse_bool)]
    pub enable: Option<bool>,
    /// Use the proxy the environment names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) instead of --proxyHost.
    #[arg(long = "useSystemProxy", visible_alias = "use-system-proxy", value_name = "true|false", value_parser = parse_bool)]
    pub use_system: Option<bool>,
    /// The proxy type: http (SOCKS is not supported).
    #[arg(long = "proxyType", visible_alias = "proxy-type", value_name = "http")]
    pub kind: Option<String>,
    /// The proxy's host name or IP address (http://host:port is accepted too).
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
    /// Basic authentication password (stored in octo.toml, mode 0600; never printed).
    #[arg(
        long = "proxyPassword",
        visible_alias = "proxy-password",
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
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
pub fn apply(settings: &mut WebProxySettings, args: &ProxyArgs) -> Result<(), String> {
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

/// `octo proxy`.
pub fn configure(home: &Home, args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let none = args.enable.is_none()
        && args.use_system.is_none()
        && args.kind.is_none()
        && args.host.is_none()
        && args.port.is_none()
        && args.username.is_none()
        && args.password.is_none();
    let path = Settings::path_in(home.root());
    if none {
        let settings = Settings::load(&path)?;
        println!("web request proxy: {}", describe(&settings.web_proxy));
        return Ok(ExitCode::SUCCESS);
    }
    let mut message = None;
    let saved = Settings::update(&path, |s| {
        if let Err(e) = apply(&mut s.web_proxy, &args) {
            message = Some(e);
            return Err(octo_settings::SettingsError::invalid("webProxy", "refused"));
        }
        Ok(())
    });
    if let Some(m) = message {
        bail!("{m}");
    }
    let saved = saved?;
    println!("web request proxy: {}", describe(&saved.web_proxy));
    Ok(ExitCode::SUCCESS)
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
) -> anyhow::Result<ProxyConfig> {
    ProxyConfig::from_fields("http", host, port, username, password)
        .map_err(|e| anyhow::anyhow!("the proxy {host}:{port}: {e}"))
}

/// The web request proxy the settings name, if enabled.
pub fn web_proxy(settings: &Settings) -> anyhow::Result<Option<WebProxy>> {
    let p = &settings.web_proxy;
    if !p.enabled {
        return Ok(None);
    }
    if p.use_system_proxy {
        return Ok(Some(WebProxy::System(system_proxy())));
    }
    let (Some(host), Some(port)) = (&p.host, p.port) else {
        bail!(
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
pub fn feed_connector(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Connector>>> {
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
pub fn named_config(proxy: &NamedProxy) -> anyhow::Result<ProxyConfig> {
    config_of(
        &proxy.host,
        proxy.port,
        proxy.username.as_deref(),
        proxy.password.as_deref(),
    )
}

/// `octo proxies`.
#[derive(Debug, clap::Subcommand)]
pub enum ProxiesCommand {
    /// Add (or replace) a named proxy a listening target can be reached through.
    Add {
        /// Its name.
        name: String,
        /// The proxy's host name or IP address.
        #[arg(long)]
        host: String,
        /// The proxy's port.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Basic authentication user name.
        #[arg(long)]
        username: Option<String>,
        /// Basic authentication password (stored in octo.toml, mode 0600; never printed).
        #[arg(long)]
        password: Option<String>,
    },
    /// List the named proxies (passwords masked).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a named proxy.
    Remove {
        /// Its name.
        name: String,
    },
}

/// `octo proxies ...`.
pub fn proxies(home: &Home, command: ProxiesCommand) -> anyhow::Result<ExitCode> {
    let path = Settings::path_in(home.root());
    match command {
        ProxiesCommand::Add {
            name,
            host,
            port,
            username,
            password,
        } => {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                bail!("the proxy name must be non-empty, without spaces");
            }
            let (host, _) = split_host(&host).map_err(|e| anyhow::anyhow!("--host: {e}"))?;
            let proxy = NamedProxy {
                host,
                port,
                username: username.filter(|u| !u.is_empty()),
                password: password.filter(|p| !p.is_empty()),
            };
            named_config(&proxy)?;
            let shown = describe_fields(
                &proxy.host,
                proxy.port,
                proxy.username.as_deref(),
                proxy.password.is_some(),
            );
            Settings::update(&path, |s| {
                s.proxies.insert(name.clone(), proxy);
                Ok(())
            })?;
            println!("proxy {name}: {shown}");
        }
        ProxiesCommand::List { json } => {
            let settings = Settings::load(&path)?.redacted();
            if json {
                println!("{}", serde_json::to_string_pretty(&settings.proxies)?);
            } else if settings.proxies.is_empty() {
                println!(
                    "no named proxies (add one with `octo proxies add NAME --host H --port P`)"
                );
            } else {
                for (name, p) in &settings.proxies {
                    println!(
                        "{name}\t{}",
                        describe_fields(
                            &p.host,
                            p.port,
                            p.username.as_deref(),
                            p.password.is_some()
                        )
                    );
                }
            }
        }
        ProxiesCommand::Remove { name } => {
            let mut found = false;
            Settings::update(&path, |s| {
                found = s.proxies.remove(&name).is_some();
                Ok(())
            })?;
            if !found {
                bail!("there is no proxy named {name:?} (see `octo proxies list`)");
            }
            println!("removed proxy {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Looks a named proxy up, with an error that says how to add it.
pub fn lookup_named(settings: &Settings, name: &str) -> anyhow::Result<ProxyConfig> {
    let proxy = settings
        .proxies
        .get(name)
        .with_context(|| format!("there is no proxy named {name:?}; add it with `octo proxies add {name} --host H --port P`"))?;
    named_config(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ProxyArgs {
        ProxyArgs {
            enable: None,
            use_system: None,
            kind: None,
            host: None,
            port: None,
            username: None,
            password: None,
        }
    }

    #[test]
    fn enable_disable_system() {
        let mut s = WebProxySettings::default();
        let e = apply(
            &mut s,
            &ProxyArgs {
                enable: Some(true),
                ..args()
            },
        )
        .unwrap_err();
        assert!(e.contains("--proxyHost"), "{e}");
        let mut s = WebProxySettings::default();
        apply(
            &mut s,
            &ProxyArgs {
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
            &ProxyArgs {
                use_system: Some(true),
                ..args()
            },
        )
        .unwrap();
        assert!(s.enabled && s.use_system_proxy);
        apply(
            &mut s,
            &ProxyArgs {
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
                &ProxyArgs {
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
