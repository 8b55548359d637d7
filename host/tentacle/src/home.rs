//! The tentacle's home directory and the places inside it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$TENTACLE_HOME`, else `~/.tentacle`.
    pub fn resolve(flag: Option<&Path>) -> anyhow::Result<Self> {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("TENTACLE_HOME") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(
                    std::env::var_os("HOME")
                        .context("neither --home, TENTACLE_HOME nor HOME is set")?,
                )
                .join(".tentacle"),
            },
        };
        Ok(Self { root })
    }

    /// A home at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `tentacle.toml`.
    pub fn settings(&self) -> PathBuf {
        self.root.join(crate::settings::FILE_NAME)
    }

    /// The identity directory.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// The plugin cache.
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// Step runs.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The file transfer area.
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Logs the tentacle keeps (package downloads).
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The package cache.
    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// deploy-package's deployments, one directory per package.
    pub fn applications(&self) -> PathBuf {
        self.root.join("Applications")
    }

    /// Compiled-code cache.
    pub fn compiled_cache(&self) -> PathBuf {
        self.root.join("cache").join("compiled")
    }
}
