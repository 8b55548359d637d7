//! The per-step log volume limit bounds a tentacle's journal (`work/<ticket>/log.jsonl`) and what
//! it keeps in memory (issue 11, finding 6): `[limits] maxLogBytes` in `tentacle.toml`.

mod common;

use common::*;
use octo_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_step_is_cut_at_the_log_volume_limit_in_the_journal() {
    let server = Server::new();
    let home = tempfile::tempdir().unwrap();
    Tentacle::configure_listening(home.path(), 0, server.thumbprint());
    let settings = home.path().join("tentacle.toml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str("\n[limits]\nmaxLogBytes = 65536\n");
    std::fs::write(&settings, text).unwrap();
    let tentacle = Tentacle::start(home.path()).await;
    let client = server.connect(&tentacle).await;
    put_run_script(&client).await;

    let start = script_step(
        "Tasks-9",
        "yes | head -n 200000\nset_octopusvariable After yes\n",
    );
    let _: StepStarted = client.call_json(paths::STEP_START, &start).await.unwrap();
    let (lines, status) = follow(&client, &start.ticket).await;
    assert_eq!(status.state, StepState::Succeeded, "{status:?}");
    let text = messages(&lines);
    assert!(
        text.last().unwrap().contains("limits.maxLogBytes"),
        "the last line is the notice: {:?}",
        text.last()
    );
    assert!(lines.len() < 2_000, "{} lines kept", lines.len());
    let journal = std::fs::metadata(home.path().join("work/Tasks-9/log.jsonl"))
        .unwrap()
        .len();
    assert!(journal < 256 * 1024, "journal of {journal} bytes");
    // The step's service messages still count.
    assert!(
        status
            .result
            .unwrap()
            .outputs
            .iter()
            .any(|o| o.name == "After")
    );
}
