//! Test fixture: a step whose `run` does nothing at all (no logging), for measuring the cost of a
//! warm invocation.
use octo_plugin_sdk::prelude::*;

struct Trivial;

impl Step for Trivial {
    fn describe() -> Description {
        Description::new("Trivial")
    }

    fn run(_args: Args) -> Result {
        Ok(())
    }
}

step!(Trivial, description = "Does nothing");
