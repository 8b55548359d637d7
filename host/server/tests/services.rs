//! octo-server's services called directly, as a library: no binary, no network.

use octo_comms::identity::Thumbprint;
use octo_server::configure::{self, ConfigureOptions};
use octo_server::jobs::{self, Outcome, Selection};
use octo_server::outbound::{gate, grants, report};
use octo_server::targets::{self, Reach, Target};
use octo_server::{Error, Event, Home, Sink, proxy};
use std::sync::{Arc, Mutex};

fn home() -> (tempfile::TempDir, Home) {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    (dir, home)
}

fn configure(home: &Home, pairs: &[(&str, &str)]) -> configure::Configured {
    configure::configure(home, &ConfigureOptions::from_pairs(pairs).unwrap()).unwrap()
}

#[test]
fn configure_and_show_round_trip() {
    let (_dir, home) = home();
    let saved = configure(
        &home,
        &[("upgradeCheck", "false"), ("comms-listen-port", "0")],
    );
    assert_eq!(saved.path, home.settings());
    let keys: Vec<&str> = saved.changed.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(keys, ["upgradeCheck", "commsListenPort"]);
    assert!(saved.to_string().starts_with("Saved "));

    let shown = configure::show(&home).unwrap();
    assert!(shown.exists && !shown.settings.upgrade_check);
    assert_eq!(shown.to_json().unwrap()["commsListenPort"], 0);

    // The same values again: nothing changes.
    let again = configure(&home, &[("upgradeCheck", "false")]);
    assert!(again.changed.is_empty());

    // A bad value names the flag and writes nothing.
    let before = std::fs::read(home.settings()).unwrap();
    let options =
        ConfigureOptions::from_pairs(&[("sendTelemetry", "false"), ("feed", "ftp://x/")]).unwrap();
    let e = configure::configure(&home, &options).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(m) if m.starts_with("--feed: ")),
        "{e}"
    );
    assert_eq!(std::fs::read(home.settings()).unwrap(), before);
    assert!(matches!(
        ConfigureOptions::from_pairs(&[("noSuchFlag", "1")]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn grants_are_added_listed_and_revoked() {
    let (_dir, home) = home();
    let destination = grants::parse_pattern("https://api.example.com").unwrap();
    // Nothing installed under the id: the grant needs the component named.
    assert!(matches!(
        grants::grant(&home, "my-step", &destination, &grants::GrantTarget::Installed),
        Err(Error::NotFound(m)) if m.contains("--file PATH")
    ));
    let digest = "ab".repeat(32);
    let by_digest = grants::GrantTarget::Sha256(&digest);
    let granted = grants::grant(&home, "my-step", &destination, &by_digest).unwrap();
    assert!(granted.added && !granted.air_gapped);
    assert!(
        !grants::grant(&home, "my-step", &destination, &by_digest)
            .unwrap()
            .added
    );
    let list = grants::list(&home, None).unwrap();
    assert_eq!(list.0.len(), 1);
    assert_eq!(list.0[0].plugin, "my-step");
    assert_eq!(
        list.0[0].binding,
        octo_outbound::Binding::Sha256(digest.clone())
    );
    assert_eq!(
        list.0[0].destinations[0].to_string(),
        "https://api.example.com:443"
    );
    assert!(grants::list(&home, Some("other")).unwrap().0.is_empty());
    grants::revoke(&home, "my-step", &destination).unwrap();
    assert!(matches!(
        grants::revoke(&home, "my-step", &destination),
        Err(Error::NotFound(_))
    ));
    assert!(grants::parse_pattern("https://{{host}}").is_err());
}

/// The built http-health-check under another id, as a file in `dir`.
fn relabelled_health_check(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    let bytes = octo_builtin_plugins::HTTP_HEALTH_CHECK.bytes;
    let mut manifest = octo_manifest::read_manifest(bytes).unwrap();
    manifest.id = id.into();
    let path = dir.join(format!("{id}.wasm"));
    std::fs::write(
        &path,
        octo_manifest::embed_manifest(bytes, &manifest).unwrap(),
    )
    .unwrap();
    path
}

/// A grants file from before grants were bound: on first load each id's grants are bound to the
/// component installed under it then (with a note); an id with nothing installed stays unbound and
/// its grants apply to nothing.
#[test]
fn old_grants_are_bound_to_the_installed_component_on_first_load() {
    let (dir, home) = home();
    let installed = relabelled_health_check(dir.path(), "my-step");
    octo_server::plugins::install::install_file(&home, &installed).unwrap();
    std::fs::write(
        home.grants(),
        "[grants]\nmy-step = [\"https://api.example.com\"]\ngone = [\"https://x.example\"]\n",
    )
    .unwrap();
    let list = grants::list(&home, None).unwrap();
    let digest = octo_fsutil::sha256_hex(&std::fs::read(&installed).unwrap());
    let mine = list.0.iter().find(|e| e.plugin == "my-step").unwrap();
    assert_eq!(mine.binding, octo_outbound::Binding::Sha256(digest.clone()));
    assert!(
        mine.note.as_deref().unwrap().contains("bound on"),
        "{mine:?}"
    );
    let gone = list.0.iter().find(|e| e.plugin == "gone").unwrap();
    assert_eq!(gone.binding, octo_outbound::Binding::Unbound);
    // Written back, once: the file now names the digest.
    let text = std::fs::read_to_string(home.grants()).unwrap();
    assert!(text.contains(&format!("sha256 = \"{digest}\"")), "{text}");
    // Another build under the same id installed later does not inherit it.
    let other = {
        let bytes = octo_builtin_plugins::HTTP_HEALTH_CHECK.bytes;
        let mut manifest = octo_manifest::read_manifest(bytes).unwrap();
        manifest.id = "my-step".into();
        manifest.description = "another build".into();
        let path = dir.path().join("other.wasm");
        std::fs::write(
            &path,
            octo_manifest::embed_manifest(bytes, &manifest).unwrap(),
        )
        .unwrap();
        path
    };
    let other_digest = octo_fsutil::sha256_hex(&std::fs::read(&other).unwrap());
    assert_ne!(other_digest, digest);
    let store = octo_server::store::existing(&home).unwrap();
    let file = grants::load(&home).unwrap();
    let this = grants::component(store.as_ref(), "my-step", &std::fs::read(&other).unwrap());
    assert!(file.for_component(&this).is_empty());
    let that = grants::component(
        store.as_ref(),
        "my-step",
        &std::fs::read(&installed).unwrap(),
    );
    assert!(!file.for_component(&that).is_empty());
}

fn target(name: &str, reach: Reach, proxy: Option<&str>) -> Target {
    Target {
        name: name.into(),
        reach,
        thumbprint: Thumbprint::from_bytes([7; 32]),
        roles: vec!["web".into()],
        proxy: proxy.map(Into::into),
    }
}

#[test]
fn targets_add_list_remove() {
    let (_dir, home) = home();
    let sink = Sink::silent();
    let listening = Reach::Listening {
        url: "https://web1:10933".into(),
    };
    targets::add(&home, target("web1", listening.clone(), None), &sink).unwrap();
    targets::add(&home, target("db1", Reach::Polling, None), &sink).unwrap();
    let e = targets::add(&home, target("web1", Reach::Polling, None), &sink).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    // A named proxy must exist first.
    let e = targets::add(&home, target("web2", listening, Some("dmz")), &sink).unwrap_err();
    assert!(matches!(e.root(), Error::NotFound(_)), "{e}");

    let names: Vec<String> = targets::list(&home)
        .unwrap()
        .targets
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["web1", "db1"]);
    assert_eq!(targets::remove(&home, "web1", &sink).unwrap().name, "web1");
    assert!(matches!(
        targets::remove(&home, "web1", &sink),
        Err(Error::NotFound(_))
    ));
    assert_eq!(targets::list(&home).unwrap().targets.len(), 1);
}

#[test]
fn named_proxies_are_added_listed_and_removed_with_passwords_masked() {
    let (_dir, home) = home();
    let shown = proxy::add_named(
        &home,
        proxy::NewProxy {
            name: "dmz".into(),
            host: "proxy.corp".into(),
            port: 3128,
            username: Some("u".into()),
            password: Some("hunter2".into()),
        },
    )
    .unwrap();
    assert_eq!(shown, "http://u:********@proxy.corp:3128");
    let listed = proxy::list_named(&home).unwrap();
    assert_ne!(listed["dmz"].password.as_deref(), Some("hunter2"));
    proxy::remove_named(&home, "dmz").unwrap();
    assert!(matches!(
        proxy::remove_named(&home, "dmz"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn the_outbound_report_has_every_row_and_the_gates_attempts() {
    let (_dir, home) = home();
    configure(&home, &[("sendTelemetry", "false")]);
    let settings = octo_settings::Settings::load(&home.settings()).unwrap();
    let audit = octo_server::outbound::audit::AuditLog::in_home(&home);
    let e = gate::check(&audit, &settings, octo_outbound::DestinationId::Telemetry).unwrap_err();
    assert!(
        matches!(&e, Error::Denied(m) if m.contains("sendTelemetry=false")),
        "{e}"
    );

    let report = report::report(&home).unwrap();
    let json = report.to_json();
    let rows = json["destinations"].as_array().unwrap();
    assert_eq!(rows.len(), octo_outbound::DESTINATIONS.len());
    let telemetry = rows.iter().find(|r| r["id"] == "telemetry").unwrap();
    assert_eq!(telemetry["allowed"], false);
    let last = &telemetry["lastAttempts"][0];
    assert_eq!(last["plugin"], "octo:telemetry");
    assert_eq!(last["allowed"], false);
    assert!(report.to_string().contains("Telemetry"));
}

#[test]
fn jobs_gated_off_are_skipped_and_recorded_without_a_request() {
    let (_dir, home) = home();
    // Air-gapped: every vendor destination denied whatever its switch says (and no endpoint is set).
    configure(&home, &[("airGapped", "true")]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        Sink::new(move |event| {
            if let Event::Job(run) = event {
                seen.lock().unwrap().push(run.clone());
            }
        })
    };
    let runs = jobs::run(&home, &Selection::All, &sink).unwrap();
    assert_eq!(runs.len(), jobs::JOBS.len());
    for run in &runs {
        assert_eq!(run.outcome, Outcome::Skipped, "{run}");
        assert!(run.message.contains("made no request"), "{run}");
    }
    assert_eq!(*seen.lock().unwrap(), runs);

    // One denied attempt per job, each under its own row, in the gate's one form.
    let records = octo_server::outbound::audit::AuditLog::in_home(&home).read_all();
    assert_eq!(records.len(), jobs::JOBS.len());
    for (job, record) in jobs::JOBS.iter().zip(&records) {
        assert_eq!(record.kind, job.destination.as_str());
        assert_eq!(record.plugin, format!("octo:{}", job.destination.as_str()));
        assert!(!record.allowed);
    }
    let list = jobs::list(&home).unwrap();
    assert!(
        list.0
            .iter()
            .all(|j| j["outcome"] == "skipped" && j["enabled"] == false)
    );
    assert!(matches!(
        jobs::run(&home, &Selection::Named("nope".into()), &sink),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn the_home_names_every_place() {
    let home = Home::at("/srv/octo");
    assert_eq!(home.settings(), std::path::Path::new("/srv/octo/octo.toml"));
    assert_eq!(home.grants(), std::path::Path::new("/srv/octo/grants.toml"));
    assert_eq!(
        home.targets(),
        std::path::Path::new("/srv/octo/targets.json")
    );
    assert_eq!(
        home.jobs_state(),
        std::path::Path::new("/srv/octo/jobs.json")
    );
    assert_eq!(home.plugins(), std::path::Path::new("/srv/octo/plugins"));
    assert_eq!(
        home.library_cache(),
        std::path::Path::new("/srv/octo/library/templates.json")
    );
    assert_eq!(home.steps(), std::path::Path::new("/srv/octo/steps"));
    assert_eq!(
        home.audit_log(),
        std::path::Path::new("/srv/octo/logs/outbound.jsonl")
    );
    assert_eq!(home.socket(), std::path::Path::new("/srv/octo/octo.sock"));
    assert_eq!(home.certs(), std::path::Path::new("/srv/octo/certs"));
}

#[test]
fn feed_and_library_commands_ask_the_gate_and_record_the_refusal() {
    let (_dir, home) = home();
    configure(
        &home,
        &[
            ("stepTemplateUpdates", "false"),
            ("communityStepTemplates", "false"),
        ],
    );
    let sink = Sink::silent();
    let spec = octo_server::plugins::parse_spec("run-script").unwrap();
    let e = octo_server::plugins::install::install_spec(&home, &spec, &sink).unwrap_err();
    assert!(matches!(e.root(), Error::Denied(_)), "{e}");
    assert!(
        e.one_line().contains("stepTemplateUpdates=false"),
        "{}",
        e.one_line()
    );
    let e = octo_server::library::list(&home, None, &sink).unwrap_err();
    assert!(matches!(e.root(), Error::Denied(_)), "{e}");

    let records = octo_server::outbound::audit::AuditLog::in_home(&home).read_all();
    let denied: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| !r.allowed)
        .map(|r| (r.kind.as_str(), r.plugin.as_str()))
        .collect();
    assert_eq!(
        denied,
        [
            ("steps-feed", "octo:steps-feed"),
            ("library-feed", "octo:library-feed")
        ]
    );
    // Nothing was installed or cached.
    assert!(!home.plugins().join("plugins.lock").exists());
    assert!(!home.library_cache().exists());
}
