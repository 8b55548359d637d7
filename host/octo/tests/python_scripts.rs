//! Python script steps: templates of `Python` syntax run with `python3` and Octopus's Python helpers,
//! from a file and from the community library, with the same outputs, masking and failure rules as
//! Bash ones; each bad input is a one-line error and a non-zero exit.

mod common;

use common::{Home, Mock};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn python3_available() -> bool {
    let found = Command::new("python3").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipping: python3 is not installed");
    }
    found
}

/// A Library-format Python template with `body` and `parameters`.
fn template(id: &str, name: &str, body: &str, parameters: serde_json::Value) -> serde_json::Value {
    json!({
        "Id": id,
        "Name": name,
        "Description": "a Python step",
        "ActionType": "Octopus.Script",
        "Version": 2,
        "Category": "python",
        "Properties": {
            "Octopus.Action.Script.Syntax": "Python",
            "Octopus.Action.Script.ScriptBody": body,
        },
        "Parameters": parameters,
    })
}

fn write_template(home: &Home, file: &str, body: &str) -> String {
    let path = home.path().join(file);
    std::fs::write(
        &path,
        template("py-1", "Python step", body, json!([])).to_string(),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn a_python_template_runs_with_the_octopus_helpers() {
    if !python3_available() {
        return;
    }
    let home = Home::new();
    let path = home.path().join("greet.json");
    let body = "name = get_octopusvariable(\"Who\")\n\
                print(\"Hello, \" + name + \" from #{Who | ToUpper}\")\n\
                print(\"token is \" + octopusvariables[\"ApiToken\"])\n\
                printverbose(\"a detail\")\n\
                printhighlight(\"look here\")\n\
                printwarning(\"careful\")\n\
                set_octopusvariable(\"Greeting\", \"Hello, \" + name)\n\
                set_octopusvariable(\"Hidden\", \"#{ApiToken}\", sensitive=True)\n\
                open(\"report.txt\", \"w\").write(\"done\")\n\
                createartifact(\"report.txt\")\n";
    let parameters = json!([
        {"Name": "Who", "DefaultValue": "Ada"},
        {"Name": "ApiToken", "DisplaySettings": {"Octopus.ControlType": "Sensitive"}},
    ]);
    std::fs::write(
        &path,
        template("py-2", "Greet", body, parameters).to_string(),
    )
    .unwrap();
    let run = home.octo(&[
        "run-step",
        path.to_str().unwrap(),
        "--param",
        "ApiToken=tok-abc-123",
        "--json",
    ]);
    assert!(run.ok(), "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["status"], "succeeded", "{run:#?}");
    assert_eq!(doc["outputs"][0]["name"], "Greeting");
    assert_eq!(doc["outputs"][0]["value"], "Hello, Ada");
    assert_eq!(doc["outputs"][1]["name"], "Hidden");
    assert_eq!(doc["outputs"][1]["value"], "********");
    assert_eq!(doc["artifacts"][0]["name"], "report.txt", "{doc}");
    let log = &run.stderr;
    assert!(log.contains("Hello, Ada from ADA"), "{log}");
    assert!(log.contains("token is ********"), "{log}");
    assert!(
        log.contains("look here") && log.contains("careful"),
        "{log}"
    );
    assert!(!run.stdout.contains("tok-abc-123") && !log.contains("tok-abc-123"));
    assert!(
        !log.contains("##octopus"),
        "service messages are not shown: {log}"
    );
}

#[test]
fn bad_python_input_is_a_one_line_error() {
    if !python3_available() {
        return;
    }
    let home = Home::new();
    let cases = [
        (
            "print(\"before\")\nif True\n    print(\"x\")\n",
            "the Python script does not compile: SyntaxError: expected ':' (octo-script.py, line 2)",
        ),
        (
            "print(\"before\")\nfailstep(\"the database is not there\")\nprint(\"after\")\n",
            "step failed: the database is not there",
        ),
        (
            "def check():\n    raise RuntimeError(\"no disk\")\n\ncheck()\n",
            "the Python script raised RuntimeError: no disk (octo-script.py, line 2)",
        ),
        (
            "set_octopusvariable(\"OnlyAName\")\n",
            "the Python script raised TypeError: set_octopusvariable() missing 1 required \
             positional argument: 'value' (octo-script.py, line 1)",
        ),
        ("import sys\nsys.exit(7)\n", "script exited with code 7"),
    ];
    for (i, (body, expected)) in cases.iter().enumerate() {
        let path = write_template(&home, &format!("bad-{i}.json"), body);
        let run = home.octo(&["run-step", &path]);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert!(!run.ok(), "{run:#?}");
        assert_eq!(errors.len(), 1, "{run:#?}");
        assert!(
            errors[0].contains(expected),
            "{expected:?} in {:?}",
            errors[0]
        );
        assert!(!run.stdout.contains("after"), "{run:#?}");
    }
}

#[test]
fn a_missing_python3_is_named() {
    let home = Home::new();
    let path = write_template(&home, "t.json", "print(1)\n");
    let empty = tempfile::tempdir().unwrap();
    let out = home
        .command(&["run-step", &path])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("could not start python3") && errors[0].contains("is python3 installed"),
        "{stderr}"
    );
}

#[test]
fn python_templates_list_show_install_and_run_from_the_library() {
    if !python3_available() {
        return;
    }
    let library = tempfile::tempdir().unwrap();
    let write = |file: &str, value: serde_json::Value| {
        std::fs::write(library.path().join(file), value.to_string()).unwrap();
    };
    write(
        "python.json",
        template(
            "py-lib-1",
            "Say Hello (Python)",
            "print(\"hello \" + get_octopusvariable(\"Who\"))\n",
            json!([{"Name": "Who", "Label": "Whom to greet"}]),
        ),
    );
    let mut powershell = template(
        "ps-lib-1",
        "Say Hello (PowerShell)",
        "Write-Host hi",
        json!([]),
    );
    powershell["Properties"]["Octopus.Action.Script.Syntax"] = json!("PowerShell");
    write("powershell.json", powershell);

    let mock = Mock::start_with_library(None, Some(library.path()));
    let home = Home::new();
    let (_, key) = octo_feed::signature::generate_keypair().unwrap();
    home.configure(&mock, &key.to_base64(), false, true);
    let out = home.octo(&["jobs", "run", "community-step-templates"]);
    assert!(out.success().contains("1 runnable"), "{out:?}");

    let json = home.octo(&["library", "list", "--json"]).json();
    let rows = json.as_array().unwrap();
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(row("py-lib-1")["runnable"], true, "{json}");
    assert_eq!(row("ps-lib-1")["runnable"], false, "{json}");
    let show = home.octo(&["library", "show", "say-hello-python"]);
    assert!(
        show.success()
            .contains("runnable: yes (Python script, 1 lines)"),
        "{show:?}"
    );
    let show = home.octo(&["library", "show", "say-hello-powershell"]);
    assert!(
        show.success()
            .contains("runnable: no: the step template's script is PowerShell; Octo runs Bash and Python scripts only"),
        "{show:?}"
    );
    home.octo(&["library", "install", "say-hello-powershell"])
        .failure("Octo runs Bash and Python scripts only");

    let out = home.octo(&["library", "install", "py-lib-1"]);
    assert!(
        out.success()
            .contains("run it with: octo run-step say-hello-python --param Who=VALUE"),
        "{out:?}"
    );
    let run = home.octo(&["run-step", "say-hello-python", "--param", "Who=Grace"]);
    assert!(run.success().contains("hello Grace"), "{run:?}");
    let installed: PathBuf = home.path().join("steps/py-lib-1.json");
    assert!(installed.is_file());
}
