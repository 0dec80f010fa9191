//! Whose address a request comes from, for the budget of failed authentications.
//!
//! Without trusted proxies (`http.trusted_proxies`, empty by default) the client is the TCP
//! peer and `X-Forwarded-For` is ignored: any client can write that header. When the peer is a
//! trusted proxy, the header is read from the right, where each proxy appended the address it
//! saw: the first entry that is not itself a trusted proxy is the client. Entries further left
//! were written by the client (or by proxies we do not know) and are never believed, so a client
//! cannot choose the address it is charged to.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address of a request from `peer` carrying `headers`.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    client_addr_from(peer, forwarded, trusted)
}

/// [`client_addr`] over the `X-Forwarded-For` header values in the order they came.
pub fn client_addr_from<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        // A trusted proxy wrote this entry; one it cannot have meant as an address ends the
        // walk at the last hop we could vouch for.
        let Some(hop) = parse_hop(entry) else {
            return client;
        };
        client = hop;
        if !is_trusted(hop) {
            return hop;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().unwrap()).collect()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let peer = ip("127.0.0.1");
        assert_eq!(client_addr_from(peer, ["203.0.113.9"], &[]), peer);
        assert_eq!(client_addr_from(peer, [], &[]), peer);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("198.51.100.4");
        assert_eq!(
            client_addr_from(peer, ["203.0.113.9, 10.0.0.1"], &trusted),
            peer
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            client_addr_from(peer, ["203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // The client wrote `6.6.6.6` itself; the proxies appended the rest.
        assert_eq!(
            client_addr_from(peer, ["6.6.6.6, 203.0.113.9, 10.1.2.3"], &trusted),
            ip("203.0.113.9")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client_addr_from(peer, ["6.6.6.6", "203.0.113.9", "10.1.2.3"], &trusted),
            ip("203.0.113.9")
        );
        // Ports and IPv6 forms are read; mapped IPv4 is IPv4.
        assert_eq!(
            client_addr_from(peer, ["[2001:db8::7]:443"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_addr_from(peer, ["203.0.113.9:5000"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_addr_from(ip("::ffff:127.0.0.1"), ["::ffff:203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_or_unreadable_the_last_vouched_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(client_addr_from(peer, [], &trusted), peer);
        assert_eq!(
            client_addr_from(peer, ["10.9.9.9, 10.1.1.1"], &trusted),
            ip("10.9.9.9")
        );
        assert_eq!(
            client_addr_from(peer, ["garbage, 10.1.1.1"], &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn the_header_is_read_from_a_request() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let trusted = nets(&["127.0.0.0/8"]);
        assert_eq!(
            client_addr(ip("127.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_addr(ip("127.0.0.1"), &headers, &[]), ip("127.0.0.1"));
    }
}
