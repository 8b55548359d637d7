//! `octo outbound [--json]`: the "Outbound requests" page as a live report — every destination in the
//! table, why it exists, what makes it, its gate, whether it is allowed now and why, and its last
//! attempts from the audit file.

use super::audit::AuditLog;
use crate::home::Home;
use anyhow::Context;
use octo_outbound::audit::AuditRecord;
use octo_outbound::{DestinationId, Endpoint, OutboundDestination};
use octo_settings::Settings;
use serde_json::json;
use std::process::ExitCode;

/// How many attempts are shown per destination.
pub const LAST_ATTEMPTS: usize = 5;

/// `octo outbound` options.
#[derive(Debug, clap::Args)]
pub struct OutboundArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn endpoint_text(row: &OutboundDestination, settings: &Settings) -> String {
    match row.endpoint {
        Endpoint::Setting(key) => format!(
            "{} ({key})",
            octo_outbound::endpoint_url(row, settings).unwrap_or_default()
        ),
        Endpoint::PerTarget => "each listening target's address".into(),
        Endpoint::PerFeed => "each configured package feed".into(),
        Endpoint::PerStep => "what each step's manifest declares".into(),
    }
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

/// `octo outbound`.
pub fn run(home: &Home, args: OutboundArgs) -> anyhow::Result<ExitCode> {
    let path = Settings::path_in(home.root());
    let settings = Settings::load(&path).context("cannot read the settings")?;
    let grants = super::grants::load(home)?;
    let audit = AuditLog::in_home(home);
    let records = audit.read_all();
    let verdicts = octo_outbound::verdicts(&settings);

    if args.json {
        let destinations: Vec<_> = verdicts
            .iter()
            .map(|(row, decision)| {
                let mut v = serde_json::to_value(row).expect("rows serialise");
                let o = v.as_object_mut().expect("an object");
                o.insert("componentLabel".into(), row.component.label().into());
                o.insert("gateDescription".into(), row.gate.describe().into());
                o.insert(
                    "url".into(),
                    octo_outbound::endpoint_url(row, &settings).into(),
                );
                o.insert(
                    "endpointDescription".into(),
                    endpoint_text(row, &settings).into(),
                );
                o.insert("allowed".into(), decision.allowed.into());
                o.insert("reason".into(), decision.reason.clone().into());
                if row.id == DestinationId::StepPlugins {
                    let list: Vec<_> = grants
                        .iter()
                        .map(|(id, p)| json!({ "plugin": id, "destination": p.to_string() }))
                        .collect();
                    o.insert("grants".into(), list.into());
                }
                o.insert(
                    "lastAttempts".into(),
                    serde_json::to_value(last_attempts(&records, row.id))
                        .expect("records serialise"),
                );
                v
            })
            .collect();
        let report = json!({
            "settingsFile": path.display().to_string(),
            "airGapped": settings.air_gapped(),
            "auditFile": audit.path().display().to_string(),
            "destinations": destinations,
            "inbound": [{
                "name": "Polling tentacles",
                "port": settings.comms_listen_port,
                "setting": octo_settings::keys::COMMS_LISTEN_PORT,
            }],
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "Outbound requests of this server (settings: {}; air-gapped: {})",
        path.display(),
        if settings.air_gapped() { "yes" } else { "no" }
    );
    for (row, decision) in &verdicts {
        println!();
        println!(
            "{} [{}]: {}",
            row.name,
            row.id.as_str(),
            if decision.allowed {
                "ALLOWED"
            } else {
                "DENIED"
            }
        );
        let field = |label: &str, value: &str| println!("  {label:<9} {value}");
        field("why", row.purpose);
        field("sends", &format!("{}; {}", row.sends, row.schedule));
        field("made by", row.component.label());
        field("gate", &row.gate.describe());
        field("to", &endpoint_text(row, &settings));
        field("now", &decision.reason);
        if row.id == DestinationId::StepPlugins {
            let list: Vec<String> = grants
                .iter()
                .map(|(id, p)| format!("{id} -> {p}"))
                .collect();
            field(
                "grants",
                &if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                },
            );
        }
        let attempts = last_attempts(&records, row.id);
        if attempts.is_empty() {
            field("last", "no attempts recorded");
        } else {
            for (i, a) in attempts.iter().enumerate() {
                let line = format!(
                    "{} {} {} {}{}",
                    a.time,
                    if a.allowed { "allowed" } else { "DENIED " },
                    a.plugin,
                    a.destination,
                    if a.allowed {
                        String::new()
                    } else {
                        format!(": {}", a.reason)
                    }
                );
                field(if i == 0 { "last" } else { "" }, &line);
            }
        }
    }
    println!();
    println!(
        "Inbound: polling tentacles connect to port {} ({}).",
        settings.comms_listen_port,
        octo_settings::keys::COMMS_LISTEN_PORT
    );
    println!("Attempts are recorded in {}.", audit.path().display());
    Ok(ExitCode::SUCCESS)
}
