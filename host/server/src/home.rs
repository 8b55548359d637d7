//! Octo's home directory: the one place that lists what lives where.
//!
//! ```text
//! <home>/octo.toml                  settings (`octo configure`, `octo proxy`, `octo proxies`)
//! <home>/grants.toml                administrator grants (`octo plugins grant`)
//! <home>/targets.json               deployment targets before the store held them (imported once,
//!                                   then renamed targets.json.imported)
//! <home>/feeds.json                 package feeds before the store held them (imported once)
//! <home>/packages/                  the package cache (blobs/sha256/<hex>, entries/, locks/, tmp/)
//! <home>/jobs.json, .jobs.lock      last and next run of each background job
//! <home>/plugins/                   the plugin store (blobs/sha256/<hex>, plugins.lock)
//! <home>/library/templates.json     the community library, as last synced
//! <home>/steps/<Id>.json            installed community step templates
//! <home>/logs/outbound.jsonl        the audit file of outbound attempts (rotated to .1)
//! <home>/cache/compiled/            compiled plugin code
//! <home>/cache/<vendor>.json        what the vendor plugins brought (update check, messages, extensions)
//! <home>/work/                      step work directories
//! <home>/certs/                     the server's identity
//! <home>/octo.db                    tasks, their logs and the shared documents (targets, feeds) (SQLite, WAL;
//!                                   unless `database` is PostgreSQL)
//! <home>/octo.sock                  the daemon's admin socket (0600)
//! ```
//!
//! Every directory is created with mode 0700 when first needed.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The home directory and the places inside it.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$OCTO_HOME`, else `~/.octo`. Created (mode 0700) on first use.
    pub fn resolve(flag: Option<&Path>) -> Result<Self> {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("OCTO_HOME") {
                Some(p) => PathBuf::from(p),
                None => {
                    let home = std::env::var_os("HOME").ok_or_else(|| {
                        Error::Invalid("neither --home, OCTO_HOME nor HOME is set".into())
                    })?;
                    PathBuf::from(home).join(".octo")
                }
            },
        };
        Ok(Home { root })
    }

    /// A home at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The home directory itself (it may not exist yet).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the home itself (mode 0700) if it is missing.
    pub fn create(&self) -> Result<&Path> {
        create_dir(&self.root)?;
        Ok(&self.root)
    }

    /// `octo.toml`.
    pub fn settings(&self) -> PathBuf {
        octo_settings::Settings::path_in(&self.root)
    }

    /// The settings from `octo.toml` (all defaults if it is missing). A command loads them once and
    /// hands them down.
    pub fn load_settings(&self) -> Result<octo_settings::Settings> {
        octo_settings::Settings::load(&self.settings())
            .map_err(|e| Error::from(e).context("cannot read the settings"))
    }

    /// `grants.toml`.
    pub fn grants(&self) -> PathBuf {
        self.root.join("grants.toml")
    }

    /// `feeds.json`: where package feeds were kept before the store held them (imported once).
    pub fn feeds(&self) -> PathBuf {
        self.root.join("feeds.json")
    }

    /// `packages/`: the package cache (`octo packages`).
    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// `targets.json`: where targets were kept before the store held them (imported once).
    pub fn targets(&self) -> PathBuf {
        self.root.join("targets.json")
    }

    /// `jobs.json`: the jobs' last and next runs.
    pub fn jobs_state(&self) -> PathBuf {
        self.root.join("jobs.json")
    }

    /// `.jobs.lock`: serialises updates of `jobs.json`.
    pub fn jobs_lock(&self) -> PathBuf {
        self.root.join(".jobs.lock")
    }

    /// `plugins/`: the plugin store.
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// `library/templates.json`: the community library as last synced.
    pub fn library_cache(&self) -> PathBuf {
        self.root.join("library").join("templates.json")
    }

    /// `steps/`: installed community step templates.
    pub fn steps(&self) -> PathBuf {
        self.root.join("steps")
    }

    /// `logs/outbound.jsonl`: the audit file of outbound attempts.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("logs").join("outbound.jsonl")
    }

    /// `cache/<name>`: what a vendor plugin brought (`update-check.json`, `experiences.json`, ...).
    pub fn cache_file(&self, name: &str) -> PathBuf {
        self.root.join("cache").join(name)
    }

    /// `cache/compiled/`, created: compiled plugin code.
    pub fn compiled_cache(&self) -> Result<PathBuf> {
        private_dir(self.root.join("cache").join("compiled"))
    }

    /// `Applications/`: deploy-package's deployments, one directory per package.
    pub fn applications(&self) -> PathBuf {
        self.root.join("Applications")
    }

    /// `work/`, created: step work directories.
    pub fn work(&self) -> Result<PathBuf> {
        private_dir(self.root.join("work"))
    }

    /// `certs/`: the server's identity.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// `octo.db`: the SQLite store of tasks and their logs (unless `database` names PostgreSQL).
    pub fn database(&self) -> PathBuf {
        self.root.join("octo.db")
    }

    /// `octo.sock`: the daemon's admin socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("octo.sock")
    }
}

/// Creates `dir` (and missing parents) with mode 0700.
fn create_dir(dir: &Path) -> Result<()> {
    // The error names the directory already.
    Ok(octo_fsutil::create_private_dir(dir)?)
}

fn private_dir(dir: PathBuf) -> Result<PathBuf> {
    create_dir(&dir)?;
    Ok(dir)
}
