//! The SSRF guard. Endpoint URLs come from merchants, so a URL could point the daemon at
//! internal services: a cloud metadata address (169.254.169.254), an admin port on localhost,
//! the private network. The guard resolves the host itself, refuses forbidden addresses *after*
//! resolution, and hands the HTTP client only the checked addresses, so there is no second
//! lookup for DNS rebinding to exploit. Redirects are not followed (set on the client).
//! IPv4-mapped and NAT64 forms are judged by the IPv4 address they carry.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an outbound connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    #[error("refusing to connect to {host}: resolves only to {reason} address {addr}")]
    Forbidden {
        host: String,
        addr: IpAddr,
        reason: &'static str,
    },
    #[error("cannot resolve {host}: {source}")]
    Unresolvable {
        host: String,
        source: std::io::Error,
    },
}

/// Why an address is refused, or `None` for a public address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            match (a, b, c) {
                (0, _, _) => Some("unspecified"),
                (127, _, _) => Some("loopback"),
                (10, _, _) => Some("private"),
                (172, 16..=31, _) => Some("private"),
                (192, 168, _) => Some("private"),
                (169, 254, _) => Some("link-local"),
                (100, 64..=127, _) => Some("shared (CGNAT)"),
                (192, 0, 0) => Some("IETF protocol"),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation"),
                (198, 18..=19, _) => Some("benchmarking"),
                (224..=239, _, _) => Some("multicast"),
                (240..=255, _, _) => Some("reserved"),
                _ => None,
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_reason(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                forbidden_reason(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            } else if s[..6] == [0, 0, 0, 0, 0, 0] {
                Some("IPv4-compatible")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

/// A reqwest resolver that drops forbidden addresses (unless private networks are allowed).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver; `allow_private_networks` turns the guard off (local development, tests).
    pub fn new(allow_private_networks: bool) -> Self {
        Self {
            allow_private: allow_private_networks,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = check_url_host(name.as_str(), allow_private).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Refuses a host that is a forbidden IP literal (reqwest does not resolve literals, so the
/// resolver never sees them). Names pass: they are checked when resolved.
pub fn check_literal(host: &str, allow_private: bool) -> Result<(), SsrfError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(addr) if !allow_private => match forbidden_reason(addr) {
            Some(reason) => Err(SsrfError::Forbidden {
                host: host.to_owned(),
                addr,
                reason,
            }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Resolves `host` and keeps the addresses the guard allows; an error when none is left.
pub async fn check_url_host(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, SsrfError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|source| SsrfError::Unresolvable {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if allow_private {
        return Ok(resolved);
    }
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match forbidden_reason(addr.ip()) {
            Some(reason) => {
                refused.get_or_insert((addr.ip(), reason));
                false
            }
            None => true,
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (true, Some((addr, reason))) => Err(SsrfError::Forbidden {
            host: host.to_owned(),
            addr,
            reason,
        }),
        (true, None) => Err(SsrfError::Unresolvable {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }),
        (false, _) => Ok(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_internal_class_is_refused_and_public_addresses_pass() {
        let refused = [
            ("0.0.0.0", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ];
        for (text, reason) in refused {
            assert_eq!(
                forbidden_reason(text.parse().unwrap()),
                Some(reason),
                "{text}"
            );
        }
        for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(forbidden_reason(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_without_resolution() {
        for host in ["127.0.0.1", "[::1]", "10.1.2.3"] {
            assert!(check_literal(host, false).is_err(), "{host}");
            assert!(check_literal(host, true).is_ok(), "{host}");
        }
        assert!(check_literal("example.com", false).is_ok());
        assert!(check_literal("8.8.8.8", false).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let err = check_url_host("localhost", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("localhost") && err.contains("loopback"),
            "{err}"
        );
        assert!(!check_url_host("localhost", true).await.unwrap().is_empty());
    }
}
