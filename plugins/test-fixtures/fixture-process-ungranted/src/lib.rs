//! Test fixture: calls the `process` import without declaring the `process` capability. Fails
//! with the error's text; if the host wrongly runs the command, fails with a message starting
//! "UNEXPECTED".
use octo_plugin_sdk::prelude::*;
use octo_plugin_sdk::process::Command;

struct ProcessUngranted;

impl Step for ProcessUngranted {
    fn describe() -> Description {
        Description::new("Process (not granted)")
    }

    fn run(_args: Args) -> Result {
        match Command::new("true").status() {
            Ok(code) => bail!(
                "UNEXPECTED: the host ran `true` (exit code {code}) although the manifest declares no capabilities"
            ),
            Err(e) => Err(e.into()),
        }
    }
}

step!(
    ProcessUngranted,
    description = "Runs a process without declaring the capability"
);
