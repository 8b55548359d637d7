//! A fresh store for one call of a plugin: no environment, no sockets, the outbound gate, the deadline
//! and the memory limit. [`for_step`] also gives the plugin the request's work directory and the
//! environment of the commands it starts; [`for_vendor`] gives a vendor plugin no filesystem at all.
//! And what a store tells after a call failed ([`trap_text`], [`classify_message`]).

use crate::Runtime;
use crate::engine::{EPOCH_TICK, one_line};
use crate::http_client::{HttpSender, WebProxy};
use crate::intercept::{RecordingSender, Sender};
use crate::limits::StoreLimits;
use crate::mask::Masker;
use crate::outbound::{AuditSink, MemoryAudit, OutboundAttempt, OutboundGate, OutboundPolicy};
use crate::request::{StepRequest, VendorRequest};
use crate::state::{StepContext, StepLog, StepState};
use crate::vocabulary::{CancelHandle, LogLevel, LogSink, StepFailure, Variable};
use octo_manifest::{Capability, DestinationPattern, Manifest};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

/// Guest stdout/stderr kept per run (they are for panics and stray prints; steps log through `log`).
const GUEST_STDIO_CAPACITY: usize = 64 * 1024;

/// Default deadline of one vendor call (they are small requests).
pub(crate) const VENDOR_DEADLINE: Duration = Duration::from_secs(60);

/// A store and the attempts its gate records.
pub(crate) type NewStore = (Store<StepState>, Arc<MemoryAudit>);

/// What every store is built from, whoever asks.
struct Common<'a> {
    deadline: Duration,
    policy: &'a Arc<dyn OutboundPolicy>,
    audit: &'a Option<Arc<dyn AuditSink>>,
    log: &'a Arc<dyn LogSink>,
    cancel: &'a CancelHandle,
    web_proxy: &'a Option<Arc<WebProxy>>,
    /// Set for a preview: allowed requests are recorded instead of sent.
    recorder: Option<&'a Arc<RecordingSender>>,
}

/// What only a step's store has (empty for a vendor plugin).
struct StepParts {
    variables: Vec<Variable>,
    masker: Masker,
    work_dir: PathBuf,
    process_env: Vec<(String, String)>,
    tcp_forwards: Vec<octo_manifest::Destination>,
    process_granted: bool,
    script_network: crate::ScriptNetwork,
}

/// The store for one step run: the work directory preopened (read-write, the only directory it sees),
/// sensitive variables masked, `process` as the manifest allows, the step deadline of the request or the
/// runtime. The outbound gate declares nothing yet: the run fills in the manifest's destinations once
/// the arguments are known.
pub(crate) fn for_step(
    runtime: &Runtime,
    manifest: &Manifest,
    request: &StepRequest,
) -> Result<NewStore, StepFailure> {
    let mut masker = Masker::new();
    for v in request.variables.iter().filter(|v| v.sensitive) {
        masker.add(&v.value);
    }
    let mut wasi = sandbox();
    wasi.preopened_dir(&request.work_dir, ".", FsPerms::ReadWrite)
        .map_err(|e| {
            StepFailure::Host(format!(
                "cannot open the work directory {}: {e}",
                request.work_dir.display()
            ))
        })?;
    for mount in &request.mounts {
        let perms = if mount.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(&mount.host, &mount.guest, perms)
            .map_err(|e| {
                StepFailure::Host(format!(
                    "cannot open {} for the plugin: {e}",
                    mount.host.display()
                ))
            })?;
    }
    let common = Common {
        deadline: request.deadline.unwrap_or(runtime.config.step_deadline),
        policy: &request.policy,
        audit: &request.audit,
        log: &request.log,
        cancel: &request.cancel,
        web_proxy: &request.web_proxy,
        recorder: None,
    };
    let parts = StepParts {
        variables: request.variables.clone(),
        masker,
        work_dir: request.work_dir.clone(),
        process_env: request.process_env.clone(),
        tcp_forwards: request.tcp_forwards.clone(),
        process_granted: manifest.has_capability(Capability::Process),
        script_network: request.script_network,
    };
    Ok(build(runtime, manifest, wasi, common, parts, Vec::new()))
}

/// The store for one vendor call: no filesystem, no commands, no variables; the outbound gate declares
/// `declared` (the manifest's entries with `{{endpoint}}` resolved); the request's deadline or
/// [`VENDOR_DEADLINE`]; allowed requests go to the request's recorder when it has one.
pub(crate) fn for_vendor(
    runtime: &Runtime,
    manifest: &Manifest,
    request: &VendorRequest,
    declared: Vec<DestinationPattern>,
) -> NewStore {
    let common = Common {
        deadline: vendor_deadline(request),
        policy: &request.policy,
        audit: &request.audit,
        log: &request.log,
        cancel: &request.cancel,
        web_proxy: &request.web_proxy,
        recorder: request.recorder.as_ref(),
    };
    let parts = StepParts {
        variables: Vec::new(),
        masker: Masker::new(),
        work_dir: PathBuf::new(),
        process_env: Vec::new(),
        tcp_forwards: Vec::new(),
        process_granted: false,
        script_network: crate::ScriptNetwork::default(),
    };
    build(runtime, manifest, sandbox(), common, parts, declared)
}

/// The deadline of a vendor call.
pub(crate) fn vendor_deadline(request: &VendorRequest) -> Duration {
    request.deadline.unwrap_or(VENDOR_DEADLINE)
}

/// WASI with no ambient authority: guest stdio kept in memory, no TCP, no UDP, no name lookup, and an
/// address check that refuses everything.
fn sandbox() -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    wasi
}

fn build(
    runtime: &Runtime,
    manifest: &Manifest,
    mut wasi: WasiCtxBuilder,
    common: Common<'_>,
    parts: StepParts,
    declared: Vec<DestinationPattern>,
) -> NewStore {
    let log = StepLog::new(common.log.clone(), parts.masker, &runtime.config.limits);
    let guest_stderr = MemoryOutputPipe::new(GUEST_STDIO_CAPACITY);
    wasi.stdout(MemoryOutputPipe::new(GUEST_STDIO_CAPACITY))
        .stderr(guest_stderr.clone());
    let audit = Arc::new(MemoryAudit::default());
    let mut sinks: Vec<Arc<dyn AuditSink>> = vec![audit.clone()];
    sinks.extend(common.audit.clone());
    let denied_log = log.clone();
    let warn_log = log.clone();
    if let Some(password) = common.web_proxy.as_ref().and_then(|p| p.password()) {
        log.add_secret(password);
    }
    let gate = OutboundGate {
        plugin_id: manifest.id.clone(),
        declared,
        policy: common.policy.clone(),
        audit: sinks,
        on_denied: Arc::new(move |a: &OutboundAttempt| {
            denied_log.write(
                LogLevel::Warn,
                &format!("Outbound request to {} denied: {}", a.destination, a.reason),
            );
        }),
        sender: match common.recorder {
            Some(recorder) => Sender::Record(recorder.clone()),
            None => Sender::Network(HttpSender::new(
                runtime.client_tls.clone(),
                common.web_proxy.clone(),
            )),
        },
        warn: Arc::new(move |line: String| warn_log.write(LogLevel::Warn, &line)),
    };
    let started = Instant::now();
    let hard_deadline = started + common.deadline;
    let ctx = StepContext {
        plugin_id: manifest.id.clone(),
        variables: parts.variables,
        log,
        process_granted: parts.process_granted,
        work_dir: parts.work_dir,
        process_env: parts.process_env,
        tcp_forwards: parts.tcp_forwards,
        script_network: parts.script_network,
        deadline: hard_deadline,
        cancel: common.cancel.clone(),
        limits: runtime.config.limits,
        outputs: Default::default(),
        result_message: None,
        artifacts: Vec::new(),
        guest_stderr,
    };
    let state = StepState {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        limits: StoreLimits::new(runtime.config.memory_limit, runtime.store_counts()),
        gate,
        ctx,
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limits);
    // Yield to the executor every tick so timers (deadline) and cancellation are noticed even in a
    // loop that never calls the host; trap once the deadline or a cancellation is seen.
    let cancel = common.cancel.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if cancel.is_cancelled() || Instant::now() >= hard_deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    debug_assert!(EPOCH_TICK < Duration::from_secs(1));
    (store, audit)
}

/// The trap plus what the guest wrote to stderr (a Rust panic message lands there).
pub(crate) fn trap_text(e: &wasmtime::Error, store: &Store<StepState>) -> String {
    let trap = match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => one_line(e),
    };
    let stderr = store.data().ctx.guest_stderr.contents();
    let said = String::from_utf8_lossy(&stderr);
    let tail: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:"))
        .collect();
    if tail.is_empty() {
        return trap;
    }
    let mut said = tail[tail.len().saturating_sub(3)..].join(" ");
    if said.len() > 300 {
        let mut cut = 300;
        while !said.is_char_boundary(cut) {
            cut -= 1;
        }
        said.truncate(cut);
        said.push('…');
    }
    format!("{trap} (the plugin said: {said})")
}

/// A trap's message as a failure: the memory limit when the store hit it, else a crash.
pub(crate) fn classify_message(
    message: String,
    store: &Store<StepState>,
    runtime: &Runtime,
) -> StepFailure {
    if store.data().limits.memory_limit_hit {
        return StepFailure::MemoryLimitExceeded(runtime.config.memory_limit);
    }
    StepFailure::Trapped(message)
}
