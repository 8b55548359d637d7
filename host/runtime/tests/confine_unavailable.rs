//! Where namespaces are unavailable, confined mode refuses to run a script with a one-line error and
//! never runs it unconfined; audited mode runs it with a warning. (Its own test binary: the hook is an
//! environment variable of the process.)

use octo_runtime::{
    LogLine, Runtime, RuntimeConfig, SIMULATE_UNAVAILABLE_ENV, ScriptNetwork, StepFailure,
    StepRequest,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[test]
fn confined_mode_refuses_without_namespaces() {
    // SAFETY: the only test in this binary; set before any other thread starts.
    unsafe { std::env::set_var(SIMULATE_UNAVAILABLE_ENV, "1") };
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let component = std::fs::read(
            std::path::Path::new(octo_builtin_plugins::BUILD_DIR).join("run_script.wasm"),
        )
        .unwrap();
        let plugin = rt.load_step(&component).unwrap();
        for network in [ScriptNetwork::Confined, ScriptNetwork::Audited] {
            let dir = tempfile::tempdir().unwrap();
            let ran = dir.path().join("ran");
            let lines = Arc::new(Mutex::new(Vec::<LogLine>::new()));
            let sink = lines.clone();
            let request = StepRequest {
                arguments: BTreeMap::from([(
                    "ScriptBody".to_string(),
                    format!("touch {}", ran.display()),
                )]),
                log: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l)),
                script_network: network,
                ..StepRequest::new(dir.path())
            };
            let outcome = plugin.run(&rt, request).await;
            let log: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .map(|l| l.message.clone())
                .collect();
            match network {
                ScriptNetwork::Confined => {
                    let Err(StepFailure::Failed(message)) = &outcome.result else {
                        panic!("{:?} {log:#?}", outcome.result)
                    };
                    assert!(!message.contains('\n'), "{message}");
                    assert!(
                        message.contains("unconfined")
                            && message.contains(SIMULATE_UNAVAILABLE_ENV),
                        "{message}"
                    );
                    assert!(!ran.exists(), "the script ran unconfined");
                }
                ScriptNetwork::Audited => {
                    assert_eq!(outcome.result, Ok(()), "{log:#?}");
                    assert!(ran.exists());
                    assert!(
                        log.iter()
                            .any(|l| l.contains("without its own PID namespace")),
                        "{log:#?}"
                    );
                }
            }
        }
    });
}
