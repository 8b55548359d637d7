//! The vendor plugins: update check, telemetry, in-app messages (experiences) and dynamic extensions.
//!
//! Each runs in the plugin sandbox with the server's [`SettingsPolicy`] in the role
//! [`PluginRole::Vendor`]: it may reach only the origin of its configured endpoint, and only while its
//! switch is on. Before loading anything, the one outbound gate ([`crate::outbound::gate::check`]) is
//! asked for its row (by the job runner, or by the command's `*_now` function); a refusal makes no
//! request, and every attempt is recorded in the audit file.
//!
//! The component is the one embedded in `octo`, unless the plugin store holds one of the same kind that
//! came through the signed steps feed (or a signed bundle): the feed may bring newer versions.
//!
//! What the host keeps: `<home>/cache/update-check.json`, `<home>/cache/experiences.json` (what
//! `octo status` shows) and `<home>/cache/dynamic-extensions.json` (only after its signature verified
//! against the pinned feed key).

use crate::error::{Context, Result};
use crate::home::Home;
use crate::outbound::audit::AuditLog;
use crate::outbound::gate::{self, Allowed};
use crate::outbound::policy::SettingsPolicy;
use crate::sink::Sink;
use octo_builtin_plugins::BuiltinPlugin;
use octo_manifest::PluginKind;
use octo_outbound::{DestinationId, Grants, PluginRole};
use octo_runtime::{
    AllowList, LogLevel, LogLine, Message, Metric, RecordingSender, Runtime, RuntimeConfig,
    TelemetryReport, VendorPlugin, VendorRequest,
};
use octo_settings::{LiveSettings, Settings};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The running version, as the vendor plugins report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One vendor plugin: its table row, world and embedded component.
#[derive(Debug, Clone, Copy)]
struct Vendor {
    row: DestinationId,
    kind: PluginKind,
    builtin: BuiltinPlugin,
}

const UPDATE_CHECK: Vendor = Vendor {
    row: DestinationId::UpdateCheck,
    kind: PluginKind::UpdateCheck,
    builtin: octo_builtin_plugins::UPDATE_CHECK,
};
const TELEMETRY: Vendor = Vendor {
    row: DestinationId::Telemetry,
    kind: PluginKind::Telemetry,
    builtin: octo_builtin_plugins::TELEMETRY,
};
const EXPERIENCES: Vendor = Vendor {
    row: DestinationId::Experiences,
    kind: PluginKind::Experiences,
    builtin: octo_builtin_plugins::EXPERIENCES,
};
const DYNAMIC_EXTENSIONS: Vendor = Vendor {
    row: DestinationId::DynamicExtensions,
    kind: PluginKind::DynamicExtensions,
    builtin: octo_builtin_plugins::DYNAMIC_EXTENSIONS,
};

/// The configured endpoint of a row.
fn endpoint(row: DestinationId, settings: &Settings) -> String {
    octo_outbound::endpoint_url(row.row(), settings)
        .unwrap_or_default()
        .to_string()
}

/// The gate's pass must be for this vendor's row.
fn expect(allowed: &Allowed, vendor: &Vendor) {
    assert_eq!(allowed.row(), vendor.row, "a pass for another destination");
}

/// Asks the one outbound gate for `row` (recording the attempt).
fn gate(home: &Home, settings: &Settings, row: DestinationId) -> Result<Allowed> {
    gate::check(&AuditLog::in_home(home), settings, row)
}

fn runtime(home: &Home) -> Result<Runtime> {
    Runtime::new(RuntimeConfig {
        memory_limit: 64 * 1024 * 1024,
        step_deadline: Duration::from_secs(60),
        max_instances: 4,
        allocation: octo_runtime::Allocation::Pooling,
        cache_dir: Some(home.compiled_cache()?),
        trusted_certificates: Vec::new(),
        limits: Default::default(),
    })
    .map_err(|e| err!(Failed, "cannot start the plugin runtime: {e}"))
}

/// The component to run: a signed, installed one of the right kind, else the embedded one.
fn load(home: &Home, runtime: &Runtime, vendor: &Vendor) -> Result<VendorPlugin> {
    let store = crate::store::existing(home).ok().flatten();
    let installed = crate::store::signed_component(store.as_ref(), vendor.builtin.id);
    if let Some(bytes) = installed {
        match runtime.load_vendor(&bytes, vendor.kind) {
            Ok(plugin) => return Ok(plugin),
            Err(e) => tracing::warn!(
                "the installed {} plugin cannot be used ({e}); using the built-in one",
                vendor.builtin.id
            ),
        }
    }
    runtime
        .load_vendor(vendor.builtin.bytes, vendor.kind)
        .with_context(|| format!("the built-in {} plugin", vendor.builtin.id))
}

/// Policy (vendor role), audit file, web proxy; the plugin's warnings go to stderr.
fn request(
    home: &Home,
    settings: &Settings,
    vendor: &Vendor,
    sink: &Sink,
) -> Result<VendorRequest> {
    // The settings of the moment at every request: a job that passed its gate before the air gap was
    // switched on is still denied when it sends.
    let live = LiveSettings::follow(&home.settings()).context("cannot read the settings")?;
    let policy = Arc::new(SettingsPolicy::live(
        Arc::new(live),
        Grants::default(),
        Vec::new(),
        PluginRole::Vendor(vendor.row),
    ));
    let web_proxy = crate::proxy::web_proxy(settings)?;
    let id = vendor.builtin.id;
    let sink = sink.clone();
    Ok(VendorRequest {
        policy: policy.clone(),
        audit: Some(AuditLog::in_home(home).sink_for(policy)),
        log: Arc::new(move |line: LogLine| {
            if line.level >= LogLevel::Warn {
                sink.note(&format!("{id}: {}", line.message));
            }
        }),
        web_proxy: web_proxy.map(Arc::new),
        ..VendorRequest::new()
    })
}

fn installation_id(home: &Home) -> Result<String> {
    Settings::ensure_installation_id(&home.settings()).context("cannot create the installation id")
}

/// Keeps what a vendor plugin brought under `<home>/cache/`.
fn keep(home: &Home, name: &str, bytes: &[u8]) -> Result<()> {
    let path = home.cache_file(name);
    octo_fsutil::write_atomic(&path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What the update check found.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    /// This version.
    pub current_version: String,
    /// The newest release.
    pub latest_version: String,
    /// Whether that is newer than this one.
    pub newer: bool,
    /// Release notes / download.
    pub url: Option<String>,
}

/// `octo check-updates`: asks the gate, then runs the update-check plugin.
pub fn check_updates_now(home: &Home, sink: &Sink) -> Result<UpdateStatus> {
    let settings = home.load_settings()?;
    let allowed = gate(home, &settings, UPDATE_CHECK.row)?;
    check_updates(home, &settings, &allowed, sink)
}

/// Runs the update-check plugin, once the gate allowed it.
pub fn check_updates(
    home: &Home,
    settings: &Settings,
    allowed: &Allowed,
    sink: &Sink,
) -> Result<UpdateStatus> {
    expect(allowed, &UPDATE_CHECK);
    let id = installation_id(home)?;
    let rt = runtime(home)?;
    let plugin = load(home, &rt, &UPDATE_CHECK)?;
    let request = request(home, settings, &UPDATE_CHECK, sink)?;
    let url = endpoint(UPDATE_CHECK.row, settings);
    let outcome = crate::feeds::block_on(plugin.check(&rt, request, &url, VERSION, &id))?;
    let info = outcome
        .result
        .map_err(|f| err!(Failed, "the update check failed: {f}"))?;
    let newer = match (
        semver::Version::parse(info.latest_version.trim()),
        semver::Version::parse(VERSION),
    ) {
        (Ok(latest), Ok(current)) => latest > current,
        _ => bail!(
            Failed,
            "the update endpoint answered an unusable version {:?}",
            info.latest_version
        ),
    };
    let status = UpdateStatus {
        current_version: VERSION.to_string(),
        latest_version: info.latest_version,
        newer,
        url: info.url,
    };
    keep(
        home,
        "update-check.json",
        &serde_json::to_vec_pretty(&status)?,
    )?;
    Ok(status)
}

/// The one-line summary of an update check.
pub fn describe_update(status: &UpdateStatus) -> String {
    if status.newer {
        format!(
            "a newer version is available: {} (this is {}){}",
            status.latest_version,
            status.current_version,
            status
                .url
                .as_deref()
                .map(|u| format!("; see {u}"))
                .unwrap_or_default()
        )
    } else {
        format!(
            "up to date: {} (latest is {})",
            status.current_version, status.latest_version
        )
    }
}

/// The anonymous counts telemetry sends: numbers only, never a name, URL or secret.
pub fn telemetry_report(home: &Home, installation_id: String) -> Result<TelemetryReport> {
    let targets = crate::targets::list(home)
        .map(|t| t.targets.len())
        .unwrap_or(0);
    let installed = crate::store::existing(home)
        .ok()
        .flatten()
        .and_then(|s| s.list().ok())
        .map_or(0, |l| l.len());
    let grants = crate::outbound::grants::load(home)
        .map(|g| g.iter().count())
        .unwrap_or(0);
    let steps_run = AuditLog::in_home(home).read_all().len();
    let mut metrics = vec![
        ("targets", targets as u64),
        ("installedPlugins", installed as u64),
        (
            "builtInPlugins",
            (octo_builtin_plugins::STEPS.len() + octo_builtin_plugins::VENDOR.len()) as u64,
        ),
        ("pluginGrants", grants as u64),
        ("outboundAttemptsRecorded", steps_run as u64),
    ];
    metrics.sort_by(|a, b| a.0.cmp(b.0));
    Ok(TelemetryReport {
        installation_id,
        version: VERSION.to_string(),
        metrics: metrics
            .into_iter()
            .map(|(name, value)| Metric {
                name: name.to_string(),
                value,
            })
            .collect(),
    })
}

/// Where the preview says the report goes when no telemetry endpoint is configured (`.invalid` is
/// reserved: it names nothing, and the recording sender opens no socket anyway).
const PREVIEW_ENDPOINT: &str = "https://telemetry.invalid/api/telemetry";

/// `octo telemetry preview`: the body the telemetry plugin that would be used (a newer signed one from
/// the feed, else the embedded one) sends, recorded by a sender that opens no socket and looks up no
/// name. The plugin is asked with a policy that allows exactly the endpoint's origin (the configured
/// one, or [`PREVIEW_ENDPOINT`]), so the preview works whatever the switches say; nothing is recorded
/// in the audit file, since nothing was sent.
pub fn telemetry_preview(home: &Home) -> Result<String> {
    let settings = Settings::load(&home.settings()).context("cannot read the settings")?;
    let id = installation_id(home)?;
    let report = telemetry_report(home, id)?;
    let rt = runtime(home)?;
    let plugin = load(home, &rt, &TELEMETRY)?;
    let url = octo_outbound::endpoint_url(TELEMETRY.row.row(), &settings)
        .unwrap_or(PREVIEW_ENDPOINT)
        .to_string();
    let origin = octo_manifest::Destination::from_url(&url)
        .map_err(|e| err!(Invalid, "the telemetry endpoint {url} is unusable: {e}"))?;
    let recorder = Arc::new(RecordingSender::new());
    let request = VendorRequest {
        policy: Arc::new(AllowList::new(vec![
            octo_manifest::DestinationPattern::exact(&origin),
        ])),
        recorder: Some(recorder.clone()),
        ..VendorRequest::new()
    };
    let outcome = crate::feeds::block_on(plugin.send(&rt, request, &url, &report))?;
    outcome
        .result
        .map_err(|f| err!(Failed, "the telemetry plugin failed in the preview: {f}"))?;
    let sent = recorder.requests();
    let [request] = sent.as_slice() else {
        bail!(
            Failed,
            "the telemetry plugin made {} requests in the preview, expected one",
            sent.len()
        );
    };
    String::from_utf8(request.body.clone())
        .map_err(|_| err!(Failed, "the telemetry plugin's body is not UTF-8"))
}

/// The telemetry report as the job will send it: counted before the gate records this attempt, so the
/// preview and what is sent are the same.
pub fn telemetry_before_gate(home: &Home) -> Result<TelemetryReport> {
    let id = installation_id(home)?;
    telemetry_report(home, id)
}

/// Sends `report` (from [`telemetry_before_gate`]), once the gate allowed it.
pub fn send_telemetry(
    home: &Home,
    settings: &Settings,
    report: TelemetryReport,
    allowed: &Allowed,
    sink: &Sink,
) -> Result<String> {
    expect(allowed, &TELEMETRY);
    let rt = runtime(home)?;
    let plugin = load(home, &rt, &TELEMETRY)?;
    let request = request(home, settings, &TELEMETRY, sink)?;
    let url = endpoint(TELEMETRY.row, settings);
    let outcome = crate::feeds::block_on(plugin.send(&rt, request, &url, &report))?;
    outcome
        .result
        .map_err(|f| err!(Failed, "sending telemetry failed: {f}"))?;
    Ok(format!(
        "sent {} anonymous counts (`octo telemetry preview` shows them)",
        report.metrics.len()
    ))
}

/// Fetches in-app messages (once the gate allowed it) and caches them for `octo status`.
pub fn fetch_experiences(
    home: &Home,
    settings: &Settings,
    allowed: &Allowed,
    sink: &Sink,
) -> Result<String> {
    expect(allowed, &EXPERIENCES);
    let rt = runtime(home)?;
    let plugin = load(home, &rt, &EXPERIENCES)?;
    let request = request(home, settings, &EXPERIENCES, sink)?;
    let url = endpoint(EXPERIENCES.row, settings);
    let outcome = crate::feeds::block_on(plugin.fetch_messages(&rt, request, &url, VERSION))?;
    let messages = outcome
        .result
        .map_err(|f| err!(Failed, "fetching in-app messages failed: {f}"))?;
    let json: Vec<serde_json::Value> = messages.iter().map(message_json).collect();
    keep(
        home,
        "experiences.json",
        &serde_json::to_vec_pretty(&serde_json::json!({
            "fetched": octo_fsutil::rfc3339(SystemTime::now()),
            "messages": json,
        }))?,
    )?;
    Ok(format!(
        "{} in-app message(s); `octo status` shows them",
        messages.len()
    ))
}

fn message_json(m: &Message) -> serde_json::Value {
    serde_json::json!({"id": m.id, "title": m.title, "body": m.body, "url": m.url})
}

/// Fetches the dynamic extensions document, verifies its signature with the pinned feed key, and only
/// then keeps it.
pub fn fetch_dynamic_extensions(
    home: &Home,
    settings: &Settings,
    allowed: &Allowed,
    sink: &Sink,
) -> Result<String> {
    expect(allowed, &DYNAMIC_EXTENSIONS);
    let key = crate::feeds::pinned_key(settings)?;
    let rt = runtime(home)?;
    let plugin = load(home, &rt, &DYNAMIC_EXTENSIONS)?;
    let request = request(home, settings, &DYNAMIC_EXTENSIONS, sink)?;
    let url = endpoint(DYNAMIC_EXTENSIONS.row, settings);
    let outcome = crate::feeds::block_on(plugin.fetch_signed(&rt, request, &url, VERSION))?;
    let doc = outcome
        .result
        .map_err(|f| err!(Failed, "fetching dynamic extensions failed: {f}"))?;
    octo_feed::signature::verify(&doc.body, Some(doc.signature.as_bytes()), &key).map_err(|e| {
        err!(
            Invalid,
            "the dynamic extensions document was refused: its signature does not verify with the pinned feed key ({e})"
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&doc.body).context("the dynamic extensions document is not JSON")?;
    let count = value.as_array().map_or(0, |a| a.len());
    keep(home, "dynamic-extensions.json", &doc.body)?;
    Ok(format!(
        "{count} dynamic extension(s), signature verified with the pinned feed key"
    ))
}

/// `octo status`: this version, the last update check and the cached in-app messages (no request).
#[derive(Debug, Clone)]
pub struct Status {
    /// What the last update check found.
    pub update: Option<serde_json::Value>,
    /// The last fetched in-app messages (`{"fetched", "messages"}`).
    pub experiences: Option<serde_json::Value>,
}

/// Reads what the vendor jobs cached.
pub fn status(home: &Home) -> Result<Status> {
    let read = |name: &str| -> Result<Option<serde_json::Value>> {
        let path = home.cache_file(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is corrupt", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    };
    Ok(Status {
        experiences: read("experiences.json")?,
        update: read("update-check.json")?,
    })
}

impl Status {
    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        let experiences = &self.experiences;
        serde_json::json!({
            "version": VERSION,
            "update": self.update,
            "messages": experiences.as_ref().map(|e| e["messages"].clone()),
            "messagesFetched": experiences.as_ref().map(|e| e["fetched"].clone()),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "octo {VERSION}")?;
        if let Some(update) = &self.update {
            let newer = update["newer"] == true;
            writeln!(
                f,
                "update check: {}",
                if newer {
                    format!(
                        "a newer version is available: {}",
                        update["latestVersion"].as_str().unwrap_or("?")
                    )
                } else {
                    "up to date".to_string()
                }
            )?;
        }
        match &self.experiences {
            None => writeln!(
                f,
                "no in-app messages fetched yet (they come from the experiences job when experiencesEnabled is on)"
            )?,
            Some(e) => {
                let messages = e["messages"].as_array().cloned().unwrap_or_default();
                writeln!(
                    f,
                    "in-app messages ({}, fetched {}):",
                    messages.len(),
                    e["fetched"].as_str().unwrap_or("?")
                )?;
                for m in messages {
                    writeln!(
                        f,
                        "  * {}: {}",
                        m["title"].as_str().unwrap_or(""),
                        m["body"].as_str().unwrap_or("")
                    )?;
                    if let Some(url) = m["url"].as_str() {
                        writeln!(f, "    {url}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for UpdateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", describe_update(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preview_is_what_the_embedded_plugin_sends() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let preview = telemetry_preview(&home).unwrap();
        let id = Settings::load(&home.settings())
            .unwrap()
            .installation_id
            .unwrap();
        // The same bytes as plugins/telemetry's `payload` test, for this home's counts.
        let report = telemetry_report(&home, id.clone()).unwrap();
        let metrics: Vec<String> = report
            .metrics
            .iter()
            .map(|m| format!("\"{}\":{}", m.name, m.value))
            .collect();
        assert_eq!(
            preview,
            format!(
                "{{\"installationId\":\"{id}\",\"metrics\":{{{}}},\"version\":\"{VERSION}\"}}",
                metrics.join(",")
            )
        );
        // Nothing was recorded as an attempt: nothing was sent.
        assert!(AuditLog::in_home(&home).read_all().is_empty());
    }

    #[test]
    fn the_report_has_counts_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let report = telemetry_report(&home, "id".into()).unwrap();
        let names: Vec<&str> = report.metrics.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"targets") && names.contains(&"installedPlugins"));
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }
}
