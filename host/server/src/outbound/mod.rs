//! The outbound policy as the server applies it: the one [`gate`] every host-side outbound path asks
//! (jobs, the feed and library clients, the vendor commands), administrator grants on disk ([`grants`]),
//! the audit file of attempts ([`audit`]; in the store when shared, [`audit_store`]), the [`octo_runtime::OutboundPolicy`] the sandbox asks
//! ([`policy`]), and the `octo outbound` report ([`report`]).

pub mod audit;
pub mod audit_store;
pub mod gate;
pub mod grants;
pub mod policy;
pub mod report;
