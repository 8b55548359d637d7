//! Packages from the feeds an administrator configures: NuGet v3, OCI distribution registries and
//! plain HTTP(S). Used by the server (`octo feeds`, `octo packages`, acquisition `server`) and by the
//! tentacle (acquisition `target`), so it depends on nothing of either.
//!
//! Parsing is apart from I/O:
//! - [`feed`]: [`FeedKind`], [`FeedSpec`] (what `octo feeds add` stores). Pure.
//! - [`credentials`]: [`Credentials`], whose `Debug` redacts the password. Pure.
//! - [`id`]: [`PackageId`], checked per kind so that an id is never a path. Pure.
//! - [`version`]: NuGet versions (normalised, 4 parts allowed) and requirements. Pure.
//! - [`nuget`], [`oci`], [`http_feed`]: each protocol's documents, headers and URLs. Pure.
//! - [`download`]: [`PackageDownload`], "what to download", the plain data the server hands a tentacle.
//! - [`client`]: [`PackageClient`], the I/O, over octo-feed's [`octo_feed::FeedClient`] (its proxy
//!   connector, bounded retries, sha256-verified streaming to a temporary file).
//!
//! # The API for acquisition
//!
//! ```no_run
//! # async fn f(http: octo_feed::FeedClient, spec: octo_packages::FeedSpec) -> Result<(), octo_packages::PackageError> {
//! use octo_packages::{PackageClient, PackageDownload};
//! // On the server: resolve once.
//! let client = PackageClient::new(spec.clone(), http.clone())?;
//! let download: PackageDownload = client.resolve("Acme.Web", Some("[1.0,2.0)")).await?;
//! // `download` is serde data (no credentials): send it to a tentacle with the run, and the
//! // credentials (`spec.credentials`) separately, for that run only.
//! // On the tentacle (its own FeedClient, i.e. its own web request proxy):
//! let client = PackageClient::for_download(&download, spec.credentials.clone(), http)?;
//! for file in &download.files {
//!     let done = client
//!         .download_file(&download, file, std::path::Path::new("/tmp"), Some(1 << 30), &|_, _| {})
//!         .await?;
//!     // done.path is a verified temporary file (done.sha256, done.size): rename it into place.
//! }
//! # Ok(()) }
//! ```
//!
//! What each file's `sha256` is before the download: OCI layers — always (their digest); HTTP — when the
//! feed has a `.sha256` sidecar; NuGet — not known (the flat container publishes none), so the server
//! fills it in from its cache once it has downloaded the package, and a tentacle verifies against that.
//!
//! Every failure is a [`PackageError`]: one line naming the feed, the package and the [`Cause`].
#![deny(missing_docs)]

pub mod client;
pub mod credentials;
pub mod download;
pub mod error;
pub mod feed;
pub mod http_feed;
pub mod id;
pub mod nuget;
pub mod oci;
pub mod version;

pub use client::{FeedReport, PackageClient};
pub use credentials::Credentials;
pub use download::{PackageDownload, PackageFile};
pub use error::{Cause, PackageError};
pub use feed::{FeedKind, FeedSpec, check_feed_name};
pub use id::{InvalidId, PackageId};
pub use version::{Version, VersionReq};
