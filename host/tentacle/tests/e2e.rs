//! End to end with real processes: the `octo` server daemon and CLI, and `tentacle` agents, on
//! loopback with port 0 and temporary homes. The `octo` binary is the one built next to
//! `tentacle` (`cargo test --workspace` builds both).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::octo::{Daemon, octo, octo_bin, octo_ok, start_polling, wait_healthy};
use common::{Tentacle, tentacle_cmd};
use octo_comms::identity::Thumbprint;

/// How long the daemon keeps redialling a tentacle before a step fails.
const RECONNECT_TIMEOUT: &str = "20s";

async fn listening_tentacle(server: Thumbprint) -> (Tentacle, tempfile::TempDir) {
    Tentacle::listening(server).await
}

fn lines_of(stdout: &str, target: &str) -> Vec<String> {
    let prefix = format!("[{target}] ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_and_polling_targets_run_a_step_in_parallel() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(octo_ok(home, &["show-thumbprint"]).trim()).unwrap();
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    assert_eq!(daemon.thumbprint, server);

    let (listening, _lhome) = listening_tentacle(server).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-listening",
            "web1",
            "--url",
            &format!("https://{}", listening.address()),
            "--thumbprint",
            &listening.thumbprint.to_string(),
            "--role",
            "web",
        ],
    );

    let phome = tempfile::tempdir().unwrap();
    tentacle_cmd(phome.path(), &["configure", "--noListen"]);
    tentacle_cmd(
        phome.path(),
        &[
            "poll-server",
            "--server-comms-address",
            &format!("https://{}", daemon.polling),
            "--server-thumbprint",
            &server.to_string(),
        ],
    );
    let polling = Tentacle::start(phome.path()).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-polling",
            "poll1",
            "--thumbprint",
            &polling.thumbprint.to_string(),
            "--role",
            "web",
        ],
    );
    let list = octo_ok(home, &["targets", "list"]);
    assert!(list.contains("web1") && list.contains("poll1"), "{list}");
    let health = wait_healthy(home, "poll1");
    assert!(health.contains("healthy"), "{health}");
    let health = octo_ok(home, &["targets", "health"]);
    assert_eq!(health.matches("healthy").count(), 2, "{health}");

    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo \"hello from $(hostname 2>/dev/null || echo tentacle)\"\necho \"pw=$(get_octopusvariable Pw)\"",
            "--sensitive-variable",
            "Pw=hunter2-secret",
            "--role",
            "web",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for target in ["web1", "poll1"] {
        let lines = lines_of(&stdout, target);
        assert!(
            lines.iter().any(|l| l.starts_with("hello from")),
            "{stdout}"
        );
        assert!(lines.contains(&"pw=********".to_owned()), "{stdout}");
        assert!(lines.contains(&"Step succeeded".to_owned()), "{stdout}");
    }
    assert!(!stdout.contains("hunter2-secret") && !stderr.contains("hunter2-secret"));
    // The plugin was sent once per tentacle; a second run finds it cached.
    assert_eq!(stderr.matches("sending the plugin").count(), 2, "{stderr}");
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=exit 3",
            "--target",
            "web1",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("[web1] error: step failed"), "{stderr}");
    assert!(!stderr.contains("sending the plugin"), "{stderr}");

    // Unknown targets and roles are refused with a clear message.
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=true",
            "--target",
            "nope",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no target named \"nope\""));

    // Removing the target closes its connection and it is no longer trusted.
    octo_ok(home, &["targets", "remove", "poll1"]);
    assert!(!octo_ok(home, &["targets", "list"]).contains("poll1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_survived_by_polling_tentacles() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let mut daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let port = daemon.polling.port();
    let (polling, _phome) = start_polling(&daemon).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-polling",
            "p1",
            "--thumbprint",
            &polling.thumbprint.to_string(),
        ],
    );
    wait_healthy(home, "p1");
    daemon.kill();
    let out = octo(home, &["targets", "health"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    let _daemon = Daemon::start(home, port, RECONNECT_TIMEOUT);
    wait_healthy(home, "p1");
    let stdout = octo_ok(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo back",
            "--target",
            "p1",
        ],
    );
    assert!(
        lines_of(&stdout, "p1").contains(&"back".to_owned()),
        "{stdout}"
    );
}

/// A TCP forwarder that can cut every connection through it (like Halibut's PortForwarder).
struct Forwarder {
    address: SocketAddr,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    paused: Arc<std::sync::atomic::AtomicBool>,
}

/// Copies `from` to `to`, holding bytes back while `paused`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Forwarder {
    async fn start(to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let paused: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let list = connections.clone();
        let pause = paused.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let pause = pause.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(to).await {
                        let (ir, iw) = inbound.into_split();
                        let (or, ow) = outbound.into_split();
                        // Either direction ending ends the connection (both halves drop).
                        tokio::select! {
                            _ = pump(ir, ow, pause.clone()) => {}
                            _ = pump(or, iw, pause) => {}
                        }
                    }
                });
                list.lock().unwrap().push(handle);
            }
        });
        Self {
            address,
            connections,
            paused,
        }
    }

    /// Holds every byte back (both directions) until [`Forwarder::resume`].
    fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn resume(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops every live connection (both sockets close).
    fn cut(&self) -> usize {
        let mut list = self.connections.lock().unwrap();
        let n = list.len();
        for handle in list.drain(..) {
            handle.abort();
        }
        n
    }
}

/// Reads a child's stdout lines on a thread.
fn stream_lines(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    lines
}

async fn wait_for_line(lines: &Arc<Mutex<Vec<String>>>, wanted: &str) {
    let started = Instant::now();
    while !lines.lock().unwrap().iter().any(|l| l == wanted) {
        assert!(
            started.elapsed() < common::LIVENESS,
            "never saw {wanted:?}: {:?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_paused_connections_mid_step_lose_no_line_and_repeat_none() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(octo_ok(home, &["show-thumbprint"]).trim()).unwrap();
    let _daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (tentacle, _thome) = listening_tentacle(server).await;
    let forwarder = Forwarder::start(tentacle.address()).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-listening",
            "t1",
            "--url",
            &format!("https://{}", forwarder.address),
            "--thumbprint",
            &tentacle.thumbprint.to_string(),
        ],
    );
    let mut cli = Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args([
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=for i in $(seq 1 30); do echo line $i; sleep 0.1; done",
            "--target",
            "t1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stream_lines(&mut cli);
    wait_for_line(&lines, "[t1] line 5").await;
    assert!(forwarder.cut() > 0);
    wait_for_line(&lines, "[t1] line 12").await;
    // A pause (a stalled network) shorter than the keep-alive timeout: the connection survives.
    forwarder.pause();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    forwarder.resume();
    wait_for_line(&lines, "[t1] line 15").await;
    forwarder.cut();
    let status = tokio::task::spawn_blocking(move || cli.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr).to_string();
    assert!(status.status.success(), "{stderr}");
    let got = lines_of(&lines.lock().unwrap().join("\n"), "t1");
    let expected: Vec<String> = (1..=30)
        .map(|i| format!("line {i}"))
        .chain(["Step succeeded".to_owned()])
        .collect();
    assert_eq!(got, expected, "{stderr}");
    assert!(stderr.contains("reconnect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tentacle_that_dies_with_the_step_gives_result_unknown() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(octo_ok(home, &["show-thumbprint"]).trim()).unwrap();
    let _daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (mut tentacle, thome) = listening_tentacle(server).await;
    let address = tentacle.address();
    octo_ok(
        home,
        &[
            "targets",
            "add-listening",
            "t1",
            "--url",
            &format!("https://{address}"),
            "--thumbprint",
            &tentacle.thumbprint.to_string(),
        ],
    );
    let mut cli = Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args([
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo one\nsleep 4\necho never",
            "--target",
            "t1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stream_lines(&mut cli);
    wait_for_line(&lines, "[t1] one").await;
    tentacle.kill().await;
    Tentacle::configure_listening(thome.path(), address.port(), server);
    let _again = Tentacle::start(thome.path()).await;
    let status = tokio::task::spawn_blocking(move || cli.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr).to_string();
    assert!(!status.status.success());
    assert!(stderr.contains("[t1] error: result unknown"), "{stderr}");
    let got = lines_of(&lines.lock().unwrap().join("\n"), "t1");
    assert_eq!(got, ["one"], "{stderr}");
}

#[test]
fn octo_identity_commands_and_targets_file() {
    let home = tempfile::tempdir().unwrap();
    let first = octo_ok(home.path(), &["show-thumbprint"]);
    assert_eq!(octo_ok(home.path(), &["show-thumbprint"]), first);
    let new = octo_ok(home.path(), &["new-certificate"]);
    assert_ne!(first, new);
    assert!(octo_ok(home.path(), &["show-thumbprint", "--json"]).contains(new.trim()));
    let t = "AB".repeat(32);
    octo_ok(
        home.path(),
        &["targets", "add-polling", "p1", "--thumbprint", &t],
    );
    let out = octo(
        home.path(),
        &["targets", "add-polling", "p1", "--thumbprint", &t],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = octo(
        home.path(),
        &[
            "targets",
            "add-listening",
            "l1",
            "--url",
            "http://x:1",
            "--thumbprint",
            &t,
        ],
    );
    assert!(!out.status.success());
    let json = octo_ok(home.path(), &["targets", "list", "--json"]);
    assert!(json.contains("\"kind\": \"polling\""), "{json}");
    // Targets are kept in the store (`octo.db` by default), which is private like the file was.
    assert!(!home.path().join("targets.json").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.path().join("octo.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = octo(home.path(), &["targets", "health"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("octo run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_protocol_clients_and_a_wrong_server_thumbprint_are_turned_away() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (tentacle, _thome) = listening_tentacle(daemon.thumbprint).await;

    // Plain HTTP to either TLS port gets a short text answer, not a hang or a stack trace.
    for address in [tentacle.address(), daemon.polling] {
        let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(common::LIVENESS, tcp.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.len() < 2048, "{answer}");
    }

    // A polling tentacle configured with the wrong server thumbprint never connects.
    let wrong = octo_comms::identity::Identity::generate("not-the-server")
        .unwrap()
        .thumbprint();
    let phome = tempfile::tempdir().unwrap();
    tentacle_cmd(phome.path(), &["configure", "--noListen"]);
    tentacle_cmd(
        phome.path(),
        &[
            "poll-server",
            "--server-comms-address",
            &format!("https://{}", daemon.polling),
            "--server-thumbprint",
            &wrong.to_string(),
        ],
    );
    let polling = Tentacle::start(phome.path()).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-polling",
            "p1",
            "--thumbprint",
            &polling.thumbprint.to_string(),
        ],
    );
    let out = octo(home, &["targets", "health", "p1"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("not connected"),
        "{stdout}"
    );

    // A listening target registered with the wrong thumbprint is refused by the server.
    octo_ok(
        home,
        &[
            "targets",
            "add-listening",
            "l1",
            "--url",
            &format!("https://{}", tentacle.address()),
            "--thumbprint",
            &wrong.to_string(),
        ],
    );
    let out = octo(home, &["targets", "health", "l1"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("not trusted"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_cli_cancels_the_step_on_the_tentacle() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let daemon = Daemon::start(home, 0, RECONNECT_TIMEOUT);
    let (tentacle, thome) = listening_tentacle(daemon.thumbprint).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-listening",
            "t1",
            "--url",
            &format!("https://{}", tentacle.address()),
            "--thumbprint",
            &tentacle.thumbprint.to_string(),
        ],
    );
    let mut cli = Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args([
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo started\nsleep 60",
            "--target",
            "t1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = stream_lines(&mut cli);
    wait_for_line(&lines, "[t1] started").await;
    let work = thome.path().join("work");
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 1);
    cli.kill().unwrap();
    cli.wait().unwrap();
    // The run is cancelled, followed to its end and completed: its directory goes away long
    // before the script's sleep would have ended.
    let started = Instant::now();
    while std::fs::read_dir(&work).unwrap().count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the step was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
