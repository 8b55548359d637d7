//! Limits on what a step produces, and masking of everything shown (issue 11, findings 4-6):
//! output variables kept in a map and bounded, the log volume of a step bounded with a notice,
//! outputs that contain a sensitive value masked however they were set, components refused
//! above their size limits.

use octo_manifest::SectionError;
use octo_runtime::{
    Limits, LoadError, LogLevel, LogLine, Runtime, RuntimeConfig, StepOutcome, StepRequest,
    Variable,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn run_script_bytes() -> Vec<u8> {
    std::fs::read(std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join("run_script.wasm"))
        .unwrap()
}

fn runtime(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        step_deadline: Duration::from_secs(300),
        max_instances: 4,
        limits,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Runs `script` with run-script; returns the outcome and the log.
async fn run(
    rt: &Runtime,
    dir: &tempfile::TempDir,
    script: &str,
    variables: Vec<Variable>,
) -> (StepOutcome, Vec<LogLine>) {
    let plugin = rt.load_step(&run_script_bytes()).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let request = StepRequest {
        arguments: BTreeMap::from([("ScriptBody".to_string(), script.to_string())]),
        variables,
        log: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l)),
        ..StepRequest::new(dir.path())
    };
    let outcome = plugin.run(rt, request).await;
    let lines = lines.lock().unwrap().clone();
    (outcome, lines)
}

#[tokio::test]
async fn outputs_containing_a_sensitive_value_are_masked_however_they_were_set() {
    let rt = runtime(Limits::default());
    let dir = tempfile::tempdir().unwrap();
    let raw = format!(
        "echo \"##octopus[setVariable name='{}' value='{}']\"",
        encode("Raw"),
        encode("raw-hunter2xyz")
    );
    let script = format!(
        "s=$(get_octopusvariable Secret)\n\
         set_octopusvariable OutSecret \"prefix-$s-suffix\"\n\
         set_octopusvariable Exact \"$s\"\n\
         set_octopusvariable Plain \"nothing to hide\"\n\
         {raw}\n"
    );
    let secret = Variable {
        name: "Secret".into(),
        value: "hunter2xyz".into(),
        sensitive: true,
    };
    let (outcome, lines) = run(&rt, &dir, &script, vec![secret]).await;
    assert_eq!(outcome.result, Ok(()), "{lines:#?}");
    let get = |name: &str| outcome.outputs.iter().find(|o| o.name == name).unwrap();
    for name in ["OutSecret", "Exact", "Raw"] {
        let o = get(name);
        assert!(o.sensitive, "{name} must become sensitive");
        assert_eq!(o.display_value(), "********", "{name}");
        assert!(!format!("{o:?}").contains("hunter2xyz"), "{name}");
    }
    // The values themselves are kept for whoever uses them.
    assert_eq!(get("OutSecret").value, "prefix-hunter2xyz-suffix");
    assert_eq!(get("Raw").value, "raw-hunter2xyz");
    assert!(!get("Plain").sensitive);
    assert_eq!(get("Plain").display_value(), "nothing to hide");
    assert!(lines.iter().all(|l| !l.message.contains("hunter2xyz")));
}

#[tokio::test]
async fn a_hundred_thousand_output_variables_are_all_kept() {
    let rt = runtime(Limits::default());
    let dir = tempfile::tempdir().unwrap();
    // `set_octopusvariable` as the bootstrap prints it, prepared here so the script is one `cat`.
    let mut messages = String::new();
    for i in 0..100_000 {
        let name = format!("Var{i}");
        messages.push_str(&format!(
            "##octopus[setVariable name='{}' value='{}']\n",
            encode(&name),
            encode(&i.to_string())
        ));
    }
    // The last one set again: replaced, not added.
    messages.push_str(&format!(
        "##octopus[setVariable name='{}' value='{}']\n",
        encode("Var7"),
        encode("again")
    ));
    std::fs::write(dir.path().join("messages.txt"), messages).unwrap();
    let (outcome, _) = run(&rt, &dir, "cat messages.txt\n", Vec::new()).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.outputs.len(), 100_000);
    assert_eq!(outcome.outputs[0].name, "Var0");
    assert_eq!(outcome.outputs[7].value, "again");
    assert_eq!(outcome.outputs[99_999].name, "Var99999");
}

#[tokio::test]
async fn output_variables_are_bounded_in_count_and_size() {
    let rt = runtime(Limits {
        max_output_variables: 5,
        max_output_value_bytes: 100,
        max_output_bytes: 1000,
        ..Limits::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let script = "for i in $(seq 1 8); do set_octopusvariable \"V$i\" \"$i\"; done\n\
                  set_octopusvariable V1 \"$(head -c 101 /dev/zero | tr '\\0' x)\"\n\
                  set_octopusvariable V2 \"$(head -c 100 /dev/zero | tr '\\0' x)\"\n\
                  echo done\n";
    let (outcome, lines) = run(&rt, &dir, script, Vec::new()).await;
    assert_eq!(outcome.result, Ok(()));
    let names: Vec<&str> = outcome.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["V1", "V2", "V3", "V4", "V5"]);
    assert_eq!(
        outcome.outputs[0].value, "1",
        "a too-large value is refused"
    );
    assert_eq!(outcome.outputs[1].value.len(), 100);
    let warnings: Vec<&str> = lines
        .iter()
        .filter(|l| l.level == LogLevel::Warn)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("limits.maxOutputVariables"))
            .count(),
        1,
        "told once: {warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("V1 not set") && w.contains("limits.maxOutputValueBytes")),
        "{warnings:#?}"
    );
    assert!(lines.iter().any(|l| l.message == "done"));
}

#[tokio::test]
async fn the_log_volume_of_a_step_is_bounded_with_a_notice() {
    let rt = runtime(Limits {
        max_log_bytes: 64 * 1024,
        ..Limits::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (outcome, lines) = run(
        &rt,
        &dir,
        "yes | head -n 200000\nset_octopusvariable After yes\n",
        Vec::new(),
    )
    .await;
    assert_eq!(outcome.result, Ok(()));
    let volume: u64 = lines
        .iter()
        .map(|l| l.message.len() as u64 + Limits::LOG_LINE_OVERHEAD)
        .sum();
    assert!(volume <= 64 * 1024 + 1024, "{volume}");
    let notices: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.message.contains("limits.maxLogBytes"))
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        lines.last().unwrap(),
        notices[0],
        "nothing after the notice"
    );
    // Service messages still count after the log is full.
    assert!(outcome.outputs.iter().any(|o| o.name == "After"));
}

#[test]
fn components_over_the_size_limits_are_refused() {
    let bytes = run_script_bytes();
    let rt = runtime(Limits {
        max_component_bytes: bytes.len() - 1,
        ..Limits::default()
    });
    let err = rt.load_step(&bytes).err().expect("refused");
    assert!(
        matches!(
            err,
            LoadError::Manifest(SectionError::ComponentTooLarge { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("limits.maxComponentBytes"),
        "{err}"
    );
    let rt = runtime(Limits {
        max_custom_section_bytes: 16,
        ..Limits::default()
    });
    let err = rt.load_step(&bytes).err().expect("refused");
    assert!(
        matches!(
            err,
            LoadError::Manifest(SectionError::CustomSectionTooLarge { .. })
        ),
        "{err}"
    );
}

/// Standard base64 with padding, as the service messages carry it.
fn encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
