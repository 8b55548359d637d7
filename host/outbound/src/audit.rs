//! The audit record of outbound attempts: one JSON object per line.
//!
//! ```json
//! {"time":"2025-01-31T12:00:00.123Z","kind":"step-plugins","plugin":"my-step","destination":"https://api.example.com:443","allowed":false,"reason":"..."}
//! ```
//!
//! `kind` is the table row ([`DestinationId`]) the attempt belongs to; `plugin` is the plugin id, or for
//! the host's own clients the component (`octo:steps-feed`). `destination` is an origin only
//! (`scheme://host:port`): never a path or a query, which may carry secrets. The file itself (where,
//! rotation) is the binary's business; this module is the format.

use crate::DestinationId;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

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
            time: rfc3339(time),
            kind: kind.as_str().to_string(),
            plugin: plugin.to_string(),
            destination: destination.to_string(),
            allowed,
            reason: reason.to_string(),
        }
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

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_738_324_800_123)),
            "2025-01-31T12:00:00.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
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
