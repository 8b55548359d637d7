//! The plugin sandbox.
//!
//! One [`Runtime`] owns one wasmtime `Engine` (pooling allocator, epoch interruption), a linker with the
//! host's imports, and an on-disk cache of compiled code. [`Runtime::load_step`] reads a component's
//! manifest without running it, checks kind and API version, compiles (or loads the cached compilation)
//! and pre-instantiates it. [`StepPlugin::run`] instantiates it into a fresh store with no ambient
//! authority — no environment, no sockets, only the step's work directory — under a deadline and a
//! memory limit, and returns a [`StepOutcome`] instead of an error for anything the plugin did wrong.
//!
//! Outbound HTTP from plugins only exists through `wasi:http/outgoing-handler`; every request goes past
//! the [`OutboundPolicy`] first.
#![deny(missing_docs)]

mod bindings;
mod cache;
mod clone_spawn;
mod confine;
mod connect_watch;
mod egress;
mod engine;
mod forwards;
mod http_client;
mod intercept;
mod limits;
mod lines;
pub mod mask;
pub mod outbound;
mod probe_cache;
mod process;
mod request;
mod state;
mod step;
mod store;
pub mod vendor;
mod vocabulary;

pub use confine::{SIMULATE_UNAVAILABLE_ENV, ScriptNetwork};
pub use engine::{Allocation, LoadError, Runtime, RuntimeConfig};
pub use intercept::{MAX_RECORDED_BODY, RecordedRequest, RecordingSender};
pub use limits::{LimitError, Limits};
pub use mask::Masker;
pub use octo_web_proxy::WebProxy;
pub use outbound::{
    AllowList, AuditSink, DenyAll, MemoryAudit, OutboundAttempt, OutboundPolicy, OutboundRequest,
    RequestSource, Verdict,
};
pub use request::{Mount, StepRequest, VendorRequest};
pub use step::StepPlugin;
pub use vendor::{
    Message, Metric, SignedDocument, TelemetryReport, UpdateInfo, VendorOutcome, VendorPlugin,
};
pub use vocabulary::{
    Artifact, CancelHandle, LogLevel, LogLine, LogSink, OutputVariable, ParameterInfo,
    StepDescription, StepFailure, StepOutcome, Variable,
};

/// Hex SHA-256 of some bytes: how plugins are named in the cache and the store.
pub use octo_fsutil::sha256_hex;
