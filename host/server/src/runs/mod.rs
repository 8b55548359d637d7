//! Runs: `octo run-step` ([`run_step`]) with what it names ([`step_source`]), and packing and
//! inspecting components ([`pack`]); the package of a deploy-package run
//! ([`package`]).

pub mod pack;
pub mod package;
pub mod run_step;
pub mod step_source;
pub mod system_variables;
pub mod work_dirs;
