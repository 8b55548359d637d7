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
mod engine;
mod http_client;
mod limits;
mod lines;
pub mod mask;
pub mod outbound;
mod process;
mod state;
mod step;
pub mod vendor;

pub use engine::{LoadError, Runtime, RuntimeConfig};
pub use http_client::WebProxy;
pub use limits::Limits;
pub use mask::Masker;
pub use outbound::{
    AllowList, AuditSink, DenyAll, MemoryAudit, OutboundAttempt, OutboundPolicy, OutboundRequest,
    Verdict,
};
pub use step::{
    Artifact, CancelHandle, LogLevel, LogLine, LogSink, OutputVariable, ParameterInfo,
    StepDescription, StepFailure, StepOutcome, StepPlugin, StepRequest, Variable,
};
pub use vendor::{
    Message, Metric, SignedDocument, TelemetryReport, UpdateInfo, VendorOutcome, VendorPlugin,
    VendorRequest,
};

/// Hex SHA-256 of some bytes: how plugins are named in the cache and the store.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
