//! The system variables Octopus gives every script, filled by the host: what a template reads as
//! `#{Octopus.Action.Name}` or `get_octopusvariable "Octopus.Machine.Name"`.
//!
//! | variable | value |
//! |---|---|
//! | `Octopus.Action.Name`, `Octopus.Step.Name` | the template's name, or the plugin's id |
//! | `Octopus.Deployment.Id` | `Deployments-<unix milliseconds>` of this run |
//! | `Octopus.Environment.Name` | `--environment`, when given |
//! | `Octopus.Machine.Name` | the target's name; this machine's host name for a run here |
//!
//! A variable given on the command line with the same name wins.

/// `Octopus.Machine.Name`.
pub const MACHINE_NAME: &str = "Octopus.Machine.Name";

/// What the variables of one run are made from.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    /// The action (and step) name.
    pub action: &'a str,
    /// The environment, if the run names one.
    pub environment: Option<&'a str>,
    /// The machine, for a run here; a run on targets names each target itself.
    pub machine: Option<&'a str>,
    /// The run's deployment id.
    pub deployment_id: &'a str,
}

/// The system variables of a run, as (name, value).
pub fn system_variables(run: &RunContext<'_>) -> Vec<(String, String)> {
    let mut vars = vec![
        ("Octopus.Action.Name".to_owned(), run.action.to_owned()),
        ("Octopus.Step.Name".to_owned(), run.action.to_owned()),
        (
            "Octopus.Deployment.Id".to_owned(),
            run.deployment_id.to_owned(),
        ),
    ];
    if let Some(environment) = run.environment {
        vars.push((
            "Octopus.Environment.Name".to_owned(),
            environment.to_owned(),
        ));
    }
    if let Some(machine) = run.machine {
        vars.push((MACHINE_NAME.to_owned(), machine.to_owned()));
    }
    vars
}

/// A new deployment id: `Deployments-` and the Unix time in milliseconds.
pub fn new_deployment_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("Deployments-{millis}")
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_optional_values() {
        let run = RunContext {
            action: "Deploy web",
            environment: None,
            machine: None,
            deployment_id: "Deployments-1",
        };
        let names: Vec<String> = system_variables(&run).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Octopus.Action.Name",
                "Octopus.Step.Name",
                "Octopus.Deployment.Id"
            ]
        );
        let all = system_variables(&RunContext {
            environment: Some("Production"),
            machine: Some("web-1"),
            ..run
        });
        assert!(all.contains(&("Octopus.Environment.Name".into(), "Production".into())));
        assert!(all.contains(&(MACHINE_NAME.into(), "web-1".into())));
        assert!(new_deployment_id().starts_with("Deployments-"));
        assert!(!host_name().is_empty());
    }
}
