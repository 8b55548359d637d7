//! The one gate of the host's own outbound requests.
//!
//! Every host-side path that reaches a vendor destination — the jobs, the steps feed and library
//! clients, the vendor commands — calls [`check`] first. It asks [`octo_outbound::verdict`] for the
//! destination's row and records the attempt, allowed or denied, in the audit file in one form
//! (`plugin` = `octo:<row>`, the configured endpoint's origin, the verdict's reason). A client is only
//! built from the [`Allowed`] it returns, so no request can skip the gate.

use super::audit::AuditLog;
use crate::error::{Error, Result};
use octo_outbound::audit::AuditRecord;
use octo_outbound::{DestinationId, Gate};
use octo_settings::Settings;
use std::time::SystemTime;

/// Proof that the gate let `row` through (and recorded the attempt).
#[derive(Debug)]
pub struct Allowed {
    row: DestinationId,
}

impl Allowed {
    /// The row that was allowed.
    pub fn row(&self) -> DestinationId {
        self.row
    }
}

/// What the destination is, in a sentence ("the steps feed is disabled ...").
pub fn describe(row: DestinationId) -> &'static str {
    match row {
        DestinationId::StepsFeed => "the steps feed",
        DestinationId::LibraryFeed => "the community step template library",
        DestinationId::UpdateCheck => "the update check",
        DestinationId::Telemetry => "telemetry",
        DestinationId::Experiences => "in-app messages",
        DestinationId::DynamicExtensions => "dynamic extensions",
        DestinationId::Tentacles => "listening tentacles",
        DestinationId::PackageFeeds => "package feeds",
        DestinationId::StepPlugins => "step plugins' own requests",
        DestinationId::StepScripts => "step scripts' requests",
    }
}

/// The settings switch that gates `row`, if it is a vendor destination.
pub fn switch(row: DestinationId) -> Option<&'static str> {
    match row.row().gate {
        Gate::Switch(key) => Some(key),
        _ => None,
    }
}

/// The origin (`scheme://host:port`) of the row's configured endpoint, as the audit records it.
fn origin(row: DestinationId, settings: &Settings) -> String {
    let url = octo_outbound::endpoint_url(row.row(), settings).unwrap_or_default();
    octo_manifest::Destination::from_url(url)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| url.to_string())
}

/// Asks the outbound table whether the host may reach `row` now, and records the attempt. A refusal is
/// [`Error::Denied`] saying what to do instead; no request was made.
pub fn check(audit: &AuditLog, settings: &Settings, row: DestinationId) -> Result<Allowed> {
    let decision = octo_outbound::verdict(row.row(), settings);
    audit.record(&AuditRecord::new(
        row,
        &format!("octo:{}", row.as_str()),
        &origin(row, settings),
        decision.allowed,
        &decision.reason,
        SystemTime::now(),
    ));
    if decision.allowed {
        return Ok(Allowed { row });
    }
    let offline = match row {
        DestinationId::StepsFeed => {
            "; on an air-gapped server install plugins with `octo plugins import BUNDLE_DIR`"
        }
        _ => "",
    };
    Err(Error::Denied(match switch(row) {
        Some(key)
            if !settings.air_gapped() && octo_outbound::switch(settings, key) == Some(false) =>
        {
            format!(
                "{} is disabled ({key}=false), so no request was made; enable it with `octo configure --{key}=true`{offline}",
                describe(row),
            )
        }
        _ => format!(
            "{} is not allowed, so no request was made: {}{offline}",
            describe(row),
            decision.reason
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_and_denied_attempts_are_recorded_alike() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::at(dir.path().join("a.jsonl"), super::super::audit::MAX_BYTES);
        let mut settings = Settings {
            update_url: Some("https://u.test/api/update".into()),
            ..Settings::default()
        };
        assert!(check(&audit, &settings, DestinationId::UpdateCheck).is_ok());
        settings.upgrade_check = false;
        let e = check(&audit, &settings, DestinationId::UpdateCheck).unwrap_err();
        assert!(
            matches!(&e, Error::Denied(m) if m.contains("upgradeCheck=false")),
            "{e}"
        );
        let records = audit.read_all();
        assert_eq!(records.len(), 2);
        assert!(records[0].allowed && !records[1].allowed);
        assert!(
            records
                .iter()
                .all(|r| r.plugin == "octo:update-check" && r.kind == "update-check")
        );
    }
}
