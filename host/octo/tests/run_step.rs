//! `octo run-step` as a user runs it: the real binary, a temporary home, real components and templates.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn octo(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("octo runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture(name: &str) -> String {
    Path::new(octo_builtin_plugins::BUILD_DIR)
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

fn library(name: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/library")
        .join(name);
    if path.is_file() {
        Some(path.display().to_string())
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// Asserts failure with exactly one `error:` line on stderr containing `needle`.
fn assert_fails_with(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure; stdout: {}",
        text(&out.stdout)
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error line, stderr:\n{stderr}"
    );
    assert!(
        errors[0].contains(needle),
        "expected {needle:?} in {:?}",
        errors[0]
    );
    // The host itself never panics (a plugin's own panic text may be quoted in the message).
    assert!(
        !stderr.contains("thread 'main' panicked") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

/// A one-thread HTTP server answering `status` to every request.
fn http_server(status: u16) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    url
}

#[test]
fn a_builtin_step_runs_with_no_feed_configured() {
    let home = tempfile::tempdir().unwrap();
    let url = http_server(200);
    let origin = url.trim_end_matches('/');
    let out = octo(
        home.path(),
        &[
            "run-step",
            "http-health-check",
            "--param",
            &format!("url={url}"),
            "--allow-outbound",
            origin,
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("Step succeeded"));
}

#[test]
fn a_denied_destination_fails_and_names_it() {
    let home = tempfile::tempdir().unwrap();
    let url = http_server(200);
    // Built-in steps may reach what their manifest declares unless the server is air-gapped.
    assert!(
        octo(home.path(), &["configure", "--airGapped=true"])
            .status
            .success()
    );
    let out = octo(
        home.path(),
        &[
            "run-step",
            "http-health-check",
            "--param",
            &format!("url={url}"),
        ],
    );
    assert_fails_with(&out, "denied");
    assert!(
        text(&out.stdout).contains("Denied outbound requests:"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_community_template_runs_unchanged() {
    let Some(template) = library("bash-service-check-running.json") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let out = octo(
        home.path(),
        &["run-step", &template, "--param", "services=bash"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("bash is running!!!"), "{stdout}");
    // (The failing case cannot be shown with this template here: it greps `ps -ef`, where the
    // service name given on octo's own command line always matches.)
}

#[test]
fn a_community_template_with_curl_reaches_a_local_url() {
    let Some(template) = library("bash-http-test-url.json") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let url = http_server(200);
    let out = octo(
        home.path(),
        &[
            "run-step",
            &template,
            "--param",
            &format!("uri={url}"),
            "--param",
            "timeout=20",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Recieved response code: 200"), "{stdout}");
}

#[test]
fn template_json_output_has_outputs_and_masks_secrets() {
    let home = tempfile::tempdir().unwrap();
    let template = home.path().join("t.json");
    std::fs::write(
        &template,
        r##"{"Id":"t-1","Name":"Outputs","ActionType":"Octopus.Script","Properties":{
            "Octopus.Action.Script.Syntax":"Bash",
            "Octopus.Action.Script.ScriptBody":"echo \"token is $(get_octopusvariable ApiToken)\"\nset_octopusvariable Answer 42\nset_octopusvariable Hidden \"#{ApiToken}\" -sensitive"},
          "Parameters":[{"Name":"ApiToken","DisplaySettings":{"Octopus.ControlType":"Sensitive"}}]}"##,
    )
    .unwrap();
    let out = octo(
        home.path(),
        &[
            "run-step",
            template.to_str().unwrap(),
            "--param",
            "ApiToken=tok-abc-123",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).expect("stdout is only the JSON outcome");
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["outputs"][0]["name"], "Answer");
    assert_eq!(doc["outputs"][0]["value"], "42");
    assert_eq!(doc["outputs"][1]["value"], "********");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("token is ********"), "{stderr}");
    assert!(!stdout.contains("tok-abc-123") && !stderr.contains("tok-abc-123"));
}

#[test]
fn missing_required_parameters_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = octo(home.path(), &["run-step", "http-health-check"]);
    assert_fails_with(&out, "missing required parameter url");
    if let Some(template) = library("bash-service-check-running.json") {
        let out = octo(home.path(), &["run-step", &template]);
        assert_fails_with(&out, "missing required parameter services");
        let out = octo(
            home.path(),
            &[
                "run-step",
                &template,
                "--param",
                "services=x",
                "--param",
                "typo=1",
            ],
        );
        assert_fails_with(&out, "no parameter typo");
    }
}

#[test]
fn bad_components_get_one_line_errors() {
    let home = tempfile::tempdir().unwrap();
    let not_wasm = home.path().join("notes.wasm");
    std::fs::write(&not_wasm, b"hello, I am text").unwrap();
    assert_fails_with(
        &octo(home.path(), &["run-step", not_wasm.to_str().unwrap()]),
        "not a WebAssembly file",
    );
    let core = home.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    assert_fails_with(
        &octo(home.path(), &["run-step", core.to_str().unwrap()]),
        "core WebAssembly module, not a component",
    );
    assert_fails_with(
        &octo(home.path(), &["run-step", &fixture("fixture_no_manifest")]),
        "no octo:manifest section",
    );
    assert_fails_with(
        &octo(home.path(), &["run-step", &fixture("fixture_wrong_kind")]),
        "is a telemetry plugin, not a step plugin",
    );
    assert_fails_with(
        &octo(home.path(), &["run-step", &fixture("fixture_wrong_api")]),
        "needs plugin API 9.0.0",
    );
    assert_fails_with(
        &octo(home.path(), &["run-step", "no-such-step"]),
        "no file or built-in step named",
    );
}

#[test]
fn misbehaving_plugins_are_stopped_and_reported() {
    let home = tempfile::tempdir().unwrap();
    assert_fails_with(
        &octo(home.path(), &["run-step", &fixture("fixture_trap")]),
        "the plugin crashed",
    );
    assert_fails_with(
        &octo(
            home.path(),
            &["run-step", &fixture("fixture_loop"), "--deadline", "1s"],
        ),
        "stopped after 1 s",
    );
    assert_fails_with(
        &octo(
            home.path(),
            &[
                "run-step",
                &fixture("fixture_memory_hog"),
                "--memory-limit",
                "32",
            ],
        ),
        "memory limit of 32 MiB",
    );
}

#[test]
fn malformed_templates_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| -> PathBuf {
        let p = home.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let broken = write("broken.json", r#"{"Id": "x", "Name": "#);
    assert_fails_with(
        &octo(home.path(), &["run-step", broken.to_str().unwrap()]),
        "not a valid step template JSON",
    );
    let powershell = write(
        "ps.json",
        r#"{"Id":"x","Name":"PS","ActionType":"Octopus.Script","Properties":{"Octopus.Action.Script.Syntax":"PowerShell","Octopus.Action.Script.ScriptBody":"Write-Host hi"}}"#,
    );
    assert_fails_with(
        &octo(home.path(), &["run-step", powershell.to_str().unwrap()]),
        "the step template's script is PowerShell; Octo runs Bash and Python scripts only",
    );
}

#[test]
fn pack_embeds_a_manifest_into_any_component() {
    let home = tempfile::tempdir().unwrap();
    let manifest = home.path().join("manifest.json");
    std::fs::write(
        &manifest,
        r#"{"id":"packed-step","version":"2.0.0","kind":"step","apiVersion":"0.1.0","description":"packed"}"#,
    )
    .unwrap();
    let packed = home.path().join("packed.wasm");
    let out = octo(
        home.path(),
        &[
            "plugins",
            "pack",
            &fixture("fixture_no_manifest"),
            "--manifest",
            manifest.to_str().unwrap(),
            "-o",
            packed.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = octo(
        home.path(),
        &["plugins", "inspect", packed.to_str().unwrap()],
    );
    assert!(text(&out.stdout).contains("\"packed-step\""));
    let out = octo(home.path(), &["run-step", packed.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // A bad manifest is refused and nothing is written.
    std::fs::write(
        &manifest,
        r#"{"id":"x","version":"1.0.0","kind":"step","apiVersion":"7.0.0"}"#,
    )
    .unwrap();
    let target = home.path().join("never.wasm");
    let out = octo(
        home.path(),
        &[
            "plugins",
            "pack",
            &fixture("fixture_no_manifest"),
            "--manifest",
            manifest.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ],
    );
    assert_fails_with(&out, "needs plugin API 7.0.0");
    assert!(!target.exists());
}

#[test]
fn the_example_step_runs_and_sets_its_output() {
    let home = tempfile::tempdir().unwrap();
    let out = octo(
        home.path(),
        &[
            "run-step",
            &fixture("hello_step"),
            "--param",
            "name=Octo",
            "--param",
            "times=2",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches("Hello, Octo!").count(), 3, "{stdout}"); // two log lines + the output
    let out = octo(
        home.path(),
        &["run-step", &fixture("hello_step"), "--param", "times=many"],
    );
    assert_fails_with(&out, "times");
}

/// `--sensitive-variable NAME` takes the value from stdin (or the terminal), and `--variables-file` from
/// a 0600 file: neither value is on the command line, both are masked, and a file others can read is
/// refused.
#[test]
fn sensitive_values_come_from_stdin_or_a_private_file_not_the_command_line() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("vars");
    std::fs::write(&file, "# deployment secrets\nDbPassword=pw-from-file-77\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let body = "ScriptBody=[ \"$(get_octopusvariable ApiToken)\" = tok-from-stdin-42 ] && \
                [ \"$(get_octopusvariable DbPassword)\" = pw-from-file-77 ] && echo both-seen; \
                echo \"$(get_octopusvariable ApiToken) $(get_octopusvariable DbPassword)\"";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home.path())
        .args(["run-step", "run-script", "--param", body])
        .args(["--sensitive-variable", "ApiToken", "--variables-file"])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tok-from-stdin-42\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    // The step's log is on stdout (stderr with --json).
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("both-seen"), "{all}");
    assert!(all.contains("******** ********"), "{all}");
    for secret in ["tok-from-stdin-42", "pw-from-file-77"] {
        assert!(!all.contains(secret), "{all}");
    }

    // stdin ends before the value: one line, nothing run.
    let out = octo(
        home.path(),
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=true",
            "--sensitive-variable",
            "X",
        ],
    );
    assert_fails_with(&out, "no value for sensitive variable X");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = octo(
        home.path(),
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=true",
            "--variables-file",
            file.to_str().unwrap(),
        ],
    );
    assert_fails_with(&out, "can be read by other users (mode 644)");
}

#[test]
fn a_template_sees_the_system_variables_and_octostache() {
    let home = tempfile::tempdir().unwrap();
    let template = home.path().join("sys.json");
    std::fs::write(
        &template,
        r##"{"Id":"sys-1","Name":"Show context","ActionType":"Octopus.Script","Properties":{
            "Octopus.Action.Script.Syntax":"Bash",
            "Octopus.Action.Script.ScriptBody":"echo \"action=#{Octopus.Action.Name} step=#{Octopus.Step.Name | ToUpper} env=#{Octopus.Environment.Name}\"\necho \"machine=#{if Octopus.Machine.Name}set#{else}unset#{/if} id=#{Octopus.Deployment.Id | Replace \"[0-9]+\" N}\"\necho \"#{each r in Regions}[#{r}#{unless Octopus.Template.Each.Last},#{/unless}]#{/each} #{Name | Truncate 3} #{Name | JsonEscape}\""},
          "Parameters":[{"Name":"Regions","DefaultValue":"eu, us"},{"Name":"Name","DefaultValue":"Ada \"L\""}]}"##,
    )
    .unwrap();
    let out = octo(
        home.path(),
        &[
            "run-step",
            template.to_str().unwrap(),
            "--environment",
            "Production",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("action=Show context step=SHOW CONTEXT env=Production"),
        "{stdout}"
    );
    assert!(stdout.contains("machine=set id=Deployments-N"), "{stdout}");
    // JsonEscape made `\"` of each quote, which the double quotes of Bash turn back into `"`.
    assert!(stdout.contains("[eu,][us] Ada... Ada \"L\""), "{stdout}");
    // A variable given on the command line wins over a system variable.
    let out = octo(
        home.path(),
        &[
            "run-step",
            template.to_str().unwrap(),
            "--variable",
            "Octopus.Action.Name=Mine",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("action=Mine step=SHOW CONTEXT env=#{Octopus.Environment.Name}"),
        "{stdout}"
    );
}

/// Issue 11, deliverable 6 (finding 8): no file in the step's work directory holds a sensitive value
/// while the script runs (run-script hands the bootstrap, the variables and the substituted body to
/// bash on stdin), and the kept work directory holds none afterwards.
#[test]
fn no_work_file_holds_a_secret_while_the_script_runs() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let body = "ScriptBody=: '#{ApiToken}'\n\
                s=$(get_octopusvariable ApiToken)\n\
                if grep -rqF -- \"$s\" . ; then echo LEAKED-IN-WORK-FILES; ls -la; exit 1; fi\n\
                echo \"files: $(ls -A | wc -l)\"";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home.path())
        .args(["run-step", "run-script", "--param", body, "--keep-work-dir"])
        .args(["--sensitive-variable", "ApiToken"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tok-in-no-file-31\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("files: 0"), "{stdout}");
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Work directory kept at "))
        .expect("the kept work directory");
    for entry in std::fs::read_dir(kept.trim()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("tok-in-no-file-31"),
            "{} holds the secret",
            path.display()
        );
    }
}

/// The `run-step-*` work directories of `home`.
fn run_step_dirs(home: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(home.join("work")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-step-"))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Waits (up to a minute) until `home` holds a run-step work directory other than `except`.
fn wait_for_dir(home: &Path, except: Option<&Path>) -> PathBuf {
    for _ in 0..600 {
        if let Some(dir) = run_step_dirs(home)
            .into_iter()
            .find(|d| Some(d.as_path()) != except)
        {
            return dir;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no new work directory: {:?}", run_step_dirs(home));
}

/// Issue 11: an `octo run-step` killed with SIGKILL cannot remove its work directory (nor did its
/// script survive it); the next run-step removes the directory, but not the directory of a run that
/// is still going.
#[test]
fn a_killed_run_steps_work_directory_goes_at_the_next_start() {
    let home = tempfile::tempdir().unwrap();
    let marker = format!("sleep 7{}", std::process::id() % 1000 + 1000);
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_octo"))
            .arg("--home")
            .arg(home.path())
            .args(["run-step", "run-script", "--param"])
            .arg(format!("ScriptBody={marker}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let running = |pattern: &str| {
        Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let mut killed = start();
    let left = wait_for_dir(home.path(), None);
    for _ in 0..600 {
        if running(&marker) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    killed.kill().unwrap(); // SIGKILL: no clean-up runs
    killed.wait().unwrap();
    assert!(left.is_dir(), "{left:?}");
    let mut gone = false;
    for _ in 0..100 {
        if !running(&marker) {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "the script outlived its killed run-step");

    // The next run-step removes it (before making its own) ...
    let mut live = start();
    let live_dir = wait_for_dir(home.path(), Some(&left));
    assert!(!left.exists(), "{left:?} is still there");
    // ... and a run-step next to a live one leaves the live one's alone.
    let out = octo(
        home.path(),
        &["run-step", "run-script", "--param", "ScriptBody=echo hi"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(live_dir.is_dir(), "a live run's directory was removed");
    live.kill().unwrap();
    live.wait().unwrap();
}
