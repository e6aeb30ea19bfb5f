//! Where webhooks may go: no server-side request forgery. A callback's host must resolve
//! only to public addresses; loopback, private, link-local, shared (CGNAT),
//! documentation, multicast, reserved and unspecified ranges are refused, whether the
//! host is a name or an IP literal, and IPv4 addresses written as IPv6 (mapped, or NAT64)
//! are judged as the IPv4 address they reach. The operator's `--webhook-allow-cidr`
//! networks are allowed whatever their range (a receiver on the cluster network).
//!
//! The rule is applied twice: when the upload names the callback, and at each attempt on
//! the addresses the connection is actually made to ([`GuardedResolver`]), so a name
//! that resolves elsewhere by then (DNS rebinding) is still refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

/// How long resolving a callback's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The ranges a webhook may not reach unless allowed; IPv4-mapped addresses are judged
/// as IPv4 before these apply.
static NOT_PUBLIC: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network", with the unspecified address
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // shared address space (carrier-grade NAT)
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, cloud metadata services
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation (TEST-NET-1)
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation (TEST-NET-2)
        "203.0.113.0/24",  // documentation (TEST-NET-3)
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, with the broadcast address
        "::/96",           // unspecified, loopback, the deprecated IPv4-compatible form
        "100::/64",        // discard-only
        "2001:db8::/32",   // documentation
        "fc00::/7",        // unique local (private)
        "fe80::/10",       // link-local
        "fec0::/10",       // site-local (deprecated)
        "ff00::/8",        // multicast
    ]
    .iter()
    .map(|net| net.parse().expect("the ranges above are valid CIDRs"))
    .collect()
});

/// The NAT64 prefix: its addresses reach the IPv4 address in their last 32 bits.
static NAT64: LazyLock<IpNet> = LazyLock::new(|| "64:ff9b::/96".parse().expect("a valid CIDR"));

/// Why a callback's host may not be called. Logged, never shown to the user: the
/// addresses internal names resolve to are not theirs to learn.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{host} resolves to {address}, which is not public and not allowed")]
    NotAllowed { host: String, address: IpAddr },
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// The allow-list: public addresses, plus the operator's networks.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        AddressPolicy { allowed }
    }

    /// Whether a webhook may connect to `address`.
    pub fn permits(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.allowed.iter().any(|net| net.contains(&address)) || is_public(address)
    }

    /// The addresses of `url`'s host, all of them permitted; refused if any is not,
    /// since the connection could go to any of them.
    pub async fn resolve_url(&self, url: &Url) -> Result<Vec<SocketAddr>, Refusal> {
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            Some(Host::Ipv4(ip)) => self.judge(&ip.to_string(), vec![(ip, port).into()]),
            Some(Host::Ipv6(ip)) => self.judge(&ip.to_string(), vec![(ip, port).into()]),
            Some(Host::Domain(name)) => self.resolve(name, port).await,
            None => Err(Refusal::Unresolvable {
                host: String::new(),
                reason: "the URL has no host".into(),
            }),
        }
    }

    /// The addresses of the name `host`, all of them permitted.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let unresolvable = |reason: String| Refusal::Unresolvable {
            host: host.to_string(),
            reason,
        };
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| unresolvable("timed out".into()))?
            .map_err(|err| unresolvable(err.to_string()))?;
        self.judge(host, found.collect())
    }

    fn judge(&self, host: &str, addresses: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        if addresses.is_empty() {
            return Err(Refusal::Unresolvable {
                host: host.to_string(),
                reason: "no addresses".into(),
            });
        }
        match addresses.iter().find(|addr| !self.permits(addr.ip())) {
            Some(refused) => Err(Refusal::NotAllowed {
                host: host.to_string(),
                address: refused.ip(),
            }),
            None => Ok(addresses),
        }
    }
}

/// Whether `address` (canonical: IPv4-mapped addresses already IPv4) is public.
fn is_public(address: IpAddr) -> bool {
    if let IpAddr::V6(v6) = address
        && NAT64.contains(&address)
    {
        let [.., a, b, c, d] = v6.octets();
        return is_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    !NOT_PUBLIC.iter().any(|net| net.contains(&address))
}

/// Resolves names for the webhook client through the [`AddressPolicy`], so connections
/// only ever go to permitted addresses. (IP literals never reach a resolver: the
/// sender checks those itself.)
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            // Port 0: the client puts the URL's port in.
            let addresses = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Parses one `--webhook-allow-cidr` entry: a network, or a single address.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR (e.g. 10.0.0.0/8, fd00::/8) or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_permitted() {
        let policy = AddressPolicy::default();
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(policy.permits(ip(address)), "{address}");
        }
    }

    #[test]
    fn every_non_public_range_is_refused() {
        let policy = AddressPolicy::default();
        for address in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.10",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "100::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!policy.permits(ip(address)), "{address}");
        }
    }

    #[test]
    fn ipv4_written_as_ipv6_is_judged_as_ipv4() {
        let policy = AddressPolicy::default();
        for address in [
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!policy.permits(ip(address)), "{address}");
        }
    }

    #[test]
    fn allowed_networks_override_the_ranges_and_nothing_else() {
        let policy = AddressPolicy::new(vec![
            parse_cidr("127.0.0.0/8").unwrap(),
            parse_cidr(" 10.1.0.0/16").unwrap(),
            parse_cidr("fd00::1").unwrap(),
        ]);
        for address in ["127.0.0.1", "127.9.9.9", "10.1.2.3", "fd00::1"] {
            assert!(policy.permits(ip(address)), "{address}");
        }
        // The mapped form of an allowed IPv4 address is the same address.
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        for address in [
            "10.2.0.1",
            "192.168.0.1",
            "fd00::2",
            "::1",
            "169.254.169.254",
        ] {
            assert!(!policy.permits(ip(address)), "{address}");
        }
    }

    #[test]
    fn allow_entries_parse_as_networks_or_addresses() {
        assert_eq!(
            parse_cidr("10.0.0.0/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_cidr("192.168.1.5").unwrap(),
            "192.168.1.5/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_cidr("::1").unwrap(),
            "::1/128".parse::<IpNet>().unwrap()
        );
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0/8"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_url_is_refused_if_any_address_of_its_host_is() {
        let open = AddressPolicy::default();
        let url = |text: &str| Url::parse(text).unwrap();
        // IP literals, in every spelling the URL parser accepts.
        for refused in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://[::ffff:7f00:1]/hook",
            "http://0x7f.1/hook",
            "http://2130706433/hook",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(
                    open.resolve_url(&url(refused)).await,
                    Err(Refusal::NotAllowed { .. })
                ),
                "{refused}"
            );
        }
        // `localhost` resolves to loopback addresses only.
        assert!(open.resolve_url(&url("http://localhost:9/")).await.is_err());
        let loopback = AddressPolicy::new(vec![parse_cidr("127.0.0.0/8").unwrap()]);
        let addresses = loopback
            .resolve_url(&url("http://127.0.0.1:8080/hook"))
            .await
            .unwrap();
        assert_eq!(addresses, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(matches!(
            loopback
                .resolve_url(&url("http://does-not-exist.invalid/"))
                .await,
            Err(Refusal::Unresolvable { .. })
        ));
    }
}
