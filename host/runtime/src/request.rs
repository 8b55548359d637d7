//! What a caller hands the sandbox for one call: a [`StepRequest`] for a step run (arguments, variables,
//! the work directory, the environment of the commands it starts) and a [`VendorRequest`] for a vendor
//! plugin's call, which has none of those: vendor plugins get no filesystem and start no commands.

use crate::http_client::WebProxy;
use crate::intercept::RecordingSender;
use crate::outbound::{AuditSink, DenyAll, OutboundPolicy};
use crate::vocabulary::{CancelHandle, LogLine, LogSink, Variable};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything a run needs besides the plugin.
pub struct StepRequest {
    /// Parameter values by name (defaults are applied from `describe`).
    pub arguments: BTreeMap<String, String>,
    /// Deployment variables.
    pub variables: Vec<Variable>,
    /// The step's work directory: the only directory the plugin (and its commands) see. Must exist.
    pub work_dir: PathBuf,
    /// Overrides the runtime's step deadline.
    pub deadline: Option<Duration>,
    /// Decides outbound requests.
    pub policy: Arc<dyn OutboundPolicy>,
    /// Also records outbound attempts here (the outcome always lists them).
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Receives log lines live.
    pub log: Arc<dyn LogSink>,
    /// Stops the step from elsewhere.
    pub cancel: CancelHandle,
    /// Extra environment for commands the step runs.
    pub process_env: Vec<(String, String)>,
    /// The web request proxy for the plugin's HTTP and for its commands' (which reach it through the
    /// step's egress proxy).
    pub web_proxy: Option<Arc<WebProxy>>,
    /// How far the commands the step runs reach the network.
    pub script_network: crate::ScriptNetwork,
    /// Raw TCP destinations (`tcp://ADDRESS:PORT`) an administrator granted the step's scripts: in
    /// confined mode the host listens at each address inside the command's network namespace and
    /// forwards what connects there, each connection decided by `policy` and audited. IPv4 addresses
    /// only (the namespace has no name resolution); none by default.
    pub tcp_forwards: Vec<octo_manifest::Destination>,
    /// Directories the plugin sees besides its work directory (e.g. deploy-package's package and
    /// applications directory); none by default.
    pub mounts: Vec<Mount>,
}

/// A host directory the plugin sees at a guest path, besides its work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory on the host; must exist.
    pub host: PathBuf,
    /// Where the plugin sees it, an absolute guest path such as `/package`.
    pub guest: String,
    /// Whether the plugin may change what is in it.
    pub writable: bool,
}

impl Mount {
    /// `host` seen at `guest`, read-only: the plugin can list and read, not write.
    pub fn read_only(host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        Mount {
            host: host.into(),
            guest: guest.into(),
            writable: false,
        }
    }

    /// `host` seen at `guest`, read-write.
    pub fn read_write(host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        Mount {
            host: host.into(),
            guest: guest.into(),
            writable: true,
        }
    }
}

impl StepRequest {
    /// A request with no arguments or variables, the deny-all policy and a log that drops lines.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        StepRequest {
            arguments: BTreeMap::new(),
            variables: Vec::new(),
            work_dir: work_dir.into(),
            deadline: None,
            policy: Arc::new(DenyAll),
            audit: None,
            log: Arc::new(|_: LogLine| {}),
            cancel: CancelHandle::new(),
            process_env: Vec::new(),
            web_proxy: None,
            script_network: crate::ScriptNetwork::default(),
            tcp_forwards: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

/// Everything a vendor plugin's call needs besides the plugin and the world's own arguments (the
/// endpoint, the report...): the outbound policy, the audit, the log, cancellation and the web request
/// proxy. No work directory, no arguments, no process environment.
pub struct VendorRequest {
    /// Overrides the default deadline of a vendor call (60 s).
    pub deadline: Option<Duration>,
    /// Decides outbound requests.
    pub policy: Arc<dyn OutboundPolicy>,
    /// Also records outbound attempts here (the outcome always lists them).
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Receives log lines live.
    pub log: Arc<dyn LogSink>,
    /// Stops the call from elsewhere.
    pub cancel: CancelHandle,
    /// The web request proxy for the plugin's HTTP.
    pub web_proxy: Option<Arc<WebProxy>>,
    /// A preview: requests the policy allows are kept here and answered locally instead of sent (no
    /// socket, no name lookup); their attempts are marked as previews.
    pub recorder: Option<Arc<RecordingSender>>,
}

impl VendorRequest {
    /// A request with the deny-all policy and a log that drops lines.
    pub fn new() -> Self {
        VendorRequest {
            deadline: None,
            policy: Arc::new(DenyAll),
            audit: None,
            log: Arc::new(|_: LogLine| {}),
            cancel: CancelHandle::new(),
            web_proxy: None,
            recorder: None,
        }
    }
}

impl Default for VendorRequest {
    fn default() -> Self {
        VendorRequest::new()
    }
}
