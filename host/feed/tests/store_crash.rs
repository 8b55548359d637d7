//! A writer SIGKILLed at arbitrary points leaves the store in the old state or the new, never a mix.
//!
//! The test re-runs this test binary as a child process (`crash_child`, selected by an environment
//! variable) that installs, rolls back, removes and collects in a loop, and kills it after a random delay,
//! several times over the same store. After each kill, the store must open, its lock file must parse, and
//! every blob it references must be present and intact.

use octo_feed::store::{NewEntry, Store, StoreOptions};
use std::time::Duration;

const CHILD_ENV: &str = "OCTO_FEED_CRASH_CHILD_DIR";

fn entry(version: &str, sha256: &str) -> NewEntry {
    NewEntry {
        requirement: "*".parse().unwrap(),
        version: version.parse().unwrap(),
        sha256: sha256.to_string(),
        source: octo_feed::Source::Embedded,
        kind: octo_manifest::PluginKind::Step,
    }
}

/// The child's work loop; does nothing unless started by `sigkill_at_any_point_leaves_a_consistent_store`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let options = StoreOptions {
        lock_timeout: Duration::from_secs(30),
        grace: Duration::ZERO,
    };
    let store = Store::open_with(&dir, options).unwrap();
    let mut i: u64 = 0;
    loop {
        i += 1;
        // Big-ish blobs make the kill land inside writes more often.
        let blob: Vec<u8> = (0..200_000u64)
            .map(|b| (b.wrapping_mul(31) ^ i) as u8)
            .collect();
        let sha = store.add_blob(&blob).unwrap();
        let id = format!("plugin-{}", i % 3);
        store
            .set_entry(&id, entry(&format!("0.1.{i}"), &sha))
            .unwrap();
        match i % 7 {
            0 => {
                let _ = store.rollback(&id);
            }
            3 => {
                let _ = store.remove(&format!("plugin-{}", (i + 1) % 3));
            }
            5 => {
                store.gc().unwrap();
            }
            _ => {}
        }
        std::fs::write(std::path::Path::new(&dir).join("progress"), i.to_string()).unwrap();
    }
}

#[test]
fn sigkill_at_any_point_leaves_a_consistent_store() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..6u64 {
        let progress = dir.path().join("progress");
        let _ = std::fs::remove_file(&progress);
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it make some progress (bounded wait), then kill it at a pseudo-random moment.
        for _ in 0..500 {
            if progress.exists() || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child died on its own"
        );
        std::thread::sleep(Duration::from_millis(3 + (round * 17) % 40));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                grace: Duration::ZERO,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let listed = store.list().unwrap();
        assert!(
            !listed.is_empty(),
            "round {round}: the child installed something before the kill"
        );
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        // Leftover temp files from the killed writer were cleaned at open (grace 0).
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .chain(std::fs::read_dir(store.download_dir()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-") || n.starts_with(".plugins.lock.tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
        // And it is writable again straight away: the dead writer's lock is gone.
        let blob = format!("after round {round}");
        let sha = store.add_blob(blob.as_bytes()).unwrap();
        store
            .set_entry("survivor", entry(&format!("1.0.{round}"), &sha))
            .unwrap();
    }
}
