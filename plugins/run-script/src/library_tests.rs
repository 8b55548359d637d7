//! Every community step template in `shared/library` must produce a bootstrap and a script body
//! that Bash accepts (`bash -n`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bootstrap::{SCRIPT_FILE, bootstrap, script_body};
use crate::substitute::Variables;

fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/library")
}

fn bash_syntax_ok(dir: &Path, file: &str) -> Result<(), String> {
    let out = Command::new("bash")
        .arg("-n")
        .arg(file)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("could not run bash: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_library_template_passes_bash_syntax_check() {
    let dir = library_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("note: no step library at {}; skipping", dir.display());
        return;
    };
    let mut templates: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    templates.sort();
    assert!(!templates.is_empty(), "no templates in {}", dir.display());

    let work = std::env::temp_dir().join(format!("octo-library-test-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut failures = Vec::new();
    for path in &templates {
        let template: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let body = template["Properties"]["Octopus.Action.Script.ScriptBody"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no script body", path.display()));
        // The template's parameters with their default values, as the host passes them, plus a
        // value for every other variable the body refers to (package paths and the like, which a
        // real deployment defines: left unresolved, `chmod +x #{Path}/tool` makes the rest of the
        // line a comment and some templates stop being valid Bash).
        let mut vars: Vec<(String, String)> = template["Parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["Name"].as_str().unwrap_or_default().to_owned(),
                    p["DefaultValue"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for name in referenced_names(body) {
            if !vars.iter().any(|(n, _)| *n == name) {
                vars.push((name, "/octo/placeholder".to_owned()));
            }
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let script = script_body(body, &Variables::new(pairs.iter().copied()));
        std::fs::write(work.join(SCRIPT_FILE), &script).unwrap();
        for (file, variables) in [
            ("bootstrap.sh", pairs.clone()),
            ("empty-bootstrap.sh", Vec::new()),
        ] {
            std::fs::write(work.join(file), bootstrap(variables, SCRIPT_FILE)).unwrap();
        }
        for file in ["bootstrap.sh", "empty-bootstrap.sh", SCRIPT_FILE] {
            if let Err(e) = bash_syntax_ok(&work, file) {
                failures.push(format!("{} ({file}): {e}", path.display()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("checked {} templates", templates.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Names in `#{Name}` / `#{Name | Filter}` / `#{if Name}` expressions.
fn referenced_names(body: &str) -> Vec<String> {
    body.split("#{")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(inner, _)| inner))
        .filter(|inner| !inner.contains(['\n', '"', '{']))
        .map(|inner| {
            let inner = inner.trim();
            let inner = inner
                .strip_prefix("if ")
                .or_else(|| inner.strip_prefix("unless "))
                .unwrap_or(inner);
            inner
                .split('|')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|name| !name.is_empty() && !name.starts_with('/') && name != "else")
        .collect()
}

#[test]
fn a_library_template_runs_unchanged() {
    // bash-service-check-running reads its parameter with get_octopusvariable and checks `ps`.
    let dir = library_dir();
    let Ok(text) = std::fs::read_to_string(dir.join("bash-service-check-running.json")) else {
        println!("note: no step library at {}; skipping", dir.display());
        return;
    };
    if Command::new("ps").arg("-ef").output().is_err() {
        println!("note: no `ps` on this machine; skipping");
        return;
    }
    let template: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = template["Properties"]["Octopus.Action.Script.ScriptBody"]
        .as_str()
        .unwrap();
    let vars = [("services", "bash")];
    let work = std::env::temp_dir().join(format!("octo-library-run-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join(SCRIPT_FILE),
        script_body(body, &Variables::new(vars)),
    )
    .unwrap();
    std::fs::write(work.join("bootstrap.sh"), bootstrap(vars, SCRIPT_FILE)).unwrap();
    let out = Command::new("bash")
        .arg("bootstrap.sh")
        .current_dir(&work)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("bash is running!!!"), "{stdout}");
}
