//! Shared by the end-to-end tests: a real `registry-mock` process on loopback, a feed directory it serves,
//! components made from the built plugins, and `octo` runs with a temporary home.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub const OCTO: &str = env!("CARGO_BIN_EXE_octo");

/// The built components of `plugins/` (built-ins, the example, test fixtures).
pub fn built(name: &str) -> Vec<u8> {
    let path = Path::new(octo_builtin_plugins::BUILD_DIR).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `bytes` with its manifest changed by `edit` (e.g. another version), re-embedded.
pub fn repack(bytes: &[u8], edit: impl FnOnce(&mut octo_manifest::Manifest)) -> Vec<u8> {
    let mut manifest = octo_manifest::read_manifest(bytes).unwrap();
    edit(&mut manifest);
    octo_manifest::embed_manifest(bytes, &manifest).unwrap()
}

/// The built run-script, as version `version`.
pub fn run_script(version: &str) -> Vec<u8> {
    repack(&built("run_script.wasm"), |m| {
        m.version = version.parse().unwrap()
    })
}

/// The registry-mock binary, next to this test's target directory (built on first use if missing).
pub fn registry_mock_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // <target>/<profile>/deps/<test binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let bin = profile_dir.join("registry-mock");
        if !bin.is_file() {
            let target = profile_dir.parent().unwrap();
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "registry-mock"])
                .env("CARGO_TARGET_DIR", target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "cannot build registry-mock");
        }
        bin
    })
    .clone()
}

/// A feed directory published with `registry-mock publish`.
pub struct Feed {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub key_file: PathBuf,
    pub public_key: String,
}

impl Feed {
    pub fn new() -> Feed {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("feed");
        let key_file = tmp.path().join("feed.key");
        Feed {
            dir,
            key_file,
            public_key: String::new(),
            tmp,
        }
    }

    /// Publishes components (name, bytes) and yanks `ID@VERSION`s, with the feed's key.
    pub fn publish(&mut self, components: &[(&str, Vec<u8>)], yank: &[&str]) {
        let staging = tempfile::tempdir_in(self.tmp.path()).unwrap();
        let mut args: Vec<String> = vec!["publish".into()];
        if !components.is_empty() {
            args.push("--plugins".into());
            for (name, bytes) in components {
                let path = staging.path().join(name);
                std::fs::write(&path, bytes).unwrap();
                args.push(path.display().to_string());
            }
        }
        for y in yank {
            args.push("--yank".into());
            args.push(y.to_string());
        }
        args.extend([
            "--out".into(),
            self.dir.display().to_string(),
            "--key".into(),
            self.key_file.display().to_string(),
        ]);
        let out = Command::new(registry_mock_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "publish failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.public_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    }

    /// Replaces index.json with `bytes` and signs it with the feed's key.
    pub fn write_signed_index(&self, bytes: &[u8]) {
        let key = octo_feed::FeedSigningKey::from_base64(
            &std::fs::read_to_string(&self.key_file).unwrap(),
        )
        .unwrap();
        std::fs::write(self.dir.join("index.json"), bytes).unwrap();
        std::fs::write(
            self.dir.join("index.json.sig"),
            octo_feed::signature::sign(&key, bytes),
        )
        .unwrap();
    }

    pub fn index(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap()
    }
}

/// A running `registry-mock serve`, killed on drop.
pub struct Mock {
    child: Child,
    pub url: String,
    pub feed_url: String,
    pub state: tempfile::TempDir,
}

impl Mock {
    /// Serves `feed` (if any) and the community library in `../shared/library` (if present).
    pub fn start(feed: Option<&Feed>) -> Mock {
        Mock::start_with_library(feed, library_dir().as_deref())
    }

    /// Serves `feed` (if any) and the Library-format templates in `library` (if any).
    pub fn start_with_library(feed: Option<&Feed>, library: Option<&Path>) -> Mock {
        let state = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(state.path().join("stderr.log")).unwrap();
        let mut command = Command::new(registry_mock_bin());
        command
            .args(["serve", "--port", "0", "--state-dir"])
            .arg(state.path());
        if let Some(feed) = feed {
            command
                .arg("--feed")
                .arg(&feed.dir)
                .arg("--key")
                .arg(&feed.key_file);
        }
        if let Some(library) = library {
            command.arg("--library").arg(library);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                panic!("registry-mock did not get ready: {other:?}");
            }
        };
        let ready: Value = serde_json::from_str(&line).unwrap();
        Mock {
            child,
            url: ready["url"].as_str().unwrap().to_string(),
            feed_url: ready["feedUrl"].as_str().unwrap().to_string(),
            state,
        }
    }

    /// One plain HTTP/1.1 request; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let authority = self.url.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(authority).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        write!(
            tcp,
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    pub fn set_faults(&self, faults: &str) {
        let (status, body) = self.http("POST", "/_mock/faults", Some(faults));
        assert_eq!(status, 200, "{body}");
    }

    pub fn clear_faults(&self) {
        assert_eq!(self.http("DELETE", "/_mock/faults", None).0, 200);
    }

    /// The paths of the requests recorded since the last [`Mock::clear_requests`].
    pub fn request_paths(&self) -> Vec<String> {
        let (_, body) = self.http("GET", "/_mock/requests", None);
        let log: Value = serde_json::from_str(&body).unwrap();
        log.as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn clear_requests(&self) {
        assert_eq!(self.http("DELETE", "/_mock/requests", None).0, 200);
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared community library next to the repository, if present.
pub fn library_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/library");
    dir.is_dir().then_some(dir)
}

/// What an `octo` run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn success(&self) -> &str {
        assert!(self.ok(), "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts a failure with exactly one `error:` line on stderr containing `expected`; returns it.
    #[track_caller]
    pub fn failure(&self, expected: &str) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a failure: {self:#?}"
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line of error: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        assert!(
            lines[0].contains(expected),
            "the error should contain {expected:?}: {}",
            lines[0]
        );
        lines[0].to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// An Octo home in a temporary directory.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The outbound audit file as it is (empty when nothing was recorded yet).
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.path().join("logs/outbound.jsonl")).unwrap_or_default()
    }

    /// The outbound audit, one record per line.
    pub fn audit_records(&self) -> Vec<Value> {
        self.audit()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Writes `octo.toml`: the mock's feed and library, the feed key, and both switches. The vendor
    /// plugins' switches (update check, telemetry, experiences, dynamic extensions) are off.
    pub fn configure(&self, mock: &Mock, public_key: &str, updates: bool, community: bool) {
        self.write_settings(&format!(
            "airGapped = false\nfeed = \"{}\"\nfeedPublicKey = \"{public_key}\"\nlibraryFeed = \"{}\"\nstepTemplateUpdates = {updates}\ncommunityStepTemplates = {community}\nupgradeCheck = false\nsendTelemetry = false\nexperiencesEnabled = false\ndynamicExtensionsEnabled = false\n",
            mock.feed_url, mock.url
        ));
    }

    pub fn write_settings(&self, toml: &str) {
        std::fs::write(self.path().join("octo.toml"), toml).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(OCTO);
        command
            .arg("--home")
            .arg(self.path())
            .args(args)
            .env_remove("OCTO_LOG")
            // Fast, bounded retries: 3 attempts, backoff ceilings 20/40 ms, 2 s idle timeout.
            .env("OCTO_FEED_ATTEMPTS", "3")
            .env("OCTO_FEED_BACKOFF", "20ms")
            .env("OCTO_FEED_TIMEOUT", "2s")
            .env("OCTO_FEED_CONNECT_TIMEOUT", "5s")
            .stdin(Stdio::null());
        command
    }

    pub fn octo(&self, args: &[&str]) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().unwrap();
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `plugins.lock` as JSON (Null if there is none).
    pub fn lock(&self) -> Value {
        match std::fs::read(self.path().join("plugins/plugins.lock")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) => Value::Null,
        }
    }

    /// The installed version of `id` according to the lock file.
    pub fn installed(&self, id: &str) -> Option<String> {
        self.lock()["plugins"][id]["version"]
            .as_str()
            .map(str::to_string)
    }

    /// Runs run-script with a small script; returns the version that ran.
    #[track_caller]
    pub fn run_script_version(&self) -> String {
        let run = self.octo(&[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo from-run-script",
            "--json",
        ]);
        let out = run.json();
        assert_eq!(out["status"], "succeeded", "{run:#?}");
        assert!(run.stderr.contains("from-run-script"), "{run:#?}");
        out["plugin"]["version"].as_str().unwrap().to_string()
    }

    /// Every file under `plugins/` except the write lock and downloads in progress, with its contents.
    pub fn store_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            let Ok(items) = std::fs::read_dir(dir) else {
                return;
            };
            for item in items {
                let path = item.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else if path.file_name().unwrap() != ".write-lock" {
                    out.push((
                        path.strip_prefix(root).unwrap().display().to_string(),
                        std::fs::read(&path).unwrap(),
                    ));
                }
            }
        }
        let root = self.path().join("plugins");
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }
}
