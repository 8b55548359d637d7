//! `octo-server`: the Octo server's services, one module each. The `octo` binary parses the command
//! line, calls one function of this crate per command and prints what it returns; nothing here parses
//! arguments or prints (streaming output goes through a [`Sink`] or a callback the caller passes).
//!
//! Layers (imports point down only; no module imports its caller):
//!
//! ```text
//! octo (binary)        clap, one call per command, printing
//!   server             the daemon: polling listener, pool, remote runs, admin socket, job scheduler
//!   tasks              tasks and their logs in the store (octo-store): list, show, follow, cancel
//!   runs               run-step (here or through the daemon), step sources, pack/inspect
//!   jobs               the scheduled jobs, one row each, each naming its outbound destination
//!   vendor · library · plugins     vendor plugins, community templates, the plugin lifecycle
//!   packages · package_feeds   package feeds (`octo feeds`), the package cache (`octo packages`)
//!   feeds              the steps feed and library clients (built only from the gate's pass)
//!   targets · proxy · configure    targets file, proxies, settings and `configure`
//!   outbound           the one gate, grants, audit file, sandbox policy, `octo outbound` report
//!   shared             what nodes share, as documents in the store (targets, …), imported once
//!   admin · store · home · error · sink · table · duration
//!     ▼
//! octo-runtime · octo-comms · octo-feed · octo-protocol · octo-outbound · octo-settings · octo-manifest
//! octo-step-template · octo-builtin-plugins · octo-fsutil
//! ```

#![deny(missing_docs)]

#[macro_use]
mod error;

pub mod admin;
pub mod configure;
pub mod duration;
pub mod feeds;
pub mod home;
pub mod jobs;
pub mod library;
pub mod nodes;
pub mod outbound;
pub mod package_feeds;
pub mod packages;
pub mod plugins;
pub mod proxy;
pub mod runs;
pub mod server;
pub mod shared;
pub mod sink;
pub mod store;
pub mod table;
pub mod targets;
pub mod tasks;
pub mod vendor;

pub use error::{Context, Error, Result, one_line};
pub use home::Home;
pub use sink::{Event, Sink};
