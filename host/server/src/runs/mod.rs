//! Runs: `octo run-step` ([`run_step`]) with what it names ([`step_source`]), and packing and
//! inspecting components ([`pack`]).

pub mod pack;
pub mod run_step;
pub mod step_source;
