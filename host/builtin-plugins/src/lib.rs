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
}

/// The run-script step: Bash bodies and community step templates.
pub const RUN_SCRIPT: BuiltinPlugin = BuiltinPlugin {
    id: "run-script",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/run_script.wasm")),
};

/// The http-health-check step.
pub const HTTP_HEALTH_CHECK: BuiltinPlugin = BuiltinPlugin {
    id: "http-health-check",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/http_health_check.wasm")),
};

/// The deploy-package step: extracts a package the host acquired and runs the Octopus conventions.
pub const DEPLOY_PACKAGE: BuiltinPlugin = BuiltinPlugin {
    id: "deploy-package",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/deploy_package.wasm")),
};

/// Every built-in step plugin.
pub const STEPS: &[BuiltinPlugin] = &[RUN_SCRIPT, HTTP_HEALTH_CHECK, DEPLOY_PACKAGE];

/// The update-check vendor plugin.
pub const UPDATE_CHECK: BuiltinPlugin = BuiltinPlugin {
    id: "update-check",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/update_check.wasm")),
};

/// The telemetry vendor plugin.
pub const TELEMETRY: BuiltinPlugin = BuiltinPlugin {
    id: "telemetry",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/telemetry.wasm")),
};

/// The experiences (in-app messages) vendor plugin.
pub const EXPERIENCES: BuiltinPlugin = BuiltinPlugin {
    id: "experiences",
    bytes: include_bytes!(concat!(env!("OCTO_PLUGINS_DIR"), "/experiences.wasm")),
};

/// The dynamic-extensions vendor plugin.
pub const DYNAMIC_EXTENSIONS: BuiltinPlugin = BuiltinPlugin {
    id: "dynamic-extensions",
    bytes: include_bytes!(concat!(
        env!("OCTO_PLUGINS_DIR"),
        "/dynamic_extensions.wasm"
    )),
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
