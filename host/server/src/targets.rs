//! Deployment targets: the tentacles this server deploys to, kept in the store as the shared
//! `targets` document ([`crate::shared`]), so every node of a cluster trusts the same tentacles; a
//! home's old `<home>/targets.json` is imported once. Parsing and editing are plain functions; [`load`]
//! and [`save`] read and write the file format; [`add`], [`set_proxy`], [`remove`] and [`list`] are the
//! `octo targets` services (a running daemon of this home is told about each change at once; the
//! daemons of other nodes see it at their next check of the document's revision).

use std::path::Path;

use crate::admin::{self, AdminEvent, AdminRequest};
use crate::error::{Context, Result};
use crate::home::Home;
use crate::sink::Sink;
use octo_comms::identity::Thumbprint;
use serde::{Deserialize, Serialize};

/// How the server reaches a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reach {
    /// The server dials the tentacle at `url` (`https://HOST:PORT`).
    Listening {
        /// Where the tentacle listens.
        url: String,
    },
    /// The tentacle dials the server's polling port.
    Polling,
}

/// One target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Unique name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// How it is reached.
    #[serde(flatten)]
    pub reach: Reach,
    /// Its certificate thumbprint.
    pub thumbprint: Thumbprint,
    /// Roles, for `run-step --role`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The named proxy (`octo proxies add`) a listening target is dialled through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

impl Target {
    /// `(host, port)` of a listening target.
    pub fn listening_address(&self) -> Option<Result<(String, u16)>> {
        match &self.reach {
            Reach::Listening { url } => Some(parse_url(url)),
            Reach::Polling => None,
        }
    }

    /// `listening https://…` or `polling`.
    pub fn describe_reach(&self) -> String {
        match &self.reach {
            Reach::Listening { url } => match &self.proxy {
                Some(proxy) => format!("listening {url} via {proxy}"),
                None => format!("listening {url}"),
            },
            Reach::Polling => "polling".to_owned(),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Every target, in the order added.
    pub targets: Vec<Target>,
}

impl Targets {
    /// Adds a target; names are unique.
    pub fn add(&mut self, target: Target) -> Result<()> {
        check_name(&target.name)?;
        if let Some(result) = target.listening_address() {
            result?;
        } else if target.proxy.is_some() {
            bail!(
                Invalid,
                "only a listening target is dialled through a proxy (a polling tentacle uses its own polling proxy)"
            );
        }
        for role in &target.roles {
            check_name(role).context("invalid role")?;
        }
        if self.get(&target.name).is_some() {
            bail!(
                Invalid,
                "a target named {:?} already exists; remove it first",
                target.name
            );
        }
        self.targets.push(target);
        Ok(())
    }

    /// Removes a target by name; returns it.
    pub fn remove(&mut self, name: &str) -> Result<Target> {
        let index = self
            .targets
            .iter()
            .position(|t| t.name == name)
            .with_context(|| format!("there is no target named {name:?}"))?;
        Ok(self.targets.remove(index))
    }

    /// Sets (or with `None` clears) the named proxy of a listening target.
    pub fn set_proxy(&mut self, name: &str, proxy: Option<String>) -> Result<()> {
        let target = self
            .targets
            .iter_mut()
            .find(|t| t.name == name)
            .with_context(|| format!("there is no target named {name:?}"))?;
        if proxy.is_some() && matches!(target.reach, Reach::Polling) {
            bail!(
                Invalid,
                "{name} is a polling target; only a listening target is dialled through a proxy (a polling tentacle uses `tentacle polling-proxy`)"
            );
        }
        target.proxy = proxy;
        Ok(())
    }

    /// The target named `name`.
    pub fn get(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The targets selected by names and roles (each once, in file order); an unknown name or a
    /// role no target has is an error.
    pub fn select(&self, names: &[String], roles: &[String]) -> Result<Vec<Target>> {
        for name in names {
            if self.get(name).is_none() {
                bail!(
                    NotFound,
                    "there is no target named {name:?}; see `octo targets list`"
                );
            }
        }
        for role in roles {
            if !self.targets.iter().any(|t| t.roles.contains(role)) {
                bail!(
                    NotFound,
                    "no target has the role {role:?}; see `octo targets list`"
                );
            }
        }
        Ok(self
            .targets
            .iter()
            .filter(|t| names.contains(&t.name) || t.roles.iter().any(|r| roles.contains(r)))
            .cloned()
            .collect())
    }

    /// Every target thumbprint: what the server trusts.
    pub fn thumbprints(&self) -> Vec<Thumbprint> {
        let mut all: Vec<Thumbprint> = self.targets.iter().map(|t| t.thumbprint).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A target or role name: 1–64 of letters, digits, `.`, `_`, `-`, not starting with `.`/`-`.
pub fn check_name(name: &str) -> Result<()> {
    if octo_protocol::Ticket::parse(name).is_err() {
        bail!(
            Invalid,
            "invalid name {name:?}: use 1-64 letters, digits, '.', '_' and '-', not starting with '.' or '-'"
        );
    }
    Ok(())
}

/// `https://HOST:PORT` → (host, port); the port defaults to 10933.
pub fn parse_url(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| err!(Invalid, "the URL {url:?} must look like https://HOST:PORT"))?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        bail!(Invalid, "the URL {url:?} must look like https://HOST:PORT");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse::<u16>()
                .map_err(|_| err!(Invalid, "invalid port in {url:?}"))?,
        ),
        _ => (rest, octo_comms::endpoint::DEFAULT_LISTENING_PORT),
    };
    if host.is_empty() {
        bail!(Invalid, "the URL {url:?} has no host");
    }
    Ok((host.to_owned(), port))
}

/// Reads the targets; none when the file does not exist.
pub fn load(path: &Path) -> Result<Targets> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid targets file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Targets::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the targets atomically (temporary file + fsync + rename), mode 0600.
pub fn save(path: &Path, targets: &Targets) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(targets)?;
    octo_fsutil::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Tells a running daemon to re-read the targets (trust follows them); a failure is a note.
fn notify_daemon(home: &Home, sink: &Sink) {
    if home.socket().exists()
        && let Err(e) = admin::call(home, &AdminRequest::Reload, |_| {})
    {
        sink.note(&format!(
            "note: the running server was not told about the change: {}",
            e.one_line()
        ));
    }
}

fn check_proxy_exists(home: &Home, name: &str) -> Result<()> {
    let settings = octo_settings::Settings::load(&home.settings())?;
    crate::proxy::lookup_named(&settings, name).map(|_| ())
}

impl crate::shared::Shared for Targets {
    const NAME: &'static str = "targets";

    fn old_file(home: &Home) -> std::path::PathBuf {
        home.targets()
    }

    fn parse_old(bytes: &[u8], path: &Path) -> Result<Self> {
        serde_json::from_slice(bytes)
            .with_context(|| format!("{} is not a valid targets file", path.display()))
    }
}

/// A compare-and-swap on the shared document: concurrent edits (two nodes) lose nothing.
fn edit<T: Send>(
    home: &Home,
    sink: &Sink,
    f: impl FnMut(&mut Targets) -> Result<T> + Send,
) -> Result<T> {
    home.create()?;
    let out = crate::shared::update_in(home, f)?;
    notify_daemon(home, sink);
    Ok(out)
}

/// `octo targets add-listening` / `add-polling`: a target with a named proxy must name one that exists.
pub fn add(home: &Home, target: Target, sink: &Sink) -> Result<()> {
    if let Some(proxy) = &target.proxy {
        check_proxy_exists(home, proxy)?;
    }
    edit(home, sink, |all| all.add(target.clone()))
}

/// `octo targets set-proxy NAME PROXY|--none`.
pub fn set_proxy(home: &Home, name: &str, proxy: Option<String>, sink: &Sink) -> Result<()> {
    if let Some(proxy) = &proxy {
        check_proxy_exists(home, proxy)?;
    }
    edit(home, sink, |all| all.set_proxy(name, proxy.clone()))
}

/// `octo targets remove NAME`: its live connections close.
pub fn remove(home: &Home, name: &str, sink: &Sink) -> Result<Target> {
    edit(home, sink, |all| all.remove(name))
}

/// `octo targets list`.
pub fn list(home: &Home) -> Result<Targets> {
    crate::shared::load_in(home)
}

/// `octo targets health [NAME...]`: asks the running daemon; each answer is handed to `each` as it
/// comes. Ok(false) when a target is unhealthy.
pub fn health(home: &Home, names: Vec<String>, each: impl FnMut(AdminEvent)) -> Result<bool> {
    admin::call(home, &AdminRequest::Health { targets: names }, each)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(n: u8) -> Thumbprint {
        Thumbprint::from_bytes([n; 32])
    }

    fn listening(name: &str, roles: &[&str]) -> Target {
        Target {
            name: name.into(),
            reach: Reach::Listening {
                url: "https://web1:10933".into(),
            },
            thumbprint: tp(1),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            proxy: None,
        }
    }

    #[test]
    fn add_select_remove() {
        let mut t = Targets::default();
        t.add(listening("web1", &["web"])).unwrap();
        t.add(Target {
            name: "db1".into(),
            reach: Reach::Polling,
            thumbprint: tp(2),
            roles: vec!["db".into()],
            proxy: None,
        })
        .unwrap();
        assert!(t.add(listening("web1", &[])).is_err());
        assert!(t.add(listening("../x", &[])).is_err());
        assert!(t.add(listening("ok", &["bad role"])).is_err());
        let mut bad = listening("bad-url", &[]);
        bad.reach = Reach::Listening {
            url: "http://x".into(),
        };
        assert!(t.add(bad).is_err());
        let names = |v: Vec<Target>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(t.select(&[], &["web".into()]).unwrap()), ["web1"]);
        assert_eq!(
            names(t.select(&["db1".into()], &["web".into()]).unwrap()),
            ["web1", "db1"]
        );
        assert!(t.select(&["nope".into()], &[]).is_err());
        assert!(t.select(&[], &["nope".into()]).is_err());
        assert_eq!(t.thumbprints(), vec![tp(1), tp(2)]);
        t.remove("web1").unwrap();
        assert!(t.remove("web1").is_err());
    }

    #[test]
    fn file_format_and_round_trip() {
        let mut t = Targets::default();
        t.add(listening("web1", &["web"])).unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["targets"][0]["kind"], "listening");
        assert_eq!(json["targets"][0]["url"], "https://web1:10933");
        let dir = tempfile::tempdir().unwrap();
        let path = Home::at(dir.path()).targets();
        assert_eq!(load(&path).unwrap(), Targets::default());
        save(&path, &t).unwrap();
        assert_eq!(load(&path).unwrap(), t);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("https://h:1").unwrap(), ("h".into(), 1));
        assert_eq!(parse_url("https://h").unwrap(), ("h".into(), 10933));
        assert!(parse_url("https://h:x").is_err());
        assert!(parse_url("h:1").is_err());
    }
}
