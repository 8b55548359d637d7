//! `internalNetworks`: the administrator's list of internal destinations, the only places step plugins
//! may reach while the server is air-gapped.
//!
//! Each entry is one of
//! - a CIDR block, IPv4 or IPv6 (`10.0.0.0/8`, `fd00::/8`); a bare address is a block of one;
//! - `*.suffix`: any name under `suffix` (not `suffix` itself), as in outbound patterns;
//! - an exact host name (`build.corp.example`).
//!
//! Names match names and addresses match blocks: a host name is never resolved to see whether it lies
//! in a block (that lookup would itself leave the machine, and its answer could change before the
//! connection is made). Pure: parsing and matching on values.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalNetwork {
    /// An address block: `addr/prefix`, with the host bits of `addr` zero.
    Block {
        /// The network address.
        addr: IpAddr,
        /// The prefix length (at most 32 for IPv4, 128 for IPv6).
        prefix: u8,
    },
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
    /// Exactly this host name.
    Name(String),
}

impl InternalNetwork {
    /// Whether `host` lies inside this entry. `host` is a lowercase name or an IP address (IPv6 with or
    /// without brackets), as in an outbound destination.
    pub fn contains(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.strip_suffix('.').unwrap_or(host);
        match (self, host.parse::<IpAddr>()) {
            (InternalNetwork::Block { addr, prefix }, Ok(ip)) => in_block(ip, *addr, *prefix),
            (InternalNetwork::Block { .. }, Err(_)) => false,
            (_, Ok(_)) => false,
            (InternalNetwork::Name(name), Err(_)) => host.eq_ignore_ascii_case(name),
            (InternalNetwork::Subdomains(suffix), Err(_)) => {
                let host = host.to_ascii_lowercase();
                host.strip_suffix(suffix.as_str())
                    .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
            }
        }
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    // An IPv4-mapped IPv6 address is the IPv4 address it carries.
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net)
        }
        _ => false,
    }
}

impl FromStr for InternalNetwork {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        if s.is_empty() {
            return Err("an empty entry".into());
        }
        if s.contains("://") {
            return Err(format!(
                "{input:?}: expected a CIDR block, an address, a host name or *.domain, not a URL"
            ));
        }
        if let Some((addr, prefix)) = s.split_once('/') {
            let addr: IpAddr = addr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("{input:?}: expected an IP address before the '/'"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 =
                prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                    format!("{input:?}: expected a prefix length from 0 to {max}")
                })?;
            if masked(addr, prefix) != addr {
                return Err(format!(
                    "{input:?}: the address has bits set after the prefix; did you mean {}/{prefix}?",
                    masked(addr, prefix)
                ));
            }
            return Ok(InternalNetwork::Block { addr, prefix });
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = bare.parse::<IpAddr>() {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(InternalNetwork::Block { addr, prefix });
        }
        let lower = s.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "{input:?}: expected a CIDR block (10.0.0.0/8, fd00::/8), an address, a host name or *.domain"
            ));
        }
        Ok(if wildcard {
            InternalNetwork::Subdomains(name.to_string())
        } else {
            InternalNetwork::Name(name.to_string())
        })
    }
}

fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

impl fmt::Display for InternalNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InternalNetwork::Block { addr, prefix } => write!(f, "{addr}/{prefix}"),
            InternalNetwork::Subdomains(s) => write!(f, "*.{s}"),
            InternalNetwork::Name(n) => f.write_str(n),
        }
    }
}

/// The whole list (`internalNetworks` in `octo.toml`: an array of strings). Empty by default: while
/// air-gapped, nothing leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalNetworks(Vec<InternalNetwork>);

impl InternalNetworks {
    /// From entries.
    pub fn new(entries: Vec<InternalNetwork>) -> Self {
        InternalNetworks(entries)
    }

    /// Parses the `configure` flag's value: entries separated by commas (white space around them is
    /// ignored); an empty value is the empty list.
    pub fn parse_list(value: &str) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Ok(InternalNetworks::default());
        }
        let mut entries = Vec::new();
        for part in value.split(',') {
            let entry: InternalNetwork = part.parse()?;
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        Ok(InternalNetworks(entries))
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in the order given.
    pub fn entries(&self) -> &[InternalNetwork] {
        &self.0
    }

    /// The first entry that contains `host`, if any (see [`InternalNetwork::contains`]).
    pub fn matching(&self, host: &str) -> Option<&InternalNetwork> {
        self.0.iter().find(|n| n.contains(host))
    }

    /// While air-gapped: whether a connection to `name` (a granted host name, already found inside
    /// these networks by name) may go to `address`, one of the addresses the name resolved to. The
    /// name matched name entries only, so its address must lie inside a block too; `Err` is the
    /// one-line reason, naming the address. The server's policy and a tentacle (sent these networks
    /// with a step) decide with this same check.
    pub fn check_resolved(&self, name: &str, address: IpAddr) -> Result<(), String> {
        if self.matching(&address.to_string()).is_some() {
            return Ok(());
        }
        Err(format!(
            "air-gapped: {name} resolved to {address}, which is not inside the internal networks \
             ({self}); `octo configure --internalNetworks=...` sets them"
        ))
    }
}

impl fmt::Display for InternalNetworks {
    /// Comma-separated, as the `configure` flag takes it; `(none)` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl Serialize for InternalNetworks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for InternalNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        let mut entries = Vec::new();
        for item in &list {
            let entry: InternalNetwork = item.parse().map_err(serde::de::Error::custom)?;
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        Ok(InternalNetworks(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> InternalNetworks {
        InternalNetworks::parse_list(s).unwrap()
    }

    #[test]
    fn blocks_names_and_wildcards_parse_and_print_back() {
        let l = list(" 10.0.0.0/8, *.Corp.Example ,build.corp.example., fd00::/8,127.0.0.1,[::1]");
        assert_eq!(
            l.to_string(),
            "10.0.0.0/8,*.corp.example,build.corp.example,fd00::/8,127.0.0.1/32,::1/128"
        );
        assert_eq!(list("").to_string(), "(none)");
        assert!(list("  ").is_empty());
        // Duplicates collapse.
        assert_eq!(list("10.0.0.0/8,10.0.0.0/8").entries().len(), 1);
    }

    #[test]
    fn bad_entries_say_what_is_expected() {
        for (input, says) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
            ("10.0.0.0/33", "prefix length from 0 to 32"),
            ("fd00::/129", "prefix length from 0 to 128"),
            ("nope/8", "expected an IP address"),
            ("https://x.example", "expected a CIDR block"),
            ("a b", "expected a CIDR block"),
            ("*.", "expected a CIDR block"),
            ("10.0.0.0/8,,x", "an empty entry"),
        ] {
            let err = InternalNetworks::parse_list(input).unwrap_err();
            assert!(err.contains(says), "{input}: {err}");
        }
    }

    #[test]
    fn addresses_match_blocks_and_names_match_names() {
        let l = list("10.0.0.0/8,127.0.0.0/8,fd00::/8,*.corp.example,build.example");
        for host in [
            "10.1.2.3",
            "127.0.0.1",
            "[fd12::1]",
            "fd12::1",
            "::ffff:10.9.9.9",
            "a.corp.example",
            "a.b.corp.example",
            "build.example",
            "BUILD.example.",
        ] {
            assert!(l.matching(host).is_some(), "{host} should be internal");
        }
        for host in [
            "11.0.0.1",
            "[::1]",
            "corp.example",
            "evilcorp.example",
            "a.corp.example.evil",
            "x.build.example",
            "localhost",
        ] {
            assert!(l.matching(host).is_none(), "{host} should not be internal");
        }
        assert_eq!(
            l.matching("10.0.0.1").map(ToString::to_string).as_deref(),
            Some("10.0.0.0/8")
        );
        // /0 is everything of its family; a name is never "in" a block.
        let all = list("0.0.0.0/0");
        assert!(all.matching("203.0.113.9").is_some());
        assert!(all.matching("fd00::1").is_none());
        assert!(all.matching("example.com").is_none());
        assert!(list("").matching("10.0.0.1").is_none());
    }

    #[test]
    fn a_resolved_address_must_lie_inside_a_block() {
        let l = list("localhost,*.corp.example,10.0.0.0/8");
        assert_eq!(
            l.check_resolved("db.corp.example", "10.1.2.3".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            l.check_resolved("localhost", "127.0.0.1".parse().unwrap()),
            Err(
                "air-gapped: localhost resolved to 127.0.0.1, which is not inside the internal \
                 networks (localhost,*.corp.example,10.0.0.0/8); `octo configure \
                 --internalNetworks=...` sets them"
                    .into()
            )
        );
        assert!(
            list("")
                .check_resolved("x", "10.0.0.1".parse().unwrap())
                .is_err()
        );
        // An IPv4-mapped IPv6 address is the address it carries.
        assert!(
            l.check_resolved("x", "::ffff:10.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn the_file_form_is_a_list_of_strings() {
        #[derive(Serialize, Deserialize)]
        struct Doc {
            n: InternalNetworks,
        }
        let doc: Doc = toml::from_str(r#"n = ["10.0.0.0/8", "*.corp.example"]"#).unwrap();
        assert_eq!(doc.n.to_string(), "10.0.0.0/8,*.corp.example");
        assert_eq!(
            toml::to_string(&doc).unwrap().trim(),
            r#"n = ["10.0.0.0/8", "*.corp.example"]"#
        );
        assert!(toml::from_str::<Doc>(r#"n = ["10.0.0.1/8"]"#).is_err());
    }
}
