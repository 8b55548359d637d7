//! Work directories of `octo run-step` and the staging directories of its packages, named after the
//! process that made them (`work/run-step-<pid>.<start time>-XXXXXX`,
//! `work/package-<pid>.<start time>-XXXXXX`), so that one left behind by a process that was killed
//! (SIGKILL, a crash: nothing ran its clean-up) is removed at the next start of a run-step or the
//! daemon, while a live run's directory never is. The process's start time (from `/proc`) tells a
//! reused pid from the owner.

use std::io;
use std::path::Path;

/// A step's work directory.
const RUN_STEP: &str = "run-step-";
/// A deploy-package run's staged package files.
const PACKAGE: &str = "package-";

/// The owner of a work directory: a pid and that process's start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: u64,
}

impl Owner {
    fn current() -> Option<Owner> {
        Owner::of(std::process::id())
    }

    /// The live process `pid`, if there is one.
    fn of(pid: u32) -> Option<Owner> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(Owner {
            pid,
            start: start_time(&stat)?,
        })
    }

    fn is_alive(self) -> bool {
        Owner::of(self.pid) == Some(self)
    }
}

/// Field 22 of `/proc/PID/stat` (`starttime`), counted after the command name's closing `)`.
fn start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The owner a directory's name records (`run-step-<pid>.<start>-XXXXXX`,
/// `package-<pid>.<start>-XXXXXX`); `None` for other names.
fn owner_in_name(name: &str) -> Option<Owner> {
    let rest = [RUN_STEP, PACKAGE]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))?;
    let (tag, _) = rest.split_once('-')?;
    let (pid, start) = tag.split_once('.')?;
    Some(Owner {
        pid: pid.parse().ok()?,
        start: start.parse().ok()?,
    })
}

/// A new work directory in `root` owned by this process, removed when dropped.
pub fn create(root: &Path) -> io::Result<tempfile::TempDir> {
    create_named(root, RUN_STEP)
}

/// A new directory in `root` for a package staged for a run of this process, removed when dropped.
pub fn create_package_staging(root: &Path) -> io::Result<tempfile::TempDir> {
    create_named(root, PACKAGE)
}

fn create_named(root: &Path, kind: &str) -> io::Result<tempfile::TempDir> {
    let prefix = match Owner::current() {
        Some(o) => format!("{kind}{}.{}-", o.pid, o.start),
        None => kind.to_string(),
    };
    tempfile::Builder::new().prefix(&prefix).tempdir_in(root)
}

/// Removes the work directories in `root` whose owning process is gone; returns how many. A
/// directory without an owner in its name, or whose owner still runs, is left alone.
pub fn remove_abandoned(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(owner_in_name) else {
            continue;
        };
        if owner.is_alive() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(
                "cannot remove {}, left by a run-step that ended without cleaning up: {e}",
                entry.path().display()
            ),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_record_their_owner() {
        assert_eq!(
            owner_in_name("run-step-1234.5678-AbC123"),
            Some(Owner {
                pid: 1234,
                start: 5678
            })
        );
        assert_eq!(owner_in_name("run-step-AbC123"), None);
        assert_eq!(
            owner_in_name("package-1.2-x"),
            Some(Owner { pid: 1, start: 2 })
        );
        assert_eq!(owner_in_name("package-AbC123"), None);
        assert_eq!(owner_in_name("other-1.2-x"), None);
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 50";
        assert_eq!(start_time(stat), Some(98765));
    }

    #[test]
    fn only_directories_of_gone_owners_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let mine = create(root.path()).unwrap();
        let my_package = create_package_staging(root.path()).unwrap();
        let me = Owner::current().unwrap();
        // The same pid with another start time: a reused pid, so the owner is gone.
        let reused = root
            .path()
            .join(format!("run-step-{}.{}-old", me.pid, me.start + 1));
        let reused_package = root
            .path()
            .join(format!("package-{}.{}-old", me.pid, me.start + 1));
        let unnamed = root.path().join("run-step-XYZ123");
        let unnamed_package = root.path().join("package-XYZ123");
        for dir in [&reused, &reused_package, &unnamed, &unnamed_package] {
            std::fs::create_dir(dir).unwrap();
        }
        assert_eq!(remove_abandoned(root.path()), 2);
        assert!(mine.path().is_dir());
        assert!(my_package.path().is_dir());
        assert!(!reused.exists());
        assert!(!reused_package.exists());
        assert!(unnamed.is_dir());
        assert!(unnamed_package.is_dir());
    }
}
