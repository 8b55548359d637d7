//! The wire protocol between the server and a tentacle, as executable documentation: each test
//! shows the exact bytes of one call's request and answer. Changing one of these strings is a
//! protocol change (bump `PROTOCOL_VERSION`). The end-to-end behaviour of each call against a
//! real tentacle is in `host/tentacle/tests/`.

use std::collections::BTreeMap;

use octo_protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `value` encodes to exactly `json`, and `json` decodes back to `value`.
fn wire<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, json: &str) {
    let compact: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_value(value).unwrap(), compact, "encoding");
    assert_eq!(&serde_json::from_str::<T>(json).unwrap(), value, "decoding");
}

fn ticket() -> Ticket {
    Ticket::parse("ServerTasks-42.deploy").unwrap()
}

const DIGEST: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn every_call_is_a_post_to_a_versioned_path() {
    assert_eq!(
        paths::ALL,
        &[
            "/v1/capabilities",
            "/v1/steps/start",
            "/v1/steps/status",
            "/v1/steps/cancel",
            "/v1/steps/complete",
            "/v1/plugins/has",
            "/v1/plugins/put/",
            "/v1/plugins/get",
            "/v1/files/upload",
            "/v1/files/download",
            "/v1/packages/has",
            "/v1/packages/put",
        ]
    );
}

#[test]
fn capabilities_is_also_the_health_check() {
    wire(&Empty {}, "{}");
    wire(
        &Capabilities {
            protocol_version: 1,
            agent: "tentacle 0.1.0".into(),
            services: vec!["/v1/capabilities".into()],
            os: "linux".into(),
            arch: "x86_64".into(),
            max_json_request: 4194304,
            max_plugin_size: 268435456,
            max_file_size: 8589934592,
        },
        r#"{"protocolVersion":1,"agent":"tentacle 0.1.0","services":["/v1/capabilities"],
            "os":"linux","arch":"x86_64","maxJsonRequest":4194304,"maxPluginSize":268435456,
            "maxFileSize":8589934592}"#,
    );
}

#[test]
fn start_step_names_the_run_the_plugin_and_the_grants() {
    wire(
        &StartStep {
            ticket: ticket(),
            plugin: Sha256Digest::parse(DIGEST).unwrap(),
            arguments: BTreeMap::from([("ScriptBody".into(), "echo hi".into())]),
            variables: vec![
                Variable {
                    name: "Env".into(),
                    value: "prod".into(),
                    sensitive: false,
                },
                Variable {
                    name: "Password".into(),
                    value: "s3cret".into(),
                    sensitive: true,
                },
            ],
            grants: vec!["https://example.com:443".into()],
            deadline_ms: 600000,
            script_network: ScriptNetwork::Audited,
            internal_networks: None,
            package: None,
        },
        &format!(
            r#"{{"ticket":"ServerTasks-42.deploy","plugin":"{DIGEST}",
               "arguments":{{"ScriptBody":"echo hi"}},
               "variables":[{{"name":"Env","value":"prod"}},{{"name":"Password","value":"s3cret","sensitive":true}}],
               "grants":["https://example.com:443"],"deadlineMs":600000}}"#
        ),
    );
    // Optional fields may be left out.
    let minimal: StartStep = serde_json::from_str(&format!(
        r#"{{"ticket":"t1","plugin":"{DIGEST}","deadlineMs":1000}}"#
    ))
    .unwrap();
    assert!(minimal.arguments.is_empty() && minimal.variables.is_empty());
    assert_eq!(minimal.script_network, ScriptNetwork::Audited);
    // Confined scripts (the server is air-gapped or `scriptNetwork = "confined"`).
    wire(
        &StartStep {
            script_network: ScriptNetwork::Confined,
            ..minimal.clone()
        },
        &format!(
            r#"{{"ticket":"t1","plugin":"{DIGEST}","arguments":{{}},"variables":[],"grants":[],
               "deadlineMs":1000,"scriptNetwork":"confined"}}"#
        ),
    );
    // While the server is air-gapped: its internal networks, which a granted name's resolved
    // addresses must lie inside on the tentacle too.
    assert_eq!(minimal.internal_networks, None);
    wire(
        &StartStep {
            script_network: ScriptNetwork::Confined,
            internal_networks: Some(vec!["10.0.0.0/8".into(), "db.internal".into()]),
            ..minimal.clone()
        },
        &format!(
            r#"{{"ticket":"t1","plugin":"{DIGEST}","arguments":{{}},"variables":[],"grants":[],
               "deadlineMs":1000,"scriptNetwork":"confined",
               "internalNetworks":["10.0.0.0/8","db.internal"]}}"#
        ),
    );
    wire(
        &StepStarted {
            ticket: ticket(),
            state: StepState::Running,
            already_started: true,
        },
        r#"{"ticket":"ServerTasks-42.deploy","state":"running","alreadyStarted":true}"#,
    );
    // Debug never shows a sensitive value.
    let v = Variable {
        name: "P".into(),
        value: "s3cret".into(),
        sensitive: true,
    };
    assert!(!format!("{v:?}").contains("s3cret"));
}

#[test]
fn start_step_carries_a_package_by_digest_and_how_to_download_it() {
    let minimal: StartStep = serde_json::from_str(&format!(
        r#"{{"ticket":"t1","plugin":"{DIGEST}","deadlineMs":1000}}"#
    ))
    .unwrap();
    assert_eq!(minimal.package, None);
    let package = StepPackage {
        feed: "nuget".into(),
        id: "Acme.Web".into(),
        version: "1.2.3".into(),
        files: vec![PackageFileRef {
            name: "acme.web.1.2.3.nupkg".into(),
            sha256: Sha256Digest::parse(DIGEST).unwrap(),
            size: 42,
        }],
        direct: None,
    };
    wire(
        &StartStep {
            package: Some(package),
            ..minimal.clone()
        },
        &format!(
            r#"{{"ticket":"t1","plugin":"{DIGEST}","arguments":{{}},"variables":[],"grants":[],
               "deadlineMs":1000,"package":{{"feed":"nuget","id":"Acme.Web","version":"1.2.3",
               "files":[{{"name":"acme.web.1.2.3.nupkg","sha256":"{DIGEST}","size":42}}]}}}}"#
        ),
    );
    // Acquisition `target`: the download and the feed's credentials, for this run only.
    let direct = DirectDownload {
        download: serde_json::json!({"feed": "nuget"}),
        username: Some("ann".into()),
        password: Some("hunter2".into()),
    };
    wire(
        &direct,
        r#"{"download":{"feed":"nuget"},"username":"ann","password":"hunter2"}"#,
    );
    assert!(!format!("{direct:?}").contains("hunter2"));
    wire(
        &PackagePresence {
            sha256: Sha256Digest::parse(DIGEST).unwrap(),
            present: false,
        },
        &format!(r#"{{"sha256":"{DIGEST}","present":false}}"#),
    );
    assert_eq!(ErrorCode::PackageMissing.http_status(), 404);
}

#[test]
fn values_that_name_things_on_disk_are_refused_when_decoded() {
    for bad in [
        r#"{"ticket":"../etc","plugin":"x","deadlineMs":1}"#,
        r#"{"ticket":"t","plugin":"not-a-digest","deadlineMs":1}"#,
    ] {
        assert!(serde_json::from_str::<StartStep>(bad).is_err(), "{bad}");
    }
    assert!(serde_json::from_str::<FileDownload>(r#"{"path":"../../key.pem"}"#).is_err());
    assert!(serde_json::from_str::<FileDownload>(r#"{"path":"/etc/passwd"}"#).is_err());
}

#[test]
fn status_is_a_long_poll_for_the_lines_after_a_sequence() {
    wire(
        &StatusRequest {
            ticket: ticket(),
            after_sequence: 2,
            wait_ms: 20000,
        },
        r#"{"ticket":"ServerTasks-42.deploy","afterSequence":2,"waitMs":20000}"#,
    );
    wire(
        &StepStatus {
            ticket: ticket(),
            state: StepState::Running,
            lines: vec![LogEntry {
                sequence: 3,
                time_ms: 1700000000000,
                level: LogLevel::Info,
                message: "Deploying".into(),
            }],
            last_sequence: 3,
            result: None,
        },
        r#"{"ticket":"ServerTasks-42.deploy","state":"running",
            "lines":[{"sequence":3,"timeMs":1700000000000,"level":"info","message":"Deploying"}],
            "lastSequence":3}"#,
    );
    wire(
        &StepStatus {
            ticket: ticket(),
            state: StepState::Failed,
            lines: vec![],
            last_sequence: 7,
            result: Some(StepResult {
                failure: Some(Failure {
                    kind: "failed".into(),
                    message: "exit code 3".into(),
                }),
                outputs: vec![Variable {
                    name: "Out".into(),
                    value: "1".into(),
                    sensitive: false,
                }],
                outbound: vec![
                    OutboundAttempt {
                        destination: "https://example.com:443".into(),
                        allowed: false,
                        reason: "not granted".into(),
                        script: false,
                    },
                    OutboundAttempt {
                        destination: "tcp://10.0.0.5:5432".into(),
                        allowed: false,
                        reason: "confined".into(),
                        script: true,
                    },
                ],
                artifacts: vec![ArtifactInfo {
                    name: "report".into(),
                    path: "out/report.txt".into(),
                }],
            }),
        },
        r#"{"ticket":"ServerTasks-42.deploy","state":"failed","lines":[],"lastSequence":7,
            "result":{"failure":{"kind":"failed","message":"exit code 3"},
                      "outputs":[{"name":"Out","value":"1"}],
                      "outbound":[{"destination":"https://example.com:443","allowed":false,"reason":"not granted"},
                                  {"destination":"tcp://10.0.0.5:5432","allowed":false,"reason":"confined","script":true}],
                      "artifacts":[{"name":"report","path":"out/report.txt"}]}}"#,
    );
    // A tentacle that restarted while the step ran says so.
    assert_eq!(
        serde_json::to_string(&StepState::Unknown).unwrap(),
        r#""unknown""#
    );
}

#[test]
fn cancel_complete_and_plugins() {
    wire(
        &TicketRequest { ticket: ticket() },
        r#"{"ticket":"ServerTasks-42.deploy"}"#,
    );
    wire(
        &Completed { ticket: ticket() },
        r#"{"ticket":"ServerTasks-42.deploy"}"#,
    );
    let digest = Sha256Digest::parse(DIGEST).unwrap();
    wire(
        &PluginQuery { sha256: digest },
        &format!(r#"{{"sha256":"{DIGEST}"}}"#),
    );
    wire(
        &PluginPresence {
            sha256: digest,
            present: false,
        },
        &format!(r#"{{"sha256":"{DIGEST}","present":false}}"#),
    );
    assert_eq!(
        paths::plugin_put(&digest),
        format!("/v1/plugins/put/{DIGEST}")
    );
    wire(
        &Stored {
            name: DIGEST.into(),
            size: 3,
            sha256: digest,
        },
        &format!(r#"{{"name":"{DIGEST}","size":3,"sha256":"{DIGEST}"}}"#),
    );
}

#[test]
fn file_upload_names_the_file_and_digest_in_the_query() {
    let path = RelativePath::parse("releases/app 1.0.zip").unwrap();
    let digest = Sha256Digest::parse(DIGEST).unwrap();
    assert_eq!(
        paths::file_upload(&path, &digest),
        format!("/v1/files/upload?path=releases/app%201.0.zip&sha256={DIGEST}")
    );
    wire(&FileDownload { path }, r#"{"path":"releases/app 1.0.zip"}"#);
    assert_eq!(paths::SHA256_HEADER, "x-octo-sha256");
}

#[test]
fn refusals_carry_a_code_and_one_line() {
    let body = ErrorBody::new(ErrorCode::UnknownTicket, "no run with ticket t9");
    wire(
        &body,
        r#"{"error":"unknown-ticket","message":"no run with ticket t9"}"#,
    );
    assert_eq!(
        ErrorBody::parse(r#"{"error":"unknown-ticket","message":"no run with ticket t9"}"#),
        Some(body)
    );
    assert_eq!(ErrorBody::parse("certificate required"), None);
    let statuses: Vec<(ErrorCode, u16)> = [
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::UnknownCall,
        ErrorCode::UnknownTicket,
        ErrorCode::PluginMissing,
        ErrorCode::PluginInvalid,
        ErrorCode::TicketConflict,
        ErrorCode::StepRunning,
        ErrorCode::DigestMismatch,
        ErrorCode::PathRefused,
        ErrorCode::FileNotFound,
        ErrorCode::Internal,
    ]
    .into_iter()
    .map(|c| (c, c.http_status()))
    .collect();
    assert_eq!(
        statuses.iter().map(|s| s.1).collect::<Vec<_>>(),
        [400, 413, 404, 404, 404, 422, 409, 409, 422, 403, 404, 500]
    );
}

#[test]
fn a_log_cursor_passes_every_line_on_exactly_once() {
    let line = |sequence| LogEntry {
        sequence,
        time_ms: 0,
        level: LogLevel::Info,
        message: format!("line {sequence}"),
    };
    let mut cursor = LogCursor::new();
    assert_eq!(cursor.take(vec![line(1), line(2)]).len(), 2);
    // A retried status call after a lost answer repeats lines: they are passed on once.
    let again = cursor.take(vec![line(2), line(3)]);
    assert_eq!(again, vec![line(3)]);
    // A page that would leave a gap is not passed on; the next call asks after 3.
    assert!(cursor.take(vec![line(5)]).is_empty());
    assert_eq!(cursor.last(), 3);
}
