//! The small helpers every Octo crate needs once: whole-file writes that a crash cannot tear, private
//! (0700) directories, sha256 as hex, RFC 3339 UTC timestamps, and URLs with their password masked. One copy, so the rules (fsync of the
//! directory, mode 0600, precision of a timestamp) cannot drift apart between crates.
#![deny(missing_docs)]

mod atomic;
mod digest;
mod mask;
mod time;

pub use atomic::{
    create_private_dir, temp_path_beside, temp_prefix_for, write_atomic, write_atomic_with_mode,
};
pub use digest::{Sha256Hasher, sha256_hex};
pub use mask::mask_url_password;
pub use time::{rfc3339, rfc3339_millis};
