//! Test fixture: a step whose manifest says `"apiVersion":"9.0.0"`, which the host does not
//! support. The host must refuse it with a clear error.
use octo_plugin_sdk::prelude::*;

struct WrongApi;

impl Step for WrongApi {
    fn describe() -> Description {
        Description::new("Wrong API version")
    }

    fn run(_args: Args) -> Result {
        Ok(())
    }
}

step!(
    WrongApi,
    api_version = "9.0.0",
    description = "Built against an API version the host does not support"
);
