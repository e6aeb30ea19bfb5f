//! Who a request comes from, as the per-address limits count it (the edge's rate limit and
//! the login throttle alike).
//!
//! Spin passes the TCP peer as `spin-client-addr` (the embedded host strips any `spin-*`
//! header a client sends; real Spin adds its own after the client's, and spin-sdk keeps the
//! last of a repeated header). Behind a reverse proxy the peer is the proxy, so a request
//! whose peer is in the `trusted_proxies` variable has its client taken from the header
//! named by `forwarded_header` (`x-forwarded-for`, the default, or RFC 7239 `forwarded`):
//! the rightmost hop that is not itself a trusted proxy. Entries to the left of that hop
//! are whatever the client wrote and are never believed. Only one header is read: a proxy
//! that maintains `X-Forwarded-For` passes a client's own `Forwarded` through untouched.
//!
//! Addresses are grouped before counting: an IPv4 address (IPv4-mapped IPv6 included) is
//! its own group, an IPv6 address counts as its /64, which one subscriber usually holds.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use spin_sdk::http::Request;

use crate::ApiError;
use crate::config::var;

/// The counting unit for a client: an IPv4 address or an IPv6 /64, as text
/// (`203.0.113.7`, `2001:db8:1:2::/64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressGroup(String);

impl AddressGroup {
    pub fn of(ip: IpAddr) -> Self {
        Self(match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AddressGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The header a trusted proxy reports the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The proxies whose forwarding header is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma- or space-separated CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses;
    /// empty: no proxy is trusted.
    pub fn parse(spec: &str) -> Result<Self, String> {
        spec.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("variable `trusted_proxies`: {entry:?} is not a CIDR or address")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // A mapped address is matched as the IPv4 address it is (and as written, so that
        // `::ffff:0:0/96` listed as such still matches).
        self.0
            .iter()
            .any(|net| net.contains(&ip.to_canonical()) || net.contains(&ip))
    }

    /// The client address for a request whose TCP peer is `peer` (`ip:port` or `ip`) and
    /// whose forwarding header, if any, is `forwarded`. `None` for an unparseable or
    /// unspecified peer: in-app (`*.spin.internal`) calls carry `0.0.0.0:0`, and their
    /// original request was already counted.
    pub fn client_ip(
        &self,
        peer: &str,
        header: ForwardedHeader,
        forwarded: Option<&str>,
    ) -> Option<IpAddr> {
        let peer = parse_node(peer)?.to_canonical();
        if peer.is_unspecified() {
            return None;
        }
        if !self.contains(peer) {
            return Some(peer);
        }
        let hops: Vec<Option<IpAddr>> = match (header, forwarded) {
            (_, None) => Vec::new(),
            (ForwardedHeader::XForwardedFor, Some(value)) => {
                value.split(',').map(|hop| parse_node(hop.trim())).collect()
            }
            (ForwardedHeader::Forwarded, Some(value)) => forwarded_for(value),
        };
        // Right to left: each trusted hop vouches for the one before it. An entry that is
        // no address (`unknown`, an obfuscated name, garbage) ends the walk at the last
        // trusted hop, so that a client can never choose its own key.
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// The `for=` node of each element of a `Forwarded` value, in order; `None` for an element
/// without one or whose node is not an address.
fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    split_unquoted(value, ',')
        .into_iter()
        .map(|element| {
            split_unquoted(element, ';').into_iter().find_map(|pair| {
                let (name, node) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(node.trim().trim_matches('"')))
                    .flatten()
            })
        })
        .collect()
}

/// Splits at `separator` outside double-quoted strings (RFC 7230 `quoted-string`).
fn split_unquoted(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// An address with or without a port: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            node.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

/// The address group of `request`'s client, from `spin-client-addr` and, for a trusted
/// proxy, its forwarding header. Reads the variables `trusted_proxies` and (only when the
/// peer is trusted) `forwarded_header`; a bad value is a deployment mistake (500).
pub fn client_group(request: &Request) -> Result<Option<AddressGroup>, ApiError> {
    let header = |name: &str| request.header(name).and_then(|value| value.as_str());
    // In-app calls need no variable read: they are not counted.
    let Some(peer) = header("spin-client-addr")
        .filter(|peer| parse_node(peer).is_some_and(|ip| !ip.is_unspecified()))
    else {
        return Ok(None);
    };
    let proxies =
        TrustedProxies::parse(&var("trusted_proxies")?).map_err(ApiError::internal_logged)?;
    let forwarded_header = if proxies.is_empty() {
        ForwardedHeader::XForwardedFor
    } else {
        forwarded_header()?
    };
    Ok(proxies
        .client_ip(peer, forwarded_header, header(forwarded_header.name()))
        .map(AddressGroup::of))
}

fn forwarded_header() -> Result<ForwardedHeader, ApiError> {
    let value = var("forwarded_header")?;
    match value.trim().to_ascii_lowercase().as_str() {
        "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
        "forwarded" => Ok(ForwardedHeader::Forwarded),
        _ => Err(ApiError::internal_logged(
            "variable `forwarded_header` must be `x-forwarded-for` or `forwarded`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ForwardedHeader::{Forwarded, XForwardedFor};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(spec: &str) -> TrustedProxies {
        TrustedProxies::parse(spec).unwrap()
    }

    fn group(text: &str) -> String {
        AddressGroup::of(ip(text)).to_string()
    }

    #[test]
    fn ipv4_is_its_own_group_and_ipv6_counts_by_64() {
        assert_eq!(group("203.0.113.7"), "203.0.113.7");
        assert_eq!(group("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(group("2001:db8:1:2:bbbb::9"), group("2001:db8:1:2::5"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        // An IPv4-mapped address is the IPv4 address, not a /64 of mapped space.
        assert_eq!(group("::ffff:198.51.100.1"), "198.51.100.1");
        assert_eq!(group("::1"), "::/64");
    }

    #[test]
    fn trusted_proxy_lists_parse_cidrs_and_addresses() {
        let list = proxies(" 10.0.0.0/8, fd00::/8 192.168.1.7 ,::1");
        for inside in [
            "10.200.3.4",
            "fd12::1",
            "192.168.1.7",
            "::1",
            "::ffff:10.1.1.1",
        ] {
            assert!(list.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1", "::2"] {
            assert!(!list.contains(ip(outside)), "{outside}");
        }
        // Host bits in a CIDR are tolerated (the network is meant).
        assert!(proxies("10.1.2.3/16").contains(ip("10.1.99.1")));
        assert!(proxies("").is_empty());
        assert!(proxies(" , ").is_empty());
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/8;"] {
            let error = TrustedProxies::parse(bad).unwrap_err();
            assert!(error.contains("trusted_proxies"), "{error}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_peer_decides() {
        let none = proxies("");
        assert_eq!(
            none.client_ip("203.0.113.7:5123", XForwardedFor, Some("198.51.100.1")),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            none.client_ip("[::ffff:203.0.113.7]:80", XForwardedFor, None),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            none.client_ip("203.0.113.7", XForwardedFor, None),
            Some(ip("203.0.113.7"))
        );
        for internal in ["0.0.0.0:0", "[::]:0", "not an address", ""] {
            assert_eq!(
                none.client_ip(internal, XForwardedFor, None),
                None,
                "{internal:?}"
            );
        }
    }

    #[test]
    fn an_untrusted_peer_forwarding_is_ignored() {
        let list = proxies("10.0.0.0/8");
        assert_eq!(
            list.client_ip("203.0.113.7:1", XForwardedFor, Some("198.51.100.1")),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn x_forwarded_for_yields_the_rightmost_untrusted_hop() {
        let list = proxies("10.0.0.0/8");
        let client = |xff: Option<&str>| list.client_ip("10.0.0.2:443", XForwardedFor, xff);
        assert_eq!(client(Some("198.51.100.1")), Some(ip("198.51.100.1")));
        // What the client wrote itself (left of the hop the proxy appended) is ignored.
        assert_eq!(
            client(Some("1.1.1.1, 2.2.2.2,198.51.100.1")),
            Some(ip("198.51.100.1"))
        );
        // Trusted hops are skipped.
        assert_eq!(
            client(Some("1.1.1.1, 198.51.100.1, 10.3.3.3, 10.4.4.4")),
            Some(ip("198.51.100.1"))
        );
        // Ports and brackets are tolerated; mapped addresses canonicalised.
        assert_eq!(client(Some("198.51.100.1:4711")), Some(ip("198.51.100.1")));
        assert_eq!(client(Some("[2001:db8::7]:80")), Some(ip("2001:db8::7")));
        assert_eq!(
            client(Some("::ffff:198.51.100.9")),
            Some(ip("198.51.100.9"))
        );
        // Garbage where the client should be: the last trusted hop stands.
        assert_eq!(
            client(Some("198.51.100.1, garbage, 10.4.4.4")),
            Some(ip("10.4.4.4"))
        );
        assert_eq!(client(Some("garbage")), Some(ip("10.0.0.2")));
        assert_eq!(client(Some("")), Some(ip("10.0.0.2")));
        // Only trusted hops: the leftmost of them.
        assert_eq!(client(Some("10.9.9.9, 10.8.8.8")), Some(ip("10.9.9.9")));
        // No header: the proxy itself.
        assert_eq!(client(None), Some(ip("10.0.0.2")));
        // A trusted IPv4 proxy reached over a mapped address is still trusted.
        assert_eq!(
            list.client_ip("[::ffff:10.0.0.2]:443", XForwardedFor, Some("198.51.100.1")),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn forwarded_yields_the_rightmost_untrusted_for_node() {
        let list = proxies("10.0.0.0/8,fd00::/8");
        let client = |value: &str| list.client_ip("10.0.0.2:443", Forwarded, Some(value));
        assert_eq!(client("for=198.51.100.1"), Some(ip("198.51.100.1")));
        assert_eq!(
            client(r#"for=1.1.1.1, For="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.2"#),
            Some(ip("2001:db8:cafe::17"))
        );
        assert_eq!(
            client(r#"for=198.51.100.1;host="a,b;c", for="[fd00::5]""#),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(client("for=198.51.100.1:4711"), Some(ip("198.51.100.1")));
        // Obfuscated or unknown nodes and elements without `for` end the walk.
        assert_eq!(
            client("for=198.51.100.1, for=unknown"),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            client("for=198.51.100.1, for=_hidden, for=10.1.1.1"),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(client("proto=https"), Some(ip("10.0.0.2")));
    }

    #[test]
    fn the_header_not_chosen_is_never_read() {
        let list = proxies("10.0.0.0/8");
        // An X-Forwarded-For value handed over as if it were `Forwarded` has no `for=`.
        assert_eq!(
            list.client_ip("10.0.0.2:1", Forwarded, Some("198.51.100.1")),
            Some(ip("10.0.0.2"))
        );
    }
}
