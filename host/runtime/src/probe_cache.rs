//! Namespace probes that succeeded, remembered across processes, so that a one-shot `octo run-step`
//! does not fork a probe before every command (issue 10, fixed cost).
//!
//! Only success is remembered, and only under the same conditions: mode, effective uid and gid, boot
//! and the namespaces this process is in (user, PID, network, mount), so a reboot, another user or
//! another container probes again. A remembered success that has gone wrong since (a sysctl or a
//! seccomp policy changed) fails closed: the command's spawn fails where the probe would have (the
//! same unshare, before exec), nothing runs unconfined, and the entry is forgotten so the next run
//! probes again. Failures are never remembered: a host without namespaces probes on every run.
//!
//! Entries are empty files in the runtime's compiled-code cache directory (0700, the user's own).

use std::path::PathBuf;
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Remember successful probes in `dir` (the first directory given in this process wins).
pub(crate) fn remember_in(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// Ok when a probe of `mode` succeeded before under the same conditions; otherwise `probe()`'s
/// result, remembered when it is a success.
pub(crate) fn remembered(
    mode: &str,
    probe: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let entry = entry(mode);
    if entry.as_ref().is_some_and(|e| e.is_file()) {
        return Ok(());
    }
    let result = probe();
    if let (Ok(()), Some(entry)) = (&result, &entry) {
        let _ = octo_fsutil::write_atomic_with_mode(entry, b"", 0o600);
    }
    result
}

/// Forgets a remembered success of `mode` (a spawn with namespaces failed).
pub(crate) fn forget(mode: &str) {
    if let Some(entry) = entry(mode) {
        let _ = std::fs::remove_file(entry);
    }
}

fn entry(mode: &str) -> Option<PathBuf> {
    let dir = DIR.get()?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let mut key = format!(
        "{mode} {} {} {}",
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
        boot.trim()
    );
    for ns in ["user", "pid", "net", "mnt"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()?;
        key.push(' ');
        key.push_str(&link.to_string_lossy());
    }
    Some(dir.join(format!(
        "namespaces-{}.ok",
        &crate::sha256_hex(key.as_bytes())[..16]
    )))
}
