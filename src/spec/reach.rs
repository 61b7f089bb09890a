//! Addresses no test may reach: link-local networks and the cloud providers' instance metadata
//! services, where a node's or a pod's cloud credentials are one GET away. The spec refuses
//! them as IP literals in test targets; the HTTP runner refuses them again after name
//! resolution and on every redirect hop (`runner::reach`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Alibaba Cloud's metadata service (the others answer on link-local 169.254.169.254).
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// AWS's metadata service over IPv6 (Nitro instances).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The well-known NAT64 prefix `64:ff9b::/96`: an IPv6-only cluster reaches IPv4 addresses
/// (the metadata service among them) through it.
const NAT64_PREFIX: [u16; 6] = [0x64, 0xff9b, 0, 0, 0, 0];

/// Whether a test may not reach `ip`: a link-local address (169.254.0.0/16, fe80::/10) or a
/// known cloud metadata address (169.254.169.254, fd00:ec2::254, 100.100.100.200), also in its
/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) forms.
pub(crate) fn is_forbidden_test_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            v6.is_unicast_link_local()
                || v6 == AWS_METADATA_V6
                || v6.to_ipv4_mapped().is_some_and(forbidden_v4)
                || (v6.segments()[..6] == NAT64_PREFIX && forbidden_v4(embedded_v4(v6)))
        }
    }
}

/// The forbidden IP literal a URL's host is, if it is one (a literal is never resolved, so only
/// this check sees it).
pub(crate) fn forbidden_literal(url: &url::Url) -> Option<IpAddr> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    is_forbidden_test_address(ip).then_some(ip)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    ip.is_link_local() || ip == ALIBABA_METADATA
}

/// The IPv4 address in the last 32 bits of `ip`.
fn embedded_v4(ip: Ipv6Addr) -> Ipv4Addr {
    let [.., a, b, c, d] = ip.octets();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(ip: &str) -> bool {
        is_forbidden_test_address(ip.parse().expect("an IP address"))
    }

    #[test]
    fn refuses_link_local_and_metadata_addresses_in_every_form() {
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.0.1",
            "169.254.255.255",
            "100.100.100.200",
            "fe80::1",
            "febf:ffff::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::ffff:100.100.100.200",
            "::ffff:169.254.1.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::100.100.100.200",
        ] {
            assert!(forbidden(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn lets_tests_reach_loopback_private_and_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.10",
            "172.16.0.1",
            "100.100.100.201",
            "100.64.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "8.8.8.8",
            "::1",
            "fec0::1",
            "fd00:ec2::253",
            "fd00::254",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!forbidden(ip), "{ip} must be allowed");
        }
    }
}
