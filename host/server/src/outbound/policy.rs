//! The [`OutboundPolicy`] the server gives the sandbox: the settings, the outbound table and the
//! administrator's grants.
//!
//! The runtime has already checked the plugin's manifest; this adds the gate (a vendor plugin's own
//! switch and endpoint, none while air-gapped; while air-gapped, steps only inside the internal
//! networks) and, for steps outside the built-in set, the administrator's grant. See
//! [`octo_outbound::decide_plugin`].
//!
//! The decision is taken when the connection is made, against the settings of that moment: a policy
//! made with [`SettingsPolicy::live`] asks [`LiveSettings`] on every request, which reads the file
//! again when `octo configure` changed it, so a job that checked its gate and compiled its plugin
//! before `--airGapped=true` was saved still cannot send afterwards.

use crate::error::Result;
use octo_feed::Store;
use octo_manifest::DestinationPattern;
use octo_outbound::{ComponentIdentity, Grants, GrantsFile, PluginRole};
use octo_runtime::{OutboundPolicy, OutboundRequest, Verdict};
use octo_settings::{LiveSettings, Settings};
use std::sync::Arc;

/// Settings + table + grants, for one plugin run.
#[derive(Debug, Clone)]
pub struct SettingsPolicy {
    settings: Arc<LiveSettings>,
    grants: Grants,
    one_run: Vec<DestinationPattern>,
    role: PluginRole,
    /// Every grant and the component being run, to say so when a grant exists for another build.
    other_builds: Option<Arc<(GrantsFile, ComponentIdentity)>>,
}

impl SettingsPolicy {
    /// From values that never change.
    pub fn new(
        settings: Settings,
        grants: Grants,
        one_run: Vec<DestinationPattern>,
        role: PluginRole,
    ) -> Self {
        Self::live(
            Arc::new(LiveSettings::fixed(settings)),
            grants,
            one_run,
            role,
        )
    }

    /// Asking `settings` at every request (the settings file of the moment).
    pub fn live(
        settings: Arc<LiveSettings>,
        grants: Grants,
        one_run: Vec<DestinationPattern>,
        role: PluginRole,
    ) -> Self {
        SettingsPolicy {
            settings,
            grants,
            one_run,
            role,
            other_builds: None,
        }
    }

    /// A step run's policy: the grants of `file` bound to `component` (and no others), the one-run
    /// grants, asking `settings` at every request. A denial names a grant held by another build.
    pub fn for_component(
        settings: Arc<LiveSettings>,
        file: &GrantsFile,
        component: ComponentIdentity,
        one_run: Vec<DestinationPattern>,
        role: PluginRole,
    ) -> Self {
        SettingsPolicy {
            other_builds: Some(Arc::new((file.clone(), component.clone()))),
            ..Self::live(settings, file.for_component(&component), one_run, role)
        }
    }
}

/// The allow-list a step run on tentacles carries: computed here, from the settings and grants, and
/// enforced there by the tentacle's sandbox. Air-gapped means an empty list.
pub fn remote_grants(
    settings: &Settings,
    grants: &GrantsFile,
    store: Option<&Store>,
    bytes: &[u8],
    one_run: &[DestinationPattern],
) -> Result<Vec<DestinationPattern>> {
    let manifest = octo_manifest::read_manifest(bytes)?;
    let role = step_role(store, &manifest.id, bytes);
    let component = super::grants::component(store, &manifest.id, bytes);
    Ok(octo_outbound::remote_grants(
        settings,
        &grants.for_component(&component),
        one_run,
        role,
        &manifest.id,
    ))
}

impl SettingsPolicy {
    /// The outbound table row this run's requests belong to.
    pub fn row(&self) -> octo_outbound::DestinationId {
        self.role.row()
    }

    /// The decision with its reason (the runtime's [`Verdict::Allow`] carries none; the audit wants it).
    pub fn explain(&self, request: &OutboundRequest) -> octo_outbound::Decision {
        let settings = match self.settings.current() {
            Ok(s) => s,
            Err(e) => {
                return octo_outbound::Decision {
                    allowed: false,
                    reason: format!("the settings cannot be read now ({e}), so nothing is let out"),
                };
            }
        };
        // A step's scripts are decided as the step's plugin is (its grants; only inside the internal
        // networks while air-gapped), as a tentacle decides them with the allow-list it is sent.
        let mut decision = octo_outbound::decide_plugin(
            &settings,
            &self.grants,
            &self.one_run,
            self.role,
            &request.plugin_id,
            &request.destination,
        );
        if !decision.allowed
            && self.role == PluginRole::Step
            && let Some(both) = &self.other_builds
            && let Some(entry) = both.0.held_by_another_build(&both.1, &request.destination)
        {
            decision.reason = format!(
                "{} (a grant of {} for it is bound to {}, and this component is sha256 {}: grants do not follow an id to another build)",
                decision.reason, entry.plugin, entry.binding, both.1.sha256
            );
        }
        decision
    }
}

impl OutboundPolicy for SettingsPolicy {
    fn check(&self, request: &OutboundRequest) -> Verdict {
        let decision = self.explain(request);
        if decision.allowed {
            Verdict::Allow
        } else {
            Verdict::Deny(decision.reason)
        }
    }

    /// While air-gapped, a granted name's address must lie inside the internal networks too (the
    /// name's own check matched it against names only).
    fn check_resolved(&self, request: &OutboundRequest, address: std::net::IpAddr) -> Verdict {
        let settings = match self.settings.current() {
            Ok(s) => s,
            Err(e) => {
                return Verdict::Deny(format!(
                    "the settings cannot be read now ({e}), so nothing is let out"
                ));
            }
        };
        if !settings.air_gapped() {
            return Verdict::Allow;
        }
        match settings
            .internal_networks
            .check_resolved(&request.destination.host, address)
        {
            Ok(()) => Verdict::Allow,
            Err(reason) => Verdict::Deny(reason),
        }
    }
}

/// The role of a step component: built-in when its bytes are exactly an embedded built-in step's, or
/// exactly what the plugin store installed under its id (everything in the store came through a signed
/// feed index or bundle); any other component is a custom step and needs grants.
pub fn step_role(store: Option<&Store>, plugin_id: &str, bytes: &[u8]) -> PluginRole {
    step_role_of_digest(store, plugin_id, &octo_fsutil::sha256_hex(bytes))
}

/// [`step_role`] of a component whose sha256 (hex) is `sha`, e.g. the one the runtime computed when
/// it loaded the component (the embedded built-ins' digests are computed when Octo is built).
pub fn step_role_of_digest(store: Option<&Store>, plugin_id: &str, sha: &str) -> PluginRole {
    let embedded = octo_builtin_plugins::STEPS
        .iter()
        .any(|p| p.id == plugin_id && p.sha256 == sha);
    if embedded {
        return PluginRole::BuiltInStep;
    }
    let installed = store
        .and_then(|store| store.get(plugin_id).ok().flatten())
        // Only what came through the signed feed (or a signed bundle) counts: `install --file` puts
        // unsigned local components in the store too, and those need an administrator's grant.
        .is_some_and(|lock| lock.sha256 == sha && lock.source.is_signed());
    if installed {
        PluginRole::BuiltInStep
    } else {
        PluginRole::Step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use octo_manifest::Destination;

    fn request(plugin: &str, url: &str) -> OutboundRequest {
        OutboundRequest {
            plugin_id: plugin.into(),
            destination: Destination::from_url(url).unwrap(),
            source: octo_runtime::RequestSource::Plugin,
        }
    }

    #[test]
    fn verdicts_follow_the_decision() {
        let mut grants = Grants::default();
        grants
            .grant(
                "custom",
                DestinationPattern::parse("https://ok.example").unwrap(),
            )
            .unwrap();
        let p = SettingsPolicy::new(
            Settings::default(),
            grants.clone(),
            vec![],
            PluginRole::Step,
        );
        assert_eq!(
            p.check(&request("custom", "https://ok.example/x")),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(&request("custom", "https://no.example/x")),
            Verdict::Deny(r) if r.contains("octo plugins grant custom https://no.example:443")
        ));
        // A script of the same step: decided as the step is (as a tentacle does with its allow-list).
        let script = OutboundRequest {
            source: octo_runtime::RequestSource::Script,
            ..request("custom", "https://no.example/x")
        };
        assert!(matches!(p.check(&script), Verdict::Deny(_)));
        let granted_script = OutboundRequest {
            source: octo_runtime::RequestSource::Script,
            ..request("custom", "https://ok.example/x")
        };
        assert_eq!(p.check(&granted_script), Verdict::Allow);
        let mut gapped = Settings::default();
        gapped.set_air_gapped(true);
        let p = SettingsPolicy::new(gapped, grants, vec![], PluginRole::Step);
        assert!(matches!(
            p.check(&request("custom", "https://ok.example/x")),
            Verdict::Deny(r) if r.starts_with("air-gapped")
        ));
        assert!(matches!(p.check(&script), Verdict::Deny(_)));
    }

    #[test]
    fn a_live_policy_decides_with_the_settings_of_the_moment() {
        let dir = tempfile::tempdir().unwrap();
        let path = Settings::path_in(dir.path());
        let url = "http://127.0.0.1:9/api/update";
        Settings {
            update_url: Some(url.into()),
            ..Settings::default()
        }
        .save(&path)
        .unwrap();
        // Made (and, in a job, the plugin compiled) before the air gap is switched on.
        let p = SettingsPolicy::live(
            Arc::new(LiveSettings::follow(&path).unwrap()),
            Grants::default(),
            vec![],
            PluginRole::Vendor(octo_outbound::DestinationId::UpdateCheck),
        );
        assert_eq!(p.check(&request("update-check", url)), Verdict::Allow);
        Settings::update(&path, |s| {
            s.set_air_gapped(true);
            Ok(())
        })
        .unwrap();
        assert!(matches!(
            p.check(&request("update-check", url)),
            Verdict::Deny(r) if r.starts_with("air-gapped")
        ));
    }

    #[test]
    fn embedded_built_ins_are_built_in_and_look_alikes_are_not() {
        let hc = octo_builtin_plugins::HTTP_HEALTH_CHECK;
        assert_eq!(step_role(None, hc.id, hc.bytes), PluginRole::BuiltInStep);
        // Same id, other bytes: a custom step.
        assert_eq!(
            step_role(None, hc.id, b"not the built-in"),
            PluginRole::Step
        );
        // Built-in bytes under another id: also not trusted by id.
        assert_eq!(step_role(None, "other", hc.bytes), PluginRole::Step);
    }
}
