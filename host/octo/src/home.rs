//! Octo's home directory and the places inside it.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The home directory: settings, the plugin store, caches and step work directories.
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$OCTO_HOME`, else `~/.octo`. Created (mode 0700) on first use.
    pub fn resolve(flag: Option<&Path>) -> anyhow::Result<Self> {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("OCTO_HOME") {
                Some(p) => PathBuf::from(p),
                None => {
                    let home = std::env::var_os("HOME")
                        .context("neither --home, OCTO_HOME nor HOME is set")?;
                    PathBuf::from(home).join(".octo")
                }
            },
        };
        Ok(Home { root })
    }

    /// The home directory itself (it may not exist yet).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `sub` below the home (and the home itself) with mode 0700.
    pub fn private_dir(&self, sub: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.root.join(sub);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}
