//! Test fixture for output variables and log masking. `run`:
//!
//! - sets the output variable `Greeting` = `hello from fixture-outputs`;
//! - sets the sensitive output variable `Token` = `fixture-sensitive-output-value`;
//! - writes one line at each level: `trace line`, `verbose line`, `info line`, `warn line`,
//!   `error line`;
//! - logs `Secret is <value>` with the deployment variable `Secret` (or `Secret is <undefined>`),
//!   and `Token is fixture-sensitive-output-value`, so the host's masking can be checked for a
//!   sensitive variable and for a sensitive output set during the step.
use octo_plugin_sdk::log::{self, Level};
use octo_plugin_sdk::prelude::*;
use octo_plugin_sdk::variables;

struct Outputs;

/// The value of the sensitive output variable `Token`.
const TOKEN: &str = "fixture-sensitive-output-value";

impl Step for Outputs {
    fn describe() -> Description {
        Description::new("Outputs")
    }

    fn run(_args: Args) -> Result {
        set_output("Greeting", "hello from fixture-outputs");
        set_sensitive_output("Token", TOKEN);
        for (level, text) in [
            (Level::Trace, "trace line"),
            (Level::Verbose, "verbose line"),
            (Level::Info, "info line"),
            (Level::Warn, "warn line"),
            (Level::Error, "error line"),
        ] {
            log::write(level, text);
        }
        match variables::get("Secret") {
            Some(secret) => info!("Secret is {secret}"),
            None => info!("Secret is <undefined>"),
        }
        info!("Token is {TOKEN}");
        Ok(())
    }
}

step!(
    Outputs,
    description = "Sets output variables and logs at every level, including sensitive values"
);
