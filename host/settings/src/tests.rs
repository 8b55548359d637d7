use super::*;
use std::os::unix::fs::PermissionsExt;

fn temp_home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn defaults_are_all_on_and_never_reach_a_real_host() {
    let s = Settings::default();
    assert!(s.vendor_switches().iter().all(|(_, on)| *on));
    assert!(!s.air_gapped());
    assert_eq!(s.comms_listen_port, 10943);
    // No endpoint is set, so nothing is asked of anyone (not even DNS).
    for (key, url) in s.endpoints() {
        assert_eq!(url, None, "{key}");
    }
    assert!(!s.to_toml().unwrap().contains("http"));
    s.validate().unwrap();
}

#[test]
fn old_placeholder_endpoints_load_as_unset() {
    // What the previous version wrote for a fresh install.
    let old = "upgradeCheck = true\nfeed = \"https://steps.octo.example/feed\"\n\
               libraryFeed = \"https://library.octo.example\"\n\
               updateUrl = \"https://api.octo.example/api/update\"\n\
               telemetryUrl = \"https://api.octo.example/api/telemetry\"\n\
               experiencesUrl = \"https://api.octo.example/api/experiences\"\n\
               dynamicExtensionsUrl = \"https://api.octo.example/api/dynamic-extensions\"\n\
               commsListenPort = 10943\n";
    let s = Settings::parse(old, Path::new("octo.toml")).unwrap();
    assert_eq!(s, Settings::default());
    // A real endpoint stays.
    let s = Settings::parse(
        "updateUrl = \"https://u.test/api/update\"\n",
        Path::new("f"),
    )
    .unwrap();
    assert_eq!(
        s.endpoint(keys::UPDATE_URL),
        Some("https://u.test/api/update")
    );
    assert_eq!(s.endpoint(keys::TELEMETRY_URL), None);
}

#[test]
fn missing_file_means_defaults() {
    let home = temp_home();
    let s = Settings::load(&Settings::path_in(home.path())).unwrap();
    assert_eq!(s, Settings::default());
    assert!(
        entries(home.path()).is_empty(),
        "load must not create files"
    );
}

#[test]
fn round_trip_with_every_field() {
    let home = temp_home();
    let path = Settings::path_in(home.path());
    let s = Settings {
        air_gapped: true,
        internal_networks: InternalNetworks::parse_list("10.0.0.0/8,fd00::/8,build.corp").unwrap(),
        upgrade_check: false,
        send_telemetry: false,
        dynamic_extensions_enabled: true,
        experiences_enabled: false,
        step_template_updates: true,
        community_step_templates: false,
        feed_url: Some("http://127.0.0.1:8080/feed".into()),
        feed_public_key: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
        feed_trusted_certificate: Some("/etc/octo/ca.pem".into()),
        library_feed_url: Some("http://127.0.0.1:8080".into()),
        update_url: Some("https://u.test/api/update".into()),
        telemetry_url: Some("https://t.test/api/telemetry".into()),
        experiences_url: Some("https://e.test/x".into()),
        dynamic_extensions_url: Some("https://d.test/y".into()),
        installation_id: Some("6f1c1f0e-0000-4000-8000-000000000000".into()),
        comms_listen_port: 0,
        script_network: crate::ScriptNetwork::Confined,
        database: Some("postgres://octo:pw@db.corp:5432/octo".into()),
        web_proxy: WebProxySettings {
            enabled: true,
            use_system_proxy: false,
            host: Some("proxy.corp".into()),
            port: Some(3128),
            username: Some("u".into()),
            password: Some("pw".into()),
        },
        proxies: [(
            "dmz".to_string(),
            NamedProxy {
                host: "10.0.0.1".into(),
                port: 8080,
                username: None,
                password: None,
            },
        )]
        .into(),
        limits: [("maxLogBytes".to_string(), 1_048_576)].into(),
    };
    s.save(&path).unwrap();
    assert_eq!(Settings::load(&path).unwrap(), s);
    let text = std::fs::read_to_string(&path).unwrap();
    for line in [
        "upgradeCheck = false",
        "sendTelemetry = false",
        "dynamicExtensionsEnabled = true",
        "feed = \"http://127.0.0.1:8080/feed\"",
        "feedCertificate = \"/etc/octo/ca.pem\"",
        "libraryFeed = ",
        "installationId = ",
        "commsListenPort = 0",
        "[limits]",
        "maxLogBytes = 1048576",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn hand_written_file_with_some_keys() {
    let s = Settings::parse(
        "upgradeCheck = false\nfeed = \"http://localhost:9/feed\"\n",
        Path::new("octo.toml"),
    )
    .unwrap();
    assert!(!s.upgrade_check && s.send_telemetry);
    assert_eq!(s.feed_url.as_deref(), Some("http://localhost:9/feed"));
    assert_eq!(s.update_url, None);
}

#[test]
fn unknown_key_is_named() {
    let e = Settings::parse("upgradeChek = false\n", Path::new("/h/octo.toml")).unwrap_err();
    assert!(matches!(&e, SettingsError::UnknownKey { key, .. } if key == "upgradeChek"));
    let text = e.to_string();
    assert!(
        text.contains("/h/octo.toml") && text.contains("\"upgradeChek\""),
        "{text}"
    );
    assert!(
        text.contains("upgradeCheck"),
        "lists the known keys: {text}"
    );
    // Kebab-case is a flag alias, not a file key.
    assert!(Settings::parse("upgrade-check = false\n", Path::new("f")).is_err());
}

#[test]
fn wrong_types_and_values_name_the_key() {
    for (text, key) in [
        ("sendTelemetry = \"maybe\"\n", "sendTelemetry"),
        (
            "upgradeCheck = true\ncommsListenPort = 70000\n",
            "commsListenPort",
        ),
        ("feed = 3\n", "feed"),
        ("telemetryUrl = \"ftp://x/\"\n", "telemetryUrl"),
        ("updateUrl = \"not a url\"\n", "updateUrl"),
        ("libraryFeed = \"https://user:pw@h/\"\n", "libraryFeed"),
        ("feedPublicKey = \"abc\"\n", "feedPublicKey"),
        ("installationId = \"\"\n", "installationId"),
    ] {
        let e = Settings::parse(text, Path::new("octo.toml")).unwrap_err();
        assert_eq!(e.key(), Some(key), "{text}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("octo.toml: {key}: ")), "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
    }
}

#[test]
fn syntax_errors_are_one_line_with_the_line_number() {
    let e = Settings::parse("upgradeCheck = true\nfeed = \n", Path::new("octo.toml")).unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, SettingsError::Syntax { .. }));
    assert!(shown.contains("line 2"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn save_is_private_and_leaves_no_temp_files() {
    let home = temp_home();
    let dir = home.path().join("new-home");
    let path = Settings::path_in(&dir);
    Settings::default().save(&path).unwrap();
    Settings::default().save(&path).unwrap(); // replacing works too
    assert_eq!(entries(&dir), vec![FILE_NAME.to_string()]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn an_old_file_with_loose_permissions_becomes_private() {
    let home = temp_home();
    let path = Settings::path_in(home.path());
    std::fs::write(&path, "upgradeCheck = false\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    Settings::update(&path, |s| {
        s.send_telemetry = false;
        Ok(())
    })
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let s = Settings::load(&path).unwrap();
    assert!(!s.upgrade_check && !s.send_telemetry);
}

#[test]
fn invalid_settings_are_never_written() {
    let home = temp_home();
    let path = Settings::path_in(home.path());
    Settings::default().save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = Settings::update(&path, |s| {
        s.upgrade_check = false;
        s.feed_url = Some("gopher://x".into());
        Ok(())
    })
    .unwrap_err();
    assert_eq!(e.key(), Some("feed"));
    let e = Settings::update(&path, |s| {
        s.upgrade_check = false;
        Err(SettingsError::invalid("upgradeCheck", "refused"))
    })
    .unwrap_err();
    assert_eq!(e.key(), Some("upgradeCheck"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let mut names = entries(home.path());
    names.retain(|n| n != "octo.toml.lock");
    assert_eq!(names, vec![FILE_NAME.to_string()]);
}

#[test]
fn concurrent_updates_lose_nothing() {
    let home = temp_home();
    let path = Settings::path_in(home.path());
    // Each thread increments the port under the lock; without the lock some increments would be lost.
    Settings {
        comms_listen_port: 1000,
        ..Settings::default()
    }
    .save(&path)
    .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    Settings::update(&path, |s| {
                        s.comms_listen_port += 1;
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(Settings::load(&path).unwrap().comms_listen_port, 1080);
}

#[test]
fn air_gapped_is_stored_and_leaves_the_vendor_switches_alone() {
    let mut s = Settings {
        send_telemetry: false,
        ..Settings::default()
    };
    s.set_air_gapped(true);
    assert!(s.air_gapped());
    // The switches keep their values: lifting the air gap restores exactly what was on.
    assert_eq!(s.vendor_switches().iter().filter(|(_, on)| *on).count(), 5);
    for i in 0..6 {
        let mut one = s.clone();
        match i {
            0 => one.upgrade_check = true,
            1 => one.send_telemetry = true,
            2 => one.dynamic_extensions_enabled = true,
            3 => one.experiences_enabled = true,
            4 => one.step_template_updates = true,
            _ => one.community_step_templates = true,
        }
        assert!(one.air_gapped(), "switch {i} does not lift the air gap");
    }
    s.set_air_gapped(false);
    assert_eq!(
        s,
        Settings {
            send_telemetry: false,
            ..Settings::default()
        }
    );
    // Stored in the file.
    let home = temp_home();
    let path = Settings::path_in(home.path());
    s.set_air_gapped(true);
    s.save(&path).unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("airGapped = true")
    );
    assert_eq!(Settings::load(&path).unwrap(), s);
}

#[test]
fn a_file_from_before_the_air_gap_key_keeps_its_meaning() {
    // What `--airGapped=true` used to write: every vendor switch off, no airGapped key.
    let old = "upgradeCheck = false\nsendTelemetry = false\ndynamicExtensionsEnabled = false\n\
               experiencesEnabled = false\nstepTemplateUpdates = false\ncommunityStepTemplates = false\n";
    let s = Settings::parse(old, Path::new("octo.toml")).unwrap();
    assert!(s.air_gapped());
    // Any switch on (or the key present) and it is not.
    let s = Settings::parse("upgradeCheck = false\n", Path::new("octo.toml")).unwrap();
    assert!(!s.air_gapped());
    let s = Settings::parse(&format!("airGapped = false\n{old}"), Path::new("octo.toml")).unwrap();
    assert!(!s.air_gapped());
}

#[test]
fn internal_networks_are_stored_and_checked() {
    let home = temp_home();
    let path = Settings::path_in(home.path());
    let s = Settings {
        internal_networks: InternalNetworks::parse_list("10.0.0.0/8,*.corp.example").unwrap(),
        ..Settings::default()
    };
    s.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(r#"internalNetworks = ["10.0.0.0/8", "*.corp.example"]"#),
        "{text}"
    );
    assert_eq!(Settings::load(&path).unwrap(), s);
    let e = Settings::parse(
        "internalNetworks = [\"10.0.0.1/8\"]\n",
        Path::new("octo.toml"),
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("internalNetworks"), "{e}");
    // Empty by default, and then not written.
    assert!(Settings::default().internal_networks.is_empty());
    assert!(
        !Settings::default()
            .to_toml()
            .unwrap()
            .contains("internalNetworks")
    );
}

#[test]
fn installation_id_is_created_once() {
    let home = temp_home();
    let path = Settings::path_in(home.path());
    let id = Settings::ensure_installation_id(&path).unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(id.as_bytes()[14], b'4');
    assert_eq!(Settings::ensure_installation_id(&path).unwrap(), id);
    assert_eq!(Settings::load(&path).unwrap().installation_id, Some(id));
    let other =
        Settings::ensure_installation_id(&Settings::path_in(&home.path().join("b"))).unwrap();
    assert_ne!(
        other,
        Settings::load(&path).unwrap().installation_id.unwrap()
    );
}

#[test]
fn key_list_matches_the_serialised_keys() {
    let s = Settings {
        internal_networks: InternalNetworks::parse_list("10.0.0.0/8").unwrap(),
        feed_url: Some("https://f.test/feed".into()),
        library_feed_url: Some("https://l.test".into()),
        update_url: Some("https://u.test/u".into()),
        telemetry_url: Some("https://t.test/t".into()),
        experiences_url: Some("https://e.test/e".into()),
        dynamic_extensions_url: Some("https://d.test/d".into()),
        feed_public_key: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
        feed_trusted_certificate: Some("/x.pem".into()),
        installation_id: Some("id".into()),
        web_proxy: WebProxySettings {
            enabled: true,
            host: Some("proxy".into()),
            port: Some(3128),
            ..Default::default()
        },
        proxies: [(
            "dmz".to_string(),
            NamedProxy {
                host: "p".into(),
                port: 1,
                username: None,
                password: None,
            },
        )]
        .into(),
        database: Some("postgres://octo@db/octo".into()),
        ..Settings::default()
    };
    let table: toml::Table = toml::from_str(&s.to_toml().unwrap()).unwrap();
    let written: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut expected = keys::ALL.to_vec();
    expected.sort();
    let mut written_sorted = written.clone();
    written_sorted.sort();
    assert_eq!(written_sorted, expected);
}

#[test]
fn proxies_are_checked_and_passwords_redacted() {
    let mut s = Settings {
        web_proxy: WebProxySettings {
            enabled: true,
            host: Some("proxy".into()),
            port: Some(3128),
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..Default::default()
        },
        ..Settings::default()
    };
    s.proxies.insert(
        "dmz".into(),
        NamedProxy {
            host: "p".into(),
            port: 1,
            username: Some("u".into()),
            password: Some("hunter2".into()),
        },
    );
    s.validate().unwrap();
    let shown = s.redacted().to_toml().unwrap();
    assert!(
        !shown.contains("hunter2") && shown.contains(MASKED),
        "{shown}"
    );
    let mut bad = s.clone();
    bad.web_proxy.host = Some("socks5://p".into());
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("SOCKS is not"), "{e}");
    let mut bad = s.clone();
    bad.web_proxy.port = None;
    assert!(bad.validate().is_err());
    let text = "[webProxy]\nenabled = true\nhost = \"p\"\nport = 3128\nbogus = 1\n";
    assert!(Settings::parse(text, Path::new("octo.toml")).is_err());
}

#[test]
fn scripts_are_confined_while_air_gapped() {
    let mut s = Settings::default();
    assert_eq!(s.effective_script_network(), crate::ScriptNetwork::Audited);
    s.script_network = crate::ScriptNetwork::Confined;
    assert_eq!(s.effective_script_network(), crate::ScriptNetwork::Confined);
    s.script_network = crate::ScriptNetwork::Audited;
    s.set_air_gapped(true);
    assert_eq!(s.effective_script_network(), crate::ScriptNetwork::Confined);
    assert_eq!(
        crate::ScriptNetwork::parse("Confined"),
        Ok(crate::ScriptNetwork::Confined)
    );
    assert!(crate::ScriptNetwork::parse("open").is_err());
}
