//! Deployment targets: the tentacles this server deploys to, persisted in `<home>/targets.json`
//! (atomic writes, mode 0600). Parsing and editing are plain functions; [`load`] and [`save`] do
//! the I/O.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use octo_comms::identity::Thumbprint;
use serde::{Deserialize, Serialize};

/// File name of the targets inside the home.
pub const FILE_NAME: &str = "targets.json";

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
    pub fn listening_address(&self) -> Option<anyhow::Result<(String, u16)>> {
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
    pub fn add(&mut self, target: Target) -> anyhow::Result<()> {
        check_name(&target.name)?;
        if let Some(result) = target.listening_address() {
            result?;
        } else if target.proxy.is_some() {
            bail!(
                "only a listening target is dialled through a proxy (a polling tentacle uses its own polling proxy)"
            );
        }
        for role in &target.roles {
            check_name(role).context("invalid role")?;
        }
        if self.get(&target.name).is_some() {
            bail!(
                "a target named {:?} already exists; remove it first",
                target.name
            );
        }
        self.targets.push(target);
        Ok(())
    }

    /// Removes a target by name; returns it.
    pub fn remove(&mut self, name: &str) -> anyhow::Result<Target> {
        let index = self
            .targets
            .iter()
            .position(|t| t.name == name)
            .with_context(|| format!("there is no target named {name:?}"))?;
        Ok(self.targets.remove(index))
    }

    /// Sets (or with `None` clears) the named proxy of a listening target.
    pub fn set_proxy(&mut self, name: &str, proxy: Option<String>) -> anyhow::Result<()> {
        let target = self
            .targets
            .iter_mut()
            .find(|t| t.name == name)
            .with_context(|| format!("there is no target named {name:?}"))?;
        if proxy.is_some() && matches!(target.reach, Reach::Polling) {
            bail!(
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
    pub fn select(&self, names: &[String], roles: &[String]) -> anyhow::Result<Vec<Target>> {
        for name in names {
            if self.get(name).is_none() {
                bail!("there is no target named {name:?}; see `octo targets list`");
            }
        }
        for role in roles {
            if !self.targets.iter().any(|t| t.roles.contains(role)) {
                bail!("no target has the role {role:?}; see `octo targets list`");
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
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if octo_protocol::Ticket::parse(name).is_err() {
        bail!(
            "invalid name {name:?}: use 1-64 letters, digits, '.', '_' and '-', not starting with '.' or '-'"
        );
    }
    Ok(())
}

/// `https://HOST:PORT` → (host, port); the port defaults to 10933.
pub fn parse_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("the URL {url:?} must look like https://HOST:PORT"))?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        bail!("the URL {url:?} must look like https://HOST:PORT");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("invalid port in {url:?}"))?,
        ),
        _ => (rest, octo_comms::endpoint::DEFAULT_LISTENING_PORT),
    };
    if host.is_empty() {
        bail!("the URL {url:?} has no host");
    }
    Ok((host.to_owned(), port))
}

/// `<home>/targets.json`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(FILE_NAME)
}

/// Reads the targets; none when the file does not exist.
pub fn load(path: &Path) -> anyhow::Result<Targets> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid targets file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Targets::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the targets atomically (temporary file + fsync + rename), mode 0600.
pub fn save(path: &Path, targets: &Targets) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = serde_json::to_vec_pretty(targets)?;
    let temp = path.with_file_name(format!(".{FILE_NAME}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
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
        let path = path_in(dir.path());
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
