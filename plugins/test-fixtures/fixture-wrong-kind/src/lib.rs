//! Test fixture: exports the `step` world, but its manifest says `"kind":"telemetry"`. The host
//! must refuse it.
use octo_plugin_sdk::prelude::*;

struct WrongKind;

impl Step for WrongKind {
    fn describe() -> Description {
        Description::new("Wrong kind")
    }

    fn run(_args: Args) -> Result {
        Ok(())
    }
}

octo_plugin_sdk::manifest!(
    kind = "telemetry",
    description = "A step that claims to be a telemetry plugin"
);
octo_plugin_sdk::export_step!(WrongKind);
