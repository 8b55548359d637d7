//! The `octo` binary built next to `tentacle`, its CLI and its daemon, for the end-to-end tests
//! that drive server and tentacles as real processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use octo_comms::identity::Thumbprint;

/// The `octo` binary (`cargo test --workspace` builds it beside `tentacle`).
pub fn octo_bin() -> PathBuf {
    let path = Path::new(super::tentacle_bin()).with_file_name("octo");
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build -p octo, or cargo test --workspace)",
        path.display()
    );
    path
}

/// `octo --home HOME ARGS…`, run to its end.
pub fn octo(home: &Path, args: &[&str]) -> Output {
    Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

/// `octo --home HOME ARGS…`, which must succeed; its stdout.
pub fn octo_ok(home: &Path, args: &[&str]) -> String {
    let out = octo(home, args);
    assert!(
        out.status.success(),
        "octo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running `octo run` on loopback; killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    pub polling: SocketAddr,
    pub thumbprint: Thumbprint,
}

impl Daemon {
    /// Starts the daemon with its polling listener on `port` (0: any) and
    /// `OCTO_RECONNECT_TIMEOUT=reconnect_timeout`; returns once it says "ready".
    pub fn start(home: &Path, port: u16, reconnect_timeout: &str) -> Self {
        Self::spawn(home, port, reconnect_timeout, &[])
    }

    /// Like [`Daemon::start`] on any port, with more `octo run` arguments (`--node`, `--node-timeout`).
    pub fn start_with(home: &Path, reconnect_timeout: &str, extra: &[&str]) -> Self {
        Self::spawn(home, 0, reconnect_timeout, extra)
    }

    fn spawn(home: &Path, port: u16, reconnect_timeout: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(octo_bin())
            .arg("--home")
            .arg(home)
            .args([
                "run",
                "--listen-address",
                "127.0.0.1",
                "--comms-listen-port",
            ])
            .arg(port.to_string())
            .args(extra)
            .env("OCTO_RECONNECT_TIMEOUT", reconnect_timeout)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut polling, mut thumbprint) = (None, None);
        for line in &mut lines {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("polling-listener ") {
                polling = Some(a.parse().unwrap());
            } else if let Some(t) = line.strip_prefix("thumbprint ") {
                thumbprint = Some(Thumbprint::parse(t).unwrap());
            } else if line == "ready" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            polling: polling.expect("the daemon did not start"),
            thumbprint: thumbprint.unwrap(),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command's stdout and stderr, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `octo targets add-listening NAME` for a running tentacle.
pub fn add_listening(home: &Path, name: &str, tentacle: &super::Tentacle, thumbprint: Thumbprint) {
    add_listening_in_roles(home, name, tentacle, thumbprint, &[]);
}

/// Like [`add_listening`], with the target in `roles`.
pub fn add_listening_in_roles(
    home: &Path,
    name: &str,
    tentacle: &super::Tentacle,
    thumbprint: Thumbprint,
    roles: &[&str],
) {
    let url = format!("https://{}", tentacle.address());
    let thumbprint = thumbprint.to_string();
    let mut args = vec![
        "targets",
        "add-listening",
        name,
        "--url",
        &url,
        "--thumbprint",
        &thumbprint,
    ];
    for role in roles {
        args.extend(["--role", role]);
    }
    octo_ok(home, &args);
}

/// `octo tasks show ID --json`.
pub fn task_json(home: &Path, id: &str) -> serde_json::Value {
    // A task that did not succeed exits non-zero; the document is there all the same.
    let out = octo(home, &["tasks", "show", id, "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tasks show {id} --json: {e}: {}", text(&out).1))
}

/// Waits until `done` says yes of task `id`'s JSON.
pub fn wait_task(
    home: &Path,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let task = task_json(home, id);
        if done(&task) {
            return task;
        }
        assert!(
            started.elapsed() < super::LIVENESS,
            "task {id} never got there: {task}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Everything `stream` gives, as it comes (read on a thread of its own).
pub fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let shared = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut s = shared.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

/// A tentacle in a new home (returned: it must outlive the tentacle) that polls `daemon`, started.
pub async fn start_polling(daemon: &Daemon) -> (super::Tentacle, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    super::tentacle_cmd(home.path(), &["configure", "--noListen"]);
    super::tentacle_cmd(
        home.path(),
        &[
            "poll-server",
            "--server-comms-address",
            &format!("https://{}", daemon.polling),
            "--server-thumbprint",
            &daemon.thumbprint.to_string(),
        ],
    );
    (super::Tentacle::start(home.path()).await, home)
}

/// `octo targets health NAME` until it succeeds (a polling tentacle may still be dialling); its output.
pub fn wait_healthy(home: &Path, name: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let out = octo(home, &["targets", "health", name]);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        let (stdout, stderr) = text(&out);
        assert!(
            started.elapsed() < super::LIVENESS,
            "{name} never became healthy: {stdout}{stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
