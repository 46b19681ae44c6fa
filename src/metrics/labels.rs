//! The small vocabularies metrics are broken down by: countries, rendezvous
//! methods, outcomes; plus the binning rule shared by both outputs.
//!
//! NAT and proxy types are the protocol's own [`Nat`] and [`ProxyType`].

use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Rounds a count up to a multiple of 8, as upstream bins published counts
/// (0→0, 1→8, 8→8, 9→16). Saturates instead of overflowing.
pub fn bin_count(count: u64) -> u64 {
    count.div_ceil(8).saturating_mul(8)
}

/// A two-character country code as published (`CA`, `??`).
///
/// Anything that is not two ASCII letters or digits becomes `??`, so label
/// cardinality stays bounded and no odd bytes reach the outputs. Lower case
/// is upper-cased. Cloudflare's `XX` ("no country data") becomes `??`, the
/// code upstream publishes for an unknown location; its `T1` (Tor) is kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// The country of an address with no known location.
    pub const UNKNOWN: Country = Country(*b"??");

    /// Normalises a country code from `request.cf` or a lookup; `None` or an
    /// invalid code gives [`Country::UNKNOWN`].
    pub fn new(code: Option<&str>) -> Country {
        match code.map(str::as_bytes) {
            Some(&[a, b]) if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                match [a.to_ascii_uppercase(), b.to_ascii_uppercase()] {
                    [b'X', b'X'] => Country::UNKNOWN,
                    code => Country(code),
                }
            }
            _ => Country::UNKNOWN,
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    pub(crate) fn bytes(self) -> [u8; 2] {
        self.0
    }

    pub(crate) fn from_bytes(b: [u8; 2]) -> Country {
        if b == *b"??" {
            return Country::UNKNOWN;
        }
        std::str::from_utf8(&b)
            .map(|s| Country::new(Some(s)))
            .unwrap_or(Country::UNKNOWN)
    }

    /// Of two codes seen for one address in one period, the one kept: a known
    /// country beats `??`, otherwise the smaller code. Being order-independent
    /// keeps the published counts the same however events are split among
    /// shards (upstream keeps the first seen, which is not).
    pub(crate) fn preferred(self, other: Country) -> Country {
        match (self == Country::UNKNOWN, other == Country::UNKNOWN) {
            (true, _) => other,
            (_, true) => self,
            _ => self.min(other),
        }
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Country::new(Some(&s)))
    }
}

/// How a client reached the broker (upstream's `RendezvousMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rendezvous {
    /// `POST /client`, directly or domain-fronted.
    Http,
    /// `GET /amp/client/…` through an AMP cache.
    Ampcache,
    /// Amazon SQS (docs/sqs.md).
    Sqs,
}

impl Rendezvous {
    /// In the order of the descriptor lines.
    pub const ALL: [Rendezvous; 3] = [Rendezvous::Http, Rendezvous::Ampcache, Rendezvous::Sqs];

    pub fn as_str(self) -> &'static str {
        match self {
            Rendezvous::Http => "http",
            Rendezvous::Ampcache => "ampcache",
            Rendezvous::Sqs => "sqs",
        }
    }
}

/// How one client request ended, as counted (each request counts once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientStatus {
    /// Answered "no snowflake proxies currently available" (or 503 legacy).
    Denied,
    /// The proxy's answer was delivered to the client.
    Matched,
    /// Matched, but no answer came in time ("timed out waiting for answer!",
    /// 504 legacy).
    TimedOut,
}

impl ClientStatus {
    /// The `status` label of `snowflake_rounded_client_poll_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Denied => "denied",
            ClientStatus::Matched => "matched",
            ClientStatus::TimedOut => "timeout",
        }
    }
}

/// How one `/answer` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnswerStatus {
    /// `{"Status":"success"}`: the answer went to a waiting client.
    Success,
    /// `{"Status":"client gone"}`: no client waits for that Sid any more.
    Timeout,
}

impl AnswerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Success => "success",
            AnswerStatus::Timeout => "timeout",
        }
    }
}

/// The bit of a NAT type in a per-address NAT set. All six names are kept
/// apart, as the descriptor has one line for each.
pub(crate) fn nat_bit(nat: Nat) -> u8 {
    1 << match nat {
        Nat::Restricted => 0,
        Nat::Unrestricted => 1,
        Nat::Unknown => 2,
        Nat::Strict => 3,
        Nat::Moderate => 4,
        Nat::Open => 5,
    }
}

/// The bit of a known proxy type in a per-address type set; unknown types
/// are not counted (N).
pub(crate) fn type_bit(kind: ProxyType) -> u8 {
    match kind {
        ProxyType::Standalone => 1,
        ProxyType::Webext => 1 << 1,
        ProxyType::Badge => 1 << 2,
        ProxyType::Iptproxy => 1 << 3,
        ProxyType::Bloco => 1 << 4,
        ProxyType::Unknown => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_up_to_multiples_of_eight() {
        assert_eq!(bin_count(0), 0);
        assert_eq!(bin_count(1), 8);
        assert_eq!(bin_count(8), 8);
        assert_eq!(bin_count(9), 16);
        assert_eq!(bin_count(u64::MAX), u64::MAX);
    }

    #[test]
    fn normalises_country_codes() {
        assert_eq!(Country::new(Some("CA")).as_str(), "CA");
        assert_eq!(Country::new(Some("ca")).as_str(), "CA");
        assert_eq!(Country::new(Some("T1")).as_str(), "T1");
        assert_eq!(Country::new(Some("XX")).as_str(), "??");
        assert_eq!(Country::new(Some("")).as_str(), "??");
        assert_eq!(Country::new(Some("CAN")).as_str(), "??");
        assert_eq!(Country::new(Some("C\"")).as_str(), "??");
        assert_eq!(Country::new(Some("é")).as_str(), "??");
        assert_eq!(Country::new(None), Country::UNKNOWN);
    }

    #[test]
    fn prefers_known_then_smaller_country() {
        let ca = Country::new(Some("CA"));
        let de = Country::new(Some("DE"));
        assert_eq!(Country::UNKNOWN.preferred(ca), ca);
        assert_eq!(ca.preferred(Country::UNKNOWN), ca);
        assert_eq!(de.preferred(ca), ca);
        assert_eq!(ca.preferred(de), ca);
    }
}
