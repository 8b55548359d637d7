//! The plugins a freshly built Octo carries, so steps run with no feed configured. A feed may later
//! install newer versions; these are the fallback.
#![deny(missing_docs)]

/// One embedded component.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinPlugin {
    /// Manifest id.
    pub id: &'static str,
    /// The component bytes (with their `octo:manifest` section).
    pub bytes: &'static [u8],
    /// The sha256 of `bytes` (hex), computed when Octo was built.
    pub sha256: &'static str,
}

/// The run-script step: Bash bodies and community step templates.
pub const RUN_SCRIPT: BuiltinPlugin = BuiltinPlugin {
    id: "run-script",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/run_script.wasm")),
    sha256: env!("OCTO_SHA256_RUN_SCRIPT"),
};

/// The http-health-check step.
pub const HTTP_HEALTH_CHECK: BuiltinPlugin = BuiltinPlugin {
    id: "http-health-check",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/http_health_check.wasm")),
    sha256: env!("OCTO_SHA256_HTTP_HEALTH_CHECK"),
};

/// The deploy-package step: extracts a package the host acquired and runs the Octopus conventions.
pub const DEPLOY_PACKAGE: BuiltinPlugin = BuiltinPlugin {
    id: "deploy-package",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/deploy_package.wasm")),
    sha256: env!("OCTO_SHA256_DEPLOY_PACKAGE"),
};

/// Every built-in step plugin.
pub const STEPS: &[BuiltinPlugin] = &[RUN_SCRIPT, HTTP_HEALTH_CHECK, DEPLOY_PACKAGE];

/// The update-check vendor plugin.
pub const UPDATE_CHECK: BuiltinPlugin = BuiltinPlugin {
    id: "update-check",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/update_check.wasm")),
    sha256: env!("OCTO_SHA256_UPDATE_CHECK"),
};

/// The telemetry vendor plugin.
pub const TELEMETRY: BuiltinPlugin = BuiltinPlugin {
    id: "telemetry",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/telemetry.wasm")),
    sha256: env!("OCTO_SHA256_TELEMETRY"),
};

/// The experiences (in-app messages) vendor plugin.
pub const EXPERIENCES: BuiltinPlugin = BuiltinPlugin {
    id: "experiences",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/experiences.wasm")),
    sha256: env!("OCTO_SHA256_EXPERIENCES"),
};

/// The dynamic-extensions vendor plugin.
pub const DYNAMIC_EXTENSIONS: BuiltinPlugin = BuiltinPlugin {
    id: "dynamic-extensions",
    bytes: include_bytes!(concat!(
        env!("OCTO_PLUGINS_DIR"),
        "/dynamic_extensions.wasm"
    )),
    sha256: env!("OCTO_SHA256_DYNAMIC_EXTENSIONS"),
};

/// Every built-in vendor plugin (one per vendor world). They run only while their settings switch is on.
pub const VENDOR: &[BuiltinPlugin] = &[UPDATE_CHECK, TELEMETRY, EXPERIENCES, DYNAMIC_EXTENSIONS];

/// The built-in vendor plugin with this id.
pub fn find_vendor(id: &str) -> Option<BuiltinPlugin> {
    VENDOR.iter().copied().find(|p| p.id == id)
}

/// The built-in plugin with this id.
pub fn find(id: &str) -> Option<BuiltinPlugin> {
    STEPS.iter().copied().find(|p| p.id == id)
}

/// Where the build left every component of `plugins/` (built-ins, examples, test fixtures), for tests,
/// benchmarks and the demo on the machine that built this crate.
pub const BUILD_DIR: &str = env!("OCTO_PLUGINS_DIR");

pub mod deploy_package;

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_of_the_embedded_bytes() {
        for p in super::STEPS.iter().chain(super::VENDOR) {
            assert_eq!(octo_fsutil::sha256_hex(p.bytes), p.sha256, "{}", p.id);
        }
    }
}
