//! Test fixture: a valid step component with no `octo:manifest` custom section at all
//! (`export_step!` exports without embedding a manifest). The host must refuse it.
use octo_plugin_sdk::prelude::*;

struct NoManifest;

impl Step for NoManifest {
    fn describe() -> Description {
        Description::new("No manifest")
    }

    fn run(_args: Args) -> Result {
        Ok(())
    }
}

octo_plugin_sdk::export_step!(NoManifest);
