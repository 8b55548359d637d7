//! run-script: the built-in step that runs Bash and Python script bodies, including community step
//! templates from the library, unchanged.
//!
//! The host passes the script as the `ScriptBody` argument, its language as `Syntax`, and a library
//! template's parameter values as deployment variables. The step substitutes `#{...}` in the body
//! ([`substitute`]) and runs it through the `process` import:
//! - Bash: runs `bash -c '. /dev/stdin'` with a bootstrap on standard input that defines the
//!   variables and the helper functions and then sources the body as a here-document
//!   ([`bootstrap`]): no file in the work directory ever holds a value;
//! - Python: runs `python3 -u -c` with the helper functions ([`python`]) and hands the body and the
//!   variables over on standard input (no file).
//!
//! The host streams the output into the log and interprets the helpers' `##octopus[...]` service
//! messages.

pub mod bootstrap;
pub mod python;
pub mod substitute;

#[cfg(test)]
mod library_tests;

use octo_plugin_sdk::prelude::*;
use octo_plugin_sdk::process::{Command, ProcessError};
use octo_plugin_sdk::variables;

use bootstrap::BOOTSTRAP_FILE;

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
                        "The script to run. #{Name} is replaced by the variable's value. A Bash \
                         script can call get_octopusvariable, set_octopusvariable, fail_step, \
                         write_verbose, write_warning, write_highlight and new_octopusartifact; a \
                         Python script get_octopusvariable, set_octopusvariable, failstep, \
                         createartifact, printverbose, printhighlight, printwait, printwarning \
                         and the octopusvariables dictionary.",
                    )
                    .required(),
            )
            .param(
                Param::new("Syntax")
                    .label("Syntax")
                    .help("The script's language: Bash or Python (run with python3).")
                    .default("Bash"),
            )
    }

    fn run(args: Args) -> Result {
        let syntax: String = args.get_or("Syntax", "Bash".to_owned())?;
        let syntax = match syntax.trim().to_ascii_lowercase().as_str() {
            "bash" => Syntax::Bash,
            "python" => Syntax::Python,
            _ => bail!(
                "run-script runs Bash and Python scripts, but the step's Syntax is {syntax:?}; \
                 choose a Bash or Python script or a step made for {syntax}"
            ),
        };
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
        match syntax {
            Syntax::Bash => run_bash(&script, pairs),
            Syntax::Python => run_python(&script, pairs),
        }
    }
}

/// The languages run-script runs.
#[derive(Clone, Copy)]
enum Syntax {
    Bash,
    Python,
}

fn run_bash(script: &str, pairs: Vec<(&str, &str)>) -> Result {
    // Nothing that holds a value touches the disk: the variables, the helpers and the script come
    // on standard input (see `bootstrap_with_script`); `$0` stays the bootstrap's name.
    let status = Command::new("bash")
        .args(["-c", ". /dev/stdin", BOOTSTRAP_FILE])
        .stdin(bootstrap::bootstrap_with_script(pairs, script).into_bytes())
        .status();
    outcome("bash", status)
}

fn run_python(script: &str, pairs: Vec<(&str, &str)>) -> Result {
    let status = Command::new("python3")
        .args(["-u", "-c", python::BOOTSTRAP])
        .stdin(python::stdin(script, pairs))
        .status();
    outcome("python3", status)
}

/// The step's result from the script's exit status (a result message the script printed, e.g. by
/// `fail_step`, replaces the exit-code message: the host does that).
fn outcome(program: &str, status: std::result::Result<i32, ProcessError>) -> Result {
    match status {
        Ok(0) => Ok(()),
        Ok(code) => bail!("script exited with code {code}"),
        Err(ProcessError::SpawnFailed { reason, .. }) => bail!(
            "could not start {program}: {reason} (is {program} installed and on the PATH of the \
             machine that runs the step?)"
        ),
        Err(ProcessError::Cancelled) => {
            bail!("the script was killed because the step was cancelled or ran past its deadline")
        }
        Err(e) => Err(e.into()),
    }
}

step!(
    RunScript,
    description = "Runs a Bash or Python script body, including community step templates, with the Octopus helper functions",
    capabilities = ["process"],
);
