//! `octo configure` and `octo show-configuration`.
//!
//! One table, [`FLAGS`], drives both the command line (a camelCase flag with Octopus's name plus a
//! kebab-case alias for each setting) and the parsing of values. Values are taken as text and checked
//! here, so that a bad value produces one line naming the flag and what it accepts
//! (`--upgradeCheck: expected true or false, got "maybe"`) and nothing is written.
//!
//! `--airGapped` is a switch of its own: while it is on every vendor destination is denied whatever its
//! switch says, and lifting it leaves every vendor switch as it was. Turning a vendor switch on while
//! air-gapped is saved, and [`Configured`] says that it has no effect until the air gap is lifted.
//! An endpoint flag given an empty value unsets the endpoint (no request, no DNS lookup).

use crate::error::{Context, Error, Result};
use crate::home::Home;
use octo_settings::{InternalNetworks, Settings, SettingsError, keys};
use std::fmt;
use std::path::{Path, PathBuf};

/// The value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `true` or `false`.
    Switch,
    /// An http(s) URL; empty unsets it.
    Url,
    /// A comma-separated list of CIDR blocks, `*.domain` patterns and host names; empty clears it.
    Networks,
    /// A base64 ed25519 public key; empty clears it.
    PublicKey,
    /// A PEM file; empty clears it.
    Certificate,
    /// 0..=65535.
    Port,
    /// `audited` or `confined`.
    ScriptNetwork,
    /// A `postgres://` URL; empty: SQLite under the home.
    Database,
}

/// One `octo configure` flag.
#[derive(Debug)]
pub struct Flag {
    /// The camelCase name: Octopus's flag name, and the settings key.
    pub name: &'static str,
    /// The kebab-case alias.
    pub alias: &'static str,
    kind: Kind,
    help: &'static str,
}

/// The air-gap switch (a settings key like the others).
pub const AIR_GAPPED: &str = keys::AIR_GAPPED;

const fn flag(name: &'static str, alias: &'static str, kind: Kind, help: &'static str) -> Flag {
    Flag {
        name,
        alias,
        kind,
        help,
    }
}

/// Every flag, in the order `--help` lists them.
pub static FLAGS: &[Flag] = &[
    flag(
        AIR_GAPPED,
        "air-gapped",
        Kind::Switch,
        "true: deny every vendor destination (update check, telemetry, in-app messages, dynamic \
         extensions, step template updates, community templates) whatever its own switch says, and let \
         step plugins reach only declared (and granted) destinations inside --internalNetworks; \
         false: lift the air gap, leaving every vendor switch as it was.",
    ),
    flag(
        keys::INTERNAL_NETWORKS,
        "internal-networks",
        Kind::Networks,
        "Where step plugins may still go while air-gapped: CIDR blocks (10.0.0.0/8, fd00::/8), \
         *.domain patterns and host names, comma-separated (empty: none).",
    ),
    flag(
        keys::UPGRADE_CHECK,
        "upgrade-check",
        Kind::Switch,
        "Check for a newer Octo every 8 hours (sends the version and the installation id).",
    ),
    flag(
        keys::SEND_TELEMETRY,
        "send-telemetry",
        Kind::Switch,
        "Send anonymous usage counts daily.",
    ),
    flag(
        keys::DYNAMIC_EXTENSIONS_ENABLED,
        "dynamic-extensions-enabled",
        Kind::Switch,
        "Fetch dynamic extensions (feature toggles).",
    ),
    flag(
        keys::EXPERIENCES_ENABLED,
        "experiences-enabled",
        Kind::Switch,
        "Fetch in-app messages.",
    ),
    flag(
        keys::STEP_TEMPLATE_UPDATES,
        "step-template-updates",
        Kind::Switch,
        "Update the built-in step templates from the steps feed.",
    ),
    flag(
        keys::COMMUNITY_STEP_TEMPLATES,
        "community-step-templates",
        Kind::Switch,
        "Sync community step templates from the library feed.",
    ),
    flag(
        keys::FEED,
        "feed",
        Kind::Url,
        "The steps feed's base URL ({feed}/index.json, blobs under it) (empty: unset; unset makes no request)",
    ),
    flag(
        keys::FEED_PUBLIC_KEY,
        "feed-public-key",
        Kind::PublicKey,
        "Base64 ed25519 public key the feed index must be signed with (empty: unset).",
    ),
    flag(
        keys::FEED_CERTIFICATE,
        "feed-certificate",
        Kind::Certificate,
        "A PEM certificate to trust for the feed, e.g. a private registry's self-signed one (empty: unset).",
    ),
    flag(
        keys::LIBRARY_FEED,
        "library-feed",
        Kind::Url,
        "The community step template library's base URL (empty: unset; unset makes no request)",
    ),
    flag(
        keys::UPDATE_URL,
        "update-url",
        Kind::Url,
        "The update check endpoint (empty: unset; unset makes no request)",
    ),
    flag(
        keys::TELEMETRY_URL,
        "telemetry-url",
        Kind::Url,
        "The telemetry endpoint (empty: unset; unset makes no request)",
    ),
    flag(
        keys::EXPERIENCES_URL,
        "experiences-url",
        Kind::Url,
        "The in-app messages endpoint (empty: unset; unset makes no request)",
    ),
    flag(
        keys::DYNAMIC_EXTENSIONS_URL,
        "dynamic-extensions-url",
        Kind::Url,
        "The dynamic extensions endpoint (empty: unset; unset makes no request)",
    ),
    flag(
        keys::COMMS_LISTEN_PORT,
        "comms-listen-port",
        Kind::Port,
        "The port polling tentacles connect to.",
    ),
    flag(
        keys::SCRIPT_NETWORK,
        "script-network",
        Kind::ScriptNetwork,
        "How far steps' scripts reach the network. audited: as before, with HTTP(S) through the \
         step's audited egress proxy; confined: a network namespace whose only way out is that proxy. \
         Always confined while air-gapped.",
    ),
    flag(
        keys::DATABASE,
        "database",
        Kind::Database,
        "Where tasks and their logs are kept: postgres://USER:PASSWORD@HOST:PORT/DATABASE for \
         PostgreSQL (several nodes), empty for SQLite under the home (the default). The password is \
         never shown. Takes effect when `octo run` starts.",
    ),
];

impl Flag {
    /// What `--help` says about it.
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// The placeholder `--help` shows for its value.
    pub fn value_name(&self) -> &'static str {
        match self.kind {
            Kind::Switch => "true|false",
            Kind::Url => "URL",
            Kind::Networks => "LIST",
            Kind::PublicKey => "BASE64",
            Kind::Certificate => "PEM_FILE",
            Kind::Port => "PORT",
            Kind::ScriptNetwork => "audited|confined",
            Kind::Database => "URL",
        }
    }
}

/// The flags given to `octo configure`, with their raw values (checked by [`configure`]).
#[derive(Debug, Default)]
pub struct ConfigureOptions {
    values: Vec<(&'static Flag, String)>,
}

impl ConfigureOptions {
    /// Adds `--NAME=VALUE`; `name` is a flag's name or alias.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> Result<&mut Self> {
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name || f.alias == name)
            .ok_or_else(|| {
                err!(
                    Invalid,
                    "unknown setting --{name}; see `octo configure --help`"
                )
            })?;
        self.values.push((flag, value.into()));
        Ok(self)
    }

    /// From `(flag name or alias, value)` pairs.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self> {
        let mut options = ConfigureOptions::default();
        for (name, value) in pairs {
            options.set(name, *value)?;
        }
        Ok(options)
    }

    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A checked value, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bool(bool),
    Optional(Option<String>),
    Networks(InternalNetworks),
    Path(Option<PathBuf>),
    Port(u16),
    ScriptNetwork(octo_settings::ScriptNetwork),
}

/// Checks one raw value; the error is the line the user sees.
fn parse_value(flag: &Flag, raw: &str) -> Result<Value, String> {
    let name = flag.name;
    let trimmed = raw.trim();
    match flag.kind {
        Kind::Switch => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("--{name}: expected true or false, got {raw:?}")),
        },
        Kind::Url if trimmed.is_empty() => Ok(Value::Optional(None)),
        Kind::Url => octo_settings::check_url(trimmed)
            .map(|()| Value::Optional(Some(trimmed.to_string())))
            .map_err(|e| format!("--{name}: {e}")),
        Kind::Networks => InternalNetworks::parse_list(trimmed)
            .map(Value::Networks)
            .map_err(|e| format!("--{name}: {e}")),
        Kind::PublicKey if trimmed.is_empty() => Ok(Value::Optional(None)),
        Kind::PublicKey => octo_settings::check_public_key(trimmed)
            .map(|()| Value::Optional(Some(trimmed.to_string())))
            .map_err(|e| format!("--{name}: {e}")),
        Kind::Certificate if trimmed.is_empty() => Ok(Value::Path(None)),
        Kind::Certificate => {
            let path = std::path::absolute(trimmed)
                .map_err(|e| format!("--{name}: cannot use {raw:?}: {e}"))?;
            let text = std::fs::read(&path).map_err(|e| {
                format!(
                    "--{name}: expected a readable PEM certificate file, cannot read {}: {e}",
                    path.display()
                )
            })?;
            if !String::from_utf8_lossy(&text).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "--{name}: expected a PEM certificate file, {} has no \"-----BEGIN CERTIFICATE-----\"",
                    path.display()
                ));
            }
            if path.to_str().is_none() {
                return Err(format!("--{name}: the path must be UTF-8"));
            }
            Ok(Value::Path(Some(path)))
        }
        Kind::Port => trimmed
            .parse::<u16>()
            .map(Value::Port)
            .map_err(|_| format!("--{name}: expected a port number from 0 to 65535, got {raw:?}")),
        Kind::ScriptNetwork => octo_settings::ScriptNetwork::parse(trimmed)
            .map(Value::ScriptNetwork)
            .map_err(|e| format!("--{name}: {e}")),
        Kind::Database if trimmed.is_empty() => Ok(Value::Optional(None)),
        Kind::Database => octo_store::DatabaseUrl::parse(trimmed)
            .map(|_| Value::Optional(Some(trimmed.to_string())))
            .map_err(|e| format!("--{name}: {e}")),
    }
}

fn apply(settings: &mut Settings, flag: &Flag, value: Value) {
    match (flag.name, value) {
        (keys::AIR_GAPPED, Value::Bool(b)) => settings.set_air_gapped(b),
        (keys::INTERNAL_NETWORKS, Value::Networks(n)) => settings.internal_networks = n,
        (keys::UPGRADE_CHECK, Value::Bool(b)) => settings.upgrade_check = b,
        (keys::SEND_TELEMETRY, Value::Bool(b)) => settings.send_telemetry = b,
        (keys::DYNAMIC_EXTENSIONS_ENABLED, Value::Bool(b)) => {
            settings.dynamic_extensions_enabled = b
        }
        (keys::EXPERIENCES_ENABLED, Value::Bool(b)) => settings.experiences_enabled = b,
        (keys::STEP_TEMPLATE_UPDATES, Value::Bool(b)) => settings.step_template_updates = b,
        (keys::COMMUNITY_STEP_TEMPLATES, Value::Bool(b)) => settings.community_step_templates = b,
        (keys::FEED, Value::Optional(t)) => settings.feed_url = t,
        (keys::FEED_PUBLIC_KEY, Value::Optional(k)) => settings.feed_public_key = k,
        (keys::FEED_CERTIFICATE, Value::Path(p)) => settings.feed_trusted_certificate = p,
        (keys::LIBRARY_FEED, Value::Optional(t)) => settings.library_feed_url = t,
        (keys::UPDATE_URL, Value::Optional(t)) => settings.update_url = t,
        (keys::TELEMETRY_URL, Value::Optional(t)) => settings.telemetry_url = t,
        (keys::EXPERIENCES_URL, Value::Optional(t)) => settings.experiences_url = t,
        (keys::DYNAMIC_EXTENSIONS_URL, Value::Optional(t)) => settings.dynamic_extensions_url = t,
        (keys::COMMS_LISTEN_PORT, Value::Port(p)) => settings.comms_listen_port = p,
        (keys::SCRIPT_NETWORK, Value::ScriptNetwork(n)) => settings.script_network = n,
        (keys::DATABASE, Value::Optional(url)) => settings.database = url,
        (name, value) => unreachable!("flag {name} cannot take {value:?}"),
    }
}

/// Checks every value, then applies them in table order. Nothing is applied unless every value is good.
fn parse_all(args: &ConfigureOptions) -> Result<Vec<(&'static Flag, Value)>> {
    let mut parsed = Vec::with_capacity(args.values.len());
    for (flag, raw) in &args.values {
        parsed.push((*flag, parse_value(flag, raw).map_err(Error::Invalid)?));
    }
    parsed.sort_by_key(|(f, _)| FLAGS.iter().position(|g| std::ptr::eq(*f, g)));
    Ok(parsed)
}

/// The settings as `(key, shown value)`, for diffs and `show-configuration`. Proxy passwords are
/// masked here and never printed.
pub fn entries(settings: &Settings) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    let endpoint = |v: &Option<String>| {
        v.clone()
            .unwrap_or_else(|| format!("({})", octo_outbound::NOT_CONFIGURED))
    };
    vec![
        (AIR_GAPPED, settings.air_gapped().to_string()),
        (
            keys::INTERNAL_NETWORKS,
            settings.internal_networks.to_string(),
        ),
        (keys::UPGRADE_CHECK, settings.upgrade_check.to_string()),
        (keys::SEND_TELEMETRY, settings.send_telemetry.to_string()),
        (
            keys::DYNAMIC_EXTENSIONS_ENABLED,
            settings.dynamic_extensions_enabled.to_string(),
        ),
        (
            keys::EXPERIENCES_ENABLED,
            settings.experiences_enabled.to_string(),
        ),
        (
            keys::STEP_TEMPLATE_UPDATES,
            settings.step_template_updates.to_string(),
        ),
        (
            keys::COMMUNITY_STEP_TEMPLATES,
            settings.community_step_templates.to_string(),
        ),
        (keys::FEED, endpoint(&settings.feed_url)),
        (keys::FEED_PUBLIC_KEY, opt(&settings.feed_public_key)),
        (
            keys::FEED_CERTIFICATE,
            settings
                .feed_trusted_certificate
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(not set)".into()),
        ),
        (keys::LIBRARY_FEED, endpoint(&settings.library_feed_url)),
        (keys::UPDATE_URL, endpoint(&settings.update_url)),
        (keys::TELEMETRY_URL, endpoint(&settings.telemetry_url)),
        (keys::EXPERIENCES_URL, endpoint(&settings.experiences_url)),
        (
            keys::DYNAMIC_EXTENSIONS_URL,
            endpoint(&settings.dynamic_extensions_url),
        ),
        (
            keys::INSTALLATION_ID,
            settings
                .installation_id
                .clone()
                .unwrap_or_else(|| "(created on first start)".into()),
        ),
        (
            keys::COMMS_LISTEN_PORT,
            settings.comms_listen_port.to_string(),
        ),
        (
            keys::SCRIPT_NETWORK,
            match settings.effective_script_network() {
                n if n == settings.script_network => n.as_str().to_string(),
                n => format!(
                    "{} ({} while air-gapped)",
                    settings.script_network.as_str(),
                    n.as_str()
                ),
            },
        ),
        (
            keys::DATABASE,
            settings
                .database
                .as_deref()
                .map(octo_fsutil::mask_url_password)
                .unwrap_or_else(|| "(SQLite under the home)".into()),
        ),
        (keys::WEB_PROXY, settings.web_proxy.describe()),
        (
            keys::PROXIES,
            if settings.proxies.is_empty() {
                "(none)".to_string()
            } else {
                settings
                    .proxies
                    .iter()
                    .map(|(name, p)| {
                        format!(
                            "{name}={}",
                            octo_web_proxy::describe_fields(
                                &p.host,
                                p.port,
                                p.username.as_deref(),
                                p.password.is_some()
                            )
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ]
}

/// `(key, before, after)` for every shown value that differs.
fn changes(before: &Settings, after: &Settings) -> Vec<(&'static str, String, String)> {
    entries(before)
        .into_iter()
        .zip(entries(after))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((key, a), (_, b))| (key, a, b))
        .collect()
}

/// What `octo configure` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// The settings file.
    pub path: PathBuf,
    /// `(key, before, after)` for every shown value that changed.
    pub changed: Vec<(&'static str, String, String)>,
    /// The settings as saved.
    pub settings: Settings,
    /// What the user should know about the result (a vendor switch turned on while air-gapped).
    pub notes: Vec<String>,
}

impl fmt::Display for Configured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changed.is_empty() {
            writeln!(
                f,
                "No changes; {} already had these values.",
                self.path.display()
            )?;
        } else {
            writeln!(f, "Saved {}:", self.path.display())?;
            let width = self
                .changed
                .iter()
                .map(|(k, _, _)| k.len())
                .max()
                .unwrap_or(0);
            for (key, old, new) in &self.changed {
                writeln!(f, "  {key:<width$}  {old} -> {new}")?;
            }
        }
        for note in &self.notes {
            writeln!(f, "Note: {note}")?;
        }
        Ok(())
    }
}

/// Notes for switches turned on that the air gap overrides.
fn air_gap_notes(parsed: &[(&'static Flag, Value)], after: &Settings) -> Vec<String> {
    if !after.air_gapped() {
        return Vec::new();
    }
    parsed
        .iter()
        .filter(|(f, v)| keys::VENDOR_SWITCHES.contains(&f.name) && *v == Value::Bool(true))
        .map(|(f, _)| {
            format!(
                "--{}=true is saved but has no effect while air-gapped: every vendor destination stays denied until `octo configure --airGapped=false`",
                f.name
            )
        })
        .collect()
}

/// `octo configure`: checks every value, then applies them all under the settings lock (or none).
pub fn configure(home: &Home, options: &ConfigureOptions) -> Result<Configured> {
    if options.values.is_empty() {
        bail!(
            Invalid,
            "nothing to configure: give at least one flag, e.g. --upgradeCheck=false (see `octo configure --help`; current values: `octo show-configuration`)"
        );
    }
    let parsed = parse_all(options)?;
    let path = home.settings();
    let mut before = None;
    let change = |settings: &mut Settings| {
        before = Some(settings.clone());
        for (flag, value) in &parsed {
            apply(settings, flag, value.clone());
        }
        Ok(())
    };
    // `database` says where the store is: it is this node's own, written to its file alone (so a
    // database that cannot be reached can still be replaced). Everything else is shared through the
    // store, with compare-and-swap: two nodes configuring at once lose nothing.
    let after = if parsed.iter().any(|(flag, _)| flag.name == keys::DATABASE) {
        Settings::update(&path, change).map_err(|e| flag_error(e, &path))?
    } else {
        crate::shared::settings::update(home, change).map_err(|e| match e {
            Error::Settings(e) => flag_error(e, &path),
            other => other.context("cannot update the shared settings; nothing was changed"),
        })?
    };
    let before = before.expect("update ran the closure");
    Ok(Configured {
        changed: changes(&before, &after),
        notes: air_gap_notes(&parsed, &after),
        path,
        settings: after,
    })
}

/// A settings error for the user: values name the flag (`--feed: ...`); a broken file names the file.
fn flag_error(e: SettingsError, path: &Path) -> Error {
    match e {
        SettingsError::Invalid {
            path: None,
            key,
            message,
        } => Error::Invalid(format!("--{key}: {message}")),
        other => Error::from(other).context(format!(
            "cannot update {}; nothing was changed",
            path.display()
        )),
    }
}

/// `octo show-configuration`: the settings, redacted (no secret ever leaves this report).
#[derive(Debug, Clone)]
pub struct Configuration {
    /// The settings file.
    pub path: PathBuf,
    /// Whether it exists (else: all defaults).
    pub exists: bool,
    /// The redacted settings.
    pub settings: Settings,
}

/// Reads the settings for `octo show-configuration`.
pub fn show(home: &Home) -> Result<Configuration> {
    let path = home.settings();
    let exists = path.exists();
    // Only ever keep the redacted copy: no secret reaches the terminal.
    let settings = Settings::load(&path)
        .context("cannot read the settings")?
        .redacted();
    Ok(Configuration {
        path,
        exists,
        settings,
    })
}

impl Configuration {
    /// The `--json` document: the file's keys (every key, unset ones as null), plus where it is.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut object = serde_json::Map::new();
        object.insert(
            "settingsFile".into(),
            self.path.display().to_string().into(),
        );
        object.insert("fileExists".into(), self.exists.into());
        object.insert(
            keys::INTERNAL_NETWORKS.into(),
            serde_json::to_value(&self.settings.internal_networks)
                .context("cannot show the settings")?,
        );
        // The same document as the file (secrets are masked here).
        let value = serde_json::to_value(&self.settings).context("cannot show the settings")?;
        if let serde_json::Value::Object(map) = value {
            object.extend(map);
        }
        for key in keys::ALL {
            object.entry(*key).or_insert(serde_json::Value::Null);
        }
        Ok(serde_json::Value::Object(object))
    }
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Settings file: {}{}",
            self.path.display(),
            if self.exists {
                ""
            } else {
                " (not created yet: all defaults)"
            }
        )?;
        let entries = entries(&self.settings);
        let width = entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut section = |title: &str, keys: &[&str]| -> fmt::Result {
            writeln!(f, "\n{title}")?;
            for (key, value) in entries.iter().filter(|(k, _)| keys.contains(k)) {
                writeln!(f, "  {key:<width$}  {value}")?;
            }
            Ok(())
        };
        section("Air gap", &[AIR_GAPPED, keys::INTERNAL_NETWORKS])?;
        section("Vendor destinations (switches)", keys::VENDOR_SWITCHES)?;
        section(
            "Endpoints",
            &[
                keys::FEED,
                keys::FEED_PUBLIC_KEY,
                keys::FEED_CERTIFICATE,
                keys::LIBRARY_FEED,
                keys::UPDATE_URL,
                keys::TELEMETRY_URL,
                keys::EXPERIENCES_URL,
                keys::DYNAMIC_EXTENSIONS_URL,
            ],
        )?;
        section(
            "Server",
            &[
                keys::INSTALLATION_ID,
                keys::COMMS_LISTEN_PORT,
                keys::DATABASE,
            ],
        )?;
        section("Steps", &[keys::SCRIPT_NETWORK])?;
        section(
            "Proxies (`octo proxy`, `octo proxies`)",
            &[keys::WEB_PROXY, keys::PROXIES],
        )?;
        writeln!(f, "\nWhat these let out: `octo outbound`.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let parsed =
            parse_all(&ConfigureOptions::from_pairs(pairs).unwrap()).map_err(|e| e.to_string())?;
        let mut s = Settings::default();
        for (flag, value) in parsed {
            apply(&mut s, flag, value);
        }
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn the_database_password_is_never_shown() {
        let s = run(&[("database", "postgres://octo:Very-Secret@db:5432/octo")]).unwrap();
        assert_eq!(
            s.database.as_deref(),
            Some("postgres://octo:Very-Secret@db:5432/octo")
        );
        let shown = entries(&s);
        let (_, value) = shown.iter().find(|(k, _)| *k == keys::DATABASE).unwrap();
        assert_eq!(value, "postgres://octo:********@db:5432/octo");
        assert!(!s.redacted().to_toml().unwrap().contains("Very-Secret"));
        let e = run(&[("database", "mysql://octo:Very-Secret@db/octo")]).unwrap_err();
        assert!(e.starts_with("--database: invalid database URL"), "{e}");
        assert!(!e.contains("Very-Secret"), "{e}");
        assert!(run(&[("database", "")]).unwrap().database.is_none());
    }

    #[test]
    fn every_flag_has_a_kebab_alias_and_is_applied() {
        for f in FLAGS {
            assert!(
                f.alias.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                f.alias
            );
            let value = match f.kind {
                Kind::Switch => "false",
                Kind::Url => "http://127.0.0.1:9/x",
                Kind::Networks => "10.0.0.0/8,*.corp.example",
                Kind::PublicKey => "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                Kind::Certificate => "",
                Kind::Port => "1234",
                Kind::ScriptNetwork => "confined",
                Kind::Database => "postgres://octo:pw@127.0.0.1:5432/octo",
            };
            // Every flag maps onto the settings (apply panics on a missing arm).
            run(&[(f.alias, value)]).unwrap();
        }
        // Every settings key but the installation id and the proxy tables (`octo proxy`, `octo
        // proxies`) has a flag.
        for key in keys::ALL {
            assert!(
                [keys::INSTALLATION_ID, keys::WEB_PROXY, keys::PROXIES].contains(key)
                    || FLAGS.iter().any(|f| f.name == *key),
                "{key} has no flag"
            );
        }
    }

    #[test]
    fn script_network_is_stored_and_confined_while_air_gapped() {
        let s = run(&[("scriptNetwork", "Confined")]).unwrap();
        assert_eq!(s.script_network, octo_settings::ScriptNetwork::Confined);
        let s = run(&[("script-network", "audited"), ("airGapped", "true")]).unwrap();
        assert_eq!(s.script_network, octo_settings::ScriptNetwork::Audited);
        assert_eq!(
            s.effective_script_network(),
            octo_settings::ScriptNetwork::Confined
        );
        let shown = entries(&s);
        assert!(
            shown.contains(&(
                keys::SCRIPT_NETWORK,
                "audited (confined while air-gapped)".to_string()
            )),
            "{shown:?}"
        );
        let e = run(&[("scriptNetwork", "open")]).unwrap_err();
        assert_eq!(
            e,
            "--scriptNetwork: expected audited or confined, got \"open\""
        );
    }

    #[test]
    fn switches() {
        let s = run(&[("upgradeCheck", "false"), ("send-telemetry", "FALSE")]).unwrap();
        assert!(!s.upgrade_check && !s.send_telemetry && s.experiences_enabled);
        let s = run(&[("sendTelemetry", "True")]).unwrap();
        assert!(s.send_telemetry);
    }

    #[test]
    fn bad_switch_values_name_the_flag_and_the_accepted_values() {
        for f in FLAGS.iter().filter(|f| f.kind == Kind::Switch) {
            for bad in ["maybe", "", "yes", "1", "tru"] {
                let e = run(&[(f.alias, bad)]).unwrap_err();
                assert_eq!(
                    e,
                    format!("--{}: expected true or false, got {bad:?}", f.name)
                );
            }
        }
    }

    #[test]
    fn air_gapped_is_its_own_switch() {
        let s = run(&[("airGapped", "true")]).unwrap();
        assert!(s.air_gapped());
        assert!(
            s.vendor_switches().iter().all(|(_, on)| *on),
            "switches kept"
        );
        let s = run(&[("upgradeCheck", "false"), ("air-gapped", "true")]).unwrap();
        assert!(!s.upgrade_check && s.send_telemetry && s.air_gapped());
        // Lifting it leaves every switch as it was (telemetry stays off).
        let mut gapped = Settings {
            send_telemetry: false,
            ..Settings::default()
        };
        gapped.set_air_gapped(true);
        let mut s = gapped.clone();
        let parsed =
            parse_all(&ConfigureOptions::from_pairs(&[("airGapped", "false")]).unwrap()).unwrap();
        for (flag, value) in parsed {
            apply(&mut s, flag, value);
        }
        assert!(!s.air_gapped() && !s.send_telemetry && s.upgrade_check);
    }

    #[test]
    fn a_switch_turned_on_while_air_gapped_says_it_has_no_effect() {
        let parsed = parse_all(
            &ConfigureOptions::from_pairs(&[("upgradeCheck", "true"), ("sendTelemetry", "false")])
                .unwrap(),
        )
        .unwrap();
        let mut gapped = Settings::default();
        gapped.set_air_gapped(true);
        let notes = air_gap_notes(&parsed, &gapped);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("--upgradeCheck=true is saved but has no effect while air-gapped")
                && notes[0].contains("--airGapped=false"),
            "{}",
            notes[0]
        );
        assert!(air_gap_notes(&parsed, &Settings::default()).is_empty());
    }

    #[test]
    fn internal_networks_and_unset_endpoints() {
        let s = run(&[("internalNetworks", "10.0.0.0/8, *.corp.example")]).unwrap();
        assert_eq!(s.internal_networks.to_string(), "10.0.0.0/8,*.corp.example");
        assert!(
            run(&[("internal-networks", "")])
                .unwrap()
                .internal_networks
                .is_empty()
        );
        let e = run(&[("internalNetworks", "10.0.0.1/8")]).unwrap_err();
        assert!(
            e.starts_with("--internalNetworks: ") && e.contains("10.0.0.0/8"),
            "{e}"
        );
        let s = run(&[("updateUrl", "https://u.test/x"), ("telemetryUrl", "")]).unwrap();
        assert_eq!(s.update_url.as_deref(), Some("https://u.test/x"));
        assert_eq!(s.telemetry_url, None);
        let shown = entries(&Settings::default());
        let feed = shown.iter().find(|(k, _)| *k == keys::FEED).unwrap();
        assert_eq!(feed.1, "(not configured)");
    }

    #[test]
    fn endpoints_are_checked() {
        let s = run(&[
            ("feed", " http://127.0.0.1:8080/feed "),
            ("libraryFeed", "http://127.0.0.1:8080"),
            ("update-url", "https://u.test/api/update"),
        ])
        .unwrap();
        assert_eq!(s.feed_url.as_deref(), Some("http://127.0.0.1:8080/feed"));
        for (flag, bad) in [
            ("feed", "ftp://x/"),
            ("libraryFeed", "library.example"),
            ("updateUrl", "not a url"),
            ("telemetryUrl", "https://user:secret@t.test/"),
            ("experiencesUrl", "http://"),
            ("dynamicExtensionsUrl", "file:///etc/passwd"),
        ] {
            let e = run(&[(flag, bad)]).unwrap_err();
            assert!(e.starts_with(&format!("--{flag}: ")), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn key_certificate_and_port() {
        let e = run(&[("feedPublicKey", "nope")]).unwrap_err();
        assert!(
            e.starts_with("--feedPublicKey: expected a base64 ed25519"),
            "{e}"
        );
        assert_eq!(
            run(&[("feed-public-key", "")]).unwrap().feed_public_key,
            None
        );
        let e = run(&[("feedCertificate", "/does/not/exist.pem")]).unwrap_err();
        assert!(
            e.starts_with("--feedCertificate: expected a readable PEM"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("x.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = run(&[("feedCertificate", not_pem.to_str().unwrap())]).unwrap_err();
        assert!(e.contains("BEGIN CERTIFICATE"), "{e}");
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let s = run(&[("feed-certificate", pem.to_str().unwrap())]).unwrap();
        assert_eq!(s.feed_trusted_certificate.as_deref(), Some(pem.as_path()));
        assert_eq!(
            run(&[("commsListenPort", "0")]).unwrap().comms_listen_port,
            0
        );
        for bad in ["-1", "65536", "port", ""] {
            assert_eq!(
                run(&[("comms-listen-port", bad)]).unwrap_err(),
                format!("--commsListenPort: expected a port number from 0 to 65535, got {bad:?}")
            );
        }
    }

    #[test]
    fn one_bad_value_stops_all() {
        assert!(run(&[("upgradeCheck", "false"), ("sendTelemetry", "nah")]).is_err());
    }

    #[test]
    fn changes_list_only_what_differs() {
        let before = Settings::default();
        let mut after = before.clone();
        after.upgrade_check = false;
        assert_eq!(
            changes(&before, &after),
            vec![(keys::UPGRADE_CHECK, "true".into(), "false".into())]
        );
        after.set_air_gapped(true);
        let changed = changes(&before, &after);
        assert_eq!(changed[0], (AIR_GAPPED, "false".into(), "true".into()));
        // airGapped itself, and scripts confined while air-gapped; the vendor switches keep their values.
        assert_eq!(changed.len(), 3);
        assert_eq!(
            changed[2],
            (
                keys::SCRIPT_NETWORK,
                "audited".into(),
                "audited (confined while air-gapped)".into()
            )
        );
    }
}
