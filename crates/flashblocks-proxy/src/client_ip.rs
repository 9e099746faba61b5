//! Which IP a connection counts against: the socket peer, or the forwarded-for header when the
//! peer is a configured trusted proxy (otherwise any client could pick its own IP).

use std::net::IpAddr;

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A trusted-proxy entry that is neither an IP nor a CIDR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an IP address or CIDR")]
pub struct IpNetError(pub String);

impl std::str::FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(err)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl IpNet {
    /// True when `ip` lies inside this network (IPv4-mapped IPv6 peers match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack listeners) are treated as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Resolves the IP a connection counts against.
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    /// Lower-cased header name.
    header: String,
    trusted: Vec<IpNet>,
}

impl ClientIpResolver {
    /// `header` is matched case-insensitively; with no trusted proxies the header is never used.
    pub fn new(header: &str, trusted: Vec<IpNet>) -> Self {
        Self {
            header: header.to_ascii_lowercase(),
            trusted,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The client IP given the socket peer and the request headers.
    ///
    /// Only a trusted peer's header counts. In `a, b, c` the right-most entry that is not itself a
    /// trusted proxy is the client (entries to its left were written by the client and can be
    /// forged). A malformed header falls back to the peer address.
    pub fn resolve(&self, peer: IpAddr, headers: &[httparse::Header<'_>]) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let Some(value) = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(&self.header))
            .and_then(|h| std::str::from_utf8(h.value).ok())
        else {
            return peer;
        };
        let mut leftmost = None;
        for entry in value.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                return peer;
            };
            if !self.is_trusted(ip) {
                return ip;
            }
            leftmost = Some(ip);
        }
        leftmost.unwrap_or(peer)
    }
}

// Accepts `1.2.3.4`, `1.2.3.4:567`, `::1` and `[::1]:567`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| canonical(s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn cidr_matching() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }

    #[test]
    fn header_only_trusted_from_trusted_peers() {
        let r = ClientIpResolver::new("X-Forwarded-For", vec!["127.0.0.1".parse().unwrap()]);
        let h = [hdr("x-forwarded-for", "9.9.9.9, 8.8.8.8")];
        let untrusted: IpAddr = "5.5.5.5".parse().unwrap();
        assert_eq!(r.resolve(untrusted, &h), untrusted);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        // The right-most untrusted entry wins: 9.9.9.9 could have been forged by the client.
        assert_eq!(r.resolve(proxy, &h), "8.8.8.8".parse::<IpAddr>().unwrap());
        assert_eq!(
            r.resolve(proxy, &[hdr("X-FORWARDED-FOR", "garbage")]),
            proxy
        );
        assert_eq!(r.resolve(proxy, &[]), proxy);
        assert_eq!(
            r.resolve(proxy, &[hdr("x-forwarded-for", "127.0.0.1")]),
            proxy
        );
        assert_eq!(
            r.resolve(proxy, &[hdr("x-forwarded-for", "1.2.3.4:99, 127.0.0.1")]),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn no_trusted_proxies_never_reads_header() {
        let r = ClientIpResolver::new("X-Forwarded-For", vec![]);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(r.resolve(peer, &[hdr("x-forwarded-for", "1.1.1.1")]), peer);
    }
}
