//! `octo jobs ...` and `octo library ...` end to end, against a real registry-mock on loopback.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn gated_off_jobs_and_commands_make_no_request() {
    let mut feed = Feed::new();
    feed.publish(&[("rs.wasm", run_script("0.1.1"))], &[]);
    let mock = Mock::start(Some(&feed));
    let home = Home::new();
    home.configure(&mock, &feed.public_key, false, false);

    let out = home.octo(&["jobs", "run", "--all"]);
    let text = out.success();
    assert!(
        text.contains("step-template-updates: skipped: stepTemplateUpdates=false")
            && text.contains("community-step-templates: skipped: communityStepTemplates=false")
            && text.contains("made no request"),
        "{text}"
    );
    let out = home.octo(&["jobs", "run", "step-template-updates"]);
    assert!(out.success().contains("skipped"), "{out:?}");
    home.octo(&["plugins", "install", "run-script"])
        .failure("the steps feed is disabled (stepTemplateUpdates=false)");
    home.octo(&["plugins", "search"])
        .failure("stepTemplateUpdates=false");
    home.octo(&["plugins", "update"]).success(); // nothing installed: nothing to ask
    home.octo(&["library", "list"])
        .failure("communityStepTemplates=false");
    assert_eq!(
        mock.request_paths(),
        Vec::<String>::new(),
        "gated off: zero requests"
    );

    let jobs = home.octo(&["jobs", "list", "--json"]).json();
    for job in jobs.as_array().unwrap() {
        assert_eq!(job["enabled"], false, "{job}");
        assert_eq!(job["outcome"], "skipped", "{job}");
        assert!(job["nextRun"].is_string());
    }
    let table = home.octo(&["jobs", "list"]);
    assert!(
        table.success().contains("stepTemplateUpdates=off"),
        "{table:?}"
    );
    home.octo(&["jobs", "run", "nope"])
        .failure("no job named \"nope\"");
    assert!(
        home.run_script_version() == "0.1.0",
        "the embedded built-in"
    );
}

#[test]
fn built_in_step_template_updates() {
    let mut feed = Feed::new();
    feed.publish(
        &[
            ("rs-0.1.0.wasm", run_script("0.1.0")),
            ("rs-0.1.1.wasm", run_script("0.1.1")),
            ("rs-0.2.0.wasm", run_script("0.2.0")),
            (
                "hc-0.1.3.wasm",
                repack(&built("http_health_check.wasm"), |m| {
                    m.version = "0.1.3".parse().unwrap()
                }),
            ),
            (
                "hc-0.1.4.wasm",
                repack(&built("http_health_check.wasm"), |m| {
                    m.version = "0.1.4".parse().unwrap();
                    m.api_version = "0.9.0".parse().unwrap();
                }),
            ),
        ],
        &[],
    );
    let mock = Mock::start(Some(&feed));
    let home = Home::new();
    home.configure(&mock, &feed.public_key, true, false);

    // Not installed from the feed yet: the newest version compatible with the embedded 0.1.0; 0.2.0 is
    // not compatible, and http-health-check 0.1.4 needs an API this host lacks.
    let out = home.octo(&["jobs", "run", "step-template-updates"]);
    let text = out.success();
    assert!(
        text.contains("run-script 0.1.1 installed from the feed")
            && text.contains("http-health-check 0.1.3 installed from the feed"),
        "{text}"
    );
    assert_eq!(home.run_script_version(), "0.1.1");

    // Again: nothing to do.
    let out = home.octo(&["jobs", "run", "step-template-updates"]);
    assert!(
        out.success().contains("run-script 0.1.1 is up to date"),
        "{out:?}"
    );

    // A new compatible version: moved to it, previous kept.
    feed.publish(&[("rs-0.1.5.wasm", run_script("0.1.5"))], &[]);
    // Only the library job (never run, and gated off) is due; the updates job ran within the hour.
    let out = home.octo(&["jobs", "run", "--due"]);
    let text = out.success();
    assert!(
        text.contains("community-step-templates: skipped")
            && !text.contains("step-template-updates:"),
        "{text}"
    );
    let out = home.octo(&["jobs", "run", "--due"]);
    assert!(out.success().contains("no job is due"), "{out:?}");
    let out = home.octo(&["jobs", "run", "--all"]);
    assert!(
        out.success().contains("run-script 0.1.1 -> 0.1.5"),
        "{out:?}"
    );
    assert_eq!(home.run_script_version(), "0.1.5");
    assert_eq!(
        home.lock()["plugins"]["run-script"]["previous"]["version"],
        "0.1.1"
    );

    // 0.1.5 is yanked: the newest remaining is older than what is installed, so nothing moves.
    feed.publish(&[], &["run-script@0.1.5"]);
    let out = home.octo(&["jobs", "run", "step-template-updates"]);
    assert!(
        out.success().contains("run-script 0.1.5 is up to date"),
        "never downgrades: {out:?}"
    );
    assert_eq!(home.run_script_version(), "0.1.5");
    home.octo(&["plugins", "rollback", "run-script"]).success();
    assert_eq!(home.run_script_version(), "0.1.1");

    // A failing feed fails the job (non-zero, recorded), and changes nothing.
    mock.set_faults(r#"{"status500":1000}"#);
    let out = home.octo(&["jobs", "run", "step-template-updates"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("step-template-updates: failed"),
        "{out:?}"
    );
    mock.clear_faults();
    let jobs = home.octo(&["jobs", "list", "--json"]).json();
    assert_eq!(jobs[0]["name"], "step-template-updates");
    assert_eq!(jobs[0]["outcome"], "failed");
    assert_eq!(home.run_script_version(), "0.1.1");
    home.octo(&["plugins", "verify"]).success();
}

#[test]
fn community_library_sync_install_and_run() {
    if library_dir().is_none() {
        eprintln!("skipped: no ../shared/library next to the repository");
        return;
    }
    let mock = Mock::start(None);
    let home = Home::new();
    let (_, key) = octo_feed::signature::generate_keypair().unwrap();
    home.configure(&mock, &key.to_base64(), false, true);

    let out = home.octo(&["jobs", "run", "community-step-templates"]);
    assert!(out.success().contains("synced"), "{out:?}");
    assert_eq!(mock.request_paths(), ["/api/step-templates"]);
    assert!(home.path().join("library/templates.json").is_file());

    let list = home.octo(&["library", "list", "service"]);
    assert!(
        list.success().contains("Service - Check Running (Bash)"),
        "{list:?}"
    );
    let json = home.octo(&["library", "list", "--json"]).json();
    assert!(json.as_array().unwrap().len() > 10);
    let show = home.octo(&["library", "show", "service-check-running-bash"]);
    let text = show.success();
    assert!(
        text.contains("2617b82a-c5f8-4a66-a9eb-e99b37e127d8")
            && text.contains("services (Service names) [required]"),
        "{text}"
    );
    home.octo(&["library", "show", "no-such-template"])
        .failure("no community step template named");

    let out = home.octo(&["library", "install", "2617b82a-c5f8-4a66-a9eb-e99b37e127d8"]);
    assert!(
        out.success().contains(
            "run it with: octo run-step service-check-running-bash --param services=VALUE"
        ),
        "{out:?}"
    );
    assert!(
        home.path()
            .join("steps/2617b82a-c5f8-4a66-a9eb-e99b37e127d8.json")
            .is_file()
    );
    // Listing and installing read the cache: no further request.
    assert_eq!(mock.request_paths(), ["/api/step-templates"]);

    // It runs through run-script, by slug, name or id; a missing required parameter is refused.
    let run = home.octo(&[
        "run-step",
        "service-check-running-bash",
        "--param",
        "services=registry-mock",
    ]);
    let text = run.success();
    assert!(text.contains("registry-mock is running!!!"), "{run:?}");
    let run = home.octo(&[
        "run-step",
        "Service - Check Running (Bash)",
        "--param",
        "services=registry-mock",
        "--json",
    ]);
    assert_eq!(run.json()["status"], "succeeded", "{run:?}");
    home.octo(&["run-step", "2617b82a-c5f8-4a66-a9eb-e99b37e127d8"])
        .failure("missing required parameter services");

    // Switched off: the job makes no request, the installed template still runs.
    home.configure(&mock, &key.to_base64(), false, false);
    mock.clear_requests();
    let out = home.octo(&["jobs", "run", "--all"]);
    assert!(out.success().contains("skipped"), "{out:?}");
    assert!(mock.request_paths().is_empty());
    home.octo(&[
        "run-step",
        "service-check-running-bash",
        "--param",
        "services=registry-mock",
    ])
    .success();
}

#[test]
fn the_scheduler_syncs_the_library_at_start() {
    let mock = Mock::start(None);
    let home = Home::new();
    let (_, key) = octo_feed::signature::generate_keypair().unwrap();
    home.configure(&mock, &key.to_base64(), false, true);
    // Pretend both jobs ran a minute ago: only the start-up job runs now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = |next: u64| {
        serde_json::json!({"lastRun": "x", "lastRunUnix": now - 60, "outcome": "ok", "message": "",
            "nextRun": "x", "nextRunUnix": next})
    };
    std::fs::write(
        home.path().join("jobs.json"),
        serde_json::to_vec(&serde_json::json!({"schema": 1, "jobs": {
            "step-template-updates": record(now + 3600),
            "community-step-templates": record(now + 86_400),
        }}))
        .unwrap(),
    )
    .unwrap();
    let mut child = home
        .command(&["jobs", "watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cache = home.path().join("library/templates.json");
    for _ in 0..300 {
        if cache.is_file() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(cache.is_file(), "the library was synced at start");
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("jobs.json")).unwrap()).unwrap();
    assert_eq!(
        jobs["jobs"]["step-template-updates"]["lastRun"], "x",
        "a job that is not due did not run"
    );
    assert_eq!(mock.request_paths(), ["/api/step-templates"]);
}

/// `octo run` runs the scheduler: the community library is synced at start (and nothing else is
/// fetched while the steps-feed switch is off).
#[test]
fn the_server_syncs_the_library_at_start() {
    if library_dir().is_none() {
        eprintln!("skipped: no ../shared/library next to the repository");
        return;
    }
    let mock = Mock::start(None);
    let home = Home::new();
    let (_, key) = octo_feed::signature::generate_keypair().unwrap();
    home.configure(&mock, &key.to_base64(), false, true);
    let mut server = home
        .command(&[
            "run",
            "--comms-listen-port",
            "0",
            "--listen-address",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while mock.request_paths().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(mock.request_paths(), ["/api/step-templates"]);
    assert!(home.path().join("library/templates.json").is_file());
}
