use super::*;
use std::collections::HashSet;

fn dest(url: &str) -> Destination {
    Destination::from_url(url).unwrap()
}

fn pat(s: &str) -> DestinationPattern {
    DestinationPattern::parse(s).unwrap()
}

fn gapped() -> Settings {
    let mut s = Settings::default();
    s.set_air_gapped(true);
    s
}

/// Air-gapped, then only `key` on.
fn only(key: &str) -> Settings {
    let mut s = gapped();
    match key {
        keys::UPGRADE_CHECK => s.upgrade_check = true,
        keys::SEND_TELEMETRY => s.send_telemetry = true,
        keys::DYNAMIC_EXTENSIONS_ENABLED => s.dynamic_extensions_enabled = true,
        keys::EXPERIENCES_ENABLED => s.experiences_enabled = true,
        keys::STEP_TEMPLATE_UPDATES => s.step_template_updates = true,
        keys::COMMUNITY_STEP_TEMPLATES => s.community_step_templates = true,
        _ => panic!("{key}"),
    }
    s
}

const VENDOR_PLUGINS: [DestinationId; 4] = [
    DestinationId::UpdateCheck,
    DestinationId::Telemetry,
    DestinationId::Experiences,
    DestinationId::DynamicExtensions,
];

#[test]
fn the_table_is_complete_and_consistent() {
    let ids: HashSet<_> = DESTINATIONS.iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), DESTINATIONS.len(), "one row per id");
    assert_eq!(ids.len(), 9);
    for row in DESTINATIONS {
        assert_eq!(row.id.row().id_str, row.id_str);
        assert_eq!(DestinationId::parse(row.id.as_str()), Some(row.id));
        assert!(!row.purpose.is_empty() && !row.sends.is_empty() && !row.schedule.is_empty());
        // Vendor switches gate exactly the rows whose endpoint comes from the settings.
        assert_eq!(
            matches!(row.gate, Gate::Switch(_)),
            matches!(row.endpoint, Endpoint::Setting(_)),
            "{}",
            row.name
        );
    }
    // Every vendor switch gates exactly one row.
    for key in keys::VENDOR_SWITCHES {
        let gated: Vec<_> = DESTINATIONS
            .iter()
            .filter(|d| d.gate == Gate::Switch(key))
            .collect();
        assert_eq!(gated.len(), 1, "{key}");
    }
    let json = serde_json::to_value(DESTINATIONS).unwrap();
    assert_eq!(json[2]["id"], "update-check");
    assert_eq!(json[2]["gate"]["setting"], "upgradeCheck");
    assert_eq!(json[2]["endpoint"]["setting"], "updateUrl");
    assert_eq!(json[2]["component"], "update-check-plugin");
}

#[test]
fn defaults_allow_everything_by_its_own_rules() {
    let s = Settings::default();
    for (row, d) in verdicts(&s) {
        assert!(d.allowed, "{}: {}", row.name, d.reason);
    }
    assert_eq!(
        endpoint_url(DestinationId::UpdateCheck.row(), &s),
        Some(octo_settings::DEFAULT_UPDATE_URL)
    );
    assert_eq!(endpoint_url(DestinationId::Tentacles.row(), &s), None);
}

#[test]
fn air_gapped_denies_every_vendor_destination_and_plugins() {
    let s = gapped();
    for (row, d) in verdicts(&s) {
        let expect_allowed = row.gate == Gate::Configuration;
        assert_eq!(d.allowed, expect_allowed, "{}: {}", row.name, d.reason);
        if !d.allowed {
            assert!(d.reason.starts_with("air-gapped"), "{}", d.reason);
        }
    }
    let mut grants = Grants::default();
    grants.grant("custom", pat("https://*:*")).unwrap();
    let d = dest("https://api.example.com");
    for role in [PluginRole::Step, PluginRole::BuiltInStep] {
        let decision = decide_plugin(&s, &grants, &[pat("https://*:*")], role, "custom", &d);
        assert!(!decision.allowed, "{role:?}");
        assert!(decision.reason.starts_with("air-gapped"));
    }
}

#[test]
fn each_switch_alone_enables_exactly_its_vendor_destination() {
    for key in keys::VENDOR_SWITCHES {
        let s = only(key);
        for (row, d) in verdicts(&s) {
            if let Gate::Switch(gate) = row.gate {
                assert_eq!(
                    d.allowed,
                    gate == *key,
                    "{key} on: {} {}",
                    row.name,
                    d.reason
                );
            }
        }
        // And for the vendor plugins, at their own configured endpoints.
        for id in VENDOR_PLUGINS {
            let url = endpoint_url(id.row(), &s).unwrap();
            let decision = decide_plugin(
                &s,
                &Grants::default(),
                &[],
                PluginRole::Vendor(id),
                id.as_str(),
                &dest(url),
            );
            assert_eq!(
                decision.allowed,
                id.row().gate == Gate::Switch(key),
                "{key} on, {}: {}",
                id.as_str(),
                decision.reason
            );
        }
    }
}

#[test]
fn a_switch_off_names_the_flag_that_turns_it_on() {
    let s = Settings {
        send_telemetry: false,
        ..Settings::default()
    };
    let d = verdict(DestinationId::Telemetry.row(), &s);
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "sendTelemetry is off; `octo configure --sendTelemetry=true` enables it"
    );
}

#[test]
fn vendor_plugins_reach_only_their_configured_endpoint() {
    let s = Settings {
        update_url: "http://127.0.0.1:8080/api/update".into(),
        ..Settings::default()
    };
    let role = PluginRole::Vendor(DestinationId::UpdateCheck);
    let g = Grants::default();
    assert!(
        decide_plugin(
            &s,
            &g,
            &[],
            role,
            "update-check",
            &dest("http://127.0.0.1:8080/x")
        )
        .allowed
    );
    let other = decide_plugin(
        &s,
        &g,
        &[],
        role,
        "update-check",
        &dest("http://127.0.0.1:8081"),
    );
    assert!(!other.allowed);
    assert!(
        other
            .reason
            .contains("may only reach http://127.0.0.1:8080"),
        "{}",
        other.reason
    );
    // The telemetry endpoint is not the update check's, even though the plugin might declare it.
    let telemetry = dest(&s.telemetry_url);
    assert!(!decide_plugin(&s, &g, &[], role, "update-check", &telemetry).allowed);
    // Grants do not widen a vendor plugin.
    let mut grants = Grants::default();
    grants.grant("update-check", pat("https://*:*")).unwrap();
    assert!(
        !decide_plugin(
            &s,
            &grants,
            &[pat("https://*:*")],
            role,
            "update-check",
            &telemetry
        )
        .allowed
    );
}

#[test]
fn steps_need_grants_built_in_steps_do_not() {
    let s = Settings::default();
    let d = dest("https://api.example.com/v1");
    let none = Grants::default();
    let denied = decide_plugin(&s, &none, &[], PluginRole::Step, "my-step", &d);
    assert!(!denied.allowed);
    assert!(
        denied
            .reason
            .contains("`octo plugins grant my-step https://api.example.com:443`"),
        "{}",
        denied.reason
    );
    assert!(
        decide_plugin(
            &s,
            &none,
            &[],
            PluginRole::BuiltInStep,
            "http-health-check",
            &d
        )
        .allowed
    );

    let mut grants = Grants::default();
    grants
        .grant("my-step", pat("https://*.example.com"))
        .unwrap();
    let ok = decide_plugin(&s, &grants, &[], PluginRole::Step, "my-step", &d);
    assert!(
        ok.allowed && ok.reason.contains("https://*.example.com:443"),
        "{}",
        ok.reason
    );
    // Grants are per plugin.
    assert!(!decide_plugin(&s, &grants, &[], PluginRole::Step, "other", &d).allowed);
    // A one-run grant.
    let run = decide_plugin(
        &s,
        &none,
        &[pat("https://api.example.com")],
        PluginRole::Step,
        "x",
        &d,
    );
    assert!(
        run.allowed && run.reason.contains("--allow-outbound"),
        "{}",
        run.reason
    );
    assert!(
        !decide_plugin(
            &s,
            &none,
            &[pat("http://api.example.com")],
            PluginRole::Step,
            "x",
            &d
        )
        .allowed
    );
}

#[test]
fn roles_map_to_rows() {
    assert_eq!(PluginRole::Step.row(), DestinationId::StepPlugins);
    assert_eq!(
        PluginRole::Vendor(DestinationId::Telemetry).row(),
        DestinationId::Telemetry
    );
    assert_eq!(DestinationId::for_plugin_kind(PluginKind::Step), None);
    assert_eq!(
        DestinationId::for_plugin_kind(PluginKind::UpdateCheck),
        Some(DestinationId::UpdateCheck)
    );
}

#[test]
fn remote_grants_never_allow_more_than_the_local_decision() {
    let mut grants = Grants::default();
    grants.grant("custom", pat("https://ok.example")).unwrap();
    let one_run = [pat("http://10.0.0.1:8080")];
    let probes = [
        "https://ok.example",
        "http://10.0.0.1:8080",
        "https://other.example",
        "http://127.0.0.1:1",
        octo_settings::DEFAULT_UPDATE_URL,
        octo_settings::DEFAULT_TELEMETRY_URL,
    ];
    let roles = [
        PluginRole::Step,
        PluginRole::BuiltInStep,
        PluginRole::Vendor(DestinationId::UpdateCheck),
    ];
    let mut settings = vec![Settings::default(), gapped()];
    settings.extend(keys::VENDOR_SWITCHES.iter().map(|k| only(k)));
    for s in &settings {
        for role in roles {
            let list = remote_grants(s, &grants, &one_run, role, "custom");
            for probe in probes {
                let d = dest(probe);
                let remote = list.iter().any(|p| p.matches(&d));
                let local = decide_plugin(s, &grants, &one_run, role, "custom", &d).allowed;
                assert_eq!(
                    remote,
                    local,
                    "{role:?} {probe} air-gapped={}",
                    s.air_gapped()
                );
            }
        }
    }
    assert!(remote_grants(&gapped(), &grants, &one_run, PluginRole::Step, "custom").is_empty());
}
