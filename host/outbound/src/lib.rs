//! Every outbound destination of the Octo server, in one table, and the decisions made from it.
//!
//! [`DESTINATIONS`] mirrors the "Outbound requests" page: for each kind of traffic, why it exists, the
//! component that makes it, the setting that gates it and where it goes. Everything that reaches out asks
//! this crate first:
//!
//! - the host's own clients (steps feed, library feed) and the jobs: [`verdict`] for their row;
//! - plugins, through the runtime's outbound hook: [`decide_plugin`], which adds the per-plugin rules
//!   (vendor plugins may reach only their configured endpoint while their switch is on and the server
//!   is not air-gapped; built-in steps what their manifest declares; other steps only what an
//!   administrator granted ([`grants`]); while air-gapped, steps only inside the administrator's
//!   internal networks);
//! - `octo outbound`, which prints the table with the current verdicts and the last attempts ([`audit`]).
//!
//! The runtime checks the plugin's manifest before any of this; a destination a plugin did not declare
//! never gets here.
//!
//! This crate does no I/O: it decides from values, so every rule is tested with plain values.
#![deny(missing_docs)]

pub mod audit;
pub mod grants;

use octo_manifest::{Destination, DestinationPattern, PluginKind};
use octo_settings::{InternalNetwork, InternalNetworks, Settings, keys};
use serde::Serialize;

pub use grants::{Binding, ComponentIdentity, Grants, GrantsFile};

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationId {
    /// Listening tentacles: the server dials each one.
    Tentacles,
    /// Package feeds the administrator configured.
    PackageFeeds,
    /// The update check.
    UpdateCheck,
    /// Built-in step template updates from the steps feed.
    StepsFeed,
    /// Community step templates from the library feed.
    LibraryFeed,
    /// Telemetry.
    Telemetry,
    /// In-app messages.
    Experiences,
    /// Dynamic extensions.
    DynamicExtensions,
    /// Requests step plugins make themselves (e.g. http-health-check).
    StepPlugins,
    /// Requests of the scripts a step runs (through the step's egress proxy, or granted raw TCP).
    StepScripts,
}

impl DestinationId {
    /// The kebab-case id (`update-check`), used in `--json` output and audit records.
    pub fn as_str(self) -> &'static str {
        self.row().id_str
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        DESTINATIONS.iter().find(|d| d.id_str == s).map(|d| d.id)
    }

    /// The table row.
    pub fn row(self) -> &'static OutboundDestination {
        DESTINATIONS
            .iter()
            .find(|d| d.id == self)
            .expect("every id has a row")
    }

    /// The row of a vendor plugin kind; `None` for steps.
    pub fn for_plugin_kind(kind: PluginKind) -> Option<Self> {
        match kind {
            PluginKind::Step => None,
            PluginKind::UpdateCheck => Some(DestinationId::UpdateCheck),
            PluginKind::Telemetry => Some(DestinationId::Telemetry),
            PluginKind::Experiences => Some(DestinationId::Experiences),
            PluginKind::DynamicExtensions => Some(DestinationId::DynamicExtensions),
        }
    }
}

/// What makes the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The host's tentacle communication (mutual TLS, HTTP/2).
    TentacleComms,
    /// The host's package acquisition.
    HostPackageClient,
    /// The host's steps feed client.
    HostFeedClient,
    /// The host's library client.
    HostLibraryClient,
    /// The update-check plugin.
    UpdateCheckPlugin,
    /// The telemetry plugin.
    TelemetryPlugin,
    /// The experiences plugin.
    ExperiencesPlugin,
    /// The dynamic-extensions plugin.
    DynamicExtensionsPlugin,
    /// Step plugins, through the sandbox's wasi:http hook.
    StepPlugins,
    /// The scripts steps run, through the step's egress proxy (and, confined, granted TCP forwards).
    StepScripts,
}

impl Component {
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Component::TentacleComms => "host: tentacle comms",
            Component::HostPackageClient => "host: package client",
            Component::HostFeedClient => "host: feed client",
            Component::HostLibraryClient => "host: library client",
            Component::UpdateCheckPlugin => "plugin: update-check",
            Component::TelemetryPlugin => "plugin: telemetry",
            Component::ExperiencesPlugin => "plugin: experiences",
            Component::DynamicExtensionsPlugin => "plugin: dynamic-extensions",
            Component::StepPlugins => "step plugins (sandbox wasi:http hook)",
            Component::StepScripts => "step scripts (the step's egress proxy)",
        }
    }
}

/// What decides whether the traffic may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "setting")]
pub enum Gate {
    /// A vendor switch in the settings (its key, e.g. `upgradeCheck`).
    Switch(&'static str),
    /// The administrator's own configuration (targets, feeds): not vendor traffic, so the air-gap
    /// switches do not apply; it exists only when an administrator configures it.
    Configuration,
    /// The plugin's manifest, plus an administrator's grant for steps outside the built-in set; while
    /// air-gapped, only inside the internal networks.
    ManifestAndGrants,
    /// What the step that runs the script may reach (its grants; only inside the internal networks
    /// while air-gapped); confined scripts (`scriptNetwork=confined`, always while air-gapped) only
    /// through the egress proxy and the `tcp://` destinations an administrator granted.
    StepPolicy,
}

impl Gate {
    /// Human description.
    pub fn describe(self) -> String {
        match self {
            Gate::Switch(key) => format!("setting {key}"),
            Gate::Configuration => "administrator's configuration".into(),
            Gate::ManifestAndGrants => {
                "plugin manifest + administrator grants (`octo plugins grant`); only internal networks when air-gapped"
                    .into()
            }
            Gate::StepPolicy => {
                "the step's own policy (built-in steps: any; others: their grants); only internal networks when air-gapped; scriptNetwork (confined: only the egress proxy and granted tcp://)"
                    .into()
            }
        }
    }
}

/// Where the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "setting")]
pub enum Endpoint {
    /// The URL in this settings key.
    Setting(&'static str),
    /// Each listening target's address.
    PerTarget,
    /// Each configured package feed's URL.
    PerFeed,
    /// What each step's manifest declares (resolved from its parameters).
    PerStep,
}

/// One kind of outbound traffic.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundDestination {
    /// Which row.
    #[serde(skip)]
    pub id: DestinationId,
    #[serde(rename = "id")]
    id_str: &'static str,
    /// Short name.
    pub name: &'static str,
    /// Why it exists.
    pub purpose: &'static str,
    /// What is sent.
    pub sends: &'static str,
    /// When.
    pub schedule: &'static str,
    /// What makes it.
    pub component: Component,
    /// What gates it.
    pub gate: Gate,
    /// Where it goes.
    pub endpoint: Endpoint,
}

macro_rules! row {
    ($id:ident, $id_str:literal, $name:literal, $purpose:literal, $sends:literal, $schedule:literal,
     $component:expr, $gate:expr, $endpoint:expr) => {
        OutboundDestination {
            id: DestinationId::$id,
            id_str: $id_str,
            name: $name,
            purpose: $purpose,
            sends: $sends,
            schedule: $schedule,
            component: $component,
            gate: $gate,
            endpoint: $endpoint,
        }
    };
}

/// The table: every outbound destination of the server, in the order of the "Outbound requests" page.
pub static DESTINATIONS: &[OutboundDestination] = &[
    row!(
        Tentacles,
        "tentacles",
        "Listening tentacles",
        "Deploy to listening tentacles: the server dials each one (polling tentacles dial in instead).",
        "deployment commands, step plugins and files, over mutual TLS",
        "during deployments and health checks",
        Component::TentacleComms,
        Gate::Configuration,
        Endpoint::PerTarget
    ),
    row!(
        PackageFeeds,
        "package-feeds",
        "Package feeds",
        "Download packages that deployments use from the feeds an administrator configured.",
        "package searches and downloads",
        "during deployments",
        Component::HostPackageClient,
        Gate::Configuration,
        Endpoint::PerFeed
    ),
    row!(
        UpdateCheck,
        "update-check",
        "Update check",
        "Tell administrators when a newer Octo is available.",
        "the Octo version and the installation id",
        "every 8 hours",
        Component::UpdateCheckPlugin,
        Gate::Switch(keys::UPGRADE_CHECK),
        Endpoint::Setting(keys::UPDATE_URL)
    ),
    row!(
        StepsFeed,
        "steps-feed",
        "Built-in step template updates",
        "Keep the built-in steps up to date (semver-compatible versions) from the signed steps feed.",
        "nothing but the requests for the index and components",
        "hourly",
        Component::HostFeedClient,
        Gate::Switch(keys::STEP_TEMPLATE_UPDATES),
        Endpoint::Setting(keys::FEED)
    ),
    row!(
        LibraryFeed,
        "library-feed",
        "Community step templates",
        "Offer the community step template library.",
        "nothing but the requests for the templates",
        "at start and every 24 hours",
        Component::HostLibraryClient,
        Gate::Switch(keys::COMMUNITY_STEP_TEMPLATES),
        Endpoint::Setting(keys::LIBRARY_FEED)
    ),
    row!(
        Telemetry,
        "telemetry",
        "Telemetry",
        "Help the vendor see how Octo is used.",
        "anonymous counts only (`octo telemetry preview` shows them)",
        "daily",
        Component::TelemetryPlugin,
        Gate::Switch(keys::SEND_TELEMETRY),
        Endpoint::Setting(keys::TELEMETRY_URL)
    ),
    row!(
        Experiences,
        "experiences",
        "In-app messages",
        "Show in-app messages (what's new, tips).",
        "the Octo version",
        "daily",
        Component::ExperiencesPlugin,
        Gate::Switch(keys::EXPERIENCES_ENABLED),
        Endpoint::Setting(keys::EXPERIENCES_URL)
    ),
    row!(
        DynamicExtensions,
        "dynamic-extensions",
        "Dynamic extensions",
        "Fetch signed feature toggles.",
        "nothing but the request",
        "daily",
        Component::DynamicExtensionsPlugin,
        Gate::Switch(keys::DYNAMIC_EXTENSIONS_ENABLED),
        Endpoint::Setting(keys::DYNAMIC_EXTENSIONS_URL)
    ),
    row!(
        StepScripts,
        "step-scripts",
        "Step scripts' requests",
        "Scripts a step runs (Bash and Python templates) that call web services or databases.",
        "whatever the script sends: HTTP(S) through the step's egress proxy, granted raw TCP when confined",
        "during deployments",
        Component::StepScripts,
        Gate::StepPolicy,
        Endpoint::PerStep
    ),
    row!(
        StepPlugins,
        "step-plugins",
        "Step plugins' own requests",
        "Steps that call web services themselves (e.g. http-health-check).",
        "whatever the step sends, only to destinations its manifest declares",
        "during deployments",
        Component::StepPlugins,
        Gate::ManifestAndGrants,
        Endpoint::PerStep
    ),
];

/// Allowed or denied, and why. The reason is one line a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the traffic may happen.
    pub allowed: bool,
    /// Why.
    pub reason: String,
}

impl Decision {
    fn allow(reason: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            reason: reason.into(),
        }
    }

    fn deny(reason: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// The value of a vendor switch.
pub fn switch(settings: &Settings, key: &str) -> Option<bool> {
    settings
        .vendor_switches()
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, on)| on)
}

/// The URL a row goes to, when it comes from the settings and is configured (`None` for rows whose
/// endpoint is not a setting, and for an endpoint that is not set).
pub fn endpoint_url<'s>(row: &OutboundDestination, settings: &'s Settings) -> Option<&'s str> {
    let Endpoint::Setting(key) = row.endpoint else {
        return None;
    };
    settings.endpoint(key)
}

/// What `octo outbound` shows for an endpoint setting that is not set.
pub const NOT_CONFIGURED: &str = "not configured";

/// The verdict for a row under these settings: what the host's own clients and the jobs ask before any
/// request, and what `octo outbound` shows.
pub fn verdict(row: &OutboundDestination, settings: &Settings) -> Decision {
    match row.gate {
        Gate::Switch(key) => {
            let on = switch(settings, key).expect("gates are vendor switches");
            if settings.air_gapped() {
                Decision::deny(format!(
                    "air-gapped: every vendor destination is denied whatever its switch says ({key}={on}); `octo configure --airGapped=false` lifts the air gap"
                ))
            } else if !on {
                Decision::deny(format!(
                    "{key} is off; `octo configure --{key}=true` enables it"
                ))
            } else if let (Endpoint::Setting(endpoint), None) =
                (row.endpoint, endpoint_url(row, settings))
            {
                Decision::deny(format!(
                    "{key} is on, but {endpoint} is {NOT_CONFIGURED}, so no request is made; `octo configure --{endpoint}=URL` sets it"
                ))
            } else {
                Decision::allow(format!("{key} is on"))
            }
        }
        Gate::Configuration => Decision::allow(
            "the administrator's own configuration; not vendor traffic, so the air-gap switches do not apply",
        ),
        Gate::StepPolicy => {
            if settings.air_gapped() && settings.internal_networks.is_empty() {
                Decision::deny(AIR_GAPPED_STEPS)
            } else if settings.air_gapped() {
                Decision::allow(format!(
                    "air-gapped, so confined: through the egress proxy and granted tcp:// destinations, what the step may reach inside the internal networks {}",
                    settings.internal_networks
                ))
            } else {
                Decision::allow(format!(
                    "scriptNetwork={}: what the step may reach (built-in steps: any; others: their grants), HTTP(S) through the step's egress proxy{}",
                    settings.effective_script_network().as_str(),
                    match settings.effective_script_network() {
                        octo_settings::ScriptNetwork::Audited =>
                            "; other tools reach the network unaudited",
                        octo_settings::ScriptNetwork::Confined =>
                            " and granted tcp:// destinations only",
                    }
                ))
            }
        }
        Gate::ManifestAndGrants => {
            if settings.air_gapped() && settings.internal_networks.is_empty() {
                Decision::deny(AIR_GAPPED_STEPS)
            } else if settings.air_gapped() {
                Decision::allow(format!(
                    "air-gapped: only destinations the plugin's manifest declares (and, outside the built-in set, an administrator granted) inside the internal networks {}",
                    settings.internal_networks
                ))
            } else {
                Decision::allow(
                    "only destinations the plugin's manifest declares; steps outside the built-in set also need an administrator's grant",
                )
            }
        }
    }
}

/// Every row with its verdict.
pub fn verdicts(settings: &Settings) -> Vec<(&'static OutboundDestination, Decision)> {
    DESTINATIONS
        .iter()
        .map(|row| (row, verdict(row, settings)))
        .collect()
}

const AIR_GAPPED_STEPS: &str = "air-gapped, and no internal networks are configured: step plugins reach nothing; `octo configure --internalNetworks=10.0.0.0/8,*.corp.example` lets them reach internal destinations, `--airGapped=false` lifts the air gap";

/// Who is asking, which decides the rules for a plugin's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginRole {
    /// A vendor plugin (update-check, telemetry, experiences, dynamic-extensions): allowed only while its
    /// switch is on, and only to the origin of its configured endpoint.
    Vendor(DestinationId),
    /// A step from the built-in set (embedded in octo, or installed from the signed steps feed): what its
    /// manifest declares is enough.
    BuiltInStep,
    /// Any other step: needs an administrator's grant for the destination.
    Step,
}

impl PluginRole {
    /// The table row the plugin's requests belong to.
    pub fn row(self) -> DestinationId {
        match self {
            PluginRole::Vendor(id) => id,
            PluginRole::BuiltInStep | PluginRole::Step => DestinationId::StepPlugins,
        }
    }
}

/// The decision for one request of a plugin whose manifest declares `destination` (the runtime checks
/// that first). `one_run` are grants for this run only (`octo run-step --allow-outbound`), which like
/// stored grants cannot override the air gap: while air-gapped a step reaches only destinations inside
/// the internal networks, and there only what it would reach without the air gap.
pub fn decide_plugin(
    settings: &Settings,
    grants: &Grants,
    one_run: &[DestinationPattern],
    role: PluginRole,
    plugin_id: &str,
    destination: &Destination,
) -> Decision {
    match role {
        PluginRole::Vendor(id) => {
            let row = id.row();
            let Gate::Switch(key) = row.gate else {
                return Decision::deny(format!("{} is not a vendor destination", row.id_str));
            };
            let switch_verdict = verdict(row, settings);
            if !switch_verdict.allowed {
                return switch_verdict;
            }
            let Endpoint::Setting(endpoint_key) = row.endpoint else {
                return Decision::deny(format!("{} has no configured endpoint", row.id_str));
            };
            let Some(url) = endpoint_url(row, settings) else {
                return Decision::deny(format!("{endpoint_key} is {NOT_CONFIGURED}"));
            };
            match Destination::from_url(url) {
                Ok(origin) if origin == *destination => {
                    Decision::allow(format!("{key} is on and {destination} is {endpoint_key}"))
                }
                Ok(origin) => Decision::deny(format!(
                    "plugin {plugin_id} may only reach {origin} ({endpoint_key}), not {destination}"
                )),
                Err(e) => Decision::deny(format!("{endpoint_key} is unusable: {e}")),
            }
        }
        PluginRole::BuiltInStep | PluginRole::Step if settings.air_gapped() => {
            let Some(network) = settings.internal_networks.matching(&destination.host) else {
                return Decision::deny(if settings.internal_networks.is_empty() {
                    AIR_GAPPED_STEPS.to_string()
                } else {
                    format!(
                        "air-gapped: {destination} is not inside the internal networks ({}); `octo configure --internalNetworks=...` sets them",
                        settings.internal_networks
                    )
                });
            };
            let decision = decide_step(grants, one_run, role, plugin_id, destination);
            if decision.allowed {
                Decision::allow(format!(
                    "air-gapped, {destination} is inside the internal network {network}, and {}",
                    decision.reason
                ))
            } else {
                decision
            }
        }
        PluginRole::BuiltInStep | PluginRole::Step => {
            decide_step(grants, one_run, role, plugin_id, destination)
        }
    }
}

/// A step's request without the air gap: built-in steps what they declare, others what was granted.
fn decide_step(
    grants: &Grants,
    one_run: &[DestinationPattern],
    role: PluginRole,
    plugin_id: &str,
    destination: &Destination,
) -> Decision {
    match role {
        PluginRole::Vendor(_) => unreachable!("vendor plugins are decided by their row"),
        PluginRole::BuiltInStep => Decision::allow(format!(
            "built-in step {plugin_id} declares {destination} in its manifest"
        )),
        PluginRole::Step => {
            if let Some(pattern) = grants.matching(plugin_id, destination) {
                Decision::allow(format!(
                    "granted to {plugin_id} by an administrator ({pattern})"
                ))
            } else if let Some(pattern) = one_run.iter().find(|p| p.matches(destination)) {
                Decision::allow(format!("granted for this run (--allow-outbound {pattern})"))
            } else {
                Decision::deny(format!(
                    "{destination} is not granted to plugin {plugin_id}; an administrator can allow it with `octo plugins grant {plugin_id} {destination}`"
                ))
            }
        }
    }
}

/// The allow-list to send with a step that runs on a tentacle, whose sandbox enforces it with a plain
/// allow-list policy (the tentacle checks the manifest itself, so "any" below still means "any declared
/// destination"): any `http`/`https` origin for a built-in step; the stored grants plus the one-run
/// grants for other steps; a vendor plugin's configured origin while its switch is on and the server is
/// not air-gapped. While air-gapped, a step's list is cut to the internal networks that a pattern can
/// say (names, `*.domain`, single addresses; a wider address block is left out, so remote runs cannot
/// reach it). The result never allows more than [`decide_plugin`] would.
pub fn remote_grants(
    settings: &Settings,
    grants: &Grants,
    one_run: &[DestinationPattern],
    role: PluginRole,
    plugin_id: &str,
) -> Vec<DestinationPattern> {
    if let PluginRole::Vendor(id) = role {
        if !verdict(id.row(), settings).allowed {
            return Vec::new();
        }
        return endpoint_url(id.row(), settings)
            .and_then(|url| Destination::from_url(url).ok())
            .map(|origin| vec![DestinationPattern::exact(&origin)])
            .unwrap_or_default();
    }
    let open = step_grants(grants, one_run, role, plugin_id);
    if !settings.air_gapped() {
        return open;
    }
    let internal = internal_patterns(&settings.internal_networks);
    let mut list: Vec<DestinationPattern> = Vec::new();
    for p in &open {
        for q in &internal {
            if let Some(both) = p.intersect(q)
                && !list.contains(&both)
            {
                list.push(both);
            }
        }
    }
    list
}

/// A step's allow-list without the air gap.
fn step_grants(
    grants: &Grants,
    one_run: &[DestinationPattern],
    role: PluginRole,
    plugin_id: &str,
) -> Vec<DestinationPattern> {
    match role {
        PluginRole::Vendor(_) => Vec::new(),
        // Any declared HTTP(S) origin, plus the raw TCP destinations granted for its scripts (a
        // confined script reaches those only when an administrator granted them explicitly).
        PluginRole::BuiltInStep => ["http://*:*", "https://*:*"]
            .iter()
            .map(|p| DestinationPattern::parse(p).expect("valid pattern"))
            .chain(
                grants
                    .for_plugin(plugin_id)
                    .iter()
                    .chain(one_run)
                    .filter(|p| p.is_tcp())
                    .cloned(),
            )
            .collect(),
        PluginRole::Step => {
            let mut list: Vec<DestinationPattern> = grants.for_plugin(plugin_id).to_vec();
            for p in one_run {
                if !list.contains(p) {
                    list.push(p.clone());
                }
            }
            list
        }
    }
}

/// The internal networks as outbound patterns (`http`, `https` and `tcp`, any port), as far as a pattern can
/// say them: names, `*.domain` and single addresses; wider address blocks have no pattern.
pub fn internal_patterns(networks: &InternalNetworks) -> Vec<DestinationPattern> {
    let mut list = Vec::new();
    for network in networks.entries() {
        let host = match network {
            InternalNetwork::Name(name) => name.clone(),
            InternalNetwork::Subdomains(suffix) => format!("*.{suffix}"),
            InternalNetwork::Block {
                addr: std::net::IpAddr::V4(a),
                prefix: 32,
            } => a.to_string(),
            InternalNetwork::Block {
                addr: std::net::IpAddr::V6(a),
                prefix: 128,
            } => format!("[{a}]"),
            InternalNetwork::Block { .. } => continue,
        };
        for scheme in ["http", "https", "tcp"] {
            if let Ok(p) = DestinationPattern::parse(&format!("{scheme}://{host}:*")) {
                list.push(p);
            }
        }
    }
    list
}

#[cfg(test)]
mod tests;
