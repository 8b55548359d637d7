//! `octo plugins ...` end to end: the built binary, a temporary home, and a real registry-mock on loopback.

mod common;

use common::*;

/// A feed with run-script 0.1.0, 0.1.1, 0.2.0 (1.0.0 yanked), hello-step 0.1.0, and a mock serving it.
fn feed_and_mock() -> (Feed, Mock) {
    let mut feed = Feed::new();
    feed.publish(
        &[
            ("rs-0.1.0.wasm", run_script("0.1.0")),
            ("rs-0.1.1.wasm", run_script("0.1.1")),
            ("rs-0.2.0.wasm", run_script("0.2.0")),
            ("rs-1.0.0.wasm", run_script("1.0.0")),
            ("hello.wasm", built("hello_step.wasm")),
            ("health.wasm", built("http_health_check.wasm")),
        ],
        &["run-script@1.0.0"],
    );
    let mock = Mock::start(Some(&feed));
    (feed, mock)
}

#[test]
fn install_list_update_rollback_remove_verify() {
    let (mut feed, mock) = feed_and_mock();
    let home = Home::new();
    home.configure(&mock, &feed.public_key, true, false);

    // Nothing installed: the embedded built-ins are listed and run.
    let list = home.octo(&["plugins", "list", "--json"]).json();
    assert_eq!(
        list.as_array().unwrap().len(),
        octo_builtin_plugins::STEPS.len(),
        "{list}"
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|p| p["source"] == "built-in (embedded)")
    );
    assert_eq!(home.run_script_version(), "0.1.0");

    // Search.
    let search = home.octo(&["plugins", "search", "bash"]);
    let out = search.success();
    assert!(
        out.contains("run-script") && out.contains("0.2.0") && !out.contains("hello-step"),
        "{out}"
    );
    let all = home.octo(&["plugins", "search", "--json"]).json();
    assert_eq!(all.as_array().unwrap().len(), 3);

    // An exact version.
    let run = home.octo(&["plugins", "install", "run-script@0.1.0"]);
    let out = run.success();
    assert!(out.contains("installed run-script 0.1.0"), "{out}");
    assert!(
        out.contains("capabilities: process"),
        "install shows capabilities: {out}"
    );
    assert!(out.contains("outbound destinations: none"), "{out}");
    assert_eq!(
        home.lock()["plugins"]["run-script"]["requirement"],
        "=0.1.0"
    );
    assert_eq!(home.run_script_version(), "0.1.0");

    // A requirement: the highest match.
    let out = home.octo(&["plugins", "install", "run-script@^0.1"]);
    assert!(
        out.success()
            .contains("installed run-script 0.1.1 (was 0.1.0)"),
        "{out:?}"
    );
    assert_eq!(
        home.run_script_version(),
        "0.1.1",
        "installed beats embedded"
    );

    // `update` stays within the requirement (^0.1): nothing newer yet.
    let out = home.octo(&["plugins", "update"]);
    assert!(
        out.success().contains("run-script 0.1.1 is up to date"),
        "{out:?}"
    );
    feed.publish(&[("rs-0.1.2.wasm", run_script("0.1.2"))], &[]);
    let out = home.octo(&["plugins", "update", "run-script"]);
    assert!(
        out.success()
            .contains("installed run-script 0.1.2 (was 0.1.1)"),
        "{out:?}"
    );
    assert_eq!(home.installed("run-script").unwrap(), "0.1.2");

    // The declared outbound destinations are shown.
    let out = home.octo(&["plugins", "install", "http-health-check"]);
    assert!(out.success().contains("{{url}}"), "{out:?}");
    assert_eq!(
        home.lock()["plugins"]["http-health-check"]["requirement"],
        "^0.1.0",
        "no requirement given: compatible with what was installed"
    );

    // Rollback and forward again.
    let out = home.octo(&["plugins", "rollback", "run-script"]);
    assert!(out.success().contains("from 0.1.2 to 0.1.1"), "{out:?}");
    assert_eq!(home.run_script_version(), "0.1.1");
    home.octo(&["plugins", "rollback", "run-script"]).success();
    assert_eq!(home.run_script_version(), "0.1.2");
    home.octo(&["plugins", "rollback", "http-health-check"])
        .failure("has no previous version");

    // Verify: clean, then a corrupted blob is found, named, and refused at run time.
    let out = home.octo(&["plugins", "verify"]);
    assert!(out.success().contains("all intact"), "{out:?}");
    let sha = home.lock()["plugins"]["run-script"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = home.path().join("plugins/blobs/sha256").join(&sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    let original = bytes.clone();
    bytes[1000] ^= 1;
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let out = home.octo(&["plugins", "verify"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("run-script 0.1.2") && out.stderr.contains("corrupt"),
        "{out:?}"
    );
    home.octo(&["run-step", "run-script", "--param", "ScriptBody=true"])
        .failure("is corrupt");
    std::fs::write(&blob, &original).unwrap();
    home.octo(&["plugins", "verify"]).success();

    // Remove: the embedded built-in is used again.
    let out = home.octo(&["plugins", "remove", "run-script"]);
    assert!(
        out.success()
            .contains("built-in run-script embedded in this binary is used again"),
        "{out:?}"
    );
    assert_eq!(home.run_script_version(), "0.1.0");
    home.octo(&["plugins", "remove", "run-script"])
        .failure("cannot be removed");
    home.octo(&["plugins", "remove", "nope"])
        .failure("plugin nope is not installed");
    home.octo(&["plugins", "verify"]).success();
}

#[test]
fn install_a_plugin_by_id_and_from_a_file() {
    let (feed, mock) = feed_and_mock();
    let home = Home::new();
    home.configure(&mock, &feed.public_key, true, false);

    // A plugin that is not a built-in, installed from the feed and run by id.
    home.octo(&["plugins", "install", "hello-step"]).success();
    let run = home.octo(&["run-step", "hello-step", "--param", "name=feed", "--json"]);
    let out = run.json();
    assert_eq!(out["status"], "succeeded", "{run:?}");
    assert_eq!(out["outputs"][0]["value"], "Hello, feed!");

    // A local component: its manifest is read and shown; an API this host lacks is refused.
    let file = home.path().join("outputs.wasm");
    std::fs::write(&file, built("fixture_outputs.wasm")).unwrap();
    let out = home.octo(&["plugins", "install", "--file", file.to_str().unwrap()]);
    let text = out.success();
    assert!(
        text.contains("installed fixture-outputs 0.1.0") && text.contains("kind: step"),
        "{text}"
    );
    assert_eq!(
        home.lock()["plugins"]["fixture-outputs"]["source"]["type"],
        "localFile"
    );
    let list = home.octo(&["plugins", "list", "--json"]).json();
    let signed = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()["signed"]
            .clone()
    };
    assert_eq!(signed("fixture-outputs"), false, "{list}");
    assert_eq!(signed("hello-step"), true, "{list}");
    assert!(
        home.octo(&["plugins", "list"])
            .success()
            .contains("(unsigned)")
    );
    let wrong = home.path().join("wrong.wasm");
    std::fs::write(&wrong, built("fixture_wrong_api.wasm")).unwrap();
    home.octo(&["plugins", "install", "--file", wrong.to_str().unwrap()])
        .failure("needs plugin API 9.0.0");
    let bare = home.path().join("bare.wasm");
    std::fs::write(&bare, built("fixture_no_manifest.wasm")).unwrap();
    home.octo(&["plugins", "install", "--file", bare.to_str().unwrap()])
        .failure("no octo:manifest section");
    assert!(home.lock()["plugins"]["fixture-wrong-api"].is_null());
    home.octo(&["plugins", "verify"]).success();
}

#[test]
fn export_and_import_an_offline_bundle() {
    let (feed, mock) = feed_and_mock();
    let connected = Home::new();
    connected.configure(&mock, &feed.public_key, true, false);
    let bundles = tempfile::tempdir().unwrap();
    let bundle = bundles.path().join("bundle");
    let out = connected.octo(&[
        "plugins",
        "export",
        "--to",
        bundle.to_str().unwrap(),
        "run-script@^0.1",
        "hello-step",
    ]);
    assert!(out.success().contains("exported 2 plugin(s)"), "{out:?}");
    assert!(bundle.join("index.json").is_file() && bundle.join("index.json.sig").is_file());
    assert_eq!(
        std::fs::read(bundle.join("index.json")).unwrap(),
        std::fs::read(feed.dir.join("index.json")).unwrap(),
        "the signed index, byte for byte"
    );
    connected
        .octo(&["plugins", "export", "--to", bundle.to_str().unwrap()])
        .failure("not empty");

    // The air-gapped server: every switch off, only the key pinned; it never talks to the mock.
    let gapped = Home::new();
    gapped.write_settings(&format!(
        "feedPublicKey = \"{}\"\nstepTemplateUpdates = false\ncommunityStepTemplates = false\n",
        feed.public_key
    ));
    mock.clear_requests();
    gapped
        .octo(&["plugins", "install", "run-script"])
        .failure("stepTemplateUpdates=false");
    let out = gapped.octo(&["plugins", "import", bundle.to_str().unwrap()]);
    let text = out.success();
    assert!(
        text.contains("installed run-script 0.1.1") && text.contains("installed hello-step 0.1.0"),
        "{text}"
    );
    assert_eq!(gapped.run_script_version(), "0.1.1");
    assert!(
        mock.request_paths().is_empty(),
        "no request from the air-gapped home"
    );
    gapped.octo(&["plugins", "verify"]).success();
    // Importing again is harmless.
    assert!(
        gapped
            .octo(&["plugins", "import", bundle.to_str().unwrap()])
            .success()
            .contains("already installed")
    );

    // A tampered copy: a flipped byte in a component is refused, and nothing is installed.
    let tampered = bundles.path().join("tampered");
    copy_dir(&bundle, &tampered);
    let sha = gapped.lock()["plugins"]["hello-step"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = tampered.join("blobs/sha256").join(&sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[500] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();
    let fresh = Home::new();
    fresh.write_settings(&format!(
        "feedPublicKey = \"{}\"\nstepTemplateUpdates = false\n",
        feed.public_key
    ));
    fresh
        .octo(&["plugins", "import", tampered.to_str().unwrap()])
        .failure("the signed index says");
    assert!(
        fresh.lock().is_null(),
        "nothing installed: {}",
        fresh.lock()
    );

    // An index edited after signing, a missing signature, another key, no key.
    let edited = bundles.path().join("edited");
    copy_dir(&bundle, &edited);
    let index = std::fs::read_to_string(edited.join("index.json")).unwrap();
    std::fs::write(
        edited.join("index.json"),
        index.replace("\"yanked\": true", "\"yanked\": false"),
    )
    .unwrap();
    fresh
        .octo(&["plugins", "import", edited.to_str().unwrap()])
        .failure("does not verify with the pinned key");
    std::fs::remove_file(edited.join("index.json.sig")).unwrap();
    fresh
        .octo(&["plugins", "import", edited.to_str().unwrap()])
        .failure("not signed");
    let (_, other) = octo_feed::signature::generate_keypair().unwrap();
    fresh.write_settings(&format!("feedPublicKey = \"{other}\"\n"));
    fresh
        .octo(&["plugins", "import", bundle.to_str().unwrap()])
        .failure("signed with key");
    fresh.write_settings("");
    fresh
        .octo(&["plugins", "import", bundle.to_str().unwrap()])
        .failure("no feed public key is pinned");
    assert!(fresh.lock().is_null());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.path().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// Each fault: a clear one-line error, a non-zero exit, the store exactly as before (nothing
/// half-installed), and the previous version still runs.
#[test]
fn every_fault_is_refused_cleanly() {
    let (mut feed, mock) = feed_and_mock();
    // run-script 0.3.0 built for plugin API 0.2.0 (this host implements 0.1.0).
    feed.publish(
        &[(
            "rs-0.3.0.wasm",
            repack(&built("run_script.wasm"), |m| {
                m.version = "0.3.0".parse().unwrap();
                m.api_version = "0.2.0".parse().unwrap();
            }),
        )],
        &[],
    );
    let home = Home::new();
    home.configure(&mock, &feed.public_key, true, false);
    home.octo(&["plugins", "install", "run-script@0.1.0"])
        .success();
    assert_eq!(home.run_script_version(), "0.1.0");
    let before = home.store_snapshot();
    let good_index = std::fs::read(feed.dir.join("index.json")).unwrap();
    let good_sig = std::fs::read(feed.dir.join("index.json.sig")).unwrap();

    let check = |what: &str, args: &[&str], expected: &str| {
        let run = home.octo(args);
        let line = run.failure(expected);
        eprintln!("{what}: {line}");
        assert_eq!(
            home.store_snapshot(),
            before,
            "{what}: the store is untouched"
        );
        home.octo(&["plugins", "verify"]).success();
        assert_eq!(
            home.run_script_version(),
            "0.1.0",
            "{what}: the previous version runs"
        );
        line
    };
    let install = ["plugins", "install", "run-script@0.1.1"];

    mock.set_faults(r#"{"tamperBlobs":true}"#);
    check("sha256 mismatch", &install, "has the wrong sha256");

    mock.set_faults(r#"{"badSignature":true}"#);
    check(
        "bad signature",
        &install,
        "does not verify with the pinned key",
    );
    mock.clear_faults();

    std::fs::remove_file(feed.dir.join("index.json.sig")).unwrap();
    check("missing signature", &install, "not signed");
    std::fs::write(feed.dir.join("index.json.sig"), &good_sig).unwrap();

    let (_, other) = octo_feed::signature::generate_keypair().unwrap();
    home.configure(&mock, &other.to_base64(), true, false);
    check("wrong pinned key", &install, "signed with key");
    home.configure(&mock, &feed.public_key, true, false);

    mock.set_faults(r#"{"truncateBlobs":true}"#);
    let line = check("truncated download", &install, "was cut short");
    assert!(line.contains("after 3 attempt(s)"), "{line}");

    mock.set_faults(r#"{"status500":1000}"#);
    mock.clear_requests();
    let line = check("feed 500", &install, "answered 500");
    assert!(
        line.contains("after 3 attempt(s)"),
        "bounded retries: {line}"
    );
    assert_eq!(
        mock.request_paths(),
        ["/feed/index.json"; 3],
        "three attempts, then it gave up"
    );

    mock.set_faults(r#"{"hang":true}"#);
    let line = check("feed hanging", &install, "timed out");
    assert!(line.contains("after 3 attempt(s)"), "{line}");
    mock.clear_faults();

    feed.write_signed_index(b"{\"schema\":1,\"plugins\":[{\"id\":\"run-script\"}]}");
    check("malformed index", &install, "the feed index is malformed");
    std::fs::write(feed.dir.join("index.json"), &good_index).unwrap();
    std::fs::write(feed.dir.join("index.json.sig"), &good_sig).unwrap();

    check(
        "unknown plugin",
        &["plugins", "install", "run-scrpt"],
        "the feed has no plugin \"run-scrpt\"; did you mean run-script?",
    );
    check(
        "no version matching",
        &["plugins", "install", "run-script@^5"],
        "no version of run-script matches ^5",
    );
    check(
        "yanked only",
        &["plugins", "install", "run-script@=1.0.0"],
        "1.0.0 (yanked)",
    );

    // The index hides run-script 0.1.1's `process` capability (re-signed, so only the check can tell).
    let mut index = feed.index();
    for version in index["plugins"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["id"] == "run-script")
        .unwrap()["versions"]
        .as_array_mut()
        .unwrap()
    {
        if version["version"] == "0.1.1" {
            version["manifest"]["capabilities"] = serde_json::json!([]);
        }
    }
    feed.write_signed_index(&serde_json::to_vec_pretty(&index).unwrap());
    check(
        "manifest disagreeing with the index",
        &install,
        "does not match the feed index (capabilities differs)",
    );
    std::fs::write(feed.dir.join("index.json"), &good_index).unwrap();
    std::fs::write(feed.dir.join("index.json.sig"), &good_sig).unwrap();

    mock.clear_requests();
    check(
        "unsupported api version",
        &["plugins", "install", "run-script@0.3.0"],
        "needs plugin API 0.2.0, but this host supports 0.1.0",
    );
    assert!(
        !mock.request_paths().iter().any(|p| p.contains("/blobs/")),
        "refused before downloading"
    );

    // With the faults gone the same install works, and a short outage is absorbed by a retry.
    mock.set_faults(r#"{"status500":2}"#);
    let out = home.octo(&install);
    assert!(
        out.success()
            .contains("installed run-script 0.1.1 (was 0.1.0)"),
        "{out:?}"
    );
    assert_eq!(home.run_script_version(), "0.1.1");
    // No temporary download is left behind by all of the above.
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("plugins/tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// SIGKILL at arbitrary moments of an install: every next start finds a consistent store in which the
/// old or the new version is installed and runs.
#[test]
fn sigkill_during_install_leaves_a_consistent_store() {
    let (_feed, mock) = feed_and_mock();
    let home = Home::new();
    home.configure(&mock, &_feed.public_key, true, false);
    home.octo(&["plugins", "install", "run-script@0.1.0"])
        .success();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..12u64 {
        // Alternate the target so every round has something to do; slow the feed in some rounds so
        // that the kill lands in the download, and not in others so that it lands in the install.
        let current = home.installed("run-script").unwrap();
        let target = if current == "0.1.0" { "0.1.1" } else { "0.1.0" };
        mock.set_faults(if round % 3 == 0 {
            r#"{"delayMs":40}"#
        } else {
            "{}"
        });
        // (Once both blobs are in the store an install skips the download, and the kill lands in the
        // index fetch or the lock file write instead.)
        let mut child = home
            .command(&["plugins", "install", &format!("run-script@{target}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = 5 + (round * 37 + 11) % 90;
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        mock.clear_faults();

        let verify = home.octo(&["plugins", "verify"]);
        assert!(verify.ok(), "round {round}: {verify:?}");
        let installed = home.installed("run-script").unwrap();
        assert!(
            installed == current || installed == target,
            "round {round}: {installed}"
        );
        assert_eq!(home.run_script_version(), installed, "round {round}");
        seen.insert((finished, installed == target));
        // No temporary lock files are left in the store's root once it was opened again.
        let stray: Vec<String> = std::fs::read_dir(home.path().join("plugins"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(stray.is_empty(), "round {round}: {stray:?}");
    }
    eprintln!("(finished, moved) outcomes seen: {seen:?}");
    // And the interrupted install can simply be redone.
    home.octo(&["plugins", "install", "run-script@0.1.1"])
        .success();
    assert_eq!(home.run_script_version(), "0.1.1");
}

/// Regression: provenance is a type, so a `--file` install never counts as signed, even when its path
/// reads like a feed URL or a bundle (as the old `file:` prefix check would have had to get right).
#[test]
fn a_file_install_never_counts_as_signed() {
    let home = Home::new();
    for (i, dir) in ["https:/feed.example/blobs", "bundle:x", "builtin"]
        .iter()
        .enumerate()
    {
        let dir = home.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("outputs.wasm");
        let bytes = repack(&built("fixture_outputs.wasm"), |m| {
            m.version = format!("0.1.{i}").parse().unwrap()
        });
        std::fs::write(&file, bytes).unwrap();
        home.octo(&["plugins", "install", "--file", file.to_str().unwrap()])
            .success();
        let source = &home.lock()["plugins"]["fixture-outputs"]["source"];
        assert_eq!(source["type"], "localFile", "{source}");
        let list = home.octo(&["plugins", "list", "--json"]).json();
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "fixture-outputs")
            .unwrap()
            .clone();
        assert_eq!(entry["signed"], false, "{entry}");
        assert!(
            entry["source"].as_str().unwrap().starts_with("file:"),
            "{entry}"
        );
    }
}
