//! One proxy module for `octo` and `tentacle`: the web request proxy (feeds, plugins' HTTP, scripts'
//! `HTTP_PROXY`/`HTTPS_PROXY`) and the tentacle's polling proxy are the same settings, changed by the
//! same flags and checked by the same rules.
//!
//! - [`ProxySettings`]: what is stored (`[webProxy]` in `octo.toml`; `[webProxy]` and `[pollingProxy]`
//!   in `tentacle.toml`), its validation, [`ProxySettings::describe`] (password masked) and
//!   [`ProxySettings::apply`] of the flags.
//! - [`ProxyArgs`]: `--proxyEnable`, `--useSystemProxy`, `--proxyType`, `--proxyHost`, `--proxyPort`,
//!   `--proxyUsername`, `--proxyPassword` (kebab-case aliases too), for a clap `#[command(flatten)]`.
//! - [`WebProxy`]: what a connection uses, a fixed proxy or the system proxy ([`system_proxy`]:
//!   `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as curl reads them, plus upper-case `HTTP_PROXY`);
//!   [`ProxySettings::resolve`] and [`ProxySettings::proxy_for`].
//! - [`feed_connector`]: the feed client's connections through that proxy (server and tentacle).
//!
//! The rules: HTTP proxies only (a SOCKS type or `socks*://` host is refused); credentials are given
//! with `--proxyUsername`/`--proxyPassword`, never inside `--proxyHost`; an enabled proxy needs a host
//! and a port (no default port); an IPv6 host is stored bare and shown in brackets.
#![deny(missing_docs)]

mod args;
mod connector;
mod resolve;
mod settings;

pub use args::ProxyArgs;
pub use connector::feed_connector;
pub use resolve::{WebProxy, system_proxy};
pub use settings::{
    MASKED, ProxySettings, ProxySettingsError, SOCKS_REFUSED, check_host, describe_fields,
    split_host,
};
