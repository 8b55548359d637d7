//! First use of an identity by two processes at once (issue 11, finding 9): the agent (or `octo
//! run`) and `show-thumbprint` started at the same moment on a fresh home must agree on one
//! identity, and the key left on disk must match the certificate. The `octo` binary is the one
//! built next to `tentacle` (`cargo test --workspace` builds both).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use octo_comms::identity::{Identity, Thumbprint};

const RUNS: usize = 20;

fn octo_bin() -> PathBuf {
    let path = Path::new(common::tentacle_bin()).with_file_name("octo");
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build -p octo, or cargo test --workspace)",
        path.display()
    );
    path
}

/// Starts a daemon whose stdout says `thumbprint X` before `ready`.
fn spawn_daemon(program: &Path, home: &Path, args: &[&str]) -> Child {
    Command::new(program)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("TENTACLE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn spawn_show_thumbprint(program: &Path, home: &Path) -> Child {
    Command::new(program)
        .arg("--home")
        .arg(home)
        .arg("show-thumbprint")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The thumbprint a daemon announced; then it is stopped.
fn daemon_thumbprint(mut child: Child) -> Thumbprint {
    let mut thumbprint = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(t) = line.strip_prefix("thumbprint ") {
            thumbprint = Some(Thumbprint::parse(t).unwrap());
        } else if line == "ready" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    thumbprint.expect("the daemon did not announce its thumbprint")
}

fn shown_thumbprint(child: Child) -> Thumbprint {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "show-thumbprint failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Thumbprint::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

/// Starts the daemon and `show-thumbprint` together on a fresh home, `RUNS` times.
fn race(program: &Path, certs: &str, configure: impl Fn(&Path), daemon_args: &[&str]) {
    for run in 0..RUNS {
        let home = tempfile::tempdir().unwrap();
        configure(home.path());
        let daemon = spawn_daemon(program, home.path(), daemon_args);
        let show = spawn_show_thumbprint(program, home.path());
        let shown = shown_thumbprint(show);
        let announced = daemon_thumbprint(daemon);
        let stored = Identity::load(&home.path().join(certs))
            .unwrap_or_else(|e| panic!("run {run}: the stored identity is unusable: {e}"));
        assert_eq!(shown, announced, "run {run}: two identities");
        assert_eq!(stored.thumbprint(), shown, "run {run}: the files changed");
    }
}

#[test]
fn tentacle_agent_and_show_thumbprint_agree_on_a_fresh_home() {
    let server = Identity::generate("server").unwrap().thumbprint();
    race(
        Path::new(common::tentacle_bin()),
        "certs",
        |home| common::Tentacle::configure_listening(home, 0, server),
        &["agent"],
    );
}

#[test]
fn octo_run_and_show_thumbprint_agree_on_a_fresh_home() {
    race(
        &octo_bin(),
        "certs",
        |_| {},
        &[
            "run",
            "--listen-address",
            "127.0.0.1",
            "--comms-listen-port",
            "0",
        ],
    );
}
