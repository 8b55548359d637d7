//! The outbound policy of a step run on this tentacle: the allow-list the server sent with the step
//! and, while the server is air-gapped, its internal networks, inside which the addresses a granted
//! `tcp://NAME:PORT` resolves to here must lie. That last check is the server's own
//! ([`InternalNetworks::check_resolved`]), so a name is held to the same rule wherever its script runs.

use octo_manifest::DestinationPattern;
use octo_runtime::{AllowList, OutboundPolicy, OutboundRequest, Verdict};
use octo_settings::{InternalNetwork, InternalNetworks};

/// The allow-list, plus the air gap's check of resolved addresses when the server sent its networks.
pub(crate) struct RemotePolicy {
    allow: AllowList,
    /// `Some` while the server is air-gapped.
    air_gap: Option<InternalNetworks>,
}

impl RemotePolicy {
    /// From a start request's `grants` (parsed) and `internalNetworks`; `Err` names an entry that is
    /// not a network.
    pub(crate) fn new(
        grants: Vec<DestinationPattern>,
        internal_networks: Option<&[String]>,
    ) -> Result<Self, String> {
        let air_gap = internal_networks
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e.parse::<InternalNetwork>())
                    .collect::<Result<Vec<_>, _>>()
                    .map(InternalNetworks::new)
            })
            .transpose()
            .map_err(|e| format!("invalid internal network: {e}"))?;
        Ok(RemotePolicy {
            allow: AllowList::new(grants),
            air_gap,
        })
    }
}

impl OutboundPolicy for RemotePolicy {
    fn check(&self, request: &OutboundRequest) -> Verdict {
        self.allow.check(request)
    }

    fn check_resolved(&self, request: &OutboundRequest, address: std::net::IpAddr) -> Verdict {
        let Some(networks) = &self.air_gap else {
            return Verdict::Allow;
        };
        match networks.check_resolved(&request.destination.host, address) {
            Ok(()) => Verdict::Allow,
            Err(reason) => Verdict::Deny(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> OutboundRequest {
        OutboundRequest {
            plugin_id: "run-script".into(),
            destination: DestinationPattern::parse("tcp://db.internal:5432")
                .unwrap()
                .exact_destination()
                .unwrap(),
            source: octo_runtime::RequestSource::Script,
        }
    }

    #[test]
    fn resolved_addresses_are_checked_only_while_the_server_is_air_gapped() {
        let grants = || vec![DestinationPattern::parse("tcp://db.internal:5432").unwrap()];
        let outside = "203.0.113.7".parse().unwrap();
        let open = RemotePolicy::new(grants(), None).unwrap();
        assert_eq!(open.check(&request()), Verdict::Allow);
        assert_eq!(open.check_resolved(&request(), outside), Verdict::Allow);

        let networks = ["db.internal".to_string(), "10.0.0.0/8".to_string()];
        let gapped = RemotePolicy::new(grants(), Some(&networks)).unwrap();
        assert_eq!(gapped.check(&request()), Verdict::Allow);
        assert_eq!(
            gapped.check_resolved(&request(), "10.1.2.3".parse().unwrap()),
            Verdict::Allow
        );
        assert!(matches!(
            gapped.check_resolved(&request(), outside),
            Verdict::Deny(r) if r.contains("db.internal resolved to 203.0.113.7, which is not inside")
        ));
        // Air-gapped with no networks: no address is inside.
        let none = RemotePolicy::new(grants(), Some(&[])).unwrap();
        assert!(matches!(
            none.check_resolved(&request(), "10.1.2.3".parse().unwrap()),
            Verdict::Deny(_)
        ));
        let bad = RemotePolicy::new(grants(), Some(&["10.0.0.1/8".to_string()]));
        assert!(bad.is_err_and(|e| e.contains("did you mean 10.0.0.0/8")));
    }
}
