//! Plugins from other toolchains work like Rust ones once `octo plugins pack` gives them a manifest.

use std::path::Path;
use std::process::Command;

#[test]
fn a_python_step_built_with_componentize_py_runs() {
    let Ok(version) = Command::new("componentize-py").arg("--version").output() else {
        eprintln!("skipping: componentize-py is not installed (scripts/setup.sh installs it)");
        return;
    };
    assert!(version.status.success());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/examples/python-step");
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("python_step.wasm");
    let built = Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "octo:plugin/step", "componentize", "app", "-o"])
        .arg(&raw)
        .current_dir(&example)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let octo = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_octo"))
            .arg("--home")
            .arg(work.path())
            .args(args)
            .output()
            .unwrap()
    };
    // Without a manifest it is refused, with the fix in the message.
    let out = octo(&["run-step", raw.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("octo plugins pack"));

    let packed = work.path().join("python-greeter.wasm");
    let manifest = example.join("manifest.json");
    let out = octo(&[
        "plugins",
        "pack",
        raw.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "-o",
        packed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = octo(&["run-step", packed.to_str().unwrap(), "--param", "name=Ada"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Hello from Python, Ada!") && stdout.contains("PyGreeting = Hello, Ada"),
        "{stdout}"
    );

    let out = octo(&["run-step", packed.to_str().unwrap(), "--param", "name=fail"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: step failed: asked to fail"));
}

/// `componentize-js`: `$COMPONENTIZE_JS`, else on the PATH, else where `scripts/setup.sh` installs it.
fn componentize_js() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var_os("COMPONENTIZE_JS").map(Into::into),
        Some("componentize-js".into()),
        std::env::var_os("HOME").map(|home| {
            Path::new(&home).join(".cache/octo-componentize-js/node_modules/.bin/componentize-js")
        }),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|c: &std::path::PathBuf| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn a_javascript_step_built_with_componentize_js_runs() {
    let Some(componentize_js) = componentize_js() else {
        eprintln!(
            "skipping: componentize-js is not installed (scripts/setup.sh installs it with npm)"
        );
        return;
    };
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/examples/js-step");
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("js_step.wasm");
    let built = Command::new(&componentize_js)
        .arg("step.js")
        .arg("-w")
        .arg(&wit)
        .args(["-n", "step", "-o"])
        .arg(&raw)
        .current_dir(&example)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let octo = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_octo"))
            .arg("--home")
            .arg(work.path())
            .args(args)
            .output()
            .unwrap()
    };
    let packed = work.path().join("js-greeter.wasm");
    let manifest = example.join("manifest.json");
    let out = octo(&[
        "plugins",
        "pack",
        raw.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "-o",
        packed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = octo(&["run-step", packed.to_str().unwrap(), "--param", "name=Ada"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Hello from JavaScript, Ada!")
            && stdout.contains("JsGreeting = Hello, Ada"),
        "{stdout}"
    );

    // `run` throws: a string is the failure message, an exception its message; one line each.
    for (name, expected) in [
        ("fail", "error: step failed: asked to fail"),
        (
            "bug",
            "error: step failed: TypeError: can't access property \"greet\" of null",
        ),
    ] {
        let out = octo(&[
            "run-step",
            packed.to_str().unwrap(),
            "--param",
            &format!("name={name}"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors, [expected], "{stderr}");
    }
}
