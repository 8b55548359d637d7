//! The outbound decision for a package feed, and its record in the audit file.
//!
//! Package feeds are the administrator's own configuration (the `package-feeds` row, gated by
//! configuration, not by a vendor switch). While the server is air-gapped a feed must lie inside the
//! internal networks (`octo_settings::networks`, the same matching as step plugins); the check is made
//! for the feed's origin before any request, and again for every connection the client opens (a
//! redirect or a token server elsewhere), refusing those outside.

use crate::error::{Error, Result};
use crate::outbound::audit::AuditLog;
use octo_feed::client::{BoxFuture, BoxedIo};
use octo_feed::{Connector, origin_of};
use octo_outbound::DestinationId;
use octo_outbound::audit::AuditRecord;
use octo_packages::FeedSpec;
use octo_settings::Settings;
use std::sync::Arc;
use std::time::SystemTime;

/// The component name in audit records.
pub const COMPONENT: &str = "octo:package-feeds";

/// The feed's origin and the proxy its connections use.
#[derive(Debug, Clone)]
pub struct FeedPass {
    /// `scheme://host:port`.
    pub origin: String,
    /// The web request proxy for it (`http://host:port`, no password), `None` when direct.
    pub proxy: Option<String>,
}

fn host_of(origin: &str) -> String {
    url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
        .unwrap_or_default()
}

/// The proxy a connection to `host` goes through, as the audit shows it.
fn proxy_label(settings: &Settings, https: bool, host: &str) -> Option<String> {
    let proxy = crate::proxy::web_proxy(settings).ok().flatten()?;
    proxy
        .proxy_for(https, host)
        .ok()
        .flatten()
        .map(|p| p.to_string())
}

/// Whether `host` may be reached now: always, unless air-gapped and outside the internal networks.
fn refusal(settings: &Settings, host: &str) -> Option<String> {
    if !settings.air_gapped() || settings.internal_networks.matching(host).is_some() {
        return None;
    }
    Some(format!(
        "air-gapped, and {host} is not in the internal networks ({}); add it with `octo configure --internalNetworks=…` or lift the air gap with `--airGapped=false`",
        settings.internal_networks
    ))
}

/// Decides and records one operation (`what`: `test`, `versions ID`, `download ID@VERSION`) on `feed`.
pub fn check(
    audit: &AuditLog,
    settings: &Settings,
    feed: &FeedSpec,
    what: &str,
) -> Result<FeedPass> {
    let url = feed.url.replace("{id}", "x").replace("{version}", "1");
    let origin = origin_of(&url).map_err(|e| err!(Invalid, "feed {}: {e}", feed.name))?;
    let host = host_of(&origin);
    let proxy = proxy_label(settings, origin.starts_with("https:"), &host);
    let denied = refusal(settings, &host);
    let reason = match &denied {
        Some(r) => format!("feed {} ({what}): {r}", feed.name),
        None => format!(
            "feed {} ({what}): the administrator's own feed; vendor switches do not apply",
            feed.name
        ),
    };
    audit.record(
        &AuditRecord::new(
            DestinationId::PackageFeeds,
            COMPONENT,
            &origin,
            denied.is_none(),
            &reason,
            SystemTime::now(),
        )
        .with_proxy(proxy.clone()),
    );
    match denied {
        Some(r) => Err(Error::Denied(format!(
            "feed {}: no request was made: {r}",
            feed.name
        ))),
        None => Ok(FeedPass { origin, proxy }),
    }
}

/// Wraps `inner` so that, while air-gapped, every connection outside the internal networks is refused
/// (and recorded) before it is opened.
pub fn air_gap_connector(
    inner: Arc<dyn Connector>,
    settings: &Settings,
    audit: AuditLog,
    feed: &str,
) -> Arc<dyn Connector> {
    Arc::new(Checked {
        inner,
        settings: settings.clone(),
        audit,
        feed: feed.to_string(),
    })
}

struct Checked {
    inner: Arc<dyn Connector>,
    settings: Settings,
    audit: AuditLog,
    feed: String,
}

impl Connector for Checked {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<BoxedIo>> {
        Box::pin(async move {
            if let Some(reason) = refusal(&self.settings, host) {
                self.audit.record(&AuditRecord::new(
                    DestinationId::PackageFeeds,
                    COMPONENT,
                    &format!("tcp://{host}:{port}"),
                    false,
                    &format!("feed {} (a connection it led to): {reason}", self.feed),
                    SystemTime::now(),
                ));
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("denied: {reason}"),
                ));
            }
            self.inner.connect(host, port).await
        })
    }
}
