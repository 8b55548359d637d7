//! Running a step plugin: arguments in, a [`StepOutcome`] out, whatever the plugin does.

use crate::Runtime;
use crate::bindings::{Step, StepPre, octo::plugin::types};
use crate::engine::one_line;
use crate::request::StepRequest;
use crate::state::{StepLog, StepState};
use crate::store::{self, classify_message, trap_text};
use crate::vocabulary::{LogLevel, ParameterInfo, StepDescription, StepFailure, StepOutcome};
use octo_manifest::{DestinationPattern, Manifest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;

struct Inner {
    manifest: Manifest,
    digest: String,
    pre: StepPre<StepState>,
    /// `describe` has no side effects (WIT contract), so its answer is kept after the first run.
    description: std::sync::OnceLock<types::StepDescription>,
}

/// A loaded, pre-instantiated step plugin. Cheap to clone; each run gets a fresh instance.
#[derive(Clone)]
pub struct StepPlugin(Arc<Inner>);

impl StepPlugin {
    pub(crate) fn new(manifest: Manifest, digest: String, pre: StepPre<StepState>) -> Self {
        StepPlugin(Arc::new(Inner {
            manifest,
            digest,
            pre,
            description: std::sync::OnceLock::new(),
        }))
    }

    /// The component's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.0.manifest
    }

    /// Hex sha256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.0.digest
    }

    /// Calls `describe` in a throwaway instance.
    pub async fn describe(&self, runtime: &Runtime) -> Result<StepDescription, StepFailure> {
        let dir = tempfile::tempdir()
            .map_err(|e| StepFailure::Host(format!("cannot create a work directory: {e}")))?;
        let request = StepRequest::new(dir.path());
        let (mut store, _audit) = store::for_step(runtime, &self.0.manifest, &request)?;
        let instance = self.instantiate(&mut store).await?;
        let deadline = Duration::from_secs(10).min(runtime.config.step_deadline);
        let call = instance.call_describe(&mut store);
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(d)) => Ok(convert_description(d)),
            Ok(Err(e)) => Err(classify_trap(&e, &store, runtime)),
            Err(_) => Err(StepFailure::DeadlineExceeded(deadline)),
        }
    }

    /// Runs the step: describe, check and default the arguments, then `run`, all in one instance.
    pub async fn run(&self, runtime: &Runtime, request: StepRequest) -> StepOutcome {
        let deadline = request.deadline.unwrap_or(runtime.config.step_deadline);
        let started = Instant::now();
        let (mut store, audit) = match store::for_step(runtime, &self.0.manifest, &request) {
            Ok(s) => s,
            Err(f) => return StepOutcome::failed_early(f),
        };
        let result =
            tokio::time::timeout(deadline, self.run_in(&mut store, request.arguments)).await;
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(StepFailure::DeadlineExceeded(deadline)),
        };
        let result = result.map_err(|failure| match failure {
            StepFailure::Trapped(_) | StepFailure::Host(_) if request.cancel.is_cancelled() => {
                StepFailure::Cancelled
            }
            StepFailure::Trapped(_) if started.elapsed() >= deadline => {
                StepFailure::DeadlineExceeded(deadline)
            }
            StepFailure::Trapped(m) => classify_message(m, &store, runtime),
            other => other,
        });
        let state = store.data_mut();
        let log = state.ctx.log.clone();
        // A failing script's own result message (fail_step) beats the generic exit-code message.
        let result = match (result, state.ctx.result_message.take()) {
            (Err(StepFailure::Failed(_)), Some(message)) => Err(StepFailure::Failed(message)),
            (other, _) => other,
        };
        let memory_limit_hit = state.limits.memory_limit_hit;
        let result = result.map_err(|f| match f {
            StepFailure::Failed(m) if memory_limit_hit => StepFailure::Failed(format!(
                "{} (the plugin reached its memory limit of {} MiB)",
                log.mask(&m),
                runtime.config.memory_limit / (1024 * 1024)
            )),
            StepFailure::Failed(m) => StepFailure::Failed(log.mask(&m)),
            StepFailure::Trapped(m) => StepFailure::Trapped(log.mask(&m)),
            other => other,
        });
        StepOutcome {
            result,
            outputs: state.ctx.take_outputs(),
            artifacts: std::mem::take(&mut state.ctx.artifacts),
            outbound: audit.attempts(),
        }
    }

    async fn run_in(
        &self,
        store: &mut Store<StepState>,
        given: BTreeMap<String, String>,
    ) -> Result<(), StepFailure> {
        let instance = self.instantiate(store).await?;
        let description = match self.0.description.get() {
            Some(d) => d.clone(),
            None => {
                let d = instance
                    .call_describe(&mut *store)
                    .await
                    .map_err(|e| StepFailure::Trapped(trap_text(&e, store)))?;
                self.0.description.get_or_init(|| d).clone()
            }
        };
        let arguments = apply_parameters(&description, given)?;
        let ctx = &mut store.data_mut().ctx;
        for p in description.parameters.iter().filter(|p| p.sensitive) {
            if let Some((_, value)) = arguments.iter().find(|(n, _)| *n == p.name) {
                ctx.log.add_secret(value);
            }
        }
        let declared = self.resolve_declared(&arguments, &ctx.log);
        store.data_mut().gate.declared = declared;
        let args: Vec<types::Argument> = arguments
            .into_iter()
            .map(|(name, value)| types::Argument { name, value })
            .collect();
        match instance.call_run(&mut *store, &args).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StepFailure::Failed(message)),
            Err(e) => Err(StepFailure::Trapped(trap_text(&e, store))),
        }
    }

    /// The manifest's outbound patterns with this run's arguments filled in. An entry whose parameter has
    /// no value grants nothing.
    fn resolve_declared(
        &self,
        arguments: &[(String, String)],
        log: &StepLog,
    ) -> Vec<DestinationPattern> {
        let lookup = |name: &str| {
            arguments
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut declared = Vec::new();
        for entry in &self.0.manifest.outbound {
            match DestinationPattern::resolve(entry, lookup) {
                Ok(p) => declared.push(p),
                Err(e) => log.write(
                    LogLevel::Verbose,
                    &format!("outbound destination {entry} not granted: {e}"),
                ),
            }
        }
        declared
    }

    async fn instantiate(&self, store: &mut Store<StepState>) -> Result<Step, StepFailure> {
        self.0
            .pre
            .instantiate_async(&mut *store)
            .await
            .map_err(|e| {
                StepFailure::Host(format!(
                    "cannot instantiate plugin {}: {}",
                    self.0.manifest.id,
                    one_line(&e)
                ))
            })
    }
}

/// Applies defaults, refuses unknown names and missing required values.
fn apply_parameters(
    description: &types::StepDescription,
    mut given: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, StepFailure> {
    if let Some(unknown) = given
        .keys()
        .find(|k| !description.parameters.iter().any(|p| &p.name == *k))
    {
        let accepted: Vec<&str> = description
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        return Err(StepFailure::InvalidArguments(format!(
            "step {:?} has no parameter {unknown}; it accepts: {}",
            description.name,
            if accepted.is_empty() {
                "(none)".to_string()
            } else {
                accepted.join(", ")
            }
        )));
    }
    let mut arguments = Vec::new();
    for p in &description.parameters {
        match given.remove(&p.name).or_else(|| p.default_value.clone()) {
            Some(value) if !(p.required && value.is_empty()) => {
                arguments.push((p.name.clone(), value))
            }
            Some(_) | None if p.required => {
                return Err(StepFailure::InvalidArguments(format!(
                    "missing required parameter {} ({}); pass --param {}=VALUE",
                    p.name, p.label, p.name
                )));
            }
            _ => {}
        }
    }
    Ok(arguments)
}

fn convert_description(d: types::StepDescription) -> StepDescription {
    StepDescription {
        name: d.name,
        description: d.description,
        parameters: d
            .parameters
            .into_iter()
            .map(|p| ParameterInfo {
                name: p.name,
                label: p.label,
                help_text: p.help_text,
                default_value: p.default_value,
                required: p.required,
                sensitive: p.sensitive,
            })
            .collect(),
    }
}

fn classify_trap(e: &wasmtime::Error, store: &Store<StepState>, runtime: &Runtime) -> StepFailure {
    classify_message(trap_text(e, store), store, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(params: Vec<(&str, Option<&str>, bool)>) -> types::StepDescription {
        types::StepDescription {
            name: "demo".into(),
            description: String::new(),
            parameters: params
                .into_iter()
                .map(|(name, default, required)| types::Parameter {
                    name: name.into(),
                    label: name.to_uppercase(),
                    help_text: String::new(),
                    default_value: default.map(String::from),
                    required,
                    sensitive: false,
                })
                .collect(),
        }
    }

    #[test]
    fn parameters_defaults_required_unknown() {
        let d = description(vec![
            ("url", None, true),
            ("status", Some("200"), false),
            ("opt", None, false),
        ]);
        let args =
            apply_parameters(&d, BTreeMap::from([("url".into(), "http://x".into())])).unwrap();
        assert_eq!(
            args,
            vec![
                ("url".into(), "http://x".into()),
                ("status".into(), "200".into())
            ]
        );
        let err = apply_parameters(&d, BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "missing required parameter url (URL); pass --param url=VALUE"
        );
        let err = apply_parameters(&d, BTreeMap::from([("nope".into(), "1".into())]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "step \"demo\" has no parameter nope; it accepts: url, status, opt"
        );
        let err =
            apply_parameters(&d, BTreeMap::from([("url".into(), String::new())])).unwrap_err();
        assert!(matches!(err, StepFailure::InvalidArguments(_)));
    }
}
