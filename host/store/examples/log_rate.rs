//! Task-log write rate: one chatty step's lines stored in pages as the daemon stores them (one
//! `append_log` per status answer), in SQLite and in PostgreSQL (a private cluster, started here),
//! beside the tentacle's own journal (one `write` per line to `log.jsonl`, as `tentacle` does).
//!
//! `cargo run --profile dev -p octo-store --example log_rate -- [LINES] [PAGE]`
//! (default 100000 lines, pages of 5000 = `octo_protocol::MAX_STATUS_LINES`, and of 50).
//! Numbers only; nothing is asserted.

use octo_store::*;
use std::io::Write;
use std::time::Instant;

fn lines(n: u64) -> Vec<LogLine> {
    (1..=n)
        .map(|i| LogLine {
            target: "web1".into(),
            sequence: i,
            level: "info".into(),
            message: format!("line {i}: the quick brown fox jumps over the lazy dog"),
        })
        .collect()
}

async fn store_rate(store: &dyn Store, all: &[LogLine], page: usize) -> f64 {
    let id = store
        .create_task(&NewTask {
            kind: TaskKind::RunStep,
            name: "chatty".into(),
            parts: vec![NewPart {
                target: "web1".into(),
                ticket: "run-1-0".into(),
            }],
        })
        .await
        .unwrap();
    let started = Instant::now();
    for chunk in all.chunks(page) {
        store.append_log(id, "web1", chunk).await.unwrap();
    }
    all.len() as f64 / started.elapsed().as_secs_f64()
}

fn journal_rate(dir: &std::path::Path, all: &[LogLine]) -> f64 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log.jsonl"))
        .unwrap();
    let started = Instant::now();
    for (i, line) in all.iter().enumerate() {
        let mut text = serde_json::to_vec(&serde_json::json!({
            "sequence": line.sequence, "timeMs": i, "level": line.level, "message": line.message
        }))
        .unwrap();
        text.push(b'\n');
        file.write_all(&text).unwrap();
    }
    all.len() as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let pages: Vec<usize> = match args.get(1) {
        Some(p) => vec![*p as usize],
        None => vec![5_000, 50],
    };
    let all = lines(n);
    let dir = tempfile::tempdir().unwrap();
    println!("{n} lines of {} bytes", all[0].message.len());
    println!(
        "tentacle journal (write per line): {:>10.0} lines/s",
        journal_rate(dir.path(), &all)
    );
    let sqlite = open(&Location::Sqlite(dir.path().join("octo.db")))
        .await
        .unwrap();
    let cluster = octo_test_support::postgres::PgCluster::start().expect("PostgreSQL");
    let url = DatabaseUrl::parse(&cluster.new_database()).unwrap();
    let postgres = open(&Location::Postgres(url)).await.unwrap();
    for page in pages {
        println!(
            "SQLite     (pages of {page:>4}):      {:>10.0} lines/s",
            store_rate(sqlite.as_ref(), &all, page).await
        );
        println!(
            "PostgreSQL (pages of {page:>4}):      {:>10.0} lines/s",
            store_rate(postgres.as_ref(), &all, page).await
        );
    }
}
