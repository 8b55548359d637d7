//! `tentacle outbound`: every connection this tentacle opens by itself — the polling connection to
//! each server it polls (when configured), through the polling proxy if one is set — and, as a row of
//! its own, its steps' scripts: their HTTP(S) leaves through each step's egress proxy (then the web
//! request proxy, if set), decided by the allow-list the server sent with the step, and confined
//! scripts reach only that proxy and the granted `tcp://` destinations. A step's plugin requests are
//! decided by the same allow-list (`octo outbound` shows the server's side); a listening tentacle
//! only accepts connections.

use crate::settings::Settings;
use serde::Serialize;

/// One kind of outbound traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundRow {
    /// `polling` or `step-scripts`.
    pub kind: &'static str,
    /// Why it exists.
    pub purpose: &'static str,
    /// `https://HOST:PORT` of the server, or what decides a script's destinations.
    pub destination: String,
    /// The pinned thumbprint of the server (polling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// How many connections are kept open to it (polling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Direct, or which proxy (password masked).
    pub via: String,
}

/// What decides where a step's scripts may go.
const SCRIPT_DESTINATIONS: &str = "the allow-list the server sends with each step (its grants; only internal networks while air-gapped); confined: only the egress proxy and granted tcp://";

/// The rows for these settings: one per polled server (none when the tentacle only listens), then
/// the steps' scripts.
pub fn rows(settings: &Settings) -> Vec<OutboundRow> {
    settings
        .servers
        .iter()
        .map(|s| OutboundRow {
            kind: "polling",
            purpose: "polling connection to the server (mutual TLS, pinned thumbprint)",
            destination: s.address.clone(),
            thumbprint: Some(s.thumbprint.to_string()),
            connections: Some(settings.polling_connection_count),
            via: settings.polling_proxy.describe(),
        })
        .chain(std::iter::once(OutboundRow {
            kind: "step-scripts",
            purpose: "scripts the steps run: HTTP(S) through each step's audited egress proxy",
            destination: SCRIPT_DESTINATIONS.to_string(),
            thumbprint: None,
            connections: None,
            via: format!(
                "the step's egress proxy, then {}",
                settings.web_proxy.describe()
            ),
        }))
        .collect()
}

/// The report as text.
pub fn text(settings: &Settings) -> String {
    let all = rows(settings);
    let (rows, scripts): (Vec<_>, Vec<_>) = all.iter().partition(|r| r.kind == "polling");
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("This tentacle opens no outbound connection: it polls no server");
        if settings.listen {
            out.push_str(&format!(
                " (it listens on port {} for the server instead)",
                settings.port
            ));
        }
        out.push_str(".\n");
    }
    for r in &rows {
        out.push_str(&format!(
            "{}: {} x{} via {} — {} (thumbprint {})\n",
            r.kind,
            r.destination,
            r.connections.unwrap_or(1),
            r.via,
            r.purpose,
            r.thumbprint.as_deref().unwrap_or("")
        ));
    }
    for r in scripts {
        out.push_str(&format!(
            "{}: via {} — {}; destinations: {}\n",
            r.kind, r.via, r.purpose, r.destination
        ));
    }
    out.push_str(
        "Steps' own HTTP requests are limited to the allow-list the server sends with each step (see `octo outbound` on the server).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_polled_servers_are_outbound() {
        let mut s = Settings::default();
        // Only the scripts' row.
        assert_eq!(rows(&s).len(), 1);
        assert_eq!(rows(&s)[0].kind, "step-scripts");
        assert!(text(&s).contains("opens no outbound connection"));
        assert!(text(&s).contains("step-scripts: via the step's egress proxy"));
        let thumbprint = octo_comms::identity::Thumbprint::of_der(b"server");
        s.poll_server("https://octo.example.com:10943", thumbprint)
            .unwrap();
        let rows = rows(&s);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].destination, "https://octo.example.com:10943");
        assert_eq!(rows[0].via, "disabled (direct connections)");
    }
}
