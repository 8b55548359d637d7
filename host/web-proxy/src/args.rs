//! The flags of `octo proxy`, `tentacle proxy` and `tentacle polling-proxy`.

/// `--proxyEnable`, `--useSystemProxy`, `--proxyType`, `--proxyHost`, `--proxyPort`,
/// `--proxyUsername`, `--proxyPassword` (kebab-case aliases too). Each is optional: what is not
/// given stays as stored.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProxyArgs {
    /// Use a proxy (true|false).
    #[arg(long = "proxyEnable", visible_alias = "proxy-enable", value_name = "true|false", value_parser = parse_bool)]
    pub enable: Option<bool>,
    /// Use the proxy the environment names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) instead of --proxyHost.
    #[arg(long = "useSystemProxy", visible_alias = "use-system-proxy", value_name = "true|false", value_parser = parse_bool)]
    pub use_system: Option<bool>,
    /// The proxy type: http (SOCKS is not supported).
    #[arg(long = "proxyType", visible_alias = "proxy-type", value_name = "http")]
    pub kind: Option<String>,
    /// The proxy's host name or IP address (http://host:port is accepted too; no credentials in it).
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
    /// Basic authentication password (stored in the settings file, mode 0600; never printed).
    #[arg(
        long = "proxyPassword",
        visible_alias = "proxy-password",
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
}

impl ProxyArgs {
    /// No flag given: the command only shows the current setting.
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

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}
