//! The tentacle's settings file, `tentacle.toml` in its home: parsing and printing are plain
//! functions; [`load`] and [`save`] do the I/O (atomic write, mode 0600).

use std::path::Path;

use anyhow::Context;
use octo_comms::endpoint::DEFAULT_LISTENING_PORT;
use octo_comms::identity::Thumbprint;
use serde::{Deserialize, Serialize};

use octo_web_proxy::ProxySettings;

/// File name of the settings inside the home.
pub const FILE_NAME: &str = "tentacle.toml";

/// What `tentacle configure` and `tentacle poll-server` change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Whether the agent accepts connections (listening mode).
    #[serde(default = "yes")]
    pub listen: bool,
    /// The TCP port it listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The address it listens on.
    #[serde(default = "default_listen_address")]
    pub listen_address: String,
    /// Thumbprints of the servers allowed to connect (listening mode).
    #[serde(default)]
    pub trusted: Vec<Thumbprint>,
    /// Servers this tentacle polls.
    #[serde(default, rename = "server")]
    pub servers: Vec<PollingServer>,
    /// Connections opened to each polled server.
    #[serde(default = "one")]
    pub polling_connection_count: u32,
    /// `[pollingProxy]`: the proxy for connections to polled servers (`tentacle polling-proxy`).
    #[serde(default, skip_serializing_if = "ProxySettings::is_unset")]
    pub polling_proxy: ProxySettings,
    /// `[webProxy]`: the web request proxy for plugins and scripts (`tentacle proxy`).
    #[serde(default, skip_serializing_if = "ProxySettings::is_unset")]
    pub web_proxy: ProxySettings,
    /// `[limits]`: size limits of the plugin runtime by name (`maxLogBytes = 1048576`); unset ones
    /// keep their defaults (`octo_runtime::Limits`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub limits: std::collections::BTreeMap<String, u64>,
    /// The package cache's size budget in MiB (least recently used files are removed beyond it);
    /// unset: 10 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_cache_mib: Option<u64>,
}

impl Settings {
    /// The package cache's budget in bytes.
    pub fn package_cache_budget(&self) -> u64 {
        self.package_cache_mib
            .map(|m| m.saturating_mul(1 << 20))
            .unwrap_or(crate::packages::DEFAULT_BUDGET)
    }
}

/// A server the tentacle dials (polling mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollingServer {
    /// `https://HOST:PORT` of the server's polling listener.
    pub address: String,
    /// The server's certificate thumbprint.
    pub thumbprint: Thumbprint,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_port() -> u16 {
    DEFAULT_LISTENING_PORT
}
fn default_listen_address() -> String {
    "0.0.0.0".to_owned()
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: true,
            port: default_port(),
            listen_address: default_listen_address(),
            trusted: Vec::new(),
            servers: Vec::new(),
            polling_connection_count: 1,
            polling_proxy: ProxySettings::default(),
            web_proxy: ProxySettings::default(),
            limits: Default::default(),
            package_cache_mib: None,
        }
    }
}

impl Settings {
    /// Parses the TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("settings are always representable as TOML")
    }

    /// A copy safe to print: proxy passwords masked.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        copy.polling_proxy = self.polling_proxy.redacted();
        copy.web_proxy = self.web_proxy.redacted();
        copy
    }

    /// Every thumbprint this tentacle trusts: listening-mode servers and polled servers.
    pub fn all_trusted(&self) -> Vec<Thumbprint> {
        let mut all: Vec<Thumbprint> = self.trusted.clone();
        all.extend(self.servers.iter().map(|s| s.thumbprint));
        all.sort();
        all.dedup();
        all
    }

    /// Trusts `thumbprint`; returns whether it was new.
    pub fn trust(&mut self, thumbprint: Thumbprint) -> bool {
        if self.trusted.contains(&thumbprint) {
            return false;
        }
        self.trusted.push(thumbprint);
        true
    }

    /// Stops trusting `thumbprint` (also as a polled server); returns whether it was trusted.
    pub fn remove_trust(&mut self, thumbprint: &Thumbprint) -> bool {
        let before = self.trusted.len() + self.servers.len();
        self.trusted.retain(|t| t != thumbprint);
        self.servers.retain(|s| &s.thumbprint != thumbprint);
        before != self.trusted.len() + self.servers.len()
    }

    /// Adds or replaces the polled server at `address`.
    pub fn poll_server(&mut self, address: &str, thumbprint: Thumbprint) -> anyhow::Result<()> {
        parse_server_address(address)?;
        self.servers.retain(|s| s.address != address);
        self.servers.push(PollingServer {
            address: address.to_owned(),
            thumbprint,
        });
        Ok(())
    }
}

/// `https://HOST:PORT` → (host, port); the port defaults to 10943.
pub fn parse_server_address(address: &str) -> anyhow::Result<(String, u16)> {
    let rest = address.strip_prefix("https://").with_context(|| {
        format!("the server address {address:?} must look like https://HOST:PORT")
    })?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        anyhow::bail!("the server address {address:?} must look like https://HOST:PORT");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("invalid port in {address:?}"))?,
        ),
        _ => (rest, octo_comms::endpoint::DEFAULT_POLLING_PORT),
    };
    if host.is_empty() {
        anyhow::bail!("the server address {address:?} has no host");
    }
    Ok((host.to_owned(), port))
}

/// Reads the settings at `path`; defaults when the file does not exist.
pub fn load(path: &Path) -> anyhow::Result<Settings> {
    let settings = match std::fs::read_to_string(path) {
        Ok(text) => Settings::parse(&text).with_context(|| format!("{}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (table, proxy) in [
        ("pollingProxy", &settings.polling_proxy),
        ("webProxy", &settings.web_proxy),
    ] {
        proxy
            .validate()
            .with_context(|| format!("{}: [{table}]", path.display()))?;
    }
    Ok(settings)
}

/// Writes the settings to `path` atomically with mode 0600.
pub fn save(path: &Path, settings: &Settings) -> anyhow::Result<()> {
    octo_fsutil::write_atomic(path, settings.to_toml().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(n: u8) -> Thumbprint {
        Thumbprint::from_bytes([n; 32])
    }

    #[test]
    fn defaults_and_round_trip() {
        let s = Settings::parse("").unwrap();
        assert_eq!(s, Settings::default());
        assert!(s.listen);
        assert_eq!(s.port, 10933);
        let mut s = Settings {
            listen: false,
            port: 1234,
            ..Settings::default()
        };
        s.trust(tp(1));
        s.poll_server("https://octo.example:10943", tp(2)).unwrap();
        let text = s.to_toml();
        assert!(text.contains("[[server]]"), "{text}");
        assert_eq!(Settings::parse(&text).unwrap(), s);
        assert_eq!(s.all_trusted(), vec![tp(1), tp(2)]);
        assert!(s.remove_trust(&tp(2)));
        assert!(s.servers.is_empty());
        assert!(!s.remove_trust(&tp(9)));
    }

    #[test]
    fn bad_files_are_reported() {
        assert!(Settings::parse("port = 'x'").is_err());
        assert!(Settings::parse("unknownKey = 1").is_err());
        assert!(Settings::parse("trusted = ['nothex']").is_err());
    }

    #[test]
    fn server_addresses() {
        assert_eq!(
            parse_server_address("https://octo:1").unwrap(),
            ("octo".into(), 1)
        );
        assert_eq!(
            parse_server_address("https://octo/").unwrap(),
            ("octo".into(), 10943)
        );
        assert_eq!(
            parse_server_address("https://[::1]:5").unwrap(),
            ("[::1]".into(), 5)
        );
        for bad in [
            "http://octo:1",
            "octo:1",
            "https://",
            "https://a:b",
            "https://a/x",
        ] {
            assert!(parse_server_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn save_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load(&path).unwrap(), Settings::default());
        let s = Settings {
            port: 7,
            ..Settings::default()
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
