//! Client addresses behind proxies. `X-Forwarded-For` is read only when the socket peer is a
//! trusted proxy, and then from the right: each trusted proxy appends the address it received the
//! request from, so the rightmost address outside the trusted networks is the first one no
//! trusted party vouched for (nginx `real_ip_recursive` semantics). Everything to its left was
//! written by the client and is ignored.

use axum::http::HeaderMap;
use std::net::IpAddr;

pub use etx_core::net::IpNet;

/// The client's address: the peer itself unless it is a trusted proxy; then the rightmost
/// `X-Forwarded-For` hop that is not a trusted proxy (or the leftmost hop if all are).
pub fn client_address(trusted: &[IpNet], headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Several X-Forwarded-For headers are one list in the order received.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // Something that is not an address cannot have been written by a trusted proxy: the
        // last address vouched for stands.
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// An address as proxies write it: bare, `[v6]`, or with a port (`1.2.3.4:5678`, `[v6]:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(
            "192.168.1.7"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("192.168.1.7"))
        );
        assert!(
            !"192.168.1.7"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("192.168.1.8"))
        );
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!("fd00::/8".parse::<IpNet>().unwrap().contains(ip("fd12::1")));
        assert!(
            "127.0.0.1/32"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let t = nets(&["10.0.0.0/8"]);
        let h = xff(&["1.2.3.4"]);
        assert_eq!(client_address(&t, &h, ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(client_address(&[], &h, ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn one_proxy_spoofed_leftmost_hop_is_ignored() {
        // The client sent "X-Forwarded-For: 6.6.6.6"; nginx appended the real peer.
        let t = nets(&["10.0.0.5"]);
        let h = xff(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(client_address(&t, &h, ip("10.0.0.5")), ip("198.51.100.7"));
    }

    #[test]
    fn two_proxies_walk_past_every_trusted_hop() {
        // client → CDN edge (172.16.0.9) → nginx (10.0.0.5) → us, with a forged first hop.
        let t = nets(&["10.0.0.0/8", "172.16.0.0/12"]);
        let h = xff(&["6.6.6.6", "198.51.100.7, 172.16.0.9"]);
        assert_eq!(client_address(&t, &h, ip("10.0.0.5")), ip("198.51.100.7"));
        // Only the nginx hop trusted: the CDN's address is the client.
        let only_nginx = nets(&["10.0.0.5"]);
        assert_eq!(
            client_address(&only_nginx, &h, ip("10.0.0.5")),
            ip("172.16.0.9")
        );
    }

    #[test]
    fn garbage_and_ports_and_all_trusted() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(&t, &xff(&["junk, 10.0.0.3"]), ip("10.0.0.5")),
            ip("10.0.0.3")
        );
        assert_eq!(
            client_address(&t, &xff(&["198.51.100.7:4444"]), ip("10.0.0.5")),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(&t, &xff(&["[2001:db8::1]:443"]), ip("10.0.0.5")),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(&t, &HeaderMap::new(), ip("10.0.0.5")),
            ip("10.0.0.5")
        );
    }
}
