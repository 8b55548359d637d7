//! Background jobs: what runs on a schedule, each behind the one outbound gate.
//!
//! Every job is one entry in [`JOBS`]: a name, an interval, whether it also runs when the scheduler starts,
//! the outbound destination it reaches (its row in the outbound table names the switch that gates it),
//! and a function. Adding a job is adding an entry. The function asks the gate ([`JobContext::pass`])
//! before any request; when the gate says no, the job makes no request and is recorded as skipped.
//!
//! Last and next runs are kept in `<home>/jobs.json` (written atomically, under a lock so that
//! `octo jobs run` and a running scheduler do not lose each other's record):
//!
//! ```json
//! {"schema":1,"jobs":{"step-template-updates":{"lastRun":"2025-01-31T12:00:00Z","lastRunUnix":1738324800,
//!   "outcome":"ok","message":"run-script 0.1.0 -> 0.1.1","nextRun":"...","nextRunUnix":1738328400}}}
//! ```

use crate::error::{Context, Error, Result};
use crate::home::Home;
use crate::outbound::audit::AuditLog;
use crate::outbound::gate::{self, Allowed};
use crate::sink::{Event, Sink};
use crate::table::write_table;
use octo_outbound::DestinationId;
use octo_settings::Settings;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a job gets to work with.
pub struct JobContext<'a> {
    /// The home directory.
    pub home: &'a Home,
    /// The settings, as loaded for this run.
    pub settings: &'a Settings,
    /// Where notes (e.g. a vendor plugin's warnings) go.
    pub sink: &'a Sink,
    row: DestinationId,
    asked: Cell<bool>,
}

impl JobContext<'_> {
    /// Asks the one outbound gate for the job's destination (recording the attempt). Every job calls it
    /// before its first request; a refusal ends the job as skipped.
    pub fn pass(&self) -> Result<Allowed> {
        self.asked.set(true);
        gate::check(&AuditLog::in_home(self.home), self.settings, self.row)
    }
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
    /// The outbound destination it reaches; its row in the outbound table names the switch that gates
    /// it.
    pub destination: DestinationId,
    /// The work; returns a one-line summary. It calls [`JobContext::pass`] before any request.
    pub run: fn(&JobContext) -> Result<String>,
}

impl Job {
    /// The settings key of the switch that gates it (`stepTemplateUpdates`, ...).
    pub fn setting(&self) -> &'static str {
        gate::switch(self.destination).expect("jobs reach vendor destinations")
    }

    /// Whether the outbound table allows it now.
    pub fn enabled(&self, settings: &Settings) -> bool {
        octo_outbound::verdict(self.destination.row(), settings).allowed
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Every job: the feed and library jobs, and one per vendor plugin.
pub static JOBS: &[Job] = &[
    Job {
        name: "step-template-updates",
        description: "moves built-in steps to the newest semver-compatible version in the steps feed",
        interval: HOUR,
        at_start: false,
        destination: DestinationId::StepsFeed,
        run: |ctx| {
            crate::plugins::update::update_builtins(ctx.home, ctx.settings, &ctx.pass()?, ctx.sink)
        },
    },
    Job {
        name: "community-step-templates",
        description: "syncs the community step template library into the local cache",
        interval: Duration::from_secs(24 * 3600),
        at_start: true,
        destination: DestinationId::LibraryFeed,
        run: |ctx| crate::library::sync(ctx.home, ctx.settings, &ctx.pass()?),
    },
    Job {
        name: "update-check",
        description: "asks the update endpoint whether a newer Octo exists (version + installation id)",
        interval: Duration::from_secs(8 * 3600),
        at_start: true,
        destination: DestinationId::UpdateCheck,
        run: |ctx| {
            crate::vendor::check_updates(ctx.home, ctx.settings, &ctx.pass()?, ctx.sink)
                .map(|s| crate::vendor::describe_update(&s))
        },
    },
    Job {
        name: "telemetry",
        description: "sends anonymous usage counts (`octo telemetry preview` shows them)",
        interval: Duration::from_secs(24 * 3600),
        at_start: false,
        destination: DestinationId::Telemetry,
        run: |ctx| {
            // Counted before the gate records this attempt: what is sent is what the preview showed.
            let report = crate::vendor::telemetry_before_gate(ctx.home)?;
            crate::vendor::send_telemetry(ctx.home, ctx.settings, report, &ctx.pass()?, ctx.sink)
        },
    },
    Job {
        name: "experiences",
        description: "fetches in-app messages for `octo status`",
        interval: Duration::from_secs(24 * 3600),
        at_start: true,
        destination: DestinationId::Experiences,
        run: |ctx| crate::vendor::fetch_experiences(ctx.home, ctx.settings, &ctx.pass()?, ctx.sink),
    },
    Job {
        name: "dynamic-extensions",
        description: "fetches the signed dynamic extensions document (verified with the pinned feed key)",
        interval: Duration::from_secs(24 * 3600),
        at_start: true,
        destination: DestinationId::DynamicExtensions,
        run: |ctx| {
            crate::vendor::fetch_dynamic_extensions(ctx.home, ctx.settings, &ctx.pass()?, ctx.sink)
        },
    },
];

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

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read_state(home: &Home) -> Result<State> {
    let path = home.jobs_state();
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
fn record(home: &Home, job: &Job, record: JobRecord) -> Result<()> {
    home.create()?;
    let lock_path = home.jobs_lock();
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
    let path = home.jobs_state();
    octo_fsutil::write_atomic(&path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub use crate::sink::{JobRun, Outcome};

/// Runs `job` now (it asks the outbound gate first), records the outcome, and tells the sink.
pub fn run_job(home: &Home, settings: &Settings, job: &Job, sink: &Sink) -> Result<JobRun> {
    let started = SystemTime::now();
    let ctx = JobContext {
        home,
        settings,
        sink,
        row: job.destination,
        asked: Cell::new(false),
    };
    let (outcome, message) = match (job.run)(&ctx) {
        Ok(_) if !ctx.asked.get() => (
            Outcome::Failed,
            format!("the job {} did not ask the outbound gate", job.name),
        ),
        Ok(summary) => (Outcome::Ok, summary),
        Err(Error::Denied(reason)) => (
            Outcome::Skipped,
            if settings.air_gapped() {
                "the server is air-gapped, so it did not run and made no request (`octo configure --airGapped=false` lifts the air gap)".to_string()
            } else if octo_outbound::switch(settings, job.setting()) == Some(false) {
                format!(
                    "{}=false, so it did not run and made no request (enable with `octo configure --{}=true`)",
                    job.setting(),
                    job.setting()
                )
            } else {
                reason
            },
        ),
        Err(e) => (Outcome::Failed, e.one_line()),
    };
    let next = started + job.interval;
    let run = JobRun {
        name: job.name,
        outcome,
        message,
    };
    sink.emit(Event::Job(&run));
    record(
        home,
        job,
        JobRecord {
            last_run: octo_fsutil::rfc3339(started),
            last_run_unix: unix(started),
            outcome: outcome.as_str().to_string(),
            message: run.message.clone(),
            next_run: octo_fsutil::rfc3339(next),
            next_run_unix: unix(next),
        },
    )?;
    Ok(run)
}

/// The job named `name`.
pub fn find(name: &str) -> Result<&'static Job> {
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

/// Which jobs `octo jobs run` runs.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The job with this name.
    Named(String),
    /// Every job.
    All,
    /// Every job whose next run is due.
    Due,
}

/// `octo jobs run NAME|--all|--due`: each run is told to the sink as it ends. An empty list means no
/// job was due.
pub fn run(home: &Home, which: &Selection, sink: &Sink) -> Result<Vec<JobRun>> {
    let settings = home.load_settings()?;
    let jobs: Vec<&Job> = match which {
        Selection::Named(name) => vec![find(name)?],
        Selection::All => JOBS.iter().collect(),
        Selection::Due => {
            let state = read_state(home)?;
            let now = unix(SystemTime::now());
            JOBS.iter().filter(|j| is_due(&state, j, now)).collect()
        }
    };
    jobs.into_iter()
        .map(|job| run_job(home, &settings, job, sink))
        .collect()
}

/// `octo jobs list`: one JSON object per job (the `--json` output).
#[derive(Debug, Clone)]
pub struct JobList(pub Vec<serde_json::Value>);

/// The jobs with their gate, last and next run.
pub fn list(home: &Home) -> Result<JobList> {
    let settings = home.load_settings()?;
    let state = read_state(home)?;
    Ok(JobList(
        JOBS.iter()
            .map(|job| {
                let record = state.jobs.get(job.name);
                serde_json::json!({
                    "name": job.name,
                    "description": job.description,
                    "intervalSeconds": job.interval.as_secs(),
                    "atStart": job.at_start,
                    "destination": job.destination.as_str(),
                    "gate": job.setting(),
                    "enabled": job.enabled(&settings),
                    "lastRun": record.map(|r| r.last_run.clone()),
                    "outcome": record.map(|r| r.outcome.clone()),
                    "message": record.map(|r| r.message.clone()),
                    "nextRun": record.map(|r| r.next_run.clone()),
                })
            })
            .collect(),
    ))
}

impl fmt::Display for JobList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = vec![[
            "NAME".to_string(),
            "EVERY".into(),
            "GATE".into(),
            "LAST RUN".into(),
            "OUTCOME".into(),
            "NEXT RUN".into(),
        ]];
        for (job, row) in JOBS.iter().zip(&self.0) {
            let s = |k: &str| row[k].as_str().unwrap_or("-").to_string();
            table.push([
                job.name.to_string(),
                human(job.interval),
                format!(
                    "{}={}",
                    job.setting(),
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
        write_table(f, &table)
    }
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
pub fn run_due(home: &Home, starting: bool, sink: &Sink) -> Result<Duration> {
    let settings = home.load_settings()?;
    let state = read_state(home)?;
    let now = unix(SystemTime::now());
    for job in JOBS {
        if (is_due(&state, job, now) || (starting && job.at_start))
            && let Err(e) = run_job(home, &settings, job, sink)
        {
            sink.note(&format!(
                "{}: cannot record the run: {}",
                job.name,
                e.one_line()
            ));
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
pub fn watch(home: &Home, sink: &Sink) -> Result<std::convert::Infallible> {
    let mut starting = true;
    loop {
        let sleep = run_due(home, starting, sink)?;
        starting = false;
        std::thread::sleep(sleep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use octo_settings::keys;

    #[test]
    fn the_table_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for job in JOBS {
            assert!(seen.insert(job.name), "two jobs are named {}", job.name);
        }
        for job in JOBS {
            assert!(!job.interval.is_zero(), "{}", job.name);
            assert!(keys::ALL.contains(&job.setting()), "{}", job.name);
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
            feed_url: Some("https://steps.test/feed".into()),
            library_feed_url: Some("https://library.test".into()),
            ..Settings::default()
        };
        let job = find("step-template-updates").unwrap();
        assert!(!job.enabled(&s));
        assert!(find("community-step-templates").unwrap().enabled(&s));
        // Unset endpoints and the air gap turn jobs off whatever their switches say.
        assert!(
            !find("community-step-templates")
                .unwrap()
                .enabled(&Settings::default())
        );
        let mut gapped = s.clone();
        gapped.set_air_gapped(true);
        assert!(!find("community-step-templates").unwrap().enabled(&gapped));
    }

    #[test]
    fn humane_intervals() {
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(86_400)), "1d");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }
}
