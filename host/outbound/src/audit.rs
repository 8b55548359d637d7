//! The audit record of outbound attempts: one JSON object per line.
//!
//! ```json
//! {"time":"2025-01-31T12:00:00.123Z","kind":"step-plugins","plugin":"my-step","destination":"https://api.example.com:443","allowed":false,"reason":"..."}
//! ```
//!
//! `kind` is the table row ([`DestinationId`]) the attempt belongs to; `plugin` is the plugin id, or for
//! the host's own clients the component (`octo:steps-feed`). `destination` is an origin only
//! (`scheme://host:port`): never a path or a query, which may carry secrets. The file itself (where,
//! rotation) is the binary's business; this module is the format. An attempt a tentacle made (its
//! scripts', reported with the step's result) carries `"target":"NAME"`.

use crate::DestinationId;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One attempt, allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The table row (`update-check`, `step-plugins`, ...).
    pub kind: String,
    /// The plugin id, or `octo:...` for the host's own clients.
    pub plugin: String,
    /// `scheme://host:port`.
    pub destination: String,
    /// Whether it was let through.
    pub allowed: bool,
    /// Why it was denied (or allowed).
    pub reason: String,
    /// The proxy the connection went through (`http://host:port`, never a password), when the host's
    /// own client recorded it; absent for a direct connection or when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The target the attempt was made on, when a tentacle reported it; absent for this host's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The node that recorded it, when read from a store several nodes share (not in the line
    /// itself: the store keeps it beside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl AuditRecord {
    /// A record stamped now.
    pub fn new(
        kind: DestinationId,
        plugin: &str,
        destination: &str,
        allowed: bool,
        reason: &str,
        time: SystemTime,
    ) -> Self {
        AuditRecord {
            time: octo_fsutil::rfc3339_millis(time),
            kind: kind.as_str().to_string(),
            plugin: plugin.to_string(),
            destination: destination.to_string(),
            allowed,
            reason: reason.to_string(),
            proxy: None,
            target: None,
            node: None,
        }
    }

    /// The same record, made on target `target` (reported by its tentacle).
    pub fn on_target(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }

    /// The same record, naming the proxy used (`None`: direct).
    pub fn with_proxy(mut self, proxy: Option<String>) -> Self {
        self.proxy = proxy;
        self
    }

    /// The line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("records serialise")
    }

    /// Parses a line; `None` for anything else (a torn or foreign line is skipped, not fatal).
    pub fn parse_line(line: &str) -> Option<AuditRecord> {
        serde_json::from_str(line.trim()).ok()
    }

    /// The row it belongs to, if known.
    pub fn row(&self) -> Option<DestinationId> {
        DestinationId::parse(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times() {
        let stamp = |time| {
            AuditRecord::new(
                DestinationId::StepPlugins,
                "p",
                "https://a:443",
                true,
                "",
                time,
            )
            .time
        };
        assert_eq!(stamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_millis(1_738_324_800_123)),
            "2025-01-31T12:00:00.123Z"
        );
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn lines_round_trip() {
        let r = AuditRecord::new(
            DestinationId::StepPlugins,
            "my-step",
            "https://a.example:443",
            false,
            "not granted",
            UNIX_EPOCH,
        );
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(AuditRecord::parse_line(&line), Some(r.clone()));
        assert_eq!(r.row(), Some(DestinationId::StepPlugins));
        assert_eq!(AuditRecord::parse_line("{\"time\":"), None);
    }
}
