//! The audit file of outbound attempts: `<home>/logs/outbound.jsonl`, one JSON object per line (format:
//! [`octo_outbound::audit`]), mode 0600. When it reaches [`MAX_BYTES`] it is renamed to
//! `outbound.jsonl.1` (replacing the previous one), so the two never hold much more than twice that.
//!
//! Appends are single `write` calls on an `O_APPEND` file, so concurrent writers (a server and a CLI run)
//! do not interleave within a line; rotation happens under the file's lock. A failure to record is
//! logged and never fails the request being recorded.
//!
//! A home that shares a PostgreSQL store with other nodes records in the store instead
//! ([`super::audit_store`]), each attempt with the node that made it; its file (and the rotated one),
//! when present, is imported first and renamed `*.imported` — also what becomes of attempts written
//! there while the store could not be reached.

use super::policy::SettingsPolicy;
use crate::error::Result;
use crate::home::Home;
use octo_outbound::DestinationId;
use octo_outbound::audit::AuditRecord;
use octo_runtime::{AuditSink, OutboundAttempt, OutboundRequest};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Size at which the file is rotated.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The audit file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    shared: Option<SharedAudit>,
}

/// Where a shared home records: its store, as this node.
#[derive(Debug, Clone)]
struct SharedAudit {
    home: Home,
    node: String,
}

impl AuditLog {
    /// The home's audit: its file, or its store when shared with other nodes (PostgreSQL).
    pub fn in_home(home: &Home) -> Self {
        let shared = home
            .load_settings()
            .is_ok_and(|s| s.database.is_some())
            .then(|| SharedAudit {
                home: home.clone(),
                node: crate::nodes::this_node(home),
            });
        AuditLog {
            shared,
            ..AuditLog::at(home.audit_log(), MAX_BYTES)
        }
    }

    /// An audit file at `path`, rotated at `max_bytes`.
    pub fn at(path: PathBuf, max_bytes: u64) -> Self {
        AuditLog {
            path,
            max_bytes,
            shared: None,
        }
    }

    /// Where attempts are shared when not in the file: the store's description.
    pub fn store(&self) -> Option<String> {
        let shared = self.shared.as_ref()?;
        Some(
            crate::tasks::location(&shared.home)
                .map(|l| l.to_string())
                .unwrap_or_else(|_| "the store".into()),
        )
    }

    /// Moves the file's records (and the rotated file's) into the shared store, then renames the
    /// files `*.imported`. Under the file's lock, so that two processes do not import them twice.
    fn import(&self, shared: &SharedAudit) -> Result<()> {
        let rotated = self.rotated();
        if !self.path.exists() && !rotated.exists() {
            return Ok(());
        }
        octo_settings::file::with_lock(&self.path, || -> Result<()> {
            let lines: Vec<String> = self.read_files().iter().map(|r| r.to_line()).collect();
            if !lines.is_empty() {
                super::audit_store::append(&shared.home, &shared.node, lines)?;
            }
            for file in [&rotated, &self.path] {
                if file.exists() {
                    let mut imported = file.as_os_str().to_owned();
                    imported.push(".imported");
                    std::fs::rename(file, imported)?;
                }
            }
            Ok(())
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotated(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends one record.
    pub fn record(&self, record: &AuditRecord) {
        if let Some(shared) = &self.shared {
            let stored = self.import(shared).and_then(|()| {
                super::audit_store::append(&shared.home, &shared.node, vec![record.to_line()])
            });
            match stored {
                Ok(()) => return,
                Err(e) => tracing::warn!(
                    "cannot record an outbound attempt in the store ({e}); keeping it in {} until the store is back",
                    self.path.display()
                ),
            }
        }
        if let Err(e) = self.try_record(record) {
            tracing::warn!(
                "cannot record an outbound attempt in {}: {e}",
                self.path.display()
            );
        }
    }

    fn try_record(&self, record: &AuditRecord) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            octo_fsutil::create_private_dir(dir)?;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max_bytes) {
            octo_settings::file::with_lock(&self.path, || -> Result<()> {
                // Someone else may have rotated it meanwhile.
                if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max_bytes) {
                    std::fs::rename(&self.path, self.rotated())?;
                }
                Ok(())
            })?;
        }
        let mut line = record.to_line();
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        Ok(())
    }

    /// Every record still kept, oldest first (unparseable lines are skipped). From a shared store,
    /// each record names its node.
    pub fn read_all(&self) -> Vec<AuditRecord> {
        let Some(shared) = &self.shared else {
            return self.read_files();
        };
        let stored = self
            .import(shared)
            .and_then(|()| super::audit_store::read(&shared.home));
        match stored {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(node, line)| {
                    let mut record = AuditRecord::parse_line(&line)?;
                    record.node = Some(node);
                    Some(record)
                })
                .collect(),
            Err(e) => {
                tracing::warn!("cannot read the outbound attempts from the store: {e}");
                self.read_files()
            }
        }
    }

    /// Every record in the file and the rotated one, oldest first.
    fn read_files(&self) -> Vec<AuditRecord> {
        [self.rotated(), self.path.clone()]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(AuditRecord::parse_line)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A sink for the runtime that files attempts under the table row `kind`.
    #[cfg(test)]
    pub fn sink(&self, kind: DestinationId) -> Arc<dyn AuditSink> {
        Arc::new(RowSink {
            log: self.clone(),
            kind,
            policy: None,
        })
    }

    /// A sink for one run under `policy`: attempts are filed under the policy's table row, and allowed
    /// ones also say why they were allowed.
    pub fn sink_for(&self, policy: Arc<SettingsPolicy>) -> Arc<dyn AuditSink> {
        Arc::new(RowSink {
            log: self.clone(),
            kind: policy.row(),
            policy: Some(policy),
        })
    }
}

struct RowSink {
    log: AuditLog,
    kind: DestinationId,
    policy: Option<Arc<SettingsPolicy>>,
}

impl AuditSink for RowSink {
    fn record(&self, attempt: &OutboundAttempt) {
        // A step's scripts have a row of their own.
        let kind = if attempt.source == octo_runtime::RequestSource::Script
            && self.kind == DestinationId::StepPlugins
        {
            DestinationId::StepScripts
        } else {
            self.kind
        };
        let mut reason = attempt.reason.clone();
        if attempt.allowed && reason.is_empty() {
            let explained = self.policy.as_ref().and_then(|p| {
                let destination =
                    octo_manifest::Destination::from_url(&attempt.destination).ok()?;
                Some(p.explain(&OutboundRequest {
                    plugin_id: attempt.plugin_id.clone(),
                    destination,
                    source: attempt.source,
                }))
            });
            if let Some(decision) = explained {
                reason = decision.reason;
            }
        }
        self.log.record(&AuditRecord::new(
            kind,
            &attempt.plugin_id,
            &attempt.destination,
            attempt.allowed,
            &reason,
            attempt.time,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::SystemTime;

    fn attempt(n: usize) -> OutboundAttempt {
        OutboundAttempt {
            time: SystemTime::now(),
            plugin_id: format!("p{n}"),
            destination: "https://a.example:443".into(),
            allowed: false,
            reason: "not granted".into(),
            source: octo_runtime::RequestSource::Plugin,
            preview: false,
        }
    }

    #[test]
    fn records_append_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::at(dir.path().join("logs/outbound.jsonl"), 1000);
        let sink = log.sink(DestinationId::StepPlugins);
        for n in 0..40 {
            sink.record(&attempt(n));
        }
        let all = log.read_all();
        // Bounded: at most two files of about max_bytes each.
        let total: u64 = [log.path().to_path_buf(), log.rotated()]
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(total < 2 * 1000 + 400, "{total}");
        assert!(all.len() < 40 && all.len() > 5, "{}", all.len());
        assert_eq!(all.last().unwrap().plugin, "p39");
        let order: Vec<usize> = all.iter().map(|r| r.plugin[1..].parse().unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] + 1 == w[1]), "{order:?}");
        assert_eq!(all[0].kind, "step-plugins");
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn unreadable_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::at(dir.path().join("a.jsonl"), MAX_BYTES);
        std::fs::write(log.path(), "garbage\n{\"torn\":\n").unwrap();
        log.sink(DestinationId::Telemetry).record(&attempt(1));
        let all = log.read_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind, "telemetry");
    }
}
