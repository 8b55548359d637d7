//! `octo outbound [--json]`: the "Outbound requests" page as a live report — every destination in the
//! table, why it exists, what makes it, its gate, whether it is allowed now and why, and its last
//! attempts from the audit file.

use super::audit::AuditLog;
use crate::error::{Context, Result};
use crate::home::Home;
use octo_outbound::audit::AuditRecord;
use octo_outbound::{
    Binding, DestinationId, Endpoint, Grants, GrantsFile, OutboundDestination, PluginRole,
};
use octo_settings::Settings;
use serde_json::json;
use std::fmt;
use std::path::PathBuf;

/// How many attempts are shown per destination.
pub const LAST_ATTEMPTS: usize = 5;

/// What `octo outbound` shows: the settings, grants and audit records it is made of.
#[derive(Debug, Clone)]
pub struct OutboundReport {
    /// The settings file.
    pub settings_path: PathBuf,
    /// The settings.
    pub settings: Settings,
    /// The administrator's grants.
    pub grants: GrantsFile,
    /// The audit file.
    pub audit_path: PathBuf,
    /// The store the attempts are in instead, when several nodes share it.
    pub audit_store: Option<String>,
    /// Every attempt still in the audit file, oldest first.
    pub records: Vec<AuditRecord>,
}

/// `octo outbound`: reads what the report is made of.
pub fn report(home: &Home) -> Result<OutboundReport> {
    let settings_path = home.settings();
    let settings = Settings::load(&settings_path).context("cannot read the settings")?;
    let grants = super::grants::load(home)?;
    let audit = AuditLog::in_home(home);
    Ok(OutboundReport {
        settings_path,
        settings,
        grants,
        audit_path: audit.path().to_path_buf(),
        audit_store: audit.store(),
        records: audit.read_all(),
    })
}

fn endpoint_text(row: &OutboundDestination, settings: &Settings) -> String {
    match row.endpoint {
        Endpoint::Setting(key) => format!(
            "{} ({key})",
            octo_outbound::endpoint_url(row, settings).unwrap_or(octo_outbound::NOT_CONFIGURED)
        ),
        Endpoint::PerTarget => "each listening target's address".into(),
        Endpoint::PerFeed => "each configured package feed".into(),
        Endpoint::PerStep => "what each step's manifest declares".into(),
    }
}

/// One grant as the report shows it.
struct GrantVerdict {
    plugin: String,
    binding: Binding,
    destination: String,
    allowed: bool,
    reason: String,
}

/// Each grant with what it lets through now (for the component it is bound to) and why: a grant of
/// one destination gets the policy's decision for it; a wildcard grant, while air-gapped, is cut to
/// the internal networks; an unbound grant lets nothing through.
fn grant_verdicts(settings: &Settings, grants: &GrantsFile) -> Vec<GrantVerdict> {
    grants
        .iter()
        .map(|(id, binding, pattern)| {
            let shown = pattern.to_string();
            let exact = (!shown.contains('*'))
                .then(|| octo_manifest::Destination::from_url(&shown).ok())
                .flatten();
            let mut held = Grants::default();
            let _ = held.grant(id, pattern.clone());
            let (allowed, reason) = match exact {
                _ if *binding == Binding::Unbound => (
                    false,
                    format!(
                        "bound to no component (written before grants named one); `octo plugins grant {id} {shown} --file PATH` binds it"
                    ),
                ),
                Some(destination) => {
                    let d = octo_outbound::decide_plugin(
                        settings,
                        &held,
                        &[],
                        PluginRole::Step,
                        id,
                        &destination,
                    );
                    (d.allowed, d.reason)
                }
                None if !settings.air_gapped() => {
                    (true, "granted by an administrator".to_string())
                }
                None => {
                    let inside: Vec<String> =
                        octo_outbound::internal_patterns(&settings.internal_networks)
                            .iter()
                            .filter_map(|q| pattern.intersect(q))
                            .map(|p| p.to_string())
                            .collect();
                    if inside.is_empty() {
                        (
                            false,
                            format!(
                                "air-gapped: nothing it covers is inside the internal networks ({})",
                                settings.internal_networks
                            ),
                        )
                    } else {
                        (
                            true,
                            format!(
                                "air-gapped: only inside the internal networks ({})",
                                inside.join(", ")
                            ),
                        )
                    }
                }
            };
            GrantVerdict {
                plugin: id.to_string(),
                binding: binding.clone(),
                destination: shown,
                allowed,
                reason,
            }
        })
        .collect()
}

/// The last attempts of a row, newest first.
fn last_attempts(records: &[AuditRecord], id: DestinationId) -> Vec<&AuditRecord> {
    records
        .iter()
        .rev()
        .filter(|r| r.row() == Some(id))
        .take(LAST_ATTEMPTS)
        .collect()
}

impl OutboundReport {
    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        let settings = &self.settings;
        let grants = &self.grants;
        let records = &self.records;
        let verdicts = octo_outbound::verdicts(settings);
        let destinations: Vec<_> = verdicts
            .iter()
            .map(|(row, decision)| {
                let mut v = serde_json::to_value(row).expect("rows serialise");
                let o = v.as_object_mut().expect("an object");
                o.insert("componentLabel".into(), row.component.label().into());
                o.insert("gateDescription".into(), row.gate.describe().into());
                o.insert(
                    "url".into(),
                    octo_outbound::endpoint_url(row, settings).into(),
                );
                o.insert(
                    "endpointDescription".into(),
                    endpoint_text(row, settings).into(),
                );
                o.insert("allowed".into(), decision.allowed.into());
                o.insert("reason".into(), decision.reason.clone().into());
                if row.id == DestinationId::StepPlugins {
                    let list: Vec<_> = grant_verdicts(settings, grants)
                        .into_iter()
                        .map(|g| {
                            json!({
                                "plugin": g.plugin,
                                "component": super::grants::binding_json(&g.binding),
                                "destination": g.destination,
                                "allowed": g.allowed,
                                "reason": g.reason,
                            })
                        })
                        .collect();
                    o.insert("grants".into(), list.into());
                    o.insert(
                        "internalNetworks".into(),
                        serde_json::to_value(&settings.internal_networks)
                            .expect("networks serialise"),
                    );
                }
                o.insert(
                    "lastAttempts".into(),
                    serde_json::to_value(last_attempts(records, row.id))
                        .expect("records serialise"),
                );
                v
            })
            .collect();
        json!({
            "settingsFile": self.settings_path.display().to_string(),
            "airGapped": settings.air_gapped(),
            "internalNetworks": serde_json::to_value(&settings.internal_networks).expect("networks serialise"),
            "auditFile": self.audit_path.display().to_string(),
            "auditStore": self.audit_store,
            "destinations": destinations,
            "inbound": [{
                "name": "Polling tentacles",
                "port": settings.comms_listen_port,
                "setting": octo_settings::keys::COMMS_LISTEN_PORT,
            }],
        })
    }
}

impl fmt::Display for OutboundReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        let grants = &self.grants;
        let records = &self.records;
        // Records name their node when several nodes share the audit; shown once there are two.
        let several_nodes = records
            .iter()
            .filter_map(|r| r.node.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1;
        writeln!(
            f,
            "Outbound requests of this server (settings: {}; air-gapped: {}; internal networks: {})",
            self.settings_path.display(),
            if settings.air_gapped() { "yes" } else { "no" },
            settings.internal_networks
        )?;
        for (row, decision) in &octo_outbound::verdicts(settings) {
            writeln!(f)?;
            writeln!(
                f,
                "{} [{}]: {}",
                row.name,
                row.id.as_str(),
                if decision.allowed {
                    "ALLOWED"
                } else {
                    "DENIED"
                }
            )?;
            let mut field = |label: &str, value: &str| writeln!(f, "  {label:<9} {value}");
            field("why", row.purpose)?;
            field("sends", &format!("{}; {}", row.sends, row.schedule))?;
            field("made by", row.component.label())?;
            field("gate", &row.gate.describe())?;
            field("to", &endpoint_text(row, settings))?;
            field("now", &decision.reason)?;
            if row.id == DestinationId::StepPlugins {
                field("internal", &settings.internal_networks.to_string())?;
                let list = grant_verdicts(settings, grants);
                if list.is_empty() {
                    field("grants", "none")?;
                }
                for (i, g) in list.iter().enumerate() {
                    field(
                        if i == 0 { "grants" } else { "" },
                        &format!(
                            "{} ({}) -> {}: {} ({})",
                            g.plugin,
                            g.binding,
                            g.destination,
                            if g.allowed { "allowed" } else { "DENIED" },
                            g.reason
                        ),
                    )?;
                }
            }
            let attempts = last_attempts(records, row.id);
            if attempts.is_empty() {
                field("last", "no attempts recorded")?;
            } else {
                for (i, a) in attempts.iter().enumerate() {
                    let line = format!(
                        "{} {} {} {}{}{}{}",
                        a.time,
                        if a.allowed { "allowed" } else { "DENIED " },
                        a.plugin,
                        a.destination,
                        match &a.target {
                            Some(target) => format!(" (on target {target})"),
                            None => String::new(),
                        },
                        match &a.node {
                            Some(node) if several_nodes => format!(" (node {node})"),
                            _ => String::new(),
                        },
                        if a.allowed {
                            String::new()
                        } else {
                            format!(": {}", a.reason)
                        }
                    );
                    field(if i == 0 { "last" } else { "" }, &line)?;
                }
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "Inbound: polling tentacles connect to port {} ({}).",
            settings.comms_listen_port,
            octo_settings::keys::COMMS_LISTEN_PORT
        )?;
        match &self.audit_store {
            Some(store) => writeln!(
                f,
                "Attempts are recorded in the store ({store}), by every node sharing it."
            ),
            None => writeln!(f, "Attempts are recorded in {}.", self.audit_path.display()),
        }
    }
}
