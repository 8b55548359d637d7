//! Background jobs: what runs on a schedule, gated by a settings switch.
//!
//! Every job is one entry in [`JOBS`]: a name, an interval, whether it also runs when the scheduler starts,
//! the settings switch that gates it, and a function. Adding a job is adding an entry. When its switch is
//! off a job does not run at all (no request is made) and says so.
//!
//! Last and next runs are kept in `<home>/jobs.json` (written atomically, under a lock so that
//! `octo jobs run` and a running scheduler do not lose each other's record):
//!
//! ```json
//! {"schema":1,"jobs":{"step-template-updates":{"lastRun":"2025-01-31T12:00:00Z","lastRunUnix":1738324800,
//!   "outcome":"ok","message":"run-script 0.1.0 -> 0.1.1","nextRun":"...","nextRunUnix":1738328400}}}
//! ```

use crate::home::Home;
use crate::plugins::{load_settings, print_table};
use anyhow::Context;
use clap::{Args, Subcommand};
use octo_settings::{Settings, keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const STATE_FILE: &str = "jobs.json";

/// What a job gets to work with.
pub struct JobContext<'a> {
    /// The home directory.
    pub home: &'a Home,
    /// The settings, as loaded for this run.
    pub settings: &'a Settings,
}

/// The settings switch that gates a job.
pub struct Gate {
    /// The settings key (= `octo configure` flag), e.g. `stepTemplateUpdates`.
    pub setting: &'static str,
    /// Whether it is on.
    pub enabled: fn(&Settings) -> bool,
}

/// One scheduled job.
pub struct Job {
    /// Name used by `octo jobs run NAME`.
    pub name: &'static str,
    /// One line for `octo jobs list`.
    pub description: &'static str,
    /// Time between runs.
    pub interval: Duration,
    /// Also run when the scheduler starts, whatever the last run.
    pub at_start: bool,
    /// The switch that gates it.
    pub gate: Gate,
    /// The work; returns a one-line summary.
    pub run: fn(&JobContext) -> anyhow::Result<String>,
}

const HOUR: Duration = Duration::from_secs(3600);

/// Every job: the feed and library jobs, and one per vendor plugin.
pub static JOBS: &[Job] = &[
    Job {
        name: "step-template-updates",
        description: "moves built-in steps to the newest semver-compatible version in the steps feed",
        interval: HOUR,
        at_start: false,
        gate: Gate {
            setting: keys::STEP_TEMPLATE_UPDATES,
            enabled: |s| s.step_template_updates,
        },
        run: |ctx| crate::plugins::update::update_builtins(ctx.home, ctx.settings),
    },
    Job {
        name: "community-step-templates",
        description: "syncs the community step template library into the local cache",
        interval: Duration::from_secs(24 * 3600),
        at_start: true,
        gate: Gate {
            setting: keys::COMMUNITY_STEP_TEMPLATES,
            enabled: |s| s.community_step_templates,
        },
        run: |ctx| crate::library::sync(ctx.home, ctx.settings),
    },
    Job {
        name: "update-check",
        description: "asks the update endpoint whether a newer Octo exists (version + installation id)",
        interval: Duration::from_secs(8 * 3600),
        at_start: true,
        gate: Gate {
            setting: keys::UPGRADE_CHECK,
            enabled: |s| s.upgrade_check,
        },
        run: |ctx| {
            crate::vendor::check_updates(ctx.home, ctx.settings)
                .map(|s| crate::vendor::describe_update(&s))
        },
    },
    Job {
        name: "telemetry",
        description: "sends anonymous usage counts (`octo telemetry preview` shows them)",
        interval: Duration::from_secs(24 * 3600),
        at_start: false,
        gate: Gate {
            setting: keys::SEND_TELEMETRY,
            enabled: |s| s.send_telemetry,
        },
        run: |ctx| crate::vendor::send_telemetry(ctx.home, ctx.settings),
    },
    Job {
        name: "experiences",
        description: "fetches in-app messages for `octo status`",
        interval: Duration::from_secs(24 * 3600),
        at_start: true,
        gate: Gate {
            setting: keys::EXPERIENCES_ENABLED,
            enabled: |s| s.experiences_enabled,
        },
        run: |ctx| crate::vendor::fetch_experiences(ctx.home, ctx.settings),
    },
    Job {
        name: "dynamic-extensions",
        description: "fetches the signed dynamic extensions document (verified with the pinned feed key)",
        interval: Duration::from_secs(24 * 3600),
        at_start: true,
        gate: Gate {
            setting: keys::DYNAMIC_EXTENSIONS_ENABLED,
            enabled: |s| s.dynamic_extensions_enabled,
        },
        run: |ctx| crate::vendor::fetch_dynamic_extensions(ctx.home, ctx.settings),
    },
];

/// `octo jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List the jobs: interval, gate, last and next run.
    List(ListArgs),
    /// Run jobs now (still subject to their settings switch).
    Run(RunArgs),
    /// Run the scheduler in the foreground: start-up jobs now, then each job when it is due.
    Watch,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["name", "all", "due"])))]
pub struct RunArgs {
    /// The job to run.
    pub name: Option<String>,
    /// Every job.
    #[arg(long)]
    pub all: bool,
    /// Every job whose next run is due.
    #[arg(long)]
    pub due: bool,
}

/// What `jobs.json` records about one job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// When it last ran (RFC 3339 UTC).
    pub last_run: String,
    /// The same, in seconds since the epoch.
    pub last_run_unix: u64,
    /// `ok`, `failed` or `skipped`.
    pub outcome: String,
    /// Its summary or error.
    pub message: String,
    /// When it is due next.
    pub next_run: String,
    /// The same, in seconds since the epoch.
    pub next_run_unix: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    schema: u32,
    jobs: BTreeMap<String, JobRecord>,
}

fn state_path(home: &Home) -> PathBuf {
    home.root().join(STATE_FILE)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read_state(home: &Home) -> anyhow::Result<State> {
    let path = state_path(home);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is corrupt; remove it (jobs then run as if never run)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            schema: 1,
            jobs: BTreeMap::new(),
        }),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Records one run (locked read-modify-write of `jobs.json`).
fn record(home: &Home, job: &Job, record: JobRecord) -> anyhow::Result<()> {
    let dir = home.private_dir("")?;
    let lock_path = dir.join(".jobs.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut state = read_state(home)?;
    state.schema = 1;
    state.jobs.insert(job.name.to_string(), record);
    let mut bytes = serde_json::to_vec_pretty(&state)?;
    bytes.push(b'\n');
    crate::atomic_file::write(&state_path(home), &bytes)
}

/// Runs `job` now, unless its gate is off, and records the outcome. Ok(false) when it failed.
pub fn run_job(home: &Home, settings: &Settings, job: &Job) -> anyhow::Result<bool> {
    let started = SystemTime::now();
    let (outcome, message) = if !(job.gate.enabled)(settings) {
        (
            "skipped",
            format!(
                "{}=false, so it did not run and made no request (enable with `octo configure --{}=true`)",
                job.gate.setting, job.gate.setting
            ),
        )
    } else {
        match (job.run)(&JobContext { home, settings }) {
            Ok(summary) => ("ok", summary),
            Err(e) => ("failed", crate::one_line(&e)),
        }
    };
    let next = started + job.interval;
    match outcome {
        "failed" => eprintln!("{}: failed: {message}", job.name),
        _ => println!("{}: {outcome}: {message}", job.name),
    }
    record(
        home,
        job,
        JobRecord {
            last_run: octo_feed::store::rfc3339(started),
            last_run_unix: unix(started),
            outcome: outcome.to_string(),
            message,
            next_run: octo_feed::store::rfc3339(next),
            next_run_unix: unix(next),
        },
    )?;
    Ok(outcome != "failed")
}

fn find(name: &str) -> anyhow::Result<&'static Job> {
    JOBS.iter().find(|j| j.name == name).with_context(|| {
        format!(
            "no job named {name:?}; the jobs are: {}",
            JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
        )
    })
}

fn is_due(state: &State, job: &Job, now: u64) -> bool {
    state
        .jobs
        .get(job.name)
        .is_none_or(|r| r.next_run_unix <= now)
}

pub fn run(home: &Home, command: JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::List(args) => list(home, args),
        JobsCommand::Run(args) => {
            let settings = load_settings(home)?;
            let jobs: Vec<&Job> = if let Some(name) = &args.name {
                vec![find(name)?]
            } else if args.all {
                JOBS.iter().collect()
            } else {
                let state = read_state(home)?;
                let now = unix(SystemTime::now());
                JOBS.iter().filter(|j| is_due(&state, j, now)).collect()
            };
            if jobs.is_empty() {
                println!("no job is due");
            }
            let mut ok = true;
            for job in jobs {
                ok &= run_job(home, &settings, job)?;
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        JobsCommand::Watch => watch(home),
    }
}

fn list(home: &Home, args: ListArgs) -> anyhow::Result<ExitCode> {
    let settings = load_settings(home)?;
    let state = read_state(home)?;
    let rows: Vec<serde_json::Value> = JOBS
        .iter()
        .map(|job| {
            let record = state.jobs.get(job.name);
            serde_json::json!({
                "name": job.name,
                "description": job.description,
                "intervalSeconds": job.interval.as_secs(),
                "atStart": job.at_start,
                "gate": job.gate.setting,
                "enabled": (job.gate.enabled)(&settings),
                "lastRun": record.map(|r| r.last_run.clone()),
                "outcome": record.map(|r| r.outcome.clone()),
                "message": record.map(|r| r.message.clone()),
                "nextRun": record.map(|r| r.next_run.clone()),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![[
        "NAME".to_string(),
        "EVERY".into(),
        "GATE".into(),
        "LAST RUN".into(),
        "OUTCOME".into(),
        "NEXT RUN".into(),
    ]];
    for (job, row) in JOBS.iter().zip(&rows) {
        let s = |k: &str| row[k].as_str().unwrap_or("-").to_string();
        table.push([
            job.name.to_string(),
            human(job.interval),
            format!(
                "{}={}",
                job.gate.setting,
                if row["enabled"] == true { "on" } else { "off" }
            ),
            s("lastRun"),
            s("outcome"),
            if row["nextRun"].is_null() {
                "due".into()
            } else {
                s("nextRun")
            },
        ]);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// One scheduler step: runs every job that is due (and, when `starting`, the start-up jobs), re-reading
/// the settings first so that switching a gate off takes effect without a restart. Returns how long to
/// sleep before the next step (until the next job is due, at most a minute so that runs made by
/// `octo jobs run` and changed settings are noticed). A server embeds this in its own loop.
pub fn run_due(home: &Home, starting: bool) -> anyhow::Result<Duration> {
    let settings = load_settings(home)?;
    let state = read_state(home)?;
    let now = unix(SystemTime::now());
    for job in JOBS {
        if (is_due(&state, job, now) || (starting && job.at_start))
            && let Err(e) = run_job(home, &settings, job)
        {
            eprintln!(
                "{}: cannot record the run: {}",
                job.name,
                crate::one_line(&e)
            );
        }
    }
    let state = read_state(home)?;
    let now = unix(SystemTime::now());
    let next = JOBS
        .iter()
        .filter_map(|j| state.jobs.get(j.name).map(|r| r.next_run_unix))
        .min()
        .unwrap_or(now + 60);
    Ok(Duration::from_secs(next.saturating_sub(now).clamp(1, 60)))
}

/// `octo jobs watch`: the scheduler in the foreground, until the process is stopped.
fn watch(home: &Home) -> anyhow::Result<ExitCode> {
    let mut starting = true;
    loop {
        let sleep = run_due(home, starting)?;
        starting = false;
        std::thread::sleep(sleep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for job in JOBS {
            assert!(seen.insert(job.name), "two jobs are named {}", job.name);
        }
        for job in JOBS {
            assert!(!job.interval.is_zero(), "{}", job.name);
            assert!(keys::ALL.contains(&job.gate.setting), "{}", job.name);
        }
        assert_eq!(
            find("step-template-updates").unwrap().interval,
            Duration::from_secs(3600)
        );
        assert_eq!(
            find("community-step-templates").unwrap().interval,
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn gates_follow_the_settings() {
        let s = Settings {
            step_template_updates: false,
            ..Settings::default()
        };
        let job = find("step-template-updates").unwrap();
        assert!(!(job.gate.enabled)(&s));
        assert!((find("community-step-templates").unwrap().gate.enabled)(&s));
    }

    #[test]
    fn humane_intervals() {
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(86_400)), "1d");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }
}
