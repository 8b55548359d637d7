//! The Octo deployment agent. A tentacle holds its own certificate and a list of trusted server
//! thumbprints, accepts the server's connections (listening) and/or dials its servers (polling),
//! and serves the `octo-protocol` service on either: step runs in the plugin sandbox with the
//! grants the server sends, plugin components cached by digest, and file transfer confined to
//! its home.
//!
//! Home layout: `tentacle.toml` (settings), `certs/` (identity), `plugins/` (components by
//! digest), `work/<ticket>/` (each run's state and log), `files/` (file transfer area),
//! `cache/compiled/` (compiled code), `packages/` (package files by digest), `Applications/`
//! (deploy-package's deployments).
#![deny(missing_docs)]

pub mod agent;
pub mod download;
pub mod files;
pub mod home;
pub mod outbound;
pub mod packages;
pub mod plugins;
pub mod service;
pub mod settings;
pub mod steps;
mod steps_policy;
