//! `octo run-step`: run one step in-process and report the outcome.

use crate::cli::RunStepArgs;
use crate::home::Home;
use crate::step_source::StepSource;
use anyhow::Context;
use octo_runtime::{LogLine, Runtime, RuntimeConfig, StepOutcome, StepRequest, Variable};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

pub fn run(home: &Home, args: RunStepArgs) -> anyhow::Result<ExitCode> {
    let source = StepSource::resolve(home, &args.plugin)?;
    let mut variables: Vec<Variable> = Vec::new();
    let mut push_var = |name: String, value: String, sensitive: bool| {
        variables.retain(|v| v.name != name);
        variables.push(Variable {
            name,
            value,
            sensitive,
        });
    };
    for (name, value) in &args.variables {
        push_var(name.clone(), value.clone(), false);
    }
    for (name, value) in &args.sensitive_variables {
        push_var(name.clone(), value.clone(), true);
    }
    let params: BTreeMap<String, String> = args.params.iter().cloned().collect();

    // A template runs through run-script: its parameters become variables, its body an argument.
    let (bytes, origin, arguments) = match source {
        StepSource::Component { bytes, origin } => (bytes, origin, params),
        StepSource::Template(template) => {
            let values = template
                .resolve_values(&params)
                .with_context(|| template.name.clone())?;
            for p in &template.parameters {
                if let Some(value) = values.get(&p.name) {
                    push_var(p.name.clone(), value.clone(), p.sensitive);
                }
            }
            let (run_script, via) = StepSource::run_script(home)?;
            let arguments = BTreeMap::from([
                ("ScriptBody".to_string(), template.script_body.clone()),
                ("Syntax".to_string(), template.syntax.clone()),
            ]);
            (
                run_script,
                format!("template {:?} via {via}", template.name),
                arguments,
            )
        }
    };

    if !args.targets.is_empty() || !args.roles.is_empty() {
        // The server decides; the tentacle's sandbox enforces exactly this list.
        let grants = crate::outbound::policy::remote_grants(home, &bytes, &args.allow_outbound)?;
        return crate::server::commands::run_remote(
            home,
            crate::server::commands::RemoteStep {
                bytes,
                origin,
                arguments,
                variables,
                grants: grants.iter().map(|p| p.to_string()).collect(),
                deadline: args.deadline,
                targets: args.targets.clone(),
                roles: args.roles.clone(),
            },
        );
    }

    let runtime = Runtime::new(RuntimeConfig {
        memory_limit: args.memory_limit_mib as usize * 1024 * 1024,
        step_deadline: args.deadline,
        max_instances: 4,
        cache_dir: Some(home.private_dir("cache/compiled")?),
        trusted_certificates: Vec::new(),
        limits: Default::default(),
    })
    .map_err(|e| anyhow::anyhow!("cannot start the plugin runtime: {e}"))?;
    let plugin = runtime.load_step(&bytes).with_context(|| origin.clone())?;

    let work_root = home.private_dir("work")?;
    let work = tempfile::Builder::new()
        .prefix("run-step-")
        .tempdir_in(&work_root)
        .with_context(|| format!("cannot create a work directory in {}", work_root.display()))?;

    // Settings + administrator grants; --allow-outbound is a grant for this run that cannot override
    // the air gap. Built-in steps need no grant.
    let role = crate::outbound::policy::step_role(home, &plugin.manifest().id, &bytes);
    let policy = Arc::new(crate::outbound::policy::SettingsPolicy::load(
        home,
        role,
        args.allow_outbound.clone(),
    )?);

    let settings = octo_settings::Settings::load(&octo_settings::Settings::path_in(home.root()))?;
    let web_proxy = crate::proxy::web_proxy(&settings)?;
    let json = args.json;
    let started = Instant::now();
    let log = move |line: LogLine| print_log_line(json, started, &line);
    let request = StepRequest {
        arguments,
        variables,
        deadline: Some(args.deadline),
        policy: policy.clone(),
        audit: Some(crate::outbound::audit::AuditLog::in_home(home).sink_for(policy)),
        log: Arc::new(log),
        web_proxy: web_proxy.map(Arc::new),
        ..StepRequest::new(work.path())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = rt.block_on(plugin.run(&runtime, request));

    let kept = args.keep_work_dir.then(|| work.keep());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome_json(
                plugin.manifest(),
                &outcome,
                kept.as_deref()
            ))?
        );
    } else {
        print_summary(&outcome, kept.as_deref());
    }
    Ok(if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_log_line(json: bool, started: Instant, line: &LogLine) {
    let elapsed = started.elapsed().as_secs_f64();
    let text = format!("{elapsed:8.3}s {:<7} {}", line.level.label(), line.message);
    // In --json mode stdout carries only the outcome document.
    if json {
        let _ = writeln!(std::io::stderr(), "{text}");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

fn print_summary(outcome: &StepOutcome, kept: Option<&std::path::Path>) {
    if !outcome.outputs.is_empty() {
        println!("Output variables:");
        for o in &outcome.outputs {
            println!("  {} = {}", o.name, o.display_value());
        }
    }
    if !outcome.artifacts.is_empty() {
        println!("Artifacts:");
        for a in &outcome.artifacts {
            println!("  {} ({})", a.name, a.path.display());
        }
    }
    let denied: Vec<_> = outcome.outbound.iter().filter(|a| !a.allowed).collect();
    if !denied.is_empty() {
        println!("Denied outbound requests:");
        for a in denied {
            println!("  {}: {}", a.destination, a.reason);
        }
    }
    if let Some(dir) = kept {
        println!("Work directory kept at {}", dir.display());
    }
    match &outcome.result {
        Ok(()) => println!("Step succeeded"),
        Err(failure) => eprintln!("error: step failed: {failure}"),
    }
}

fn outcome_json(
    manifest: &octo_manifest::Manifest,
    outcome: &StepOutcome,
    kept: Option<&std::path::Path>,
) -> serde_json::Value {
    let (status, message) = match &outcome.result {
        Ok(()) => ("succeeded", None),
        Err(f) => (f.kind(), Some(f.to_string())),
    };
    serde_json::json!({
        "plugin": { "id": manifest.id, "version": manifest.version.to_string() },
        "status": status,
        "message": message,
        "outputs": outcome.outputs.iter().map(|o| serde_json::json!({
            "name": o.name, "value": o.display_value(), "sensitive": o.sensitive
        })).collect::<Vec<_>>(),
        "artifacts": outcome.artifacts.iter().map(|a| serde_json::json!({
            "name": a.name, "path": a.path.display().to_string()
        })).collect::<Vec<_>>(),
        "outbound": outcome.outbound.iter().map(|a| serde_json::json!({
            "destination": a.destination, "allowed": a.allowed, "reason": a.reason
        })).collect::<Vec<_>>(),
        "workDir": kept.map(|p| p.display().to_string()),
    })
}
