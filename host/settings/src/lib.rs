//! Octo's settings: one TOML file, [`FILE_NAME`], under the home directory.
//!
//! This crate is the model, its defaults and validation, and the file I/O: reads that treat a missing file
//! as "all defaults", writes that are atomic (temporary file in the same directory, fsync, rename, fsync of
//! the directory; mode 0600), and locked read-modify-write ([`Settings::update`]) so two `octo configure`
//! runs, or `configure` and a server assigning its installation id, cannot lose each other's change.
//!
//! # The file
//!
//! Keys are camelCase and are exactly the names of the `octo configure` flags that set them (which are
//! Octopus's flag names where Octopus has one). Every key is optional; a missing key takes its default.
//! An unknown key is an error that names it, so a typo never silently leaves a switch on.
//!
//! ```toml
//! airGapped = false                  # true: every vendor destination denied, whatever its switch says;
//!                                    # step plugins reach only declared (and granted) destinations
//!                                    # inside internalNetworks
//! internalNetworks = ["10.0.0.0/8", "*.corp.example"]  # CIDR blocks, *.domain, host names; default none
//!
//! # vendor destinations: each switch gates one kind of outbound traffic (see `octo outbound`)
//! upgradeCheck = true                # update check, every 8 hours: version + installation id
//! sendTelemetry = true               # anonymous usage counts, daily
//! dynamicExtensionsEnabled = true    # dynamic extensions (feature toggles) from the vendor
//! experiencesEnabled = true          # in-app messages
//! stepTemplateUpdates = true         # built-in step template updates from the steps feed
//! communityStepTemplates = true      # community step templates from the library feed
//!
//! # endpoints: unset by default; an unset endpoint makes no request (and no DNS lookup)
//! feed = "https://steps.vendor.example/feed"          # steps feed base: {feed}/index.json, {feed}/blobs/...
//! feedPublicKey = "base64 ed25519 public key"         # optional: pins the key that signs the feed index
//! feedCertificate = "/etc/octo/feed-ca.pem"           # optional: extra PEM certificate to trust for the feed
//! libraryFeed = "https://library.vendor.example"      # community library base (as library.octopus.com)
//! updateUrl = "https://api.vendor.example/api/update"
//! telemetryUrl = "https://api.vendor.example/api/telemetry"
//! experiencesUrl = "https://api.vendor.example/api/experiences"
//! dynamicExtensionsUrl = "https://api.vendor.example/api/dynamic-extensions"
//!
//! installationId = "0b3c9d7e-..."    # created on first start; not a configure flag
//! commsListenPort = 10943            # where polling tentacles connect
//! ```
//!
//! `airGapped` is a switch of its own ([`Settings::air_gapped`]): turning it on or off leaves every vendor
//! switch as it was, so lifting the air gap restores exactly the vendor traffic that was on before. A file
//! written before the key existed, in which every vendor switch is off (what `--airGapped=true` used to
//! write), loads as air-gapped.
//!
//! # Defaults never reach a third party
//!
//! The endpoints (steps feed, library feed, the four vendor endpoints) are unset by default. An install
//! that was never configured with endpoints makes no request and no DNS lookup for them, whatever its
//! switches say; pointing an endpoint somewhere is always an explicit act. Files written by earlier
//! versions carry the old placeholder URLs under the reserved `octo.example` domain; they load as unset.
//!
//! The proxies are TOML tables in the same file (passwords masked by [`Settings::redacted`]):
//!
//! ```toml
//! [webProxy]                         # `octo proxy`: feeds, plugins' HTTP, scripts' HTTP(S)_PROXY
//! enabled = true
//! useSystemProxy = false             # true: HTTPS_PROXY / HTTP_PROXY / NO_PROXY instead of host/port
//! host = "proxy.corp"
//! port = 3128
//! username = "deploy"                # optional, Basic
//! password = "..."                   # optional
//!
//! [proxies.dmz]                      # `octo proxies add dmz ...`: `octo targets add-listening --proxy dmz`
//! host = "10.1.2.3"
//! port = 8080
//! ```
#![deny(missing_docs)]

pub mod file;
pub mod live;
pub mod networks;

pub use live::LiveSettings;
pub use networks::{InternalNetwork, InternalNetworks};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings file's name under the home directory.
pub const FILE_NAME: &str = "octo.toml";

/// The TOML keys of the settings file (and the names of the `octo configure` flags that set them).
pub mod keys {
    /// [`Settings::air_gapped`](crate::Settings::air_gapped)
    pub const AIR_GAPPED: &str = "airGapped";
    /// [`Settings::internal_networks`](crate::Settings::internal_networks)
    pub const INTERNAL_NETWORKS: &str = "internalNetworks";
    /// [`Settings::upgrade_check`](crate::Settings::upgrade_check)
    pub const UPGRADE_CHECK: &str = "upgradeCheck";
    /// [`Settings::send_telemetry`](crate::Settings::send_telemetry)
    pub const SEND_TELEMETRY: &str = "sendTelemetry";
    /// [`Settings::dynamic_extensions_enabled`](crate::Settings::dynamic_extensions_enabled)
    pub const DYNAMIC_EXTENSIONS_ENABLED: &str = "dynamicExtensionsEnabled";
    /// [`Settings::experiences_enabled`](crate::Settings::experiences_enabled)
    pub const EXPERIENCES_ENABLED: &str = "experiencesEnabled";
    /// [`Settings::step_template_updates`](crate::Settings::step_template_updates)
    pub const STEP_TEMPLATE_UPDATES: &str = "stepTemplateUpdates";
    /// [`Settings::community_step_templates`](crate::Settings::community_step_templates)
    pub const COMMUNITY_STEP_TEMPLATES: &str = "communityStepTemplates";
    /// [`Settings::feed_url`](crate::Settings::feed_url)
    pub const FEED: &str = "feed";
    /// [`Settings::feed_public_key`](crate::Settings::feed_public_key)
    pub const FEED_PUBLIC_KEY: &str = "feedPublicKey";
    /// [`Settings::feed_trusted_certificate`](crate::Settings::feed_trusted_certificate)
    pub const FEED_CERTIFICATE: &str = "feedCertificate";
    /// [`Settings::library_feed_url`](crate::Settings::library_feed_url)
    pub const LIBRARY_FEED: &str = "libraryFeed";
    /// [`Settings::update_url`](crate::Settings::update_url)
    pub const UPDATE_URL: &str = "updateUrl";
    /// [`Settings::telemetry_url`](crate::Settings::telemetry_url)
    pub const TELEMETRY_URL: &str = "telemetryUrl";
    /// [`Settings::experiences_url`](crate::Settings::experiences_url)
    pub const EXPERIENCES_URL: &str = "experiencesUrl";
    /// [`Settings::dynamic_extensions_url`](crate::Settings::dynamic_extensions_url)
    pub const DYNAMIC_EXTENSIONS_URL: &str = "dynamicExtensionsUrl";
    /// [`Settings::installation_id`](crate::Settings::installation_id)
    pub const INSTALLATION_ID: &str = "installationId";
    /// [`Settings::comms_listen_port`](crate::Settings::comms_listen_port)
    pub const COMMS_LISTEN_PORT: &str = "commsListenPort";
    /// [`Settings::script_network`](crate::Settings::script_network)
    pub const SCRIPT_NETWORK: &str = "scriptNetwork";
    /// [`Settings::database`](crate::Settings::database)
    pub const DATABASE: &str = "database";
    /// [`Settings::web_proxy`](crate::Settings::web_proxy) (a table)
    pub const WEB_PROXY: &str = "webProxy";
    /// [`Settings::proxies`](crate::Settings::proxies) (a table of tables)
    pub const PROXIES: &str = "proxies";
    /// [`Settings::limits`](crate::Settings::limits) (a table; edited in the file, no `configure` flag)
    pub const LIMITS: &str = "limits";

    /// Every top-level key, in file order.
    pub const ALL: &[&str] = &[
        AIR_GAPPED,
        INTERNAL_NETWORKS,
        UPGRADE_CHECK,
        SEND_TELEMETRY,
        DYNAMIC_EXTENSIONS_ENABLED,
        EXPERIENCES_ENABLED,
        STEP_TEMPLATE_UPDATES,
        COMMUNITY_STEP_TEMPLATES,
        FEED,
        FEED_PUBLIC_KEY,
        FEED_CERTIFICATE,
        LIBRARY_FEED,
        UPDATE_URL,
        TELEMETRY_URL,
        EXPERIENCES_URL,
        DYNAMIC_EXTENSIONS_URL,
        INSTALLATION_ID,
        COMMS_LISTEN_PORT,
        SCRIPT_NETWORK,
        DATABASE,
        WEB_PROXY,
        PROXIES,
    ];

    /// The vendor switches: each gates one vendor destination (and none of them while air-gapped).
    pub const VENDOR_SWITCHES: &[&str] = &[
        UPGRADE_CHECK,
        SEND_TELEMETRY,
        DYNAMIC_EXTENSIONS_ENABLED,
        EXPERIENCES_ENABLED,
        STEP_TEMPLATE_UPDATES,
        COMMUNITY_STEP_TEMPLATES,
    ];
}

/// What earlier versions wrote as endpoint defaults (hosts under the reserved `octo.example` domain): read
/// as unset.
const OLD_PLACEHOLDERS: &[&str] = &[
    "https://steps.octo.example/feed",
    "https://library.octo.example",
    "https://api.octo.example/api/update",
    "https://api.octo.example/api/telemetry",
    "https://api.octo.example/api/experiences",
    "https://api.octo.example/api/dynamic-extensions",
];
/// Default port polling tentacles connect to.
pub const DEFAULT_COMMS_LISTEN_PORT: u16 = 10943;

/// Everything in `octo.toml`. See the [crate documentation](crate) for the file format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// `airGapped`: deny every vendor destination whatever its switch says, and let step plugins reach
    /// only destinations inside [`internal_networks`](Settings::internal_networks).
    pub air_gapped: bool,
    /// `internalNetworks`: where step plugins may still go while air-gapped (CIDR blocks, `*.domain`,
    /// host names). Empty: nowhere.
    #[serde(skip_serializing_if = "InternalNetworks::is_empty")]
    pub internal_networks: InternalNetworks,
    /// `upgradeCheck`: check for a newer Octo every 8 hours (sends the version and the installation id).
    pub upgrade_check: bool,
    /// `sendTelemetry`: send anonymous usage counts daily.
    pub send_telemetry: bool,
    /// `dynamicExtensionsEnabled`: fetch dynamic extensions (feature toggles) from the vendor.
    pub dynamic_extensions_enabled: bool,
    /// `experiencesEnabled`: fetch in-app messages.
    pub experiences_enabled: bool,
    /// `stepTemplateUpdates`: update the built-in step templates from the steps feed.
    pub step_template_updates: bool,
    /// `communityStepTemplates`: sync community step templates from the library feed.
    pub community_step_templates: bool,
    /// `feed`: the steps feed's base URL (`{feed}/index.json`, `{feed}/index.json.sig`, blobs under it).
    #[serde(rename = "feed", skip_serializing_if = "Option::is_none")]
    pub feed_url: Option<String>,
    /// `feedPublicKey`: base64 of the 32-byte ed25519 public key the feed index must be signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_public_key: Option<String>,
    /// `feedCertificate`: a PEM certificate to trust for the feed in addition to the system roots (e.g. a
    /// private registry's self-signed certificate).
    #[serde(rename = "feedCertificate", skip_serializing_if = "Option::is_none")]
    pub feed_trusted_certificate: Option<PathBuf>,
    /// `libraryFeed`: the community step template library's base URL.
    #[serde(rename = "libraryFeed", skip_serializing_if = "Option::is_none")]
    pub library_feed_url: Option<String>,
    /// `updateUrl`: the update check endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_url: Option<String>,
    /// `telemetryUrl`: the telemetry endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_url: Option<String>,
    /// `experiencesUrl`: the in-app messages endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiences_url: Option<String>,
    /// `dynamicExtensionsUrl`: the dynamic extensions endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_extensions_url: Option<String>,
    /// `installationId`: a random GUID created on first start ([`Settings::ensure_installation_id`]); sent
    /// only by the update check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<String>,
    /// `commsListenPort`: the port polling tentacles connect to (0 = any free port, for tests).
    pub comms_listen_port: u16,
    /// `scriptNetwork`: how far steps' scripts reach the network (`audited` or `confined`); confined
    /// whatever this says while air-gapped ([`Settings::effective_script_network`]).
    pub script_network: ScriptNetwork,
    /// `database`: where tasks and their logs are kept — a `postgres://` URL (its password is
    /// masked wherever it is shown), or unset for SQLite under the home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `[webProxy]`: the web request proxy (feeds, plugins' HTTP, scripts' HTTP_PROXY), set by `octo proxy`.
    #[serde(skip_serializing_if = "WebProxySettings::is_unset")]
    pub web_proxy: WebProxySettings,
    /// `[proxies.NAME]`: named proxies a listening target can be dialled through, set by `octo proxies`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub proxies: std::collections::BTreeMap<String, NamedProxy>,
    /// `[limits]`: size limits of the plugin runtime by name (`maxLogBytes = 1048576`); unset ones
    /// keep their defaults (`octo_runtime::Limits`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub limits: std::collections::BTreeMap<String, u64>,
}

/// What a proxy password is shown as.
pub use octo_web_proxy::MASKED;

/// `[webProxy]` in `octo.toml` (the `octo proxy` flags): the proxy settings both binaries share.
pub use octo_web_proxy::ProxySettings as WebProxySettings;

/// `[proxies.NAME]` in `octo.toml` (`octo proxies add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamedProxy {
    /// The proxy's host.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// Basic user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic password (masked by [`Settings::redacted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A proxy host: [`octo_web_proxy::check_host`] (a host name or address, never SOCKS, never with
/// credentials), its error as text.
pub fn check_proxy_host(host: &str) -> Result<(), String> {
    octo_web_proxy::check_host(host)
        .map(drop)
        .map_err(|e| e.to_string())
}

impl Default for Settings {
    /// Not air-gapped, every switch on, no internal networks, and no endpoint set: a fresh install makes no
    /// request to anyone until an administrator configures an endpoint.
    fn default() -> Self {
        Settings {
            air_gapped: false,
            internal_networks: InternalNetworks::default(),
            upgrade_check: true,
            send_telemetry: true,
            dynamic_extensions_enabled: true,
            experiences_enabled: true,
            step_template_updates: true,
            community_step_templates: true,
            feed_url: None,
            feed_public_key: None,
            feed_trusted_certificate: None,
            library_feed_url: None,
            update_url: None,
            telemetry_url: None,
            experiences_url: None,
            dynamic_extensions_url: None,
            installation_id: None,
            comms_listen_port: DEFAULT_COMMS_LISTEN_PORT,
            script_network: ScriptNetwork::default(),
            database: None,
            web_proxy: WebProxySettings::default(),
            proxies: Default::default(),
            limits: Default::default(),
        }
    }
}

/// How far steps' scripts reach the network (the `scriptNetwork` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptNetwork {
    /// The host's network, with HTTP(S) through the step's audited egress proxy.
    #[default]
    Audited,
    /// A network namespace whose only way out is the egress proxy.
    Confined,
}

impl ScriptNetwork {
    /// `audited` or `confined`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptNetwork::Audited => "audited",
            ScriptNetwork::Confined => "confined",
        }
    }

    /// Parses [`ScriptNetwork::as_str`] (any case).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "audited" => Ok(ScriptNetwork::Audited),
            "confined" => Ok(ScriptNetwork::Confined),
            _ => Err(format!("expected audited or confined, got {value:?}")),
        }
    }
}

/// Why settings could not be read, written or accepted.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "lock", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// The file has a key this version does not know (a typo, or a setting from a newer version).
    #[error("{}: unknown setting {key:?}; known settings: {}", path.display(), keys::ALL.join(", "))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
    },
    /// A setting has a value that cannot be used.
    #[error("{}{key}: {message}", in_file(path.as_deref()))]
    Invalid {
        /// The file, when the value came from one.
        path: Option<PathBuf>,
        /// The TOML key (= the configure flag's name).
        key: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// No randomness for the installation id.
    #[error("cannot create an installation id: {0}")]
    Random(String),
}

fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl SettingsError {
    /// A value error for `key`, not tied to a file (e.g. from `octo configure`).
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        SettingsError::Invalid {
            path: None,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The key this error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            SettingsError::UnknownKey { key, .. } | SettingsError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl Settings {
    /// The settings file inside a home directory.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(FILE_NAME)
    }

    /// Reads the file. A missing file means all defaults; an unknown key, a value of the wrong type or an
    /// unusable value is an error that names the key.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Settings::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(SettingsError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the file's text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, SettingsError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::Syntax {
            path: path.to_path_buf(),
            message: one_line(&e, text),
        })?;
        if let Some(key) = table
            .keys()
            .find(|k| !keys::ALL.contains(&k.as_str()) && k.as_str() != keys::LIMITS)
        {
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
        let mut settings = match Settings::deserialize(table.clone()) {
            Ok(s) => s,
            Err(e) => {
                // Find the key whose value is wrong, so the message can name it.
                let key = table
                    .iter()
                    .find(|(k, v)| {
                        let mut one = toml::Table::new();
                        one.insert((*k).clone(), (*v).clone());
                        Settings::deserialize(one).is_err()
                    })
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| "settings".into());
                return Err(SettingsError::Invalid {
                    path: Some(path.to_path_buf()),
                    key,
                    message: e.message().to_string(),
                });
            }
        };
        for url in settings.endpoints_mut() {
            if url
                .as_deref()
                .is_some_and(|u| OLD_PLACEHOLDERS.contains(&u))
            {
                *url = None;
            }
        }
        if !table.contains_key(keys::AIR_GAPPED) {
            // Written before airGapped was stored: "air-gapped" then meant every vendor switch off.
            settings.air_gapped = settings.vendor_switches().iter().all(|(_, on)| !on);
        }
        settings.validate().map_err(|e| match e {
            SettingsError::Invalid { key, message, .. } => SettingsError::Invalid {
                path: Some(path.to_path_buf()),
                key,
                message,
            },
            other => other,
        })?;
        Ok(settings)
    }

    /// The file's text: a short header comment, then every setting.
    pub fn to_toml(&self) -> Result<String, SettingsError> {
        let body =
            toml::to_string(self).map_err(|e| SettingsError::invalid("settings", e.to_string()))?;
        Ok(format!(
            "# Octo settings. Change them with `octo configure`; see them with `octo show-configuration`\n\
             # and what they let out with `octo outbound`.\n{body}"
        ))
    }

    /// The endpoint settings as `(key, value)`, in file order (`None` = not configured).
    pub fn endpoints(&self) -> [(&'static str, Option<&str>); 6] {
        [
            (keys::FEED, self.feed_url.as_deref()),
            (keys::LIBRARY_FEED, self.library_feed_url.as_deref()),
            (keys::UPDATE_URL, self.update_url.as_deref()),
            (keys::TELEMETRY_URL, self.telemetry_url.as_deref()),
            (keys::EXPERIENCES_URL, self.experiences_url.as_deref()),
            (
                keys::DYNAMIC_EXTENSIONS_URL,
                self.dynamic_extensions_url.as_deref(),
            ),
        ]
    }

    /// The value of one endpoint setting (`None` = not configured, or not an endpoint key).
    pub fn endpoint(&self, key: &str) -> Option<&str> {
        self.endpoints()
            .into_iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, url)| url)
    }

    fn endpoints_mut(&mut self) -> [&mut Option<String>; 6] {
        [
            &mut self.feed_url,
            &mut self.library_feed_url,
            &mut self.update_url,
            &mut self.telemetry_url,
            &mut self.experiences_url,
            &mut self.dynamic_extensions_url,
        ]
    }

    /// Checks every value: endpoints are http(s) URLs without credentials, the feed key is a base64
    /// ed25519 public key, the certificate path is UTF-8. The error names the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (key, url) in self.endpoints() {
            if let Some(url) = url {
                check_url(url).map_err(|m| SettingsError::invalid(key, m))?;
            }
        }
        if let Some(k) = &self.feed_public_key {
            check_public_key(k).map_err(|m| SettingsError::invalid(keys::FEED_PUBLIC_KEY, m))?;
        }
        if let Some(p) = &self.feed_trusted_certificate
            && (p.as_os_str().is_empty() || p.to_str().is_none())
        {
            return Err(SettingsError::invalid(
                keys::FEED_CERTIFICATE,
                "expected the path of a PEM file (UTF-8)",
            ));
        }
        self.web_proxy
            .validate()
            .map_err(|e| SettingsError::invalid(keys::WEB_PROXY, e.to_string()))?;
        for (name, proxy) in &self.proxies {
            check_proxy_host(&proxy.host)
                .map_err(|m| SettingsError::invalid(keys::PROXIES, format!("{name}: {m}")))?;
            if proxy.port == 0 || name.is_empty() {
                return Err(SettingsError::invalid(
                    keys::PROXIES,
                    format!("{name:?}: expected a name and a port from 1 to 65535"),
                ));
            }
        }
        if let Some(id) = &self.installation_id {
            let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(SettingsError::invalid(
                    keys::INSTALLATION_ID,
                    "expected a GUID (at most 64 visible ASCII characters)",
                ));
            }
        }
        Ok(())
    }

    /// Validates, then writes the file atomically with mode 0600: a temporary file in the same directory,
    /// fsync, rename over the old file, fsync of the directory. Readers see the old file or the new one.
    /// The directory is created (mode 0700) if missing.
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        self.validate()?;
        let text = self.to_toml()?;
        file::write_private_atomically(path, text.as_bytes())
    }

    /// Locked read-modify-write: takes an exclusive lock on the sibling `octo.toml.lock`, loads, applies
    /// `f`, saves, and returns what was saved. If `f` fails nothing is written.
    pub fn update(
        path: &Path,
        f: impl FnOnce(&mut Settings) -> Result<(), SettingsError>,
    ) -> Result<Settings, SettingsError> {
        file::with_lock(path, || {
            let mut settings = Settings::load(path)?;
            f(&mut settings)?;
            settings.save(path)?;
            Ok(settings)
        })
    }

    /// The air gap is on: no update check, telemetry, in-app messages, dynamic extensions, step template
    /// updates or community templates, whatever their switches say; step plugins reach only declared (and
    /// granted) destinations inside [`internal_networks`](Settings::internal_networks).
    pub fn air_gapped(&self) -> bool {
        self.air_gapped
    }

    /// A copy that is safe to print (`show-configuration`, logs): every secret replaced by `********`.
    /// The secrets are the proxy passwords.
    pub fn redacted(&self) -> Settings {
        let mut copy = self.clone();
        if let Some(url) = &mut copy.database {
            *url = octo_fsutil::mask_url_password(url);
        }
        if let Some(p) = &mut copy.web_proxy.password {
            *p = MASKED.into();
        }
        for proxy in copy.proxies.values_mut() {
            if let Some(p) = &mut proxy.password {
                *p = MASKED.into();
            }
        }
        copy
    }

    /// The script network mode steps run with: `confined` while air-gapped, else `scriptNetwork`.
    pub fn effective_script_network(&self) -> ScriptNetwork {
        if self.air_gapped() {
            ScriptNetwork::Confined
        } else {
            self.script_network
        }
    }

    /// `--airGapped=true|false`: only the air gap; every vendor switch keeps its value, so lifting the air
    /// gap restores the vendor traffic that was on before it.
    pub fn set_air_gapped(&mut self, air_gapped: bool) {
        self.air_gapped = air_gapped;
    }

    /// The vendor switches as `(key, on)`, in file order.
    pub fn vendor_switches(&self) -> [(&'static str, bool); 6] {
        [
            (keys::UPGRADE_CHECK, self.upgrade_check),
            (keys::SEND_TELEMETRY, self.send_telemetry),
            (
                keys::DYNAMIC_EXTENSIONS_ENABLED,
                self.dynamic_extensions_enabled,
            ),
            (keys::EXPERIENCES_ENABLED, self.experiences_enabled),
            (keys::STEP_TEMPLATE_UPDATES, self.step_template_updates),
            (
                keys::COMMUNITY_STEP_TEMPLATES,
                self.community_step_templates,
            ),
        ]
    }

    /// The installation id, created (a random v4 GUID) and saved under the lock if the file has none.
    pub fn ensure_installation_id(path: &Path) -> Result<String, SettingsError> {
        if let Some(id) = Settings::load(path)?.installation_id {
            return Ok(id);
        }
        let saved = Settings::update(path, |s| {
            if s.installation_id.is_none() {
                s.installation_id = Some(new_guid()?);
            }
            Ok(())
        })?;
        Ok(saved.installation_id.expect("set above"))
    }
}

/// Checks an endpoint URL: absolute `http`/`https` with a host and no user name or password (credentials
/// would be shown by `show-configuration` and written to logs).
pub fn check_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value.trim())
        .map_err(|e| format!("expected an http:// or https:// URL, got {value:?} ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "expected an http:// or https:// URL, got {value:?} (scheme {:?})",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("expected a URL with a host, got {value:?}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL may not contain a user name or password".into());
    }
    Ok(())
}

/// Checks a feed public key: base64 (standard alphabet) of 32 bytes.
pub fn check_public_key(value: &str) -> Result<(), String> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        Ok(bytes) => Err(format!(
            "expected a base64 ed25519 public key (32 bytes), got {} bytes",
            bytes.len()
        )),
        Err(_) => Err(format!(
            "expected a base64 ed25519 public key (32 bytes), got {value:?}"
        )),
    }
}

/// A random (version 4) GUID, lowercase.
fn new_guid() -> Result<String, SettingsError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| SettingsError::Random(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A TOML error on one line, with its line number.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests;
