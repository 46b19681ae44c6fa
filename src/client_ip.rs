//! Where a request came from, for geolocation only (docs/design.md §2.4,
//! docs/protocol.md §12.7–§12.8). Nothing here is used for access control.
//!
//! # Forwarding headers and `TRUSTED_HOPS`
//!
//! Each proxy on the way appends one list item to `X-Forwarded-For` (or one
//! element to `Forwarded`): the address it received the request from. Items
//! further left were written by the client or by proxies we do not know and
//! can say anything. `trusted_hops` is the number of proxies in front of the
//! Worker that append an item; only the rightmost `trusted_hops` items are
//! believed, and every other item is ignored:
//!
//! * [`client_ip`] returns the **leftmost public** address among those items
//!   (N's "leftmost non-private" rule, restricted to trusted items, so a
//!   client cannot choose its country by sending its own header);
//! * [`proxy_ip`] returns the item the outermost trusted proxy wrote, i.e.
//!   the `trusted_hops`-th from the right (N's "rightmost after trusted
//!   hops"), whether public or not.
//!
//! `Forwarded` is read first (`for=` parameters, quoted or not, IPv6 in
//! brackets with an optional port, e.g. `for="[2001:db8::1]:4711"`); if it
//! gives nothing, `X-Forwarded-For`. Items that do not parse still count as
//! hops. `trusted_hops == 0` means no header is believed and both functions
//! return `None` (use the connection's own address or `request.cf`).
//! If the platform itself appends the connecting address (Cloudflare does
//! when a request already carries `X-Forwarded-For`), that is one more hop.
//!
//! "Public" excludes the private, loopback, link-local, CGNAT, documentation,
//! benchmarking, multicast, reserved, 6to4, Teredo, discard and unspecified
//! ranges (realclientip-go's list, which N uses; its entry `192.18.0.0/15`
//! is a typo of RFC 2544's `198.18.0.0/15`, used here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The client's address for geolocation; see the module docs.
pub fn client_ip(
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted_hops: usize,
) -> Option<IpAddr> {
    let leftmost_public =
        |items: Vec<Option<IpAddr>>| items.into_iter().rev().flatten().find(|ip| is_public(*ip));
    forwarded
        .and_then(|h| leftmost_public(trusted_items(h, trusted_hops, forwarded_for)))
        .or_else(|| {
            x_forwarded_for
                .and_then(|h| leftmost_public(trusted_items(h, trusted_hops, parse_addr)))
        })
}

/// The proxy's address when proxies reach the Worker through forwarding
/// proxies; see the module docs. Proxies that connect directly should be
/// located by the connection itself (`request.cf`, `CF-Connecting-IP`).
pub fn proxy_ip(
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted_hops: usize,
) -> Option<IpAddr> {
    let outermost = |items: Vec<Option<IpAddr>>| {
        if items.len() < trusted_hops {
            // Fewer hops than configured: a misconfiguration; trust nothing.
            return None;
        }
        items.last().copied().flatten()
    };
    forwarded
        .and_then(|h| outermost(trusted_items(h, trusted_hops, forwarded_for)))
        .or_else(|| {
            x_forwarded_for.and_then(|h| outermost(trusted_items(h, trusted_hops, parse_addr)))
        })
}

/// The rightmost `hops` items of a comma-separated header, parsed, from
/// right to left. The header is read from the right and only as far as
/// needed, so a long forged prefix is never even scanned.
fn trusted_items(
    header: &str,
    hops: usize,
    parse: fn(&str) -> Option<IpAddr>,
) -> Vec<Option<IpAddr>> {
    header.rsplit(',').take(hops).map(parse).collect()
}

/// The `for=` address of one `Forwarded` element
/// (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let mut parts = pair.trim().split('=');
        let (key, value) = (parts.next()?, parts.next()?);
        if parts.next().is_some() || !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_addr(unquoted)
    })
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`, optionally with a
/// `%zone`. IPv4-mapped IPv6 becomes IPv4; unspecified addresses are refused.
pub fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let host = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        inside
    } else if s.bytes().filter(|&c| c == b':').count() == 1 {
        s.split_once(':').map_or(s, |(host, _port)| host)
    } else {
        s
    };
    let host = match host.rsplit_once('%') {
        Some((addr, _zone)) if !addr.is_empty() => addr,
        _ => host,
    };
    let ip = host.parse::<IpAddr>().ok()?.to_canonical();
    (!ip.is_unspecified()).then_some(ip)
}

/// Whether `ip` can be a client's own public address (see the module docs).
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !V4_NOT_PUBLIC.iter().any(|(net, len)| in_v4(v4, *net, *len)),
        IpAddr::V6(v6) => !V6_NOT_PUBLIC.iter().any(|(net, len)| in_v6(v6, *net, *len)),
    }
}

const V4_NOT_PUBLIC: [(u32, u32); 16] = [
    (0x0A00_0000, 8),  // 10.0.0.0/8
    (0xAC10_0000, 12), // 172.16.0.0/12
    (0xC0A8_0000, 16), // 192.168.0.0/16
    (0x7F00_0000, 8),  // 127.0.0.0/8
    (0x0000_0000, 8),  // 0.0.0.0/8
    (0xA9FE_0000, 16), // 169.254.0.0/16
    (0xC000_0000, 24), // 192.0.0.0/24
    (0xC000_0200, 24), // 192.0.2.0/24
    (0xC633_6400, 24), // 198.51.100.0/24
    (0xCB00_7100, 24), // 203.0.113.0/24
    (0xC058_6300, 24), // 192.88.99.0/24
    (0xC612_0000, 15), // 198.18.0.0/15
    (0xE000_0000, 4),  // 224.0.0.0/4
    (0xF000_0000, 4),  // 240.0.0.0/4 (includes 255.255.255.255)
    (0x6440_0000, 10), // 100.64.0.0/10
    (0xFFFF_FFFF, 32), // 255.255.255.255/32
];

const V6_NOT_PUBLIC: [(u128, u32); 9] = [
    (0, 128),                          // ::/128
    (1, 128),                          // ::1/128
    (0x0100_0000_0000_0000 << 64, 64), // 100::/64
    (0x2001_0000_0000_0000 << 64, 23), // 2001::/23 (incl. Teredo, benchmarking)
    (0x2001_0db8_0000_0000 << 64, 32), // 2001:db8::/32
    (0xfc00_0000_0000_0000 << 64, 7),  // fc00::/7
    (0xfe80_0000_0000_0000 << 64, 10), // fe80::/10
    (0xff00_0000_0000_0000 << 64, 8),  // ff00::/8
    (0x2002_0000_0000_0000 << 64, 16), // 2002::/16
];

fn in_v4(ip: Ipv4Addr, net: u32, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == net & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// ICE candidate types, by RFC 8445 type preference (pion's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    Host,
    PeerReflexive,
    ServerReflexive,
    Relay,
}

impl CandidateType {
    fn parse(s: &str) -> Option<CandidateType> {
        Some(match s {
            "host" => CandidateType::Host,
            "prflx" => CandidateType::PeerReflexive,
            "srflx" => CandidateType::ServerReflexive,
            "relay" => CandidateType::Relay,
            _ => return None,
        })
    }

    fn preference(self) -> u8 {
        match self {
            CandidateType::Host => 126,
            CandidateType::PeerReflexive => 110,
            CandidateType::ServerReflexive => 100,
            CandidateType::Relay => 0,
        }
    }
}

/// One parsed `a=candidate:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub addr: IpAddr,
    pub kind: CandidateType,
    pub priority: u32,
}

/// Parses `a=candidate:<foundation> <component> <transport> <priority>
/// <address> <port> typ <type> …`. `None` for other lines, malformed
/// candidates and mDNS (`….local`) or other non-IP addresses.
pub fn parse_candidate(line: &str) -> Option<Candidate> {
    let value = line.trim().strip_prefix("a=candidate:")?;
    let mut fields = value.split_ascii_whitespace();
    let _foundation = fields.next()?;
    fields.next()?.parse::<u16>().ok()?; // component
    let _transport = fields.next()?;
    let priority = fields.next()?.parse::<u32>().ok()?;
    let address = fields.next()?;
    fields.next()?.parse::<u16>().ok()?; // port
    if fields.next()? != "typ" {
        return None;
    }
    let kind = CandidateType::parse(fields.next()?)?;
    // Hostnames (mDNS `.local`) fail here, as they do for N.
    let addr = address.parse::<IpAddr>().ok()?.to_canonical();
    Some(Candidate {
        addr,
        kind,
        priority,
    })
}

/// The candidates of an SDP (the `sdp` string of an offer, not its JSON),
/// in N's order of likely accuracy: by type (host, peer-reflexive,
/// server-reflexive, relay), then by priority, highest first; ties keep the
/// SDP's order. Unlike N's strict SDP parser, a malformed SDP still yields
/// the candidate lines it has, and session-level candidates are accepted.
pub fn candidates(sdp: &str) -> Vec<Candidate> {
    let mut found: Vec<Candidate> = sdp.lines().filter_map(parse_candidate).collect();
    found.sort_by(|a, b| {
        b.kind
            .preference()
            .cmp(&a.kind.preference())
            .then(b.priority.cmp(&a.priority))
    });
    found
}

/// The `sdp` string of an offer as clients send it
/// (`{"type":"offer","sdp":"…"}`), read the way N reads it for geolocation
/// (exact key `sdp`). `None` if it is not such a JSON object.
pub fn offer_sdp(offer: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(offer).ok()? {
        serde_json::Value::Object(mut map) => match map.remove("sdp")? {
            serde_json::Value::String(sdp) => Some(sdp),
            _ => None,
        },
        _ => None,
    }
}

/// The candidate addresses of an SDP in the order of [`candidates`].
pub fn candidate_addrs(sdp: &str) -> Vec<IpAddr> {
    candidates(sdp).into_iter().map(|c| c.addr).collect()
}

/// The address to geolocate an AMP (or SQS) client by: the first public
/// address in [`candidates`] order, relay candidates excluded (their
/// address is a TURN server's, not the client's). N takes the first
/// address whatever it is, so a private host candidate makes N report
/// `??` where this finds the client's public server-reflexive address.
pub fn best_candidate_addr(sdp: &str) -> Option<IpAddr> {
    candidates(sdp)
        .into_iter()
        .filter(|c| c.kind != CandidateType::Relay)
        .map(|c| c.addr)
        .find(|ip| is_public(*ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_forwarding_formats() {
        assert_eq!(parse_addr("129.97.208.23"), Some(ip("129.97.208.23")));
        assert_eq!(
            parse_addr(" 129.97.208.23:4711 "),
            Some(ip("129.97.208.23"))
        );
        assert_eq!(parse_addr("2001:4860::1"), Some(ip("2001:4860::1")));
        assert_eq!(parse_addr("[2001:4860::1]"), Some(ip("2001:4860::1")));
        assert_eq!(parse_addr("[2001:4860::1]:4711"), Some(ip("2001:4860::1")));
        assert_eq!(parse_addr("fe80::1%eth0"), Some(ip("fe80::1")));
        assert_eq!(parse_addr("::ffff:8.8.8.8"), Some(ip("8.8.8.8")));
        assert_eq!(parse_addr("0.0.0.0"), None);
        assert_eq!(parse_addr("::"), None);
        assert_eq!(parse_addr("unknown"), None);
        assert_eq!(parse_addr("_hidden"), None);
        assert_eq!(parse_addr("[2001:4860::1]x"), None);
        assert_eq!(parse_addr("01.2.3.4"), None);
    }

    #[test]
    fn classifies_public_addresses() {
        for private in [
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.19.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "2001::1",
            "2002::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in [
            "129.97.208.23",
            "8.8.8.8",
            "172.32.0.1",
            "192.18.0.1",
            "2a00:1450::1",
            "2606:4700::1",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }
}
