//! run-script: the built-in step that runs Bash script bodies, including community step templates
//! from the library, unchanged.
//!
//! The host passes the script as the `ScriptBody` argument and a library template's parameter
//! values as deployment variables. The step substitutes `#{...}` in the body
//! ([`substitute`]), writes the body and a bootstrap that defines the helper functions and the
//! variables ([`bootstrap`]) into the step's work directory, and runs `bash octo-bootstrap.sh`
//! through the `process` import. The host streams the output into the log and interprets the
//! helpers' `##octopus[...]` service messages.

pub mod bootstrap;
pub mod substitute;

#[cfg(test)]
mod library_tests;

use octo_plugin_sdk::prelude::*;
use octo_plugin_sdk::process::{Command, ProcessError};
use octo_plugin_sdk::variables;

use bootstrap::{BOOTSTRAP_FILE, SCRIPT_FILE};

/// Arguments that configure run-script itself rather than the script.
const OWN_PARAMETERS: [&str; 2] = ["ScriptBody", "Syntax"];

struct RunScript;

impl Step for RunScript {
    fn describe() -> Description {
        Description::new("Run a script")
            .param(
                Param::new("ScriptBody")
                    .label("Script body")
                    .help(
                        "The Bash script to run. #{Name} is replaced by the variable's value; the \
                         script can call get_octopusvariable, set_octopusvariable, fail_step, \
                         write_verbose, write_warning, write_highlight and new_octopusartifact.",
                    )
                    .required(),
            )
            .param(
                Param::new("Syntax")
                    .label("Syntax")
                    .help("The script's language. Only Bash is supported.")
                    .default("Bash"),
            )
    }

    fn run(args: Args) -> Result {
        let syntax: String = args.get_or("Syntax", "Bash".to_owned())?;
        if !syntax.trim().eq_ignore_ascii_case("bash") {
            bail!(
                "run-script only runs Bash scripts, but the step's Syntax is {syntax:?}; \
                 choose a Bash script or a step made for {syntax}"
            );
        }
        let body = args.required("ScriptBody")?;

        // Deployment variables, then any extra arguments (more specific, so they win).
        let deployment = variables::all();
        let mut pairs: Vec<(&str, &str)> = deployment
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        pairs.extend(args.iter().filter(|(n, _)| !OWN_PARAMETERS.contains(n)));
        let lookup = substitute::Variables::new(pairs.iter().copied());

        let script = bootstrap::script_body(body, &lookup);
        std::fs::write(SCRIPT_FILE, script)
            .context("could not write the script into the step's work directory")?;
        std::fs::write(BOOTSTRAP_FILE, bootstrap::bootstrap(pairs, SCRIPT_FILE))
            .context("could not write the script bootstrap into the step's work directory")?;

        let status = Command::new("bash").arg(BOOTSTRAP_FILE).status();

        // The bootstrap holds the variables, sensitive ones included: do not leave it behind.
        let _ = std::fs::remove_file(BOOTSTRAP_FILE);
        let _ = std::fs::remove_file(SCRIPT_FILE);

        match status {
            Ok(0) => Ok(()),
            Ok(code) => bail!("script exited with code {code}"),
            Err(ProcessError::SpawnFailed { reason, .. }) => bail!(
                "could not start bash: {reason} (is bash installed and on the PATH of the machine \
                 that runs the step?)"
            ),
            Err(ProcessError::Cancelled) => {
                bail!(
                    "the script was killed because the step was cancelled or ran past its deadline"
                )
            }
            Err(e) => Err(e.into()),
        }
    }
}

step!(
    RunScript,
    description = "Runs a Bash script body, including community step templates, with the Octopus helper functions",
    capabilities = ["process"],
);
