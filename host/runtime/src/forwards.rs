//! Which granted raw TCP destinations a confined command reaches, and where inside its network
//! namespace (pure: planning on values; `confine.rs` creates the sockets, `egress.rs` serves them).
//!
//! - An IP address (`tcp://10.1.2.3:5432`, `tcp://[fd00::5]:5432`) is reached at that very address:
//!   the host listens there inside the namespace and forwards to the same address on its network.
//! - A name (`tcp://db.internal:5432`) gets an address of its own on the namespace's loopback
//!   (`127.0.100.N`, same port), and the command's private `/etc/hosts` ([`hosts_file`]) maps the name
//!   onto it. The host resolves the name when a connection comes, after the policy allowed the name.

use octo_manifest::Destination;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The first address given to granted names (`127.0.100.1`, `.2`, ...).
const FIRST_NAME_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 100, 1);

/// Where a forwarded connection goes on the host's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// The granted address itself.
    Address(SocketAddr),
    /// The granted name, resolved by the host when a connection comes.
    Name {
        /// The name as granted (normalised: lowercase, no trailing dot).
        host: String,
        /// The granted port.
        port: u16,
    },
}

/// One granted destination, forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forward {
    /// What was granted (and is checked and audited at each connection).
    pub(crate) destination: Destination,
    /// Where the command connects, inside its namespace.
    pub(crate) listen: SocketAddr,
    /// Where the host sends the connection.
    pub(crate) upstream: Upstream,
}

/// The forwards of one command.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// At most the number asked for, in the order granted.
    pub(crate) forwards: Vec<Forward>,
    /// The names the command's `/etc/hosts` maps onto their forwards' addresses.
    pub(crate) names: Vec<(String, Ipv4Addr)>,
    /// Granted destinations that are not forwarded, with why.
    pub(crate) skipped: Vec<(Destination, &'static str)>,
}

/// Plans the forwards of `granted` (raw TCP destinations), at most `max`, none at `reserved` (where
/// the egress proxy listens). A destination granted twice is forwarded once.
pub(crate) fn plan(granted: &[Destination], reserved: SocketAddr, max: usize) -> Plan {
    let mut plan = Plan::default();
    let literal = |d: &Destination| {
        d.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
    };
    // Addresses taken by granted literals: a name's address must not be one of them.
    let taken: Vec<IpAddr> = granted.iter().filter_map(literal).collect();
    let mut next_name = FIRST_NAME_ADDRESS;
    for destination in granted {
        if plan.forwards.iter().any(|f| f.destination == *destination) {
            continue;
        }
        let (listen, upstream) = match literal(destination) {
            Some(ip) => {
                let addr = SocketAddr::new(ip, destination.port);
                (addr, Upstream::Address(addr))
            }
            None => {
                let ip = match plan.names.iter().find(|(n, _)| *n == destination.host) {
                    Some((_, ip)) => *ip,
                    None => {
                        while taken.contains(&IpAddr::V4(next_name)) {
                            next_name = successor(next_name);
                        }
                        next_name
                    }
                };
                let upstream = Upstream::Name {
                    host: destination.host.clone(),
                    port: destination.port,
                };
                (SocketAddr::new(IpAddr::V4(ip), destination.port), upstream)
            }
        };
        let problem = if listen == reserved {
            Some("that is where the egress proxy listens")
        } else if plan.forwards.len() >= max {
            Some("too many TCP destinations for one command")
        } else if plan.forwards.iter().any(|f| f.listen == listen) {
            Some("another granted destination is forwarded from that address")
        } else {
            None
        };
        if let Some(why) = problem {
            plan.skipped.push((destination.clone(), why));
            continue;
        }
        if let (Upstream::Name { host, .. }, SocketAddr::V4(v4)) = (&upstream, listen)
            && !plan.names.iter().any(|(n, _)| n == host)
        {
            plan.names.push((host.clone(), *v4.ip()));
            next_name = successor(next_name);
        }
        plan.forwards.push(Forward {
            destination: destination.clone(),
            listen,
            upstream,
        });
    }
    plan
}

fn successor(ip: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip).wrapping_add(1))
}

/// What a confined command's `/etc/hosts` says besides the granted names when the host's own file
/// cannot be read.
const LOCALHOST: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// The `/etc/hosts` a confined command sees: the granted `names` on their forwards' addresses, then
/// the host's own file (`original`) without those names, so everything else resolves as before; with
/// no `original` (unreadable), `localhost` without those names.
pub(crate) fn hosts_file(original: Option<&str>, names: &[(String, Ipv4Addr)]) -> String {
    let mut out = String::from("# octo: granted TCP destinations of a confined script\n");
    for (name, ip) in names {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    for line in original.unwrap_or(LOCALHOST).lines() {
        let (entry, comment) = match line.split_once('#') {
            Some((entry, comment)) => (entry, Some(comment)),
            None => (line, None),
        };
        let mut fields = entry.split_whitespace();
        let Some(address) = fields.next() else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let all: Vec<&str> = fields.collect();
        let kept: Vec<&str> = all
            .iter()
            .copied()
            .filter(|alias| {
                let alias = alias.strip_suffix('.').unwrap_or(alias);
                !names.iter().any(|(n, _)| alias.eq_ignore_ascii_case(n))
            })
            .collect();
        if kept.len() == all.len() {
            out.push_str(line);
        } else if kept.is_empty() {
            continue;
        } else {
            out.push_str(address);
            for alias in kept {
                out.push('\t');
                out.push_str(alias);
            }
            if let Some(comment) = comment {
                out.push_str(" #");
                out.push_str(comment);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Destination {
        octo_manifest::DestinationPattern::parse(s)
            .unwrap()
            .exact_destination()
            .unwrap()
    }

    const PROXY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3128);

    #[test]
    fn addresses_are_forwarded_where_they_are_and_names_get_loopback_addresses() {
        let plan = plan(
            &[
                tcp("tcp://db.internal:5432"),
                tcp("tcp://10.1.2.3:22"),
                tcp("tcp://db.internal:6432"),
                tcp("tcp://cache.internal:6379"),
                tcp("tcp://[::1]:7000"),
                tcp("tcp://db.internal:5432"),
            ],
            PROXY,
            7,
        );
        let listens: Vec<String> = plan.forwards.iter().map(|f| f.listen.to_string()).collect();
        assert_eq!(
            listens,
            [
                "127.0.100.1:5432",
                "10.1.2.3:22",
                "127.0.100.1:6432",
                "127.0.100.2:6379",
                "[::1]:7000"
            ]
        );
        assert_eq!(
            plan.forwards[0].upstream,
            Upstream::Name {
                host: "db.internal".into(),
                port: 5432
            }
        );
        assert_eq!(
            plan.forwards[1].upstream,
            Upstream::Address("10.1.2.3:22".parse().unwrap())
        );
        assert_eq!(
            plan.names,
            [
                ("db.internal".to_string(), Ipv4Addr::new(127, 0, 100, 1)),
                ("cache.internal".to_string(), Ipv4Addr::new(127, 0, 100, 2)),
            ]
        );
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn a_name_never_takes_a_granted_address_the_proxy_or_more_than_the_maximum() {
        let plan = plan(
            &[
                tcp("tcp://127.0.100.1:80"),
                tcp("tcp://db.internal:5432"),
                tcp("tcp://127.0.0.1:3128"),
                tcp("tcp://a.internal:1"),
            ],
            PROXY,
            2,
        );
        assert_eq!(plan.forwards[1].listen.to_string(), "127.0.100.2:5432");
        assert_eq!(plan.forwards.len(), 2);
        let skipped: Vec<String> = plan
            .skipped
            .iter()
            .map(|(d, why)| format!("{d}: {why}"))
            .collect();
        assert_eq!(
            skipped,
            [
                "tcp://127.0.0.1:3128: that is where the egress proxy listens",
                "tcp://a.internal:1: too many TCP destinations for one command"
            ]
        );
    }

    #[test]
    fn the_hosts_file_maps_granted_names_and_keeps_the_rest() {
        let original = "# comment\n127.0.0.1 localhost vm\n::1\tlocalhost ip6-localhost # v6\n\n10.0.0.5 db.internal\n";
        let names = [("localhost".to_string(), Ipv4Addr::new(127, 0, 100, 1))];
        assert_eq!(
            hosts_file(Some(original), &names),
            "# octo: granted TCP destinations of a confined script\n\
             127.0.100.1\tlocalhost\n\
             # comment\n\
             127.0.0.1\tvm\n\
             ::1\tip6-localhost # v6\n\
             \n\
             10.0.0.5 db.internal\n"
        );
        let names = [("DB.internal".to_string(), Ipv4Addr::new(127, 0, 100, 2))];
        assert!(!hosts_file(Some(original), &names).contains("10.0.0.5"));
        // The host's file unreadable: the granted names and localhost.
        assert_eq!(
            hosts_file(None, &names),
            "# octo: granted TCP destinations of a confined script\n\
             127.0.100.2\tDB.internal\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
        let names = [("localhost".to_string(), Ipv4Addr::new(127, 0, 100, 1))];
        assert_eq!(
            hosts_file(None, &names),
            "# octo: granted TCP destinations of a confined script\n\
             127.0.100.1\tlocalhost\n\
             ::1\tip6-localhost\tip6-loopback\n"
        );
    }
}
