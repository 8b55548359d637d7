//! The settings of the moment, for decisions taken when a connection is made.
//!
//! A job checks its gate, compiles its plugin, and only then sends; a step may run for minutes before it
//! makes a request. [`LiveSettings::current`] looks at the file each time it is asked (one `stat`) and
//! reads it again when it changed, so a policy that asks it at `send_request` time decides with what
//! `octo configure` wrote a moment ago (e.g. `--airGapped=true`), not with what was true at the start.
//! `configure` replaces the file by rename, so every save is a new inode and is always seen.

use crate::{Settings, SettingsError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Result<Option<Stamp>, SettingsError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            inode: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SettingsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The settings file as it is now, re-read when it changed; or fixed values.
#[derive(Debug)]
pub struct LiveSettings {
    source: Source,
}

#[derive(Debug)]
enum Source {
    Fixed(Arc<Settings>),
    File {
        path: PathBuf,
        last: Mutex<(Option<Stamp>, Arc<Settings>)>,
    },
}

impl LiveSettings {
    /// Follows the file at `path` (missing = defaults), read now.
    pub fn follow(path: &Path) -> Result<Self, SettingsError> {
        let before = stamp(path)?;
        let settings = Settings::load(path)?;
        Ok(LiveSettings {
            source: Source::File {
                path: path.to_path_buf(),
                last: Mutex::new((before, Arc::new(settings))),
            },
        })
    }

    /// Always these values (tests, one-off decisions).
    pub fn fixed(settings: Settings) -> Self {
        LiveSettings {
            source: Source::Fixed(Arc::new(settings)),
        }
    }

    /// The settings now: the file is read again if it changed since the last call. An unreadable or
    /// invalid file is an error (a caller deciding about a connection then refuses it), never the old
    /// values.
    pub fn current(&self) -> Result<Arc<Settings>, SettingsError> {
        let (path, last) = match &self.source {
            Source::Fixed(s) => return Ok(s.clone()),
            Source::File { path, last } => (path, last),
        };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(path)?;
        if now != last.0 {
            let settings = Arc::new(Settings::load(path)?);
            *last = (now, settings);
        }
        Ok(last.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_at_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = Settings::path_in(dir.path());
        let live = LiveSettings::follow(&path).unwrap();
        assert!(!live.current().unwrap().air_gapped());
        Settings::update(&path, |s| {
            s.set_air_gapped(true);
            Ok(())
        })
        .unwrap();
        assert!(live.current().unwrap().air_gapped());
        Settings::update(&path, |s| {
            s.set_air_gapped(false);
            Ok(())
        })
        .unwrap();
        assert!(!live.current().unwrap().air_gapped());
        // A broken file is an error, not the old values.
        std::fs::write(&path, "airGapped = 3\n").unwrap();
        assert!(live.current().is_err());
        // Removed: defaults.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(*live.current().unwrap(), Settings::default());
    }

    #[test]
    fn fixed_values_stay() {
        let mut s = Settings::default();
        s.set_air_gapped(true);
        let live = LiveSettings::fixed(s.clone());
        assert_eq!(*live.current().unwrap(), s);
    }
}
