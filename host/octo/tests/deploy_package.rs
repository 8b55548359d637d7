//! `octo run-step deploy-package --package-file PATH` on this machine: the real binary, a temporary
//! home, packages made by the test (hostile ones included).

use octo_test_support::archive::{self, Entry};
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

fn deploy(home: &Path, package: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run-step", "deploy-package", "--package-file"];
    let p = package.display().to_string();
    args.push(&p);
    args.extend_from_slice(extra);
    octo(home, &args)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The deployment directories of `package` (hidden ones included).
fn deployments(home: &Path, package: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.join("Applications").join(package))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".deployments")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn one_error_line(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "expected failure: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "{needle:?} not in {:?}",
            errors[0]
        );
    }
}

#[test]
fn deploys_with_conventions_in_order_and_keeps_three() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let log = files.path().join("order.log");
    let log_text = log.display().to_string();
    let script = |name: &str| {
        format!(
            "echo {name} >> '{log_text}'\necho \"{name} in $PWD for $(get_octopusvariable Environment)\"\n"
        )
    };
    let package = archive::tar_gz(&[
        Entry::Dir("config/".into()),
        Entry::file(
            "config/app.conf",
            "env=#{Environment}\nname=#{Octopus.Action.Package.PackageId}\n",
        ),
        Entry::file(
            "appsettings.json",
            r#"{"Logging":{"LogLevel":{"Default":"Warning"}},"Port":80}"#,
        ),
        Entry::executable("bin/app", "#!/bin/sh\necho app\n"),
        Entry::Symlink("current".into(), "bin/app".into()),
        Entry::file("PreDeploy.sh", script("PreDeploy")),
        Entry::file(
            "Deploy.sh",
            format!(
                "{}cat config/app.conf\nset_octopusvariable Deployed yes\n",
                script("Deploy")
            ),
        ),
        Entry::file("PostDeploy.sh", script("PostDeploy")),
    ]);
    let file = write(files.path(), "Acme.Web.1.0.0.tar.gz", &package);
    let out = deploy(
        home.path(),
        &file,
        &[
            "--variable",
            "Environment=Production",
            "--variable",
            "Logging:LogLevel:Default=Debug",
            "--param",
            "Octopus.Action.SubstituteInFiles.TargetFiles=config/*.conf",
            "--param",
            "Octopus.Action.Package.JsonConfigurationVariablesTargets=appsettings.json",
        ],
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let dir = home.path().join("Applications/Acme.Web/1.0.0");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains(&format!(
            "Octopus.Action.Package.InstallationDirectoryPath = {}",
            dir.display()
        )),
        "{all}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "PreDeploy\nDeploy\nPostDeploy\n"
    );
    assert!(
        all.contains(&format!("Deploy in {} for Production", dir.display())),
        "{all}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("config/app.conf")).unwrap(),
        "env=Production\nname=Acme.Web\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("appsettings.json")).unwrap())
            .unwrap();
    assert_eq!(json["Logging"]["LogLevel"]["Default"], "Debug");
    assert_eq!(json["Port"], 80);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("bin/app"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "{mode:o}");
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        Path::new("bin/app")
    );
    assert!(all.contains("Deployed = yes"), "{all}");

    // Four more deployments of the same version: fresh directories, the newest three kept.
    for _ in 0..4 {
        let out = deploy(home.path(), &file, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(
        deployments(home.path(), "Acme.Web"),
        ["1.0.0_2", "1.0.0_3", "1.0.0_4"]
    );
}

#[test]
fn deploy_failed_runs_when_a_convention_fails() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let marker = files.path().join("failed");
    let package = archive::tar(&[
        Entry::file("Deploy.sh", "echo deploying\nexit 3\n"),
        Entry::file("DeployFailed.sh", format!("touch '{}'\n", marker.display())),
        Entry::file("PostDeploy.sh", "echo never\n"),
    ]);
    let file = write(files.path(), "app-2.0.0.tar", &package);
    let out = deploy(home.path(), &file, &[]);
    one_error_line(&out, &["package app 2.0.0", "Deploy.sh exited with code 3"]);
    assert!(marker.exists(), "DeployFailed.sh ran");
    assert!(!text(&out.stdout).contains("never") && !text(&out.stderr).contains("never"));
}

#[test]
fn hostile_and_broken_packages_are_refused_and_leave_nothing() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot-1.0.0.tar",
            archive::tar(&[Entry::file("../x", "x")]),
            "\"../x\"",
        ),
        (
            "absolute-1.0.0.tar",
            archive::tar(&[Entry::file("/etc/x", "x")]),
            "\"/etc/x\"",
        ),
        (
            "rootlink-1.0.0.tar",
            archive::tar(&[Entry::Symlink("root".into(), "/".into())]),
            "\"root\"",
        ),
        (
            "device-1.0.0.tar",
            archive::tar(&[Entry::CharDevice("null".into())]),
            "device",
        ),
        (
            "corrupt-1.0.0.tar.gz",
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            "not a valid",
        ),
        (
            "corrupt-1.0.0.zip",
            b"PK\x03\x04garbage".to_vec(),
            "not a valid zip",
        ),
        (
            "bomb-1.0.0.tar.gz",
            archive::tar_gz(&[Entry::file("zeros", vec![0u8; 4 << 20])]),
            "MaxExtractedBytes",
        ),
    ];
    for (name, bytes, needle) in cases {
        let file = write(files.path(), name, &bytes);
        let id = name.split('-').next().unwrap();
        let out = deploy(
            home.path(),
            &file,
            &["--param", "MaxExtractedBytes=1048576"],
        );
        one_error_line(&out, &[&format!("package {id} 1.0.0"), needle]);
        assert_eq!(deployments(home.path(), id), Vec::<String>::new(), "{name}");
    }
    assert!(!Path::new("/etc/x").exists());

    let out = octo(home.path(), &["run-step", "deploy-package"]);
    one_error_line(&out, &["--package-file"]);
    let file = write(files.path(), "noversion.tar", &archive::tar(&[]));
    let out = deploy(home.path(), &file, &[]);
    one_error_line(&out, &["Package.Id"]);
    let out = deploy(
        home.path(),
        &file,
        &[
            "--param",
            "Package.Id=../up",
            "--param",
            "Package.Version=1",
        ],
    );
    one_error_line(&out, &["cannot name a directory"]);
}

/// The `package-*` staging directories under `home`'s work directory.
fn staging_dirs(home: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(home.join("work")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("package-"))
        })
        .collect()
}

/// Issue 11: a deploy-package run killed with SIGKILL leaves its staged package behind (nothing ran
/// its clean-up); the next run-step removes it, as it removes an abandoned work directory.
#[test]
fn a_killed_runs_staged_package_goes_at_the_next_start() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let marker = format!("sleep 7{}", std::process::id() % 1000 + 2000);
    let package = archive::tar_gz(&[Entry::file("PreDeploy.sh", format!("{marker}\n"))]);
    let file = write(files.path(), "Acme.Staged.1.0.0.tar.gz", &package);
    let mut killed = Command::new(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home.path())
        .args(["run-step", "deploy-package", "--package-file"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = || {
        Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    for _ in 0..600 {
        if running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(running(), "the deployment's PreDeploy never started");
    let staged = staging_dirs(home.path());
    assert_eq!(staged.len(), 1, "{staged:?}");
    killed.kill().unwrap(); // SIGKILL: no clean-up runs
    killed.wait().unwrap();
    assert!(staged[0].is_dir(), "{staged:?}");

    let out = octo(
        home.path(),
        &["run-step", "run-script", "--param", "ScriptBody=echo hi"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!staged[0].exists(), "{staged:?} is still there");
}
