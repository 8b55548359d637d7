//! The service against a real `tentacle agent` process over mutual TLS + HTTP/2: each test is
//! one part of the protocol (see `host/protocol/tests/wire.rs` for the bytes).

mod common;

use common::*;
use octo_comms::rpc::RpcError;
use octo_comms::rpc::body;
use octo_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_runs_remotely_with_its_log_and_result() {
    let server = Server::new();
    let (tentacle, _home) = Tentacle::listening(server.thumbprint()).await;
    let client = server.connect(&tentacle).await;

    let caps: Capabilities = client
        .call_json(paths::CAPABILITIES, &Empty {})
        .await
        .unwrap();
    assert_eq!(caps.protocol_version, PROTOCOL_VERSION);
    assert!(caps.services.iter().any(|s| s == paths::STEP_START));

    // Without the plugin the start is refused with plugin-missing; the server sends it.
    let start = script_step(
        "Tasks-1",
        "echo hello\necho \"pw=$(get_octopusvariable Password)\"\nset_octopusvariable Out 42\necho world",
    );
    let mut start = start;
    start.variables.push(Variable {
        name: "Password".into(),
        value: "s3cret-value".into(),
        sensitive: true,
    });
    let err = client
        .call_json::<_, StepStarted>(paths::STEP_START, &start)
        .await
        .unwrap_err();
    let (status, body) = refusal(&err).unwrap();
    assert_eq!((status, body.error), (404, ErrorCode::PluginMissing));
    let presence: PluginPresence = client
        .call_json(
            paths::PLUGIN_HAS,
            &PluginQuery {
                sha256: start.plugin,
            },
        )
        .await
        .unwrap();
    assert!(!presence.present);
    let stored = put_run_script(&client).await;
    assert_eq!(stored.sha256, start.plugin);

    let started: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    assert!(!started.already_started);
    // A retried start (lost answer) finds the same run.
    let again: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    assert!(again.already_started);

    let (lines, status) = follow(&client, &start.ticket).await;
    assert_eq!(status.state, StepState::Succeeded, "{status:?}");
    let text = messages(&lines);
    assert!(text.contains(&"hello".to_owned()), "{text:?}");
    assert!(text.contains(&"world".to_owned()), "{text:?}");
    assert!(text.contains(&"pw=********".to_owned()), "{text:?}");
    assert!(text.iter().all(|l| !l.contains("s3cret-value")));
    let seqs: Vec<u64> = lines.iter().map(|l| l.sequence).collect();
    assert_eq!(seqs, (1..=lines.len() as u64).collect::<Vec<_>>());
    let result = status.result.unwrap();
    assert!(
        result
            .outputs
            .iter()
            .any(|o| o.name == "Out" && o.value == "42")
    );

    // The state and log are on disk while the run is known.
    let dir = tentacle.home.join("work").join("Tasks-1");
    assert!(dir.join("log.jsonl").is_file() && dir.join("state.json").is_file());
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    assert!(!log.contains("s3cret-value"));
    // The step's work directory went with the step (issue 11, deliverable 6).
    assert!(!dir.join("step").exists());

    // Status after the last line answers at once with no lines.
    let status: StepStatus = client
        .call_json(
            paths::STEP_STATUS,
            &StatusRequest {
                ticket: start.ticket.clone(),
                after_sequence: lines.len() as u64,
                wait_ms: 20_000,
            },
        )
        .await
        .unwrap();
    assert!(status.lines.is_empty());

    // The same ticket with another request is a conflict.
    let mut other = start.clone();
    other
        .arguments
        .insert("ScriptBody".into(), "echo other".into());
    let err = client
        .call_json::<_, StepStarted>(paths::STEP_START, &other)
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::TicketConflict);

    // Complete forgets the run; the ticket is unknown afterwards.
    let _: Completed = client
        .call_json(
            paths::STEP_COMPLETE,
            &TicketRequest {
                ticket: start.ticket.clone(),
            },
        )
        .await
        .unwrap();
    assert!(!dir.exists());
    let err = client
        .call_json::<_, StepStatus>(
            paths::STEP_STATUS,
            &StatusRequest {
                ticket: start.ticket.clone(),
                after_sequence: 0,
                wait_ms: 0,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&err).unwrap(),
        (
            404,
            ErrorBody::new(
                ErrorCode::UnknownTicket,
                "this tentacle has no step run with ticket Tasks-1"
            )
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_cancel_and_grants() {
    let server = Server::new();
    let (tentacle, _home) = Tentacle::listening(server.thumbprint()).await;
    let client = server.connect(&tentacle).await;
    put_run_script(&client).await;

    let start = script_step("fails", "echo before\nfail_step \"the widget is broken\"");
    let _: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    let (_, status) = follow(&client, &start.ticket).await;
    assert_eq!(status.state, StepState::Failed);
    let failure = status.result.unwrap().failure.unwrap();
    assert_eq!(
        (failure.kind.as_str(), failure.message.as_str()),
        ("failed", "the widget is broken")
    );

    // Cancel stops a running step; completing it before it ended is refused.
    let start = script_step("long", "echo started\nsleep 30\necho never");
    let _: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    let first: StepStatus = client
        .call_json(
            paths::STEP_STATUS,
            &StatusRequest {
                ticket: start.ticket.clone(),
                after_sequence: 0,
                wait_ms: 20_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(messages(&first.lines), ["started"]);
    let err = client
        .call_json::<_, Completed>(
            paths::STEP_COMPLETE,
            &TicketRequest {
                ticket: start.ticket.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::StepRunning);
    let _: StepStatus = client
        .call_json(
            paths::STEP_CANCEL,
            &TicketRequest {
                ticket: start.ticket.clone(),
            },
        )
        .await
        .unwrap();
    let (lines, status) = follow(&client, &start.ticket).await;
    assert_eq!(status.state, StepState::Cancelled, "{status:?}");
    assert!(!messages(&lines).contains(&"never".to_owned()));

    // A bad grant is refused before anything runs.
    let mut start = script_step("bad-grant", "echo x");
    start.grants = vec!["not a destination".into()];
    let err = client
        .call_json::<_, StepStarted>(paths::STEP_START, &start)
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::BadRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_4xx() {
    let server = Server::new();
    let (tentacle, _home) = Tentacle::listening(server.thumbprint()).await;
    let client = server.connect(&tentacle).await;

    let raw = |path: &'static str, bytes: Vec<u8>| {
        let client = client.clone();
        async move {
            let request = client
                .request_builder(hyper::Method::POST, path)
                .body(body::full(bytes))
                .unwrap();
            let response = client.send(request).await.unwrap();
            let status = response.status().as_u16();
            let text = body::read_limited(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                status,
                ErrorBody::parse(std::str::from_utf8(&text).unwrap()),
            )
        }
    };
    let (status, body) = raw(paths::STEP_START, b"{not json".to_vec()).await;
    assert_eq!((status, body.unwrap().error), (400, ErrorCode::BadRequest));
    let (status, body) = raw(
        paths::STEP_START,
        br#"{"ticket":"../../etc","plugin":"00","deadlineMs":1}"#.to_vec(),
    )
    .await;
    assert_eq!((status, body.unwrap().error), (400, ErrorCode::BadRequest));
    let (status, body) = raw(paths::STEP_STATUS, vec![b' '; MAX_JSON_REQUEST + 1]).await;
    assert_eq!((status, body.unwrap().error), (413, ErrorCode::TooLarge));
    let (status, body) = raw("/v1/nothing", b"{}".to_vec()).await;
    assert_eq!((status, body.unwrap().error), (404, ErrorCode::UnknownCall));
    let (status, body) = raw("/v1/plugins/put/xyz", b"".to_vec()).await;
    assert_eq!((status, body.unwrap().error), (400, ErrorCode::BadRequest));

    // A plugin whose bytes do not match the announced digest is not stored.
    let digest = Sha256Digest::of(b"something else");
    let err = client
        .upload::<_, Stored>(
            &paths::plugin_put(&digest),
            std::io::Cursor::new(b"payload".to_vec()),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::DigestMismatch);
    let presence: PluginPresence = client
        .call_json(paths::PLUGIN_HAS, &PluginQuery { sha256: digest })
        .await
        .unwrap();
    assert!(!presence.present);

    // The service is still there after all of that.
    let _: Capabilities = client
        .call_json(paths::CAPABILITIES, &Empty {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_and_stay_inside_the_home() {
    let server = Server::new();
    let (tentacle, home) = Tentacle::listening(server.thumbprint()).await;
    let client = server.connect(&tentacle).await;

    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Sha256Digest::of(&data);
    let path = RelativePath::parse("releases/app 1.0.bin").unwrap();
    let stored: Stored = client
        .upload(
            &paths::file_upload(&path, &digest),
            std::io::Cursor::new(data.clone()),
        )
        .await
        .unwrap();
    assert_eq!((stored.size, stored.sha256), (data.len() as u64, digest));
    assert_eq!(
        std::fs::read(home.path().join("files/releases/app 1.0.bin")).unwrap(),
        data
    );

    let download = client
        .download(paths::FILE_DOWNLOAD, &FileDownload { path: path.clone() })
        .await
        .unwrap();
    assert_eq!(
        download.headers()[paths::SHA256_HEADER].to_str().unwrap(),
        digest.to_hex()
    );
    let mut got = Vec::new();
    download.copy_to(&mut got).await.unwrap();
    assert_eq!(got, data);

    // A wrong digest: refused, nothing left behind.
    let other = RelativePath::parse("wrong.bin").unwrap();
    let err = client
        .upload::<_, Stored>(
            &paths::file_upload(&other, &Sha256Digest::of(b"x")),
            std::io::Cursor::new(b"y".to_vec()),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::DigestMismatch);
    assert!(!home.path().join("files/wrong.bin").exists());

    // Path traversal, absolute paths and links out of the area are refused.
    std::fs::write(home.path().join("secret.txt"), b"secret").unwrap();
    let d = Sha256Digest::of(b"evil");
    for query in [
        format!("{}?path=../secret.txt&sha256={d}", paths::FILE_UPLOAD),
        format!("{}?path=a/../../secret.txt&sha256={d}", paths::FILE_UPLOAD),
        format!("{}?path=%2Fetc%2Fpasswd&sha256={d}", paths::FILE_UPLOAD),
        format!("{}?path=..%2Fsecret.txt&sha256={d}", paths::FILE_UPLOAD),
    ] {
        let err = client
            .upload::<_, Stored>(&query, std::io::Cursor::new(b"evil".to_vec()))
            .await
            .unwrap_err();
        assert_eq!(
            refusal(&err).unwrap().1.error,
            ErrorCode::PathRefused,
            "{query}"
        );
    }
    assert_eq!(
        std::fs::read(home.path().join("secret.txt")).unwrap(),
        b"secret"
    );
    for bad in ["../secret.txt", "/etc/passwd", "../certs/key.pem"] {
        let err = client
            .download(paths::FILE_DOWNLOAD, &serde_json::json!({ "path": bad }))
            .await
            .unwrap_err();
        assert_eq!(
            refusal(&err).unwrap().1.error,
            ErrorCode::PathRefused,
            "{bad}"
        );
    }
    std::os::unix::fs::symlink(home.path(), home.path().join("files/link")).unwrap();
    let err = client
        .download(
            paths::FILE_DOWNLOAD,
            &FileDownload {
                path: RelativePath::parse("link/secret.txt").unwrap(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::PathRefused);
    let err = client
        .upload::<_, Stored>(
            &paths::file_upload(&RelativePath::parse("link/secret.txt").unwrap(), &d),
            std::io::Cursor::new(b"evil".to_vec()),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::PathRefused);
    assert_eq!(
        std::fs::read(home.path().join("secret.txt")).unwrap(),
        b"secret"
    );
    let err = client
        .download(
            paths::FILE_DOWNLOAD,
            &FileDownload {
                path: RelativePath::parse("missing").unwrap(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).unwrap().1.error, ErrorCode::FileNotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tentacle_restart_mid_step_keeps_the_log_and_says_result_unknown() {
    let server = Server::new();
    let (mut tentacle, home) = Tentacle::listening(server.thumbprint()).await;
    let address = tentacle.address();
    let client = server.connect(&tentacle).await;
    put_run_script(&client).await;
    let start = script_step("crash", "echo one\necho two\nsleep 5\necho never");
    let _: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    // Wait until both lines are logged.
    let mut cursor = LogCursor::new();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let status: StepStatus = client
            .call_json(
                paths::STEP_STATUS,
                &StatusRequest {
                    ticket: start.ticket.clone(),
                    after_sequence: cursor.last(),
                    wait_ms: 5_000,
                },
            )
            .await
            .unwrap();
        seen.extend(cursor.take(status.lines));
    }
    tentacle.kill().await;
    let err = client
        .call_json::<_, Capabilities>(paths::CAPABILITIES, &Empty {})
        .await
        .unwrap_err();
    assert!(err.is_connection_failure(), "{err}");

    // Same home, same port: the server reconnects and resumes after the last line it saw.
    Tentacle::configure_listening(home.path(), address.port(), server.thumbprint());
    let tentacle = Tentacle::start(home.path()).await;
    let client = server.connect(&tentacle).await;
    let status: StepStatus = client
        .call_json(
            paths::STEP_STATUS,
            &StatusRequest {
                ticket: start.ticket.clone(),
                after_sequence: 0,
                wait_ms: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(status.state, StepState::Unknown);
    assert_eq!(messages(&status.lines), ["one", "two"]);
    assert_eq!(status.result.unwrap().failure.unwrap().kind, "unknown");
    // The retried start does not run it again.
    let again: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    assert_eq!(
        (again.already_started, again.state),
        (true, StepState::Unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_is_enforced_both_ways_and_removal_closes_connections() {
    let server = Server::new();
    let (tentacle, home) = Tentacle::listening(server.thumbprint()).await;

    // The server expects another thumbprint: it refuses the tentacle.
    let wrong = octo_comms::identity::Identity::generate("impostor")
        .unwrap()
        .thumbprint();
    let err = server
        .try_connect(tentacle.address(), wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Tls(octo_comms::tls::TlsError::Untrusted(_))),
        "{err}"
    );
    assert!(
        err.to_string().contains(&tentacle.thumbprint.to_string()),
        "{err}"
    );

    // A server the tentacle does not trust is refused.
    let stranger = Server::new();
    let err = stranger
        .try_connect(tentacle.address(), tentacle.thumbprint)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Tls(octo_comms::tls::TlsError::CertificateRejected { .. })
        ),
        "{err}"
    );

    // Removing trust closes the live connection.
    let client = server.connect(&tentacle).await;
    let _: Capabilities = client
        .call_json(paths::CAPABILITIES, &Empty {})
        .await
        .unwrap();
    tentacle_cmd(
        home.path(),
        &[
            "configure",
            "--remove-trust",
            &server.thumbprint().to_string(),
        ],
    );
    tokio::time::timeout(LIVENESS, client.closed())
        .await
        .expect("the connection stayed open");
    let err = server
        .try_connect(tentacle.address(), tentacle.thumbprint)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Tls(octo_comms::tls::TlsError::CertificateRejected { .. })
        ),
        "{err}"
    );
}

#[test]
fn thumbprint_and_new_certificate() {
    let home = tempfile::tempdir().unwrap();
    let first = tentacle_cmd(home.path(), &["show-thumbprint"]);
    assert_eq!(first.trim().len(), 64);
    assert_eq!(tentacle_cmd(home.path(), &["show-thumbprint"]), first);
    let new = tentacle_cmd(home.path(), &["new-certificate"]);
    assert_ne!(new, first);
    assert_eq!(tentacle_cmd(home.path(), &["show-thumbprint"]), new);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.path().join("certs/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let json = tentacle_cmd(home.path(), &["show-thumbprint", "--json"]);
    assert!(json.contains(new.trim()));
    // configure + poll-server + show-configuration
    tentacle_cmd(
        home.path(),
        &["configure", "--noListen", "--trust", new.trim()],
    );
    tentacle_cmd(
        home.path(),
        &[
            "poll-server",
            "--server-comms-address",
            "https://octo.example:10943",
            "--server-thumbprint",
            first.trim(),
        ],
    );
    let config = tentacle_cmd(home.path(), &["show-configuration"]);
    assert!(config.contains("listen = false"), "{config}");
    assert!(config.contains("https://octo.example:10943"), "{config}");
    tentacle_cmd(home.path(), &["configure", "--reset-trust"]);
    let config = tentacle_cmd(home.path(), &["show-configuration"]);
    assert!(
        !config.contains(first.trim()) && !config.contains(new.trim()),
        "{config}"
    );
    // Agent with nothing to do says so.
    let out = std::process::Command::new(tentacle_bin())
        .arg("--home")
        .arg(home.path())
        .arg("agent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither listens nor polls"));
}

/// The server's script network mode travels with the step: confined scripts on the tentacle reach
/// nothing but the egress proxy, and their attempts come back marked as a script's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confined_scripts_on_the_tentacle_reach_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in socket.incoming() {
            drop(stream);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let server = Server::new();
    let (tentacle, _home) = Tentacle::listening(server.thumbprint()).await;
    let client = server.connect(&tentacle).await;
    put_run_script(&client).await;
    let mut start = script_step(
        "confined",
        &format!(
            "curl -sS -m 10 http://127.0.0.1:{port}/; echo \"curl=$?\"\n\
             if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo tcp=open; else echo tcp=refused; fi"
        ),
    );
    start.script_network = ScriptNetwork::Confined;
    let _: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    let (lines, status) = follow(&client, &start.ticket).await;
    assert_eq!(status.state, StepState::Succeeded, "{:?}", messages(&lines));
    assert!(messages(&lines).iter().any(|l| l == "tcp=refused"));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let outbound = status.result.unwrap().outbound;
    for destination in [
        format!("http://127.0.0.1:{port}"),
        format!("tcp://127.0.0.1:{port}"),
    ] {
        assert!(
            outbound
                .iter()
                .any(|a| a.destination == destination && a.script && !a.allowed),
            "{destination}: {outbound:?}"
        );
    }
}
