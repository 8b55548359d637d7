//! Vendor plugins: the `update-check`, `telemetry`, `experiences` and `dynamic-extensions` worlds.
//!
//! They run in the same sandbox as steps — a fresh store per call, no environment, no sockets, no
//! filesystem at all, the deadline, the memory limit — and reach the network only through `wasi:http`,
//! past the same [`OutboundGate`](crate::outbound): the manifest must declare `{{endpoint}}` (resolved
//! from the endpoint the host passes, so the plugin can reach that origin and nothing else), and the
//! [`OutboundPolicy`](crate::OutboundPolicy) has the last word (the server's asks the vendor switch and
//! the configured endpoint).

use crate::Runtime;
use crate::engine::{LoadError, one_line};
use crate::outbound::OutboundAttempt;
use crate::request::VendorRequest;
use crate::state::StepState;
use crate::store::{self, classify_message, trap_text};
use crate::vocabulary::StepFailure;
use octo_manifest::{DestinationPattern, Manifest, PluginKind};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Store;

/// The manifest parameter a vendor plugin's `outbound` entry names: `"{{endpoint}}"`.
pub const ENDPOINT_PARAMETER: &str = "endpoint";

macro_rules! vendor_world {
    ($module:ident, $world:literal) => {
        #[allow(missing_docs)]
        pub(crate) mod $module {
            wasmtime::component::bindgen!({
                path: "../../wit",
                world: $world,
                exports: { default: async },
                require_store_data_send: true,
                with: {
                    "octo:plugin/log": crate::bindings::octo::plugin::log,
                    "wasi:io": wasmtime_wasi::p2::bindings::io,
                    "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
                    "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                },
            });
        }
    };
}

vendor_world!(update_check, "octo:plugin/update-check");
vendor_world!(telemetry, "octo:plugin/telemetry");
vendor_world!(experiences, "octo:plugin/experiences");
vendor_world!(dynamic_extensions, "octo:plugin/dynamic-extensions");

/// What the update check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateInfo {
    /// The newest released version.
    pub latest_version: String,
    /// Release notes or download, if the endpoint said.
    pub url: Option<String>,
}

/// One anonymous count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// What is counted (`targets`, `installedPlugins`, ...).
    pub name: String,
    /// How many.
    pub value: u64,
}

/// What the telemetry plugin sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryReport {
    /// The installation id.
    pub installation_id: String,
    /// The Octo version.
    pub version: String,
    /// Anonymous counts.
    pub metrics: Vec<Metric>,
}

/// One in-app message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Stable id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Link.
    pub url: Option<String>,
}

/// A document as received, with its detached signature (not verified here: the host does that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDocument {
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// Base64 ed25519 signature over `body`.
    pub signature: String,
}

/// The result of one vendor call and every outbound attempt it made.
#[derive(Debug, Clone)]
pub struct VendorOutcome<T> {
    /// The plugin's answer, or why there is none.
    pub result: Result<T, StepFailure>,
    /// Every outbound request attempted, allowed or denied.
    pub outbound: Vec<OutboundAttempt>,
}

#[derive(Clone)]
enum Pre {
    UpdateCheck(update_check::UpdateCheckPre<StepState>),
    Telemetry(telemetry::TelemetryPre<StepState>),
    Experiences(experiences::ExperiencesPre<StepState>),
    DynamicExtensions(dynamic_extensions::DynamicExtensionsPre<StepState>),
}

struct Inner {
    manifest: Manifest,
    digest: String,
    pre: Pre,
}

/// A loaded vendor plugin. Cheap to clone; each call gets a fresh instance.
#[derive(Clone)]
pub struct VendorPlugin(Arc<Inner>);

impl Runtime {
    /// Loads a vendor plugin of `kind`: manifest, kind and API checks, compile (or cached),
    /// pre-instantiate, and a check that it exports its world's function.
    pub fn load_vendor(&self, bytes: &[u8], kind: PluginKind) -> Result<VendorPlugin, LoadError> {
        let manifest = octo_manifest::read_manifest_within(bytes, &self.config.limits.component())?;
        manifest.check_kind(kind)?;
        manifest.check_api_version()?;
        let digest = crate::sha256_hex(bytes);
        let component = self.compile_component(&manifest, bytes, &digest)?;
        let world_error = |e: wasmtime::Error| LoadError::World {
            id: manifest.id.clone(),
            kind,
            reason: one_line(&e),
        };
        let pre = self
            .step_linker()
            .instantiate_pre(&component)
            .map_err(world_error)?;
        let pre = match kind {
            PluginKind::UpdateCheck => {
                Pre::UpdateCheck(update_check::UpdateCheckPre::new(pre).map_err(world_error)?)
            }
            PluginKind::Telemetry => {
                Pre::Telemetry(telemetry::TelemetryPre::new(pre).map_err(world_error)?)
            }
            PluginKind::Experiences => {
                Pre::Experiences(experiences::ExperiencesPre::new(pre).map_err(world_error)?)
            }
            PluginKind::DynamicExtensions => Pre::DynamicExtensions(
                dynamic_extensions::DynamicExtensionsPre::new(pre).map_err(world_error)?,
            ),
            PluginKind::Step => {
                return Err(world_error(wasmtime::Error::msg(
                    "a step is not a vendor plugin; load it with load_step",
                )));
            }
        };
        Ok(VendorPlugin(Arc::new(Inner {
            manifest,
            digest,
            pre,
        })))
    }
}

impl VendorPlugin {
    /// The component's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.0.manifest
    }

    /// Hex sha256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.0.digest
    }

    /// `update-check`: asks `endpoint` for the latest version.
    pub async fn check(
        &self,
        runtime: &Runtime,
        request: VendorRequest,
        endpoint: &str,
        current_version: &str,
        installation_id: &str,
    ) -> VendorOutcome<UpdateInfo> {
        let Pre::UpdateCheck(pre) = &self.0.pre else {
            return self.wrong_world("update-check");
        };
        let arg = update_check::UpdateRequest {
            endpoint: endpoint.to_string(),
            current_version: current_version.to_string(),
            installation_id: installation_id.to_string(),
        };
        self.call(runtime, request, endpoint, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            Ok(instance
                .call_check(&mut *store, &arg)
                .await?
                .map(|i| UpdateInfo {
                    latest_version: i.latest_version,
                    url: i.url,
                }))
        })
        .await
    }

    /// `telemetry`: sends `report` to `endpoint`.
    pub async fn send(
        &self,
        runtime: &Runtime,
        request: VendorRequest,
        endpoint: &str,
        report: &TelemetryReport,
    ) -> VendorOutcome<()> {
        let Pre::Telemetry(pre) = &self.0.pre else {
            return self.wrong_world("telemetry");
        };
        let arg = telemetry::Report {
            installation_id: report.installation_id.clone(),
            version: report.version.clone(),
            metrics: report
                .metrics
                .iter()
                .map(|m| telemetry::Metric {
                    name: m.name.clone(),
                    value: m.value,
                })
                .collect(),
        };
        self.call(runtime, request, endpoint, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_send(&mut *store, endpoint, &arg).await
        })
        .await
    }

    /// `experiences`: fetches in-app messages from `endpoint`.
    pub async fn fetch_messages(
        &self,
        runtime: &Runtime,
        request: VendorRequest,
        endpoint: &str,
        version: &str,
    ) -> VendorOutcome<Vec<Message>> {
        let Pre::Experiences(pre) = &self.0.pre else {
            return self.wrong_world("experiences");
        };
        self.call(runtime, request, endpoint, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            Ok(instance
                .call_fetch(&mut *store, endpoint, version)
                .await?
                .map(|list| {
                    list.into_iter()
                        .map(|m| Message {
                            id: m.id,
                            title: m.title,
                            body: m.body,
                            url: m.url,
                        })
                        .collect()
                }))
        })
        .await
    }

    /// `dynamic-extensions`: fetches the signed document from `endpoint` (unverified: the caller
    /// verifies the signature against its pinned key before using the body).
    pub async fn fetch_signed(
        &self,
        runtime: &Runtime,
        request: VendorRequest,
        endpoint: &str,
        version: &str,
    ) -> VendorOutcome<SignedDocument> {
        let Pre::DynamicExtensions(pre) = &self.0.pre else {
            return self.wrong_world("dynamic-extensions");
        };
        self.call(runtime, request, endpoint, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            Ok(instance
                .call_fetch(&mut *store, endpoint, version)
                .await?
                .map(|d| SignedDocument {
                    body: d.body,
                    signature: d.signature,
                }))
        })
        .await
    }

    fn wrong_world<T>(&self, world: &str) -> VendorOutcome<T> {
        VendorOutcome {
            result: Err(StepFailure::Host(format!(
                "plugin {} is a {} plugin, not {world}",
                self.0.manifest.id, self.0.manifest.kind
            ))),
            outbound: Vec::new(),
        }
    }

    /// The manifest's outbound entries with `{{endpoint}}` resolved: the only origins the plugin may try.
    fn declared(&self, endpoint: &str) -> Vec<DestinationPattern> {
        let lookup = |name: &str| (name == ENDPOINT_PARAMETER).then(|| endpoint.to_string());
        self.0
            .manifest
            .outbound
            .iter()
            .filter_map(|entry| DestinationPattern::resolve(entry, lookup).ok())
            .collect()
    }

    async fn call<T>(
        &self,
        runtime: &Runtime,
        request: VendorRequest,
        endpoint: &str,
        f: impl AsyncFnOnce(&mut Store<StepState>) -> wasmtime::Result<Result<T, String>>,
    ) -> VendorOutcome<T> {
        let deadline = store::vendor_deadline(&request);
        let started = Instant::now();
        let declared = self.declared(endpoint);
        let (mut store, audit) = store::for_vendor(runtime, &self.0.manifest, &request, declared);
        let result = tokio::time::timeout(deadline, f(&mut store)).await;
        let result = match result {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(message))) => Err(StepFailure::Failed(message)),
            Ok(Err(_)) if started.elapsed() >= deadline => {
                Err(StepFailure::DeadlineExceeded(deadline))
            }
            Ok(Err(e)) => Err(classify_message(trap_text(&e, &store), &store, runtime)),
            Err(_) => Err(StepFailure::DeadlineExceeded(deadline)),
        };
        VendorOutcome {
            result,
            outbound: audit.attempts(),
        }
    }
}
