//! The client a trusted reverse proxy forwarded a request for (`X-Forwarded-For`).
//!
//! Behind a proxy, the connection is the proxy's. Each proxy on the way appends the address it received the request
//! from to `X-Forwarded-For`, so the list is read from its right end: past every address a listed proxy owns, the
//! first one left is the client as the nearest proxy not under the operator's control saw it. Anything to its left
//! was written by the client or by proxies nobody vouches for. From a peer not listed, the header is the client's own
//! word, and nothing is taken from it.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address as the trusted proxies told it, put into a request's extensions by the guard (every request
/// passes it first), for the records of the request and of its calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForwardedFor(pub(crate) IpAddr);

/// A `--trusted-proxy` entry: an address (`10.0.0.7`, `::1`) or a network (`10.0.0.0/8`, `2001:db8::/32`). A network
/// written with host bits (`10.0.0.7/8`) is refused: it reads as one address and would trust a whole network.
pub(crate) fn parse_trusted(entry: &str) -> Result<IpNet, String> {
    let quoted = entry.escape_debug();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(address.to_canonical()));
    }
    let network: IpNet = entry.parse().map_err(|_| {
        format!("`{quoted}` is no IP address or network (`10.0.0.0/8`, `2001:db8::/32`)")
    })?;
    // An IPv4-mapped network is the IPv4 network it maps, as peers are compared (a second round's
    // `::ffff:127.0.0.0/104` was taken and matched no one).
    let network = match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 && v6.addr().to_ipv4_mapped().is_some() => {
            let v4 = v6
                .addr()
                .to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(network)
        }
        other => other,
    };
    if network.trunc() != network {
        return Err(format!(
            "`{quoted}` has bits set past its prefix: the network is `{}` (or write the one address `{}`)",
            network.trunc(),
            network.addr()
        ));
    }
    Ok(network)
}

/// The client the proxies forwarded the request for, when its peer (`peer`) is one of the `trusted` proxies: the
/// right-most address of `X-Forwarded-For` (its lines read as one list, in order) that no trusted proxy owns, or,
/// when every one is a trusted proxy's, the left-most. `None` when the peer is not trusted, when there is no such
/// header, or when the entry where the reading stops is no address (`unknown`, an obfuscated identifier, text): the
/// client is then not known, and no address to its left is believed either.
pub(crate) fn client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(&address));
    if trusted.is_empty() || !is_trusted(peer.to_canonical()) {
        return None;
    }
    let mut farthest_proxy = None;
    for line in headers.get_all("x-forwarded-for").iter().rev() {
        let line = line.to_str().ok()?;
        for hop in line.rsplit(',') {
            let address = hop_address(hop.trim())?;
            if !is_trusted(address) {
                return Some(address);
            }
            farthest_proxy = Some(address);
        }
    }
    farthest_proxy
}

/// One entry of `X-Forwarded-For`: an address, with or without a port (`198.51.100.7:4711`, `[2001:db8::7]:4711`),
/// an IPv6 address in brackets; an IPv4-mapped IPv6 address as the IPv4 address it is.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let address = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", line.parse().unwrap());
        }
        headers
    }

    fn nets(entries: &[&str]) -> Vec<IpNet> {
        entries.iter().map(|e| parse_trusted(e).unwrap()).collect()
    }

    #[test]
    fn the_client_is_the_nearest_address_no_trusted_proxy_owns() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let client = |lines: &[&str]| client(peer, &headers(lines), &trusted);
        assert_eq!(
            client(&["1.1.1.1, 198.51.100.7, 10.0.0.2"]),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            client(&["1.1.1.1", "198.51.100.7:80", "10.0.0.2"]),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            client(&["[2001:db9::1]:443, 2001:db8::1"]),
            Some("2001:db9::1".parse().unwrap())
        );
        assert_eq!(
            client(&["[2001:db9::1]"]),
            Some("2001:db9::1".parse().unwrap())
        );
        assert_eq!(
            client(&["::ffff:198.51.100.7"]),
            Some("198.51.100.7".parse().unwrap())
        );
        // Every hop a trusted proxy: the farthest.
        assert_eq!(
            client(&["10.1.1.1, 10.0.0.2"]),
            Some("10.1.1.1".parse().unwrap())
        );
        // Where the reading stops at no address, no client; what lies to its left is not believed.
        assert_eq!(client(&["198.51.100.7, unknown, 10.0.0.2"]), None);
        assert_eq!(client(&["198.51.100.7,, 10.0.0.2"]), None);
        assert_eq!(client(&[]), None);
        // A peer not listed (an IPv4-mapped one is its IPv4 address).
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_of(mapped, &["198.51.100.7"], &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_of(stranger, &["198.51.100.7"], &trusted), None);
        assert_eq!(client_of(peer, &["198.51.100.7"], &[]), None);
    }

    fn client_of(peer: IpAddr, lines: &[&str], trusted: &[IpNet]) -> Option<IpAddr> {
        client(peer, &headers(lines), trusted)
    }

    #[test]
    fn a_trusted_entry_is_an_address_or_a_network_without_host_bits() {
        assert_eq!(
            parse_trusted("10.0.0.7").unwrap().to_string(),
            "10.0.0.7/32"
        );
        assert_eq!(
            parse_trusted("::ffff:10.0.0.7").unwrap().to_string(),
            "10.0.0.7/32"
        );
        assert_eq!(
            parse_trusted("::ffff:127.0.0.0/104").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert!(parse_trusted("::ffff:127.0.0.1/104").is_err());
        assert_eq!(
            parse_trusted("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(
            parse_trusted("10.0.0.7/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        for bad in ["", "proxy.example", "10.0.0.0/33", " 10.0.0.1", "10.0.0.0/"] {
            assert!(parse_trusted(bad).is_err(), "{bad:?}");
        }
    }

    /// A long chain of trusted proxies (the header is bounded by the server's header limit): the farthest.
    #[test]
    fn a_long_chain_of_proxies_names_the_farthest() {
        let trusted = nets(&["10.0.0.0/8"]);
        let line = vec!["10.0.0.3"; 10_000].join(", ");
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client(peer, &headers(&[&line]), &trusted),
            Some("10.0.0.3".parse().unwrap())
        );
    }
}
