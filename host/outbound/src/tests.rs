use super::*;
use std::collections::HashSet;

fn dest(url: &str) -> Destination {
    Destination::from_url(url).unwrap()
}

fn pat(s: &str) -> DestinationPattern {
    DestinationPattern::parse(s).unwrap()
}

/// Defaults with every endpoint configured.
fn configured() -> Settings {
    Settings {
        feed_url: Some("https://steps.vendor.test/feed".into()),
        library_feed_url: Some("https://library.vendor.test".into()),
        update_url: Some(UPDATE_URL.into()),
        telemetry_url: Some(TELEMETRY_URL.into()),
        experiences_url: Some("https://api.vendor.test/api/experiences".into()),
        dynamic_extensions_url: Some("https://api.vendor.test/api/dynamic-extensions".into()),
        ..Settings::default()
    }
}

const UPDATE_URL: &str = "https://api.vendor.test/api/update";
const TELEMETRY_URL: &str = "https://api.vendor.test/api/telemetry";

fn gapped() -> Settings {
    let mut s = configured();
    s.set_air_gapped(true);
    s
}

/// Air-gapped with these internal networks.
fn gapped_with(networks: &str) -> Settings {
    let mut s = gapped();
    s.internal_networks = octo_settings::InternalNetworks::parse_list(networks).unwrap();
    s
}

/// Not air-gapped, every vendor switch off, then only `key` on.
fn only(key: &str) -> Settings {
    let mut s = configured();
    for (k, _) in Settings::default().vendor_switches() {
        set_switch(&mut s, k, false);
    }
    set_switch(&mut s, key, true);
    s
}

fn set_switch(s: &mut Settings, key: &str, on: bool) {
    match key {
        keys::UPGRADE_CHECK => s.upgrade_check = on,
        keys::SEND_TELEMETRY => s.send_telemetry = on,
        keys::DYNAMIC_EXTENSIONS_ENABLED => s.dynamic_extensions_enabled = on,
        keys::EXPERIENCES_ENABLED => s.experiences_enabled = on,
        keys::STEP_TEMPLATE_UPDATES => s.step_template_updates = on,
        keys::COMMUNITY_STEP_TEMPLATES => s.community_step_templates = on,
        _ => panic!("{key}"),
    }
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
    assert_eq!(ids.len(), 10);
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
    let s = configured();
    for (row, d) in verdicts(&s) {
        assert!(d.allowed, "{}: {}", row.name, d.reason);
    }
    assert_eq!(
        endpoint_url(DestinationId::UpdateCheck.row(), &s),
        Some(UPDATE_URL)
    );
    assert_eq!(endpoint_url(DestinationId::Tentacles.row(), &s), None);
}

#[test]
fn an_unset_endpoint_is_not_configured_and_makes_no_request() {
    // The defaults: every switch on, no endpoint set.
    let s = Settings::default();
    for (row, d) in verdicts(&s) {
        match row.endpoint {
            Endpoint::Setting(key) => {
                assert!(!d.allowed, "{}", row.name);
                assert!(
                    d.reason.contains(&format!("{key} is not configured"))
                        && d.reason.contains(&format!("--{key}=URL")),
                    "{}",
                    d.reason
                );
                assert_eq!(endpoint_url(row, &s), None);
            }
            _ => assert!(d.allowed, "{}: {}", row.name, d.reason),
        }
    }
    let id = DestinationId::Telemetry;
    let p = decide_plugin(
        &s,
        &Grants::default(),
        &[],
        PluginRole::Vendor(id),
        "telemetry",
        &dest(TELEMETRY_URL),
    );
    assert!(!p.allowed);
    assert!(remote_grants(&s, &Grants::default(), &[], PluginRole::Vendor(id), "t").is_empty());
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
        ..configured()
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
        update_url: Some("http://127.0.0.1:8080/api/update".into()),
        ..configured()
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
    let telemetry = dest(s.telemetry_url.as_deref().unwrap());
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
        UPDATE_URL,
        TELEMETRY_URL,
    ];
    let roles = [
        PluginRole::Step,
        PluginRole::BuiltInStep,
        PluginRole::Vendor(DestinationId::UpdateCheck),
    ];
    let mut settings = vec![
        configured(),
        Settings::default(),
        gapped(),
        gapped_with("ok.example,127.0.0.1"),
        gapped_with("*.example,10.0.0.1"),
    ];
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

#[test]
fn the_air_gap_denies_every_vendor_destination_and_lifting_it_restores_the_switches() {
    // Telemetry off, everything else on; then air-gapped.
    let mut s = Settings {
        send_telemetry: false,
        ..configured()
    };
    s.set_air_gapped(true);
    for id in VENDOR_PLUGINS {
        let row = id.row();
        let d = verdict(row, &s);
        assert!(!d.allowed, "{}", row.name);
        assert!(
            d.reason.starts_with("air-gapped") && d.reason.contains("--airGapped=false"),
            "{}",
            d.reason
        );
        let url = endpoint_url(row, &s).unwrap();
        let p = decide_plugin(
            &s,
            &Grants::default(),
            &[],
            PluginRole::Vendor(id),
            "v",
            &dest(url),
        );
        assert!(!p.allowed);
    }
    // Lifting it: each switch is back to what it said, telemetry stays off.
    s.set_air_gapped(false);
    for (row, d) in verdicts(&s) {
        if let Gate::Switch(key) = row.gate {
            assert_eq!(
                d.allowed,
                key != keys::SEND_TELEMETRY,
                "{}: {}",
                row.name,
                d.reason
            );
        }
    }
}

#[test]
fn air_gapped_steps_reach_only_declared_granted_internal_destinations() {
    let s = gapped_with("10.0.0.0/8,*.corp.example");
    let mut grants = Grants::default();
    grants.grant("custom", pat("http://10.1.2.3:8080")).unwrap();
    grants
        .grant("custom", pat("https://api.example.com"))
        .unwrap();
    let decide = |role, url: &str| decide_plugin(&s, &grants, &[], role, "custom", &dest(url));

    // Built-in: inside the list is enough.
    let ok = decide(PluginRole::BuiltInStep, "https://svc.corp.example/health");
    assert!(ok.allowed, "{}", ok.reason);
    assert!(ok.reason.contains("*.corp.example"), "{}", ok.reason);
    // Custom: inside the list and granted.
    let ok = decide(PluginRole::Step, "http://10.1.2.3:8080/x");
    assert!(
        ok.allowed && ok.reason.contains("10.0.0.0/8"),
        "{}",
        ok.reason
    );
    // Custom, inside the list but not granted: the grant rule says why.
    let no = decide(PluginRole::Step, "https://svc.corp.example");
    assert!(
        !no.allowed && no.reason.contains("octo plugins grant"),
        "{}",
        no.reason
    );
    // Granted, but outside the list: the air gap says why.
    for role in [PluginRole::Step, PluginRole::BuiltInStep] {
        let no = decide(role, "https://api.example.com");
        assert!(!no.allowed, "{role:?}");
        assert!(
            no.reason.starts_with("air-gapped")
                && no.reason.contains("not inside the internal networks"),
            "{}",
            no.reason
        );
    }
    // One-run grants do not open anything outside the list either.
    let one_run = [pat("https://*:*")];
    assert!(
        !decide_plugin(
            &s,
            &grants,
            &one_run,
            PluginRole::Step,
            "custom",
            &dest("https://x.example")
        )
        .allowed
    );
    // The row says what is allowed.
    let row = verdict(DestinationId::StepPlugins.row(), &s);
    assert!(
        row.allowed && row.reason.contains("10.0.0.0/8,*.corp.example"),
        "{}",
        row.reason
    );
    // Not air-gapped: the list plays no part.
    let mut open = s.clone();
    open.set_air_gapped(false);
    assert!(
        decide_plugin(
            &open,
            &grants,
            &[],
            PluginRole::Step,
            "custom",
            &dest("https://api.example.com")
        )
        .allowed
    );
}

#[test]
fn internal_networks_become_patterns_where_a_pattern_can_say_them() {
    let networks = octo_settings::InternalNetworks::parse_list(
        "10.0.0.0/8,127.0.0.1,::1,*.corp.example,build.lan",
    )
    .unwrap();
    let shown: Vec<String> = internal_patterns(&networks)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "http://127.0.0.1:*",
            "https://127.0.0.1:*",
            "tcp://127.0.0.1:*",
            "http://[::1]:*",
            "https://[::1]:*",
            "tcp://[::1]:*",
            "http://*.corp.example:*",
            "https://*.corp.example:*",
            "tcp://*.corp.example:*",
            "http://build.lan:*",
            "https://build.lan:*",
            "tcp://build.lan:*",
        ]
    );
}
