//! Test fixture: `run` panics. Plugins are built with `panic = "abort"`, so the panic message
//! goes to stderr and the instance traps (`unreachable`).
use octo_plugin_sdk::prelude::*;

struct Trap;

impl Step for Trap {
    fn describe() -> Description {
        Description::new("Trap")
    }

    fn run(_args: Args) -> Result {
        panic!("fixture-trap: deliberate panic in run");
    }
}

step!(Trap, description = "Panics in run");
