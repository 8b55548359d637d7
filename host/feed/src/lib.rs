//! The steps feed: where the host gets its plugins from, and where it keeps them.
//!
//! - [`index`] parses the feed index (`index.json`) and resolves semver requirements against it. Pure.
//! - [`signature`] signs and verifies the index with ed25519 (detached `index.json.sig`, key pinned in the
//!   host's settings). Pure.
//! - [`client`] fetches the index and its signature over HTTP(S) and streams blobs into temporary files,
//!   verifying size and sha256 on the way, with bounded retries and a pluggable TCP [`client::Connector`].
//! - [`source`] is where an installed plugin came from ([`Source`]: signed feed, signed bundle, local
//!   file, embedded); [`Source::is_signed`] is the one trust question. Pure.
//! - [`store`] is the content-addressed plugin store on disk (`blobs/sha256/<hex>` + `plugins.lock`),
//!   whose every write is atomic, so that a crash leaves the old state or the new.
//!
//! The usual flow: [`client::FeedClient::fetch_index`] → [`index::FeedIndex::resolve`] →
//! [`client::FeedClient::download_verified`] into [`store::Store::download_dir`] →
//! [`store::Store::install_blob`] → [`store::Store::set_entry`].
#![deny(missing_docs)]

pub mod client;
pub mod index;
pub mod signature;
pub mod source;
pub mod store;

pub use client::{
    Authorization, ClientConfig, ClientError, Connector, Downloaded, Expected, FeedClient,
    FetchedIndex, RequestOptions, origin_of,
};
pub use index::{Entry, FeedIndex, IndexError, Plugin};
pub use signature::{FeedPublicKey, FeedSigningKey, SignatureError};
pub use source::Source;
pub use store::{LockEntry, NewEntry, Store, StoreError};

/// Lowercase hex sha256 of `bytes`.
pub use octo_fsutil::sha256_hex;

/// Whether `s` looks like a sha256 digest as the feed writes it: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
