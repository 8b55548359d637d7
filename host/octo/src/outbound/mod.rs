//! The outbound policy as the server applies it: administrator grants on disk ([`grants`]), the audit
//! file of attempts ([`audit`]), the [`octo_runtime::OutboundPolicy`] built from the settings, the
//! table in `octo-outbound` and the grants ([`policy`]), and the `octo outbound` report ([`report`]).

pub mod audit;
pub mod grants;
pub mod policy;
pub mod report;
