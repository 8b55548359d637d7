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
