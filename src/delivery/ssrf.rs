//! The SSRF guard. Endpoint URLs come from merchants, so a URL could point the daemon at
//! internal services: a cloud metadata address (169.254.169.254), an admin port on localhost,
//! the private network. The guard resolves the host itself, refuses forbidden addresses *after*
//! resolution, and hands the HTTP client only the checked addresses, so there is no second
//! lookup for DNS rebinding to exploit. Redirects are not followed (set on the client).
//! IPv6 forms that carry an IPv4 address (IPv4-mapped and -compatible, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) are judged by the IPv4 address they carry. The ranges are tables of
//! `ipnet` networks, so each one reads as its RFC writes it. The lookup is a [`Lookup`], the
//! system resolver unless a test answers instead (`delivery.lookup`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an outbound connection was refused. The text of `Forbidden` names neither the address
/// nor its class: it reaches merchants (attempt records, test pings), and the addresses a name
/// resolves to inside the operator's network are not theirs to map. [`SsrfError::log`] gives
/// the operator the details.
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    #[error("forbidden_address: {host} resolves only to addresses deliveries may not reach")]
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

impl SsrfError {
    /// Writes the refused address and its class to the operator's log.
    pub fn log(&self) {
        if let SsrfError::Forbidden { host, addr, reason } = self {
            tracing::warn!(%host, %addr, reason, "SSRF guard refused an outbound connection");
        }
    }
}

/// IPv4 ranges that are not the public internet, with the reason given for each.
const FORBIDDEN_V4: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "IETF protocol"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 ranges that are not the public internet (those embedding an IPv4 address are judged
/// by it instead: see [`embedded_v4`]).
const FORBIDDEN_V6: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    // RFC 8215 local-use NAT64: where the IPv4 address sits depends on a local prefix
    // length, and it is a local network by definition.
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "NAT64 local-use"),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF protocol"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique-local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local"),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// IPv4-mapped `::ffff:0:0/96`.
const MAPPED: Ipv6Net = v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
/// IPv4-translated `::ffff:0:0:0/96` (RFC 2765, SIIT).
const TRANSLATED: Ipv6Net = v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96);
/// IPv4-compatible `::/96` (deprecated).
const COMPATIBLE: Ipv6Net = v6([0, 0, 0, 0, 0, 0, 0, 0], 96);
/// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052).
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// 6to4 `2002::/16`: the IPv4 address is in bits 16–47.
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        prefix,
    )
}

/// The IPv4 address an IPv6 address stands for, when it is one of the forms that carry one
/// (mapped, translated, compatible, NAT64, 6to4), with the name of the form.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if MAPPED.contains(&ip) {
        Some((low, "IPv4-mapped"))
    } else if TRANSLATED.contains(&ip) {
        Some((low, "IPv4-translated"))
    } else if NAT64.contains(&ip) {
        Some((low, "NAT64"))
    } else if SIX_TO_FOUR.contains(&ip) {
        Some((Ipv4Addr::from((bits >> 80) as u32), "6to4"))
    } else if COMPATIBLE.contains(&ip) && bits > 1 {
        Some((low, "IPv4-compatible"))
    } else {
        None
    }
}

/// Why an address is refused, or `None` for a public address. IPv6 forms that embed an IPv4
/// address are judged by that address; the deprecated IPv4-compatible form is refused even
/// when it embeds a public one (nothing legitimate uses it).
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => FORBIDDEN_V4
            .iter()
            .find(|(net, _)| net.contains(&v4))
            .map(|(_, reason)| *reason),
        IpAddr::V6(v6) => {
            if let Some((v4, form)) = embedded_v4(v6) {
                return forbidden_reason(IpAddr::V4(v4))
                    .or(Some(form).filter(|form| *form == "IPv4-compatible"));
            }
            FORBIDDEN_V6
                .iter()
                .find(|(net, _)| net.contains(&v6))
                .map(|(_, reason)| *reason)
        }
    }
}

/// A source of DNS answers for the guard to judge. The daemon asks the system resolver; a
/// test can answer instead, since no real resolver gives a name a private answer, or a mixed
/// public and private one, on demand.
pub trait Lookup: Send + Sync + std::fmt::Debug {
    /// The addresses `host` resolves to (their ports are not used: the URL's port is).
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

    /// Told which of `host`'s addresses the guard handed to the HTTP client, the forbidden
    /// ones dropped, so a test sees where a delivery may connect. Does nothing by default.
    #[doc(hidden)]
    fn handed_out(&self, _host: &str, _addrs: &[SocketAddr]) {}
}

/// Where the guard looks names up: the system resolver unless a test gave a [`Lookup`]
/// (`delivery.lookup`, never read from a file or the environment).
#[derive(Debug, Clone, Default)]
pub struct DnsLookup(Option<Arc<dyn Lookup>>);

impl DnsLookup {
    /// Answers from `lookup` instead of the system resolver (tests).
    #[doc(hidden)]
    pub fn answering(lookup: Arc<dyn Lookup>) -> Self {
        Self(Some(lookup))
    }

    async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        match &self.0 {
            Some(lookup) => lookup.lookup(host.to_owned()).await,
            None => Ok(tokio::net::lookup_host((host, 0)).await?.collect()),
        }
    }

    /// Tells the given [`Lookup`] which addresses went to the HTTP client.
    fn handed_out(&self, host: &str, addrs: &[SocketAddr]) {
        if let Some(lookup) = &self.0 {
            lookup.handed_out(host, addrs);
        }
    }
}

/// The same lookup: both the system resolver, or the one given [`Lookup`].
impl PartialEq for DnsLookup {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(one), Some(other)) => Arc::ptr_eq(one, other),
            _ => false,
        }
    }
}

/// A reqwest resolver that drops forbidden addresses (unless private networks are allowed).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow_private: bool,
    lookup: DnsLookup,
}

impl GuardedResolver {
    /// A resolver asking `lookup`; `allow_private_networks` turns the guard off (local
    /// development, tests).
    pub fn new(allow_private_networks: bool, lookup: DnsLookup) -> Self {
        Self {
            allow_private: allow_private_networks,
            lookup,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow_private, lookup) = (self.allow_private, self.lookup.clone());
        Box::pin(async move {
            let addrs = check_resolved_host(name.as_str(), allow_private, &lookup)
                .await
                .inspect_err(SsrfError::log)?;
            lookup.handed_out(name.as_str(), &addrs);
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

/// Resolves `host` with the system resolver and keeps the addresses the guard allows; an error
/// when none is left.
pub async fn check_url_host(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, SsrfError> {
    check_resolved_host(host, allow_private, &DnsLookup::default()).await
}

/// [`check_url_host`] with the answers of `lookup`.
async fn check_resolved_host(
    host: &str,
    allow_private: bool,
    lookup: &DnsLookup,
) -> Result<Vec<SocketAddr>, SsrfError> {
    let resolved = lookup
        .resolve(host)
        .await
        .map_err(|source| SsrfError::Unresolvable {
            host: host.to_owned(),
            source,
        })?;
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
            ("64:ff9b::10.0.0.1", "private"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b:1::1", "NAT64 local-use"),
            ("64:ff9b:1:ffff::8.8.8.8", "NAT64 local-use"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a00:1::1", "private"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2002:c0a8:101:1::1", "private"),
            ("fec0::1", "site-local"),
            ("feff:ffff::1", "site-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::ffff:0:7f00:1", "loopback"),
            ("::ffff:0:a00:1", "private"),
            ("::ffff:0:a9fe:a9fe", "link-local"),
            ("100::1", "discard-only"),
            ("2001::1", "IETF protocol"),
            ("3fff::1", "documentation"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("172.31.255.255", "private"),
            ("198.19.255.255", "benchmarking"),
            ("192.88.99.1", "6to4 relay"),
        ];
        for (text, reason) in refused {
            assert_eq!(
                forbidden_reason(text.parse().unwrap()),
                Some(reason),
                "{text}"
            );
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
            "2001:4860:4860::8888",
        ] {
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
            err.contains("localhost") && err.contains("forbidden_address"),
            "{err}"
        );
        assert!(!err.contains("127.0.0.1") && !err.contains("::1"), "{err}");
        assert!(!check_url_host("localhost", true).await.unwrap().is_empty());
    }
}
