//! "Use the system proxy": `https_proxy`/`HTTPS_PROXY`, `http_proxy`, `all_proxy`/`ALL_PROXY`
//! and `no_proxy`/`NO_PROXY`, read the way curl reads them (no I/O: the variables come from a
//! lookup function).

use std::net::IpAddr;

use super::config::{ProxyConfig, ProxyConfigError};

/// The proxy settings found in the environment.
#[derive(Debug, Clone, Default)]
pub struct SystemProxy {
    https: Option<Result<ProxyConfig, ProxyConfigError>>,
    http: Option<Result<ProxyConfig, ProxyConfigError>>,
    all: Option<Result<ProxyConfig, ProxyConfigError>>,
    no_proxy: Vec<String>,
}

impl SystemProxy {
    /// Reads this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (lower-case names win, as in curl; `HTTP_PROXY` in upper
    /// case is ignored, as in curl, because CGI sets it from a request header).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()))
        };
        let parse = |v: Option<String>| v.map(|v| ProxyConfig::parse(&v));
        Self {
            https: parse(first(&["https_proxy", "HTTPS_PROXY"])),
            http: parse(first(&["http_proxy"])),
            all: parse(first(&["all_proxy", "ALL_PROXY"])),
            no_proxy: first(&["no_proxy", "NO_PROXY"])
                .map(|v| {
                    v.split([',', ' '])
                        .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether `no_proxy` exempts `host`: `*`, the host itself, a parent domain, an IP address,
    /// or an IP range in CIDR form.
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            if let Some(ip) = ip {
                return match entry.split_once('/') {
                    Some((net, bits)) => in_cidr(ip, net, bits),
                    None => entry.parse::<IpAddr>().is_ok_and(|e| e == ip),
                };
            }
            host == entry
                || (host.len() > entry.len()
                    && host.ends_with(entry)
                    && host.as_bytes()[host.len() - entry.len() - 1] == b'.')
        })
    }

    /// The proxy to use for a connection to `host` (`https` for TLS destinations, which is every
    /// tentacle connection), or `None` to go direct.
    pub fn proxy_for(
        &self,
        https: bool,
        host: &str,
    ) -> Result<Option<ProxyConfig>, ProxyConfigError> {
        if self.bypasses(host) {
            return Ok(None);
        }
        let chosen = if https { &self.https } else { &self.http };
        match chosen.as_ref().or(self.all.as_ref()) {
            Some(result) => result.clone().map(Some),
            None => Ok(None),
        }
    }
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> SystemProxy {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SystemProxy::from_lookup(|n| map.get(n).cloned())
    }

    #[test]
    fn picks_the_variable_for_the_scheme() {
        let s = env(&[
            ("HTTPS_PROXY", "http://secure:3128"),
            ("http_proxy", "http://plain:3128"),
            ("HTTP_PROXY", "http://ignored:1"),
        ]);
        assert_eq!(s.proxy_for(true, "x").unwrap().unwrap().host(), "secure");
        assert_eq!(s.proxy_for(false, "x").unwrap().unwrap().host(), "plain");
        let s = env(&[
            ("HTTP_PROXY", "http://ignored:1"),
            ("ALL_PROXY", "all:8080"),
        ]);
        assert_eq!(s.proxy_for(false, "x").unwrap().unwrap().host(), "all");
        assert!(env(&[]).proxy_for(true, "x").unwrap().is_none());
        let socks = env(&[("all_proxy", "socks5://s:1080")]);
        assert_eq!(
            socks.proxy_for(true, "x").unwrap_err(),
            ProxyConfigError::Socks
        );
    }

    #[test]
    fn no_proxy_matching() {
        let s = env(&[
            ("https_proxy", "http://p:3128"),
            (
                "NO_PROXY",
                "localhost, .internal.example,10.0.0.0/8 ::1,192.168.1.5",
            ),
        ]);
        for direct in [
            "localhost",
            "LOCALHOST.",
            "a.internal.example",
            "internal.example",
            "10.1.2.3",
            "[::1]",
            "192.168.1.5",
        ] {
            assert!(s.proxy_for(true, direct).unwrap().is_none(), "{direct}");
        }
        for proxied in [
            "notinternal.example",
            "11.0.0.1",
            "192.168.1.6",
            "example.com",
        ] {
            assert!(s.proxy_for(true, proxied).unwrap().is_some(), "{proxied}");
        }
        let all = env(&[("https_proxy", "p:1"), ("no_proxy", "*")]);
        assert!(all.proxy_for(true, "anything").unwrap().is_none());
    }
}
