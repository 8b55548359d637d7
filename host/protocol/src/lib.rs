//! The service contract between the Octo server (`octo`) and its agents (`tentacle`), as plain
//! values: the call paths, the JSON request and answer bodies, the error codes with their HTTP
//! statuses, and the validation of the values that name things on the tentacle's disk (tickets,
//! digests, relative file paths). No I/O: the transport is `octo-comms`, the serving side is the
//! `tentacle` crate, the calling side is the server in `octo`.
//!
//! Every call is an HTTP/2 `POST` from the server (the h2 client in both the listening and the
//! polling direction) to the tentacle. Control calls carry JSON both ways; plugin and file
//! transfers carry raw bytes (`application/octet-stream`) one way and JSON the other. A refused
//! call answers a non-2xx status with an [`ErrorBody`] as JSON. The wire format is documented
//! as executable tests in `tests/wire.rs`.
#![deny(missing_docs)]

mod ids;
mod messages;
pub mod paths;
mod relative_path;

pub use ids::{Sha256Digest, Ticket, ValueError};
pub use messages::*;
pub use relative_path::{RelativePath, RelativePathError};

/// The protocol version this crate describes. A tentacle reports it in
/// [`Capabilities::protocol_version`]; the server refuses a tentacle with another major version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest JSON request body a tentacle reads (start-step carries arguments and variables).
pub const MAX_JSON_REQUEST: usize = 4 * 1024 * 1024;

/// Largest plugin component a tentacle accepts.
pub const MAX_PLUGIN_SIZE: u64 = 256 * 1024 * 1024;

/// Largest file a tentacle accepts in one upload.
pub const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024 * 1024;

/// Longest a status call waits for new log lines before answering with none (the long poll).
/// Kept well below the RPC call timeout.
pub const MAX_STATUS_WAIT_MS: u64 = 25_000;

/// Most log lines one status answer carries; the caller asks again for the rest.
pub const MAX_STATUS_LINES: usize = 5_000;

/// Hex SHA-256 of some bytes, lower case: how plugins and files are named and checked.
pub use octo_fsutil::sha256_hex;
