//! What a store holds while a step runs, and the host side of the `log` and `variables` imports.

use crate::bindings::octo::plugin::{log, types, variables};
use crate::limits::Limits;
use crate::mask::Masker;
use crate::outbound::OutboundGate;
use crate::vocabulary::{
    Artifact, CancelHandle, LogLevel, LogLine, LogSink, OutputVariable, Variable,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Longest log line kept; longer ones are cut (a plugin must not be able to exhaust host memory by logging).
const MAX_LOG_LINE: usize = 16 * 1024;

/// The step's log: masks secrets, caps line length, hands lines to the caller's sink.
#[derive(Clone)]
pub(crate) struct StepLog {
    sink: Arc<dyn LogSink>,
    pub(crate) masker: Arc<Mutex<Masker>>,
}

impl StepLog {
    pub(crate) fn new(sink: Arc<dyn LogSink>, masker: Masker) -> Self {
        StepLog {
            sink,
            masker: Arc::new(Mutex::new(masker)),
        }
    }

    pub(crate) fn write(&self, level: LogLevel, text: &str) {
        let mut message = self.mask(text);
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" … (line truncated)");
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
    /// How far the step's commands reach the network.
    pub(crate) script_network: crate::confine::ScriptNetwork,
    pub(crate) deadline: Instant,
    pub(crate) cancel: CancelHandle,
    pub(crate) outputs: Vec<OutputVariable>,
    pub(crate) result_message: Option<String>,
    pub(crate) artifacts: Vec<Artifact>,
    /// What the guest wrote to its stderr (a Rust panic message lands here).
    pub(crate) guest_stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

impl StepContext {
    pub(crate) fn set_output(&mut self, name: String, value: String, sensitive: bool) {
        if sensitive {
            self.log.add_secret(&value);
        }
        self.log
            .write(LogLevel::Verbose, &format!("Output variable {name} set"));
        self.outputs.retain(|o| o.name != name);
        self.outputs.push(OutputVariable {
            name,
            value,
            sensitive,
        });
    }
}

/// The data of a `Store` running a step.
pub(crate) struct StepState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: Limits,
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
