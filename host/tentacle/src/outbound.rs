//! `tentacle outbound`: every connection this tentacle opens by itself. That is only the polling
//! connection to each server it polls (when configured), through the polling proxy if one is set.
//! Steps' own HTTP requests are not the tentacle's: each step carries the allow-list the server
//! computed (`octo outbound` shows that side), and a listening tentacle only accepts connections.

use crate::settings::Settings;
use serde::Serialize;

/// One destination the tentacle dials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundRow {
    /// `polling`.
    pub kind: &'static str,
    /// Why it exists.
    pub purpose: &'static str,
    /// `https://HOST:PORT` of the server.
    pub destination: String,
    /// The pinned thumbprint of the server.
    pub thumbprint: String,
    /// How many connections are kept open to it.
    pub connections: u32,
    /// Direct, or which proxy (password masked).
    pub via: String,
}

/// The rows for these settings: one per polled server; none when the tentacle only listens.
pub fn rows(settings: &Settings) -> Vec<OutboundRow> {
    settings
        .servers
        .iter()
        .map(|s| OutboundRow {
            kind: "polling",
            purpose: "polling connection to the server (mutual TLS, pinned thumbprint)",
            destination: s.address.clone(),
            thumbprint: s.thumbprint.to_string(),
            connections: settings.polling_connection_count,
            via: settings.polling_proxy.describe(),
        })
        .collect()
}

/// The report as text.
pub fn text(settings: &Settings) -> String {
    let rows = rows(settings);
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
            r.kind, r.destination, r.connections, r.via, r.purpose, r.thumbprint
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
        assert!(rows(&s).is_empty());
        assert!(text(&s).contains("opens no outbound connection"));
        let thumbprint = octo_comms::identity::Thumbprint::of_der(b"server");
        s.poll_server("https://octo.example.com:10943", thumbprint)
            .unwrap();
        let rows = rows(&s);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].destination, "https://octo.example.com:10943");
        assert_eq!(rows[0].via, "disabled (direct connections)");
    }
}
