//! registry-mock: a real HTTP(S) server for Octo's tests and demo.
//!
//! - [`publish`]: turn a directory of components into a signed, content-addressed steps feed.
//! - [`mock`]: the routes, the recorded requests and telemetry, and the injectable faults — plain
//!   request-in, reply-out, testable without sockets.
//! - [`serve`]: the sockets: binding, optional TLS with a generated self-signed certificate, hyper, and
//!   carrying out replies that hang, are delayed or are cut short.

pub mod mock;
pub mod publish;
pub mod serve;
