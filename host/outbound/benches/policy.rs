//! The cost of the outbound policy check that every outbound request pays before a socket opens.
//!
//! `cargo bench -p octo-outbound --bench policy --profile dev`
//!
//! - `decide/vendor`: a vendor plugin's request (switch + configured origin).
//! - `decide/builtin-step`: a built-in step's request.
//! - `decide/granted-step`: a custom step with 50 grants on record, the matching one last.
//! - `verdict/steps-feed`: the table verdict the host's own feed client asks.
//! - `audit/record-line`: building the audit record line that follows every decision.

use criterion::{Criterion, criterion_group, criterion_main};
use octo_manifest::{Destination, DestinationPattern};
use octo_outbound::audit::AuditRecord;
use octo_outbound::{DestinationId, Grants, PluginRole, decide_plugin, verdict};
use octo_settings::Settings;
use std::hint::black_box;

fn policy(c: &mut Criterion) {
    let settings = Settings {
        update_url: Some("https://updates.example.com/api/update".into()),
        ..Settings::default()
    };
    let mut grants = Grants::default();
    for i in 0..50 {
        grants
            .grant(
                "custom",
                DestinationPattern::parse(&format!("https://host{i}.example.com")).unwrap(),
            )
            .unwrap();
    }
    let vendor_dest = Destination::from_url("https://updates.example.com").unwrap();
    let granted_dest = Destination::from_url("https://host49.example.com").unwrap();
    let mut group = c.benchmark_group("decide");
    group.bench_function("vendor", |b| {
        b.iter(|| {
            decide_plugin(
                black_box(&settings),
                &grants,
                &[],
                PluginRole::Vendor(DestinationId::UpdateCheck),
                "update-check",
                black_box(&vendor_dest),
            )
        })
    });
    group.bench_function("builtin-step", |b| {
        b.iter(|| {
            decide_plugin(
                black_box(&settings),
                &grants,
                &[],
                PluginRole::BuiltInStep,
                "http-health-check",
                black_box(&granted_dest),
            )
        })
    });
    group.bench_function("granted-step", |b| {
        b.iter(|| {
            decide_plugin(
                black_box(&settings),
                &grants,
                &[],
                PluginRole::Step,
                "custom",
                black_box(&granted_dest),
            )
        })
    });
    group.finish();
    c.bench_function("verdict/steps-feed", |b| {
        b.iter(|| verdict(DestinationId::StepsFeed.row(), black_box(&settings)))
    });
    c.bench_function("audit/record-line", |b| {
        b.iter(|| {
            AuditRecord::new(
                DestinationId::UpdateCheck,
                "update-check",
                "https://updates.example.com:443",
                true,
                "upgradeCheck is on",
                std::time::SystemTime::now(),
            )
            .to_line()
        })
    });
}

criterion_group!(benches, policy);
criterion_main!(benches);
