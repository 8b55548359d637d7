//! The routes of the mock, as a plain function from a request to a reply.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /feed/index.json`, `GET /feed/index.json.sig`, `GET /feed/blobs/sha256/{hex}` | the feed's files (faults apply) |
//! | `GET /api/step-templates` | JSON array of the library's templates (full Library-format objects) |
//! | `GET /api/step-templates/{id}` | one template; 404 JSON when unknown |
//! | `GET /api/update?version=V&installationId=ID` | `{"latestVersion":"X","url":"..."}`; 400 without both parameters |
//! | `POST /api/telemetry` | stores the JSON body; 202 `{"accepted":true}`; 400 if not JSON |
//! | `GET /api/experiences?version=V` | `[{"id","title","body","url"}]` |
//! | `GET /api/dynamic-extensions` | `[{"name","enabled"}]`, signed: header `x-octo-signature` = base64 ed25519 of the body with the feed key |
//! | `GET /_mock/requests`, `DELETE /_mock/requests` | every recorded request (all but `/_mock/*`); clear them |
//! | `GET /_mock/telemetry` | the telemetry bodies received |
//! | `GET`/`POST`/`DELETE /_mock/faults` | read / replace / clear the faults |
//! | anything else | 404 JSON (405 JSON for a known path with another method) |
//!
//! Faults (`POST /_mock/faults` replaces the whole set; absent fields are off) apply to `/feed/*` only:
//! `{"hang":true}` never answers (until the faults change), `{"delayMs":N}` waits N ms, `{"status500":N}`
//! answers 500 to the next N feed requests, `{"badSignature":true}` serves a corrupted signature,
//! `{"tamperBlobs":true}` flips a byte in blobs, `{"truncateBlobs":true}` announces the full
//! Content-Length, sends half a blob and breaks the connection.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use octo_feed::signature::{self, FeedSigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A request, already read in full.
#[derive(Debug, Clone)]
pub struct MockRequest {
    /// Method.
    pub method: Method,
    /// Path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl MockRequest {
    /// A request with no headers and no body (for tests).
    pub fn new(method: Method, path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path_and_query.to_string(), None),
        };
        MockRequest {
            method,
            path,
            query,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// With a body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], decoded) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the serving layer should answer.
#[derive(Debug)]
pub enum Reply {
    /// Send this response.
    Full(Response<Bytes>),
    /// Send the headers (with the full Content-Length) and the first half of the body, then break the
    /// connection.
    Truncated(Response<Bytes>),
    /// Do not answer until the faults change, then route the request again.
    Hang,
}

/// A reply and how long to wait before sending it.
#[derive(Debug)]
pub struct Routed {
    /// Wait this long first.
    pub delay: Duration,
    /// Then answer this.
    pub reply: Reply,
}

/// Injected misbehaviour of the feed routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Flip a byte in every blob served.
    pub tamper_blobs: bool,
    /// Serve a signature that does not verify.
    pub bad_signature: bool,
    /// Send half of each blob, then break the connection.
    pub truncate_blobs: bool,
    /// Answer 500 to this many more feed requests.
    pub status500: u32,
    /// Wait this long before answering feed requests.
    pub delay_ms: u64,
    /// Never answer feed requests (until the faults change).
    pub hang: bool,
}

/// A recorded request, as `GET /_mock/requests` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string, or null.
    pub query: Option<String>,
    /// Headers (repeated headers joined with ", ").
    pub headers: std::collections::BTreeMap<String, String>,
    /// Body size in bytes.
    pub body_size: usize,
    /// When it arrived (RFC 3339 UTC, milliseconds).
    pub time: String,
}

/// What the mock serves.
#[derive(Debug)]
pub struct MockConfig {
    /// The feed directory (`index.json`, `index.json.sig`, `blobs/sha256/*`); `None` serves no feed.
    pub feed_dir: Option<PathBuf>,
    /// Library-format step templates.
    pub library: Vec<Value>,
    /// The feed key (signs dynamic extensions; its public half is printed).
    pub key: FeedSigningKey,
    /// What `/api/update` says is the latest version.
    pub latest_version: String,
    /// The mock's own base URL (for links in answers).
    pub base_url: String,
}

/// The mock's state.
#[derive(Debug)]
pub struct Mock {
    config: MockConfig,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<RecordedRequest>>,
    telemetry: Mutex<Vec<Value>>,
    changed: tokio::sync::watch::Sender<u64>,
}

fn json_response(status: StatusCode, value: &Value) -> Response<Bytes> {
    bytes_response(
        status,
        "application/json",
        serde_json::to_vec(value).expect("JSON serialises"),
    )
}

fn bytes_response(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Bytes> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static headers are valid")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Bytes> {
    json_response(
        status,
        &json!({ "error": message.into(), "status": status.as_u16() }),
    )
}

/// The sample in-app messages.
fn experiences(version: &str) -> Value {
    json!([
        {"id": "welcome", "title": "Welcome to Octo", "body": format!("You are running Octo {version}."),
         "url": "https://octo.example/docs/getting-started"},
        {"id": "plugins", "title": "Step templates are plugins now",
         "body": "Built-in steps update from the steps feed; see `octo plugins list`.",
         "url": "https://octo.example/docs/plugins"}
    ])
}

/// The sample feature toggles.
pub const DYNAMIC_EXTENSIONS: &str = r#"[{"name":"new-deployment-dashboard","enabled":true},{"name":"legacy-package-feed","enabled":false}]"#;

/// Loads every `*.json` in `dir` that is a Library-format template (an object with a string `Id`), sorted
/// by file name. Other files are skipped with a warning.
pub fn load_library(dir: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    use anyhow::Context;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the library directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut templates = Vec::new();
    for path in paths {
        let parsed = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(anyhow::Error::from));
        match parsed {
            Ok(value) if value.get("Id").and_then(Value::as_str).is_some() => templates.push(value),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "skipping: not a step template (no Id)")
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping: not JSON"),
        }
    }
    Ok(templates)
}

impl Mock {
    /// A mock serving `config`, with no faults.
    pub fn new(config: MockConfig) -> Self {
        Mock {
            config,
            faults: Mutex::new(Faults::default()),
            requests: Mutex::new(Vec::new()),
            telemetry: Mutex::new(Vec::new()),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }

    /// Replaces the faults (and wakes hanging requests).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// A receiver that changes whenever the faults do (hanging requests wait on it).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The recorded requests.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Records `request` for `GET /_mock/requests` (except the mock's own `/_mock/*` routes).
    pub fn record(&self, request: &MockRequest) {
        if request.path.starts_with("/_mock/") {
            return;
        }
        let mut headers = std::collections::BTreeMap::new();
        for (name, value) in &request.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(&value)
                })
                .or_insert(value);
        }
        self.requests.lock().unwrap().push(RecordedRequest {
            method: request.method.to_string(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers,
            body_size: request.body.len(),
            time: octo_fsutil::rfc3339_millis(SystemTime::now()),
        });
    }

    /// Decides the answer to `request`. Does not record it (see [`Mock::record`]).
    pub fn route(&self, request: &MockRequest) -> Routed {
        let now = |reply| Routed {
            delay: Duration::ZERO,
            reply,
        };
        let path = request.path.as_str();
        if let Some(rest) = path.strip_prefix("/feed/") {
            return self.route_feed(request, rest);
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = &request.method;
        let reply = match (segments.as_slice(), method) {
            (["api", "step-templates"], &Method::GET) => {
                json_response(StatusCode::OK, &Value::Array(self.config.library.clone()))
            }
            (["api", "step-templates", id], &Method::GET) => match self.template(id) {
                Some(t) => json_response(StatusCode::OK, t),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no step template with id {id}"),
                ),
            },
            (["api", "update"], &Method::GET) => self.update(request),
            (["api", "telemetry"], &Method::POST) => {
                match serde_json::from_slice::<Value>(&request.body) {
                    Ok(body) => {
                        self.telemetry.lock().unwrap().push(body);
                        json_response(StatusCode::ACCEPTED, &json!({"accepted": true}))
                    }
                    Err(e) => error(
                        StatusCode::BAD_REQUEST,
                        format!("the telemetry body is not JSON: {e}"),
                    ),
                }
            }
            (["api", "experiences"], &Method::GET) => {
                let version = request.query_param("version").unwrap_or_default();
                json_response(StatusCode::OK, &experiences(&version))
            }
            (["api", "dynamic-extensions"], &Method::GET) => {
                let mut response =
                    bytes_response(StatusCode::OK, "application/json", DYNAMIC_EXTENSIONS);
                let sig = signature::sign_base64(&self.config.key, DYNAMIC_EXTENSIONS.as_bytes());
                response.headers_mut().insert(
                    "x-octo-signature",
                    HeaderValue::from_str(&sig).expect("base64 is a valid header"),
                );
                response
            }
            (["_mock", "requests"], &Method::GET) => json_response(
                StatusCode::OK,
                &serde_json::to_value(self.requests()).expect("serialises"),
            ),
            (["_mock", "requests"], &Method::DELETE) => {
                let cleared = std::mem::take(&mut *self.requests.lock().unwrap()).len();
                json_response(StatusCode::OK, &json!({ "cleared": cleared }))
            }
            (["_mock", "telemetry"], &Method::GET) => json_response(
                StatusCode::OK,
                &Value::Array(self.telemetry.lock().unwrap().clone()),
            ),
            (["_mock", "faults"], &Method::GET) => json_response(
                StatusCode::OK,
                &serde_json::to_value(self.faults()).expect("serialises"),
            ),
            (["_mock", "faults"], &Method::POST) => {
                match serde_json::from_slice::<Faults>(&request.body) {
                    Ok(faults) => {
                        tracing::info!(?faults, "faults set");
                        self.set_faults(faults.clone());
                        json_response(
                            StatusCode::OK,
                            &serde_json::to_value(faults).expect("serialises"),
                        )
                    }
                    Err(e) => error(StatusCode::BAD_REQUEST, format!("faults: {e}")),
                }
            }
            (["_mock", "faults"], &Method::DELETE) => {
                self.set_faults(Faults::default());
                json_response(
                    StatusCode::OK,
                    &serde_json::to_value(Faults::default()).expect("serialises"),
                )
            }
            (
                ["api", "step-templates"]
                | ["api", "step-templates", _]
                | ["api", "update"]
                | ["api", "telemetry"]
                | ["api", "experiences"]
                | ["api", "dynamic-extensions"]
                | ["_mock", "requests"]
                | ["_mock", "telemetry"]
                | ["_mock", "faults"],
                _,
            ) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on {path}"),
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                format!("no route for {method} {path}"),
            ),
        };
        now(Reply::Full(reply))
    }

    fn template(&self, id: &str) -> Option<&Value> {
        self.config.library.iter().find(|t| {
            t.get("Id")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(id))
        })
    }

    fn update(&self, request: &MockRequest) -> Response<Bytes> {
        let (Some(version), Some(_installation)) = (
            request.query_param("version"),
            request.query_param("installationId"),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "the update check needs ?version=V&installationId=ID",
            );
        };
        let latest = &self.config.latest_version;
        tracing::debug!(%version, %latest, "update check");
        json_response(
            StatusCode::OK,
            &json!({ "latestVersion": latest, "url": format!("{}/releases/octo-{latest}", self.config.base_url) }),
        )
    }

    fn route_feed(&self, request: &MockRequest, rest: &str) -> Routed {
        let (delay, hang, fail) = {
            let mut faults = self.faults.lock().unwrap();
            let fail = faults.status500 > 0 && !faults.hang;
            if fail {
                faults.status500 -= 1;
            }
            (Duration::from_millis(faults.delay_ms), faults.hang, fail)
        };
        let faults = self.faults();
        let routed = |reply| Routed { delay, reply };
        if hang {
            return routed(Reply::Hang);
        }
        if fail {
            return routed(Reply::Full(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected fault: status500",
            )));
        }
        if request.method != Method::GET {
            return routed(Reply::Full(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "the feed is read-only",
            )));
        }
        let Some(feed_dir) = &self.config.feed_dir else {
            return routed(Reply::Full(error(
                StatusCode::NOT_FOUND,
                "this mock serves no feed (start it with --feed)",
            )));
        };
        let read = |relative: &str| std::fs::read(feed_dir.join(relative)).ok();
        let not_found = || {
            Reply::Full(error(
                StatusCode::NOT_FOUND,
                format!("no such feed file: {rest}"),
            ))
        };
        let reply = match rest {
            "index.json" => read("index.json").map_or_else(not_found, |b| {
                Reply::Full(bytes_response(StatusCode::OK, "application/json", b))
            }),
            "index.json.sig" => match read("index.json.sig") {
                None => not_found(),
                Some(sig) if faults.bad_signature => Reply::Full(bytes_response(
                    StatusCode::OK,
                    "text/plain",
                    corrupt_signature(&sig),
                )),
                Some(sig) => Reply::Full(bytes_response(StatusCode::OK, "text/plain", sig)),
            },
            _ => match rest.strip_prefix("blobs/sha256/") {
                Some(hex) if octo_feed::is_sha256_hex(hex) => {
                    match read(&format!("blobs/sha256/{hex}")) {
                        None => not_found(),
                        Some(mut blob) => {
                            if faults.tamper_blobs && !blob.is_empty() {
                                let middle = blob.len() / 2;
                                blob[middle] ^= 0x5a;
                            }
                            let response = bytes_response(StatusCode::OK, "application/wasm", blob);
                            if faults.truncate_blobs {
                                Reply::Truncated(response)
                            } else {
                                Reply::Full(response)
                            }
                        }
                    }
                }
                _ => not_found(),
            },
        };
        routed(reply)
    }
}

/// A signature file whose signature still decodes but no longer verifies.
fn corrupt_signature(sig: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = String::from_utf8_lossy(sig);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match lines.first().and_then(|l| b64.decode(l.trim()).ok()) {
        Some(mut raw) if !raw.is_empty() => {
            raw[0] ^= 0x01;
            lines[0] = b64.encode(raw);
            let mut out = lines.join("\n");
            out.push('\n');
            out.into_bytes()
        }
        _ => b"AAAA\n".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock(feed_dir: Option<PathBuf>) -> Mock {
        let (key, _) = signature::generate_keypair().unwrap();
        Mock::new(MockConfig {
            feed_dir,
            library: vec![
                json!({"Id": "aaaa-1", "Name": "First", "Description": "d", "Version": 1, "Category": "bash"}),
                json!({"Id": "bbbb-2", "Name": "Second", "Description": "d", "Version": 3}),
            ],
            key,
            latest_version: "0.2.0".into(),
            base_url: "http://127.0.0.1:1".into(),
        })
    }

    fn full(routed: Routed) -> (StatusCode, HeaderMap, Value) {
        match routed.reply {
            Reply::Full(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                let body = r.into_body();
                (
                    status,
                    headers,
                    serde_json::from_slice(&body)
                        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
                )
            }
            other => panic!("expected a full reply, got {other:?}"),
        }
    }

    fn get(m: &Mock, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = full(m.route(&MockRequest::new(Method::GET, path)));
        (status, body)
    }

    #[test]
    fn library_routes() {
        let m = mock(None);
        let (status, body) = get(&m, "/api/step-templates");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.as_array().unwrap().len(), 2);
        assert_eq!(get(&m, "/api/step-templates/BBBB-2").1["Name"], "Second");
        let (status, body) = get(&m, "/api/step-templates/nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().contains("nope"));
    }

    #[test]
    fn update_needs_version_and_installation_id() {
        let m = mock(None);
        let (status, body) = get(&m, "/api/update?version=0.1.0&installationId=abc");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"latestVersion": "0.2.0", "url": "http://127.0.0.1:1/releases/octo-0.2.0"})
        );
        assert_eq!(
            get(&m, "/api/update?version=0.1.0").0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn telemetry_is_stored_and_listed() {
        let m = mock(None);
        let post = |body: &'static str| {
            full(m.route(&MockRequest::new(Method::POST, "/api/telemetry").with_body(body))).0
        };
        assert_eq!(post(r#"{"deployments":3}"#), StatusCode::ACCEPTED);
        assert_eq!(post("not json"), StatusCode::BAD_REQUEST);
        assert_eq!(get(&m, "/_mock/telemetry").1, json!([{"deployments": 3}]));
        assert_eq!(get(&m, "/api/telemetry").0, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn experiences_and_signed_dynamic_extensions() {
        let m = mock(None);
        let (_, body) = get(&m, "/api/experiences?version=0.1.0");
        let first = &body.as_array().unwrap()[0];
        for field in ["id", "title", "body", "url"] {
            assert!(first[field].is_string(), "{field}");
        }
        assert!(first["body"].as_str().unwrap().contains("0.1.0"));
        let (status, headers, body) =
            full(m.route(&MockRequest::new(Method::GET, "/api/dynamic-extensions")));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["enabled"], true);
        let sig = headers.get("x-octo-signature").unwrap().as_bytes();
        signature::verify(
            DYNAMIC_EXTENSIONS.as_bytes(),
            Some(sig),
            &m.config().key.public_key(),
        )
        .unwrap();
    }

    #[test]
    fn requests_are_recorded_except_the_control_routes() {
        let m = mock(None);
        let mut request = MockRequest::new(Method::POST, "/api/telemetry?x=1").with_body("{}");
        request
            .headers
            .insert("user-agent", HeaderValue::from_static("octo/0.1.0"));
        m.record(&request);
        m.record(&MockRequest::new(Method::GET, "/_mock/requests"));
        let (_, body) = get(&m, "/_mock/requests");
        let recorded = body.as_array().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0]["method"], "POST");
        assert_eq!(recorded[0]["path"], "/api/telemetry");
        assert_eq!(recorded[0]["query"], "x=1");
        assert_eq!(recorded[0]["headers"]["user-agent"], "octo/0.1.0");
        assert_eq!(recorded[0]["bodySize"], 2);
        assert!(recorded[0]["time"].as_str().unwrap().ends_with('Z'));
        full(m.route(&MockRequest::new(Method::DELETE, "/_mock/requests")));
        assert!(m.requests().is_empty());
    }

    #[test]
    fn unknown_routes_are_404_json() {
        let m = mock(None);
        let (status, body) = get(&m, "/nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
        assert_eq!(get(&m, "/feed/index.json").0, StatusCode::NOT_FOUND);
    }

    fn feed() -> (tempfile::TempDir, Vec<u8>, String) {
        let dir = tempfile::tempdir().unwrap();
        let blob = b"0123456789".to_vec();
        let sha = octo_feed::sha256_hex(&blob);
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(dir.path().join("blobs/sha256").join(&sha), &blob).unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        (dir, blob, sha)
    }

    #[test]
    fn feed_faults() {
        let (dir, blob, sha) = feed();
        let m = mock(Some(dir.path().to_path_buf()));
        let blob_path = format!("/feed/blobs/sha256/{sha}");
        let body_of = |routed: Routed| match routed.reply {
            Reply::Full(r) => r.into_body().to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            body_of(m.route(&MockRequest::new(Method::GET, &blob_path))),
            blob
        );
        assert_eq!(
            get(&m, "/feed/blobs/sha256/../../index.json").0,
            StatusCode::NOT_FOUND
        );

        let set = |json: &'static str| {
            let (status, _, _) =
                full(m.route(&MockRequest::new(Method::POST, "/_mock/faults").with_body(json)));
            assert_eq!(status, StatusCode::OK, "{json}");
        };
        set(r#"{"tamperBlobs":true}"#);
        let tampered = body_of(m.route(&MockRequest::new(Method::GET, &blob_path)));
        assert_eq!(tampered.len(), blob.len());
        assert_ne!(tampered, blob);

        set(r#"{"truncateBlobs":true,"delayMs":5}"#);
        let routed = m.route(&MockRequest::new(Method::GET, &blob_path));
        assert_eq!(routed.delay, Duration::from_millis(5));
        assert!(matches!(routed.reply, Reply::Truncated(_)));
        // Faults apply to the feed only.
        assert_eq!(
            m.route(&MockRequest::new(Method::GET, "/api/step-templates"))
                .delay,
            Duration::ZERO
        );

        set(r#"{"status500":2}"#);
        assert_eq!(
            get(&m, "/feed/index.json").0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(get(&m, "/_mock/faults").1["status500"], 1);
        assert_eq!(get(&m, &blob_path).0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body_of(m.route(&MockRequest::new(Method::GET, &blob_path))),
            blob
        );

        let mut changes = m.subscribe();
        set(r#"{"hang":true}"#);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(matches!(
            m.route(&MockRequest::new(Method::GET, "/feed/index.json"))
                .reply,
            Reply::Hang
        ));
        full(m.route(&MockRequest::new(Method::DELETE, "/_mock/faults")));
        assert!(changes.has_changed().unwrap());
        assert_eq!(m.faults(), Faults::default());

        let (status, _, body) = full(m.route(
            &MockRequest::new(Method::POST, "/_mock/faults").with_body(r#"{"tamper":true}"#),
        ));
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "unknown fault names are refused: {body}"
        );
    }

    #[test]
    fn bad_signature_fault_still_decodes_but_does_not_verify() {
        let (dir, _, _) = feed();
        let m = mock(Some(dir.path().to_path_buf()));
        let index = std::fs::read(dir.path().join("index.json")).unwrap();
        std::fs::write(
            dir.path().join("index.json.sig"),
            signature::sign(&m.config().key, &index),
        )
        .unwrap();
        m.set_faults(Faults {
            bad_signature: true,
            ..Faults::default()
        });
        let Reply::Full(r) = m
            .route(&MockRequest::new(Method::GET, "/feed/index.json.sig"))
            .reply
        else {
            panic!()
        };
        let err =
            signature::verify(&index, Some(r.body()), &m.config().key.public_key()).unwrap_err();
        assert_eq!(err, signature::SignatureError::BadSignature);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let r = MockRequest::new(
            Method::GET,
            "/api/update?version=1.0.0%2Bbuild&installationId=a+b&flag",
        );
        assert_eq!(r.query_param("version").unwrap(), "1.0.0+build");
        assert_eq!(r.query_param("installationId").unwrap(), "a b");
        assert_eq!(r.query_param("flag").unwrap(), "");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
