//! The outbound policy hook: every HTTP request a plugin makes is checked here before a socket opens.
//!
//! Two checks, in order: the destination must be declared in the plugin's manifest (templates resolved
//! from the step's arguments), and the [`OutboundPolicy`] — the air-gap settings and administrator grants
//! — must allow it. Denied requests fail inside the guest with `HTTP-request-denied` and are recorded.

use octo_manifest::{Destination, DestinationPattern};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Who makes a request: the plugin itself, or a command the plugin started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RequestSource {
    /// The plugin, through `wasi:http`.
    #[default]
    Plugin,
    /// A command the plugin started through `process` (a script), through the step's egress proxy.
    Script,
}

/// A request a plugin (or a command it started) is about to make.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Manifest id of the plugin.
    pub plugin_id: String,
    /// Where it goes.
    pub destination: Destination,
    /// The plugin itself or one of its commands.
    pub source: RequestSource,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refused, with the reason shown to the user and recorded.
    Deny(String),
}

/// Decides whether a plugin may reach a destination. Implementations must be cheap: they run on every
/// request.
pub trait OutboundPolicy: Send + Sync {
    /// The verdict for one request.
    fn check(&self, request: &OutboundRequest) -> Verdict;

    /// For a raw TCP destination named by a host name, which [`OutboundPolicy::check`] allowed and
    /// the host then resolved: whether a script's connection may go to `address`, one of the name's
    /// addresses (those denied are skipped; none left denies the connection). A policy that knows an
    /// air gap checks the address against the internal networks; by default, yes.
    fn check_resolved(&self, _request: &OutboundRequest, _address: IpAddr) -> Verdict {
        Verdict::Allow
    }
}

/// Denies everything: the default until the air-gap settings say otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl OutboundPolicy for DenyAll {
    fn check(&self, _request: &OutboundRequest) -> Verdict {
        Verdict::Deny("outbound requests from plugins are not enabled on this host".into())
    }
}

/// Allows exactly the listed destination patterns (an administrator's explicit grant).
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    patterns: Vec<DestinationPattern>,
}

impl AllowList {
    /// A policy allowing these patterns and nothing else.
    pub fn new(patterns: Vec<DestinationPattern>) -> Self {
        AllowList { patterns }
    }
}

impl OutboundPolicy for AllowList {
    fn check(&self, request: &OutboundRequest) -> Verdict {
        if self
            .patterns
            .iter()
            .any(|p| p.matches(&request.destination))
        {
            Verdict::Allow
        } else {
            Verdict::Deny(format!(
                "{} is not granted to plugin {}",
                request.destination, request.plugin_id
            ))
        }
    }
}

/// One attempt, allowed or not: what `octo outbound` shows as "last attempts".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundAttempt {
    /// When.
    pub time: SystemTime,
    /// Which plugin.
    pub plugin_id: String,
    /// Where to (`scheme://host:port`; never a path or query, which may carry secrets).
    pub destination: String,
    /// Whether it was let through.
    pub allowed: bool,
    /// Why it was denied (empty when allowed).
    pub reason: String,
    /// The plugin itself or one of its commands.
    pub source: RequestSource,
    /// Completed by a [`RecordingSender`](crate::RecordingSender) (a preview): allowed requests of a
    /// preview never left the machine and must not be counted as sent.
    pub preview: bool,
}

/// Where attempts are recorded.
pub trait AuditSink: Send + Sync {
    /// Records one attempt.
    fn record(&self, attempt: &OutboundAttempt);
}

/// Keeps attempts in memory (tests, and the outcome of one step).
#[derive(Debug, Default)]
pub struct MemoryAudit {
    attempts: Mutex<Vec<OutboundAttempt>>,
}

impl MemoryAudit {
    /// Everything recorded so far.
    pub fn attempts(&self) -> Vec<OutboundAttempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, attempt: &OutboundAttempt) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(attempt.clone());
    }
}

/// The per-run gate installed as the wasi-http hooks of one store.
pub(crate) struct OutboundGate {
    pub(crate) plugin_id: String,
    /// The manifest's destinations, resolved with this run's arguments.
    pub(crate) declared: Vec<DestinationPattern>,
    pub(crate) policy: Arc<dyn OutboundPolicy>,
    pub(crate) audit: Vec<Arc<dyn AuditSink>>,
    /// Denials are also told to the step's log.
    pub(crate) on_denied: Arc<dyn Fn(&OutboundAttempt) + Send + Sync>,
    /// Sends allowed requests (directly or through the web request proxy), or records them (preview).
    pub(crate) sender: crate::intercept::Sender,
    /// Explains transport failures (proxy refusals, TLS) in the step's log.
    pub(crate) warn: Arc<dyn Fn(String) + Send + Sync>,
}

impl OutboundGate {
    pub(crate) fn decide(&self, destination: &Destination) -> OutboundAttempt {
        let reason = if !self.declared.iter().any(|p| p.matches(destination)) {
            Some(format!(
                "{destination} is not declared in the manifest of plugin {}",
                self.plugin_id
            ))
        } else {
            match self.policy.check(&OutboundRequest {
                plugin_id: self.plugin_id.clone(),
                destination: destination.clone(),
                source: RequestSource::Plugin,
            }) {
                Verdict::Allow => None,
                Verdict::Deny(reason) => Some(reason),
            }
        };
        self.record(destination.to_string(), reason, RequestSource::Plugin)
    }

    /// A script's request through the egress proxy: no manifest declaration to check (a script may
    /// reach whatever the policy allows its step), the same policy and audit as the plugin's own.
    pub(crate) fn decide_script(&self, destination: &Destination) -> OutboundAttempt {
        let reason = self.check_script(destination).err();
        self.record(destination.to_string(), reason, RequestSource::Script)
    }

    fn script_request(&self, destination: &Destination) -> OutboundRequest {
        OutboundRequest {
            plugin_id: self.plugin_id.clone(),
            destination: destination.clone(),
            source: RequestSource::Script,
        }
    }

    /// The policy's verdict on a script's request, not recorded yet ([`OutboundGate::record_script`]).
    pub(crate) fn check_script(&self, destination: &Destination) -> Result<(), String> {
        match self.policy.check(&self.script_request(destination)) {
            Verdict::Allow => Ok(()),
            Verdict::Deny(reason) => Err(reason),
        }
    }

    /// Those of the addresses a granted name resolved to that the policy lets a script reach, not
    /// recorded yet; none is a denial (with the reason for the first address).
    pub(crate) fn check_resolved_script(
        &self,
        destination: &Destination,
        addresses: Vec<std::net::SocketAddr>,
    ) -> Result<Vec<std::net::SocketAddr>, String> {
        let request = self.script_request(destination);
        let mut first_reason = None;
        let allowed: Vec<_> = addresses
            .into_iter()
            .filter(|a| match self.policy.check_resolved(&request, a.ip()) {
                Verdict::Allow => true,
                Verdict::Deny(reason) => {
                    first_reason.get_or_insert(reason);
                    false
                }
            })
            .collect();
        match first_reason {
            Some(reason) if allowed.is_empty() => Err(reason),
            _ => Ok(allowed),
        }
    }

    /// Records a script's attempt decided with [`OutboundGate::check_script`] (`reason` when denied).
    pub(crate) fn record_script(&self, destination: String, reason: Option<String>) {
        self.record(destination, reason, RequestSource::Script);
    }

    /// Records an attempt the policy was not asked about (a confined script's direct connection,
    /// which has no way out but the egress proxy).
    pub(crate) fn record_denied_script(&self, destination: String, reason: String) {
        self.record(destination, Some(reason), RequestSource::Script);
    }

    fn record(
        &self,
        destination: String,
        reason: Option<String>,
        source: RequestSource,
    ) -> OutboundAttempt {
        let attempt = OutboundAttempt {
            time: SystemTime::now(),
            plugin_id: self.plugin_id.clone(),
            destination,
            allowed: reason.is_none(),
            reason: reason.unwrap_or_default(),
            source,
            preview: self.sender.is_preview(),
        };
        for sink in &self.audit {
            sink.record(&attempt);
        }
        if !attempt.allowed {
            (self.on_denied)(&attempt);
        }
        attempt
    }
}

/// The destination of a request as wasi-http built it.
fn destination_of<B>(request: &http::Request<B>) -> Option<Destination> {
    let uri = request.uri();
    Destination::new(uri.scheme_str()?, uri.host()?, uri.port_u16()).ok()
}

/// The request as it was decided: its URI names exactly the destination that was checked and
/// audited (normalised host: no trailing dot, no user info) and its `Host` header says the same, so
/// what is resolved and what is recorded agree, and credentials in a raw authority go nowhere.
fn to_destination<B>(
    mut request: http::Request<B>,
    destination: &Destination,
) -> Result<http::Request<B>, wasmtime_wasi_http::Error> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .scheme(destination.scheme.as_str())
        .authority(destination.authority())
        .path_and_query(path)
        .build()
        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
    let host = http::HeaderValue::from_str(&destination.host_header())
        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
    request.headers_mut().insert(http::header::HOST, host);
    Ok(request)
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let Some(destination) = destination_of(&request) else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
        };
        if !self.decide(&destination).allowed {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let request = match to_destination(request, &destination) {
            Ok(request) => request,
            Err(e) => return Box::new(async move { Err(e) }),
        };
        let sender = self.sender.clone();
        let warn = self.warn.clone();
        Box::new(async move { sender.send(request, options, &*warn).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(
        declared: &[&str],
        policy: Arc<dyn OutboundPolicy>,
    ) -> (OutboundGate, Arc<MemoryAudit>) {
        let audit = Arc::new(MemoryAudit::default());
        let gate = OutboundGate {
            plugin_id: "p".into(),
            declared: declared
                .iter()
                .map(|d| DestinationPattern::parse(d).unwrap())
                .collect(),
            policy,
            audit: vec![audit.clone()],
            on_denied: Arc::new(|_| {}),
            sender: crate::intercept::Sender::Network(crate::http_client::HttpSender::new(
                crate::http_client::client_tls(&[]).unwrap(),
                None,
            )),
            warn: Arc::new(|_| {}),
        };
        (gate, audit)
    }

    fn dest(url: &str) -> Destination {
        Destination::from_url(url).unwrap()
    }

    #[test]
    fn undeclared_destinations_are_denied_even_when_policy_allows() {
        let allow_all = Arc::new(AllowList::new(vec![
            DestinationPattern::parse("https://*:*").unwrap(),
        ]));
        let (gate, audit) = gate(&["https://api.example.com"], allow_all);
        assert!(gate.decide(&dest("https://api.example.com/x")).allowed);
        let denied = gate.decide(&dest("https://evil.example.com"));
        assert!(
            !denied.allowed && denied.reason.contains("not declared"),
            "{denied:?}"
        );
        assert_eq!(audit.attempts().len(), 2);
    }

    #[test]
    fn a_request_goes_where_it_was_audited_without_credentials() {
        let raw = http::Request::builder()
            .uri("http://x:y@Localhost.:8080/path?q=1")
            .header(http::header::HOST, "x:y@Localhost.:8080")
            .body(())
            .unwrap();
        let destination = destination_of(&raw).unwrap();
        assert_eq!(destination.to_string(), "http://localhost:8080");
        let sent = to_destination(raw, &destination).unwrap();
        assert_eq!(sent.uri().to_string(), "http://localhost:8080/path?q=1");
        assert_eq!(sent.uri().host(), Some("localhost"));
        let hosts: Vec<_> = sent.headers().get_all(http::header::HOST).iter().collect();
        assert_eq!(hosts, ["localhost:8080"]);
        let https = http::Request::builder()
            .uri("https://Example.COM./")
            .body(())
            .unwrap();
        let destination = destination_of(&https).unwrap();
        let sent = to_destination(https, &destination).unwrap();
        assert_eq!(sent.headers()[http::header::HOST], "example.com");
        assert_eq!(sent.uri().to_string(), "https://example.com:443/");
    }

    #[test]
    fn policy_has_the_last_word() {
        let (gate, audit) = gate(&["https://api.example.com"], Arc::new(DenyAll));
        let attempt = gate.decide(&dest("https://api.example.com"));
        assert!(!attempt.allowed && attempt.reason.contains("not enabled"));
        assert_eq!(attempt.destination, "https://api.example.com:443");
        assert_eq!(audit.attempts(), vec![attempt]);
    }
}
