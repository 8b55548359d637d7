//! What a store holds while a step runs, and the host side of the `log` and `variables` imports.

use crate::bindings::octo::plugin::{log, types, variables};
use crate::limits::{Limits, StoreLimits};
use crate::mask::Masker;
use crate::outbound::OutboundGate;
use crate::vocabulary::{
    Artifact, CancelHandle, LogLevel, LogLine, LogSink, OutputVariable, Variable,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The step's log: masks secrets, caps line length and the step's log volume, hands lines to the
/// caller's sink. A plugin or its commands cannot exhaust host memory or disk by logging.
#[derive(Clone)]
pub(crate) struct StepLog {
    sink: Arc<dyn LogSink>,
    pub(crate) masker: Arc<Mutex<Masker>>,
    max_line_bytes: usize,
    max_log_bytes: u64,
    /// Log volume so far (see [`Limits::max_log_bytes`]).
    used: Arc<AtomicU64>,
    /// Set once the volume is used up and the notice written.
    full: Arc<AtomicBool>,
}

impl StepLog {
    pub(crate) fn new(sink: Arc<dyn LogSink>, masker: Masker, limits: &Limits) -> Self {
        StepLog {
            sink,
            masker: Arc::new(Mutex::new(masker)),
            max_line_bytes: limits.max_line_bytes.max(1),
            max_log_bytes: limits.max_log_bytes,
            used: Arc::new(AtomicU64::new(0)),
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn write(&self, level: LogLevel, text: &str) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        let mut message = self.mask(text);
        if message.len() > self.max_line_bytes {
            let mut cut = self.max_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" … (line truncated)");
        }
        let cost = message.len() as u64 + Limits::LOG_LINE_OVERHEAD;
        let before = self.used.fetch_add(cost, Ordering::Relaxed);
        if before.saturating_add(cost) > self.max_log_bytes {
            if !self.full.swap(true, Ordering::Relaxed) {
                self.sink.write(LogLine {
                    level: LogLevel::Warn,
                    message: format!(
                        "log truncated: the step wrote more than {} bytes of log; further lines are not kept (limits.maxLogBytes)",
                        self.max_log_bytes
                    ),
                });
            }
            return;
        }
        self.sink.write(LogLine { level, message });
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        self.masker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mask(text)
    }

    pub(crate) fn add_secret(&self, secret: &str) {
        self.masker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(secret);
    }
}

/// Host-side state of one step run, reachable from every host import.
pub(crate) struct StepContext {
    pub(crate) plugin_id: String,
    pub(crate) variables: Vec<Variable>,
    pub(crate) log: StepLog,
    pub(crate) process_granted: bool,
    pub(crate) work_dir: PathBuf,
    pub(crate) process_env: Vec<(String, String)>,
    pub(crate) tcp_forwards: Vec<octo_manifest::Destination>,
    /// How far the step's commands reach the network.
    pub(crate) script_network: crate::confine::ScriptNetwork,
    pub(crate) deadline: Instant,
    pub(crate) cancel: CancelHandle,
    pub(crate) limits: Limits,
    pub(crate) outputs: Outputs,
    pub(crate) result_message: Option<String>,
    pub(crate) artifacts: Vec<Artifact>,
    /// What the guest wrote to its stderr (a Rust panic message lands here).
    pub(crate) guest_stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

impl StepContext {
    /// Sets (or replaces) an output variable, within [`Limits`]; a refused one is told in the log.
    pub(crate) fn set_output(&mut self, name: String, value: String, sensitive: bool) {
        if sensitive {
            self.log.add_secret(&value);
        }
        match self.outputs.set(
            OutputVariable {
                name,
                value,
                sensitive,
            },
            &self.limits,
        ) {
            Ok(name) => self
                .log
                .write(LogLevel::Verbose, &format!("Output variable {name} set")),
            Err(refused) => {
                if let Some(line) = refused {
                    self.log.write(LogLevel::Warn, &line);
                }
            }
        }
    }

    /// The output variables, in the order they were first set. One whose value contains a
    /// sensitive value (a variable, a parameter, another output) becomes sensitive itself, so
    /// whatever shows it — the summary, `--json`, a task record — masks it.
    pub(crate) fn take_outputs(&mut self) -> Vec<OutputVariable> {
        let masker = self
            .log
            .masker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut outputs = std::mem::take(&mut self.outputs).list;
        for o in outputs.iter_mut().filter(|o| !o.sensitive) {
            if masker.mask(&o.value) != o.value {
                o.sensitive = true;
            }
        }
        outputs
    }
}

/// A step's output variables: a list in first-set order with an index by name, so setting one is
/// constant time (100k of them must not take quadratic time), and the sizes they add up to.
#[derive(Default)]
pub(crate) struct Outputs {
    list: Vec<OutputVariable>,
    index: HashMap<String, usize>,
    bytes: usize,
    /// Which limits were already told in the log (each once).
    told_count: bool,
    told_total: bool,
}

impl Outputs {
    /// Sets `variable`; returns its name, or why it was refused (`None`: already told once).
    fn set(&mut self, variable: OutputVariable, limits: &Limits) -> Result<String, Option<String>> {
        let name = variable.name.clone();
        if variable.value.len() > limits.max_output_value_bytes {
            return Err(Some(format!(
                "output variable {name} not set: its value is {} bytes, more than the limit of {} bytes (limits.maxOutputValueBytes)",
                variable.value.len(),
                limits.max_output_value_bytes
            )));
        }
        let size = variable.name.len() + variable.value.len();
        let replaced = self.index.get(&name).map(|&i| {
            let old = &self.list[i];
            (i, old.name.len() + old.value.len())
        });
        let bytes = self.bytes - replaced.map_or(0, |(_, size)| size) + size;
        if bytes > limits.max_output_bytes {
            let told = std::mem::replace(&mut self.told_total, true);
            return Err((!told).then(|| {
                format!(
                    "output variable {name} not set: the step's output variables would exceed {} bytes (limits.maxOutputBytes); further ones are refused too",
                    limits.max_output_bytes
                )
            }));
        }
        match replaced {
            Some((i, _)) => self.list[i] = variable,
            None => {
                if self.list.len() >= limits.max_output_variables {
                    let told = std::mem::replace(&mut self.told_count, true);
                    return Err((!told).then(|| {
                        format!(
                            "output variable {name} not set: the step already set {} output variables (limits.maxOutputVariables); further ones are refused too",
                            limits.max_output_variables
                        )
                    }));
                }
                self.index.insert(name.clone(), self.list.len());
                self.list.push(variable);
            }
        }
        self.bytes = bytes;
        Ok(name)
    }
}

/// The data of a `Store` running a step.
pub(crate) struct StepState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) gate: OutboundGate,
    pub(crate) ctx: StepContext,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

impl types::Host for StepState {}

impl log::Host for StepState {
    fn write(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Verbose => LogLevel::Verbose,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        for line in message.lines() {
            self.ctx.log.write(level, line);
        }
    }
}

impl variables::Host for StepState {
    fn get(&mut self, name: String) -> Option<String> {
        self.ctx
            .variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.clone())
    }

    fn all(&mut self) -> Vec<types::Variable> {
        self.ctx
            .variables
            .iter()
            .map(|v| types::Variable {
                name: v.name.clone(),
                value: v.value.clone(),
                sensitive: v.sensitive,
            })
            .collect()
    }

    fn set_output(&mut self, name: String, value: String, sensitive: bool) {
        self.ctx.set_output(name, value, sensitive);
    }
}
