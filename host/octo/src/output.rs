//! Printing: JSON documents, the streaming output of long commands (notes, job runs, download
//! progress, step logs, remote events), and the daemon's start-up lines.

use crate::cli::{RunStepArgs, TasksShowArgs};
use octo_protocol::{LogLevel, StepState};
use octo_runtime::LogLine;
use octo_server::admin::AdminEvent;
use octo_server::jobs::Outcome;
use octo_server::runs::run_step::{self, RunOutput, StepRun};
use octo_server::server::Ready;
use octo_server::{Event, Home, Sink};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

/// Prints `value` as pretty JSON on stdout.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Notes on stderr; job runs on stdout (failures on stderr); download progress bars only when stderr
/// is a terminal.
pub fn terminal_sink() -> Sink {
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    let terminal = std::io::stderr().is_terminal();
    Sink::new(move |event| match event {
        Event::Note(line) => eprintln!("{line}"),
        Event::Job(run) => match run.outcome {
            Outcome::Failed => eprintln!("{}: failed: {}", run.name, run.message),
            _ => {
                println!("{run}");
                let _ = std::io::stdout().flush();
            }
        },
        Event::Download { label, done, total } if terminal => {
            let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
            let bar = bar.get_or_insert_with(|| progress_bar(label, total));
            bar.set_length(total);
            bar.set_position(done);
        }
        Event::DownloadEnded { .. } => {
            if let Some(bar) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
                bar.finish_and_clear();
            }
        }
        _ => {}
    })
}

fn progress_bar(label: &str, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:24}] {bytes}/{total_bytes}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// What `octo run` prints once it listens (scripts wait for `ready`).
pub fn ready(ready: &Ready) {
    println!("thumbprint {}", ready.thumbprint);
    println!("polling-listener {}", ready.polling_address);
    println!("admin-socket {}", ready.admin_socket.display());
    println!("ready");
    let _ = std::io::stdout().flush();
}

/// One line per target of `octo targets health`.
pub fn health_event(event: AdminEvent) {
    match event {
        AdminEvent::Health {
            target,
            ok,
            detail,
            millis,
        } => println!(
            "{target:<20} {:<7} {millis:>9.1} ms  {detail}",
            if ok { "healthy" } else { "FAILED" }
        ),
        AdminEvent::Error { message } => eprintln!("error: {message}"),
        _ => {}
    }
}

/// Prints a step's log as it runs: here (elapsed time, level, message) or on targets (prefixed with
/// the target's name).
struct StepOutput {
    json: bool,
    detach: bool,
    started: Instant,
}

impl RunOutput for StepOutput {
    fn log(&self, line: &LogLine) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let text = format!("{elapsed:8.3}s {:<7} {}", line.level.label(), line.message);
        // In --json mode stdout carries only the outcome document.
        if self.json {
            let _ = writeln!(std::io::stderr(), "{text}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    fn remote(&self, event: AdminEvent) {
        // In --json mode stdout carries only the outcome document.
        let mut out: Box<dyn Write> = if self.json {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        match event {
            AdminEvent::Task { id } if !self.detach => {
                eprintln!("(task {id}: `octo tasks show {id}`)")
            }
            AdminEvent::Log {
                target,
                level,
                message,
                ..
            } => {
                let label = match level {
                    LogLevel::Info | LogLevel::Highlight => String::new(),
                    other => format!("{}: ", other.label()),
                };
                let _ = writeln!(out, "[{target}] {label}{message}");
            }
            AdminEvent::Note { target, message } => eprintln!("[{target}] ({message})"),
            AdminEvent::Result {
                target,
                state,
                message,
                ..
            } => {
                if state == StepState::Succeeded {
                    let _ = writeln!(out, "[{target}] Step succeeded");
                } else {
                    let why = message.unwrap_or_default();
                    match state {
                        StepState::Unknown => {
                            eprintln!("[{target}] error: result unknown: {why}")
                        }
                        _ => eprintln!("[{target}] error: step {}: {why}", state.as_str()),
                    }
                }
            }
            AdminEvent::Error { message } => eprintln!("error: {message}"),
            _ => {}
        }
        let _ = out.flush();
    }
}

/// `octo run-step`.
pub fn run_step(home: &Home, args: &RunStepArgs) -> anyhow::Result<ExitCode> {
    let output = StepOutput {
        json: args.json,
        detach: args.detach,
        started: Instant::now(),
    };
    let run = run_step::run(home, &args.options()?, &output)?;
    let ok = run.succeeded();
    match run {
        StepRun::Local(local) => {
            if args.json {
                json(&local.to_json())?;
            } else {
                print!("{local}");
                if let Err(failure) = &local.outcome.result {
                    eprintln!("error: step failed: {failure}");
                }
            }
            // This process exits next.
            local.leave_to_exit();
        }
        StepRun::Remote(summary) => {
            if args.json {
                json(&summary.to_json())?;
            } else {
                print!("{summary}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `octo tasks show ID [--follow] [--json]`: exits non-zero when the task did not succeed (with
/// --follow: once it has ended).
pub fn show_task(home: &Home, args: &TasksShowArgs) -> anyhow::Result<ExitCode> {
    let report = if args.follow {
        let json = args.json;
        octo_server::tasks::follow(home, args.id, &mut |line| {
            let text = octo_server::tasks::line_text(line);
            if json {
                eprintln!("{text}");
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        })?
    } else {
        octo_server::tasks::show(home, args.id)?
    };
    if args.json {
        json(&report.to_json())?;
    } else {
        print!("{report}");
    }
    let state = report.task.state;
    Ok(
        if matches!(
            state,
            octo_store::TaskState::Succeeded
                | octo_store::TaskState::Running
                | octo_store::TaskState::Skipped
        ) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
