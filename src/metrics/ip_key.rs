//! Keyed hashes of IP addresses, so per-period unique-address sets can be
//! stored and merged without ever storing an address.
//!
//! The hash is SipHash-2-4 (a keyed pseudo-random function built for short
//! inputs, 128-bit key, 64-bit output), written here to avoid a dependency.
//! 64 bits make a collision between two of 10⁶ addresses in one period about
//! a 1-in-36-million event, and a stored record small (see `proxy_set`).
//!
//! Without the key the hashes reveal nothing; with it, IPv4's 2³² addresses
//! can be enumerated whatever the hash, so keep the secret out of the
//! storage the hashes live in (a Worker secret, not a Durable Object value).
//! [`IpHasher::for_period`] derives a fresh key per period from that secret:
//! every shard computes the same key for the same period (so their sets merge)
//! and hashes from different periods cannot be linked to each other.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The part of an address that counts as one address, for the unique-address
/// metrics and for `MAX_POLLS_PER_ADDRESS`: an IPv4 address (also when
/// written IPv4-mapped), or the /64 of an IPv6 one. One host or home network
/// gets a /64 and may use any address in it (privacy addresses change
/// daily), so counting /128s would let one machine be 2⁶⁴ "addresses".
pub fn counted_prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// The keyed hash of one IP address; the only form in which proxy addresses
/// are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey(pub u64);

impl IpKey {
    /// 16 lower-case hex digits, a form that survives JavaScript numbers and
    /// SQLite's signed integers alike.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    pub fn from_hex(s: &str) -> Option<IpKey> {
        if s.len() != 16 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(IpKey)
    }
}

impl fmt::Debug for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpKey({})", self.to_hex())
    }
}

impl Serialize for IpKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IpKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        IpKey::from_hex(&s).ok_or_else(|| serde::de::Error::custom("IpKey: expected 16 hex digits"))
    }
}

/// 16 bytes from 32 hex digits.
pub fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    crate::hex::decode(s)?.try_into().ok()
}

/// Computes [`IpKey`]s with one secret key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpHasher {
    k0: u64,
    k1: u64,
}

impl fmt::Debug for IpHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.write_str("IpHasher(..)")
    }
}

impl IpHasher {
    pub fn new(key: [u8; 16]) -> IpHasher {
        let (a, b) = key.split_at(8);
        IpHasher {
            k0: u64_le(a),
            k1: u64_le(b),
        }
    }

    /// The key this hasher uses: [`IpHasher::new`] of it hashes alike.
    pub fn key_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.k0.to_le_bytes());
        b.copy_from_slice(&self.k1.to_le_bytes());
        out
    }

    /// The hasher whose [`IpHasher::key_bytes`] are these, in hex.
    pub fn from_hex(s: &str) -> Option<IpHasher> {
        parse_hex16(s).map(IpHasher::new)
    }

    /// The hasher for the metrics period that starts at `period_start_unix`
    /// (seconds), derived from a long-lived secret.
    pub fn for_period(secret: [u8; 16], period_start_unix: u64) -> IpHasher {
        let master = IpHasher::new(secret);
        let derive = |which: u8| {
            let mut input = Vec::with_capacity(17);
            input.extend_from_slice(b"sf-stats");
            input.extend_from_slice(&period_start_unix.to_le_bytes());
            input.push(which);
            master.hash_bytes(&input)
        };
        IpHasher {
            k0: derive(0),
            k1: derive(1),
        }
    }

    /// The key of one address, as [`counted_prefix`] counts it.
    pub fn key(&self, ip: IpAddr) -> IpKey {
        match counted_prefix(ip) {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                IpKey(self.hash_bytes(&[4, a, b, c, d]))
            }
            IpAddr::V6(v6) => {
                let mut input = [6u8; 9];
                if let (Some(prefix), Some(tail)) = (v6.octets().get(..8), input.get_mut(1..)) {
                    tail.copy_from_slice(prefix);
                }
                IpKey(self.hash_bytes(&input))
            }
        }
    }

    /// SipHash-2-4 of `data`.
    pub fn hash_bytes(&self, data: &[u8]) -> u64 {
        let mut s = SipState::new(self.k0, self.k1);
        let mut blocks = data.chunks_exact(8);
        for block in &mut blocks {
            s.compress(u64_le(block));
        }
        let rest = blocks.remainder();
        let mut last = [0u8; 8];
        if let Some(dst) = last.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        // The message length mod 256 goes in the top byte.
        let tail = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
        s.compress(tail);
        s.finish()
    }
}

fn u64_le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (dst, src) in b.iter_mut().zip(bytes) {
        *dst = *src;
    }
    u64::from_le_bytes(b)
}

struct SipState {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl SipState {
    fn new(k0: u64, k1: u64) -> SipState {
        SipState {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    fn finish(mut self) -> u64 {
        self.v2 ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    fn reference_key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn matches_the_siphash_paper_vectors() {
        let h = IpHasher::new(reference_key());
        // Appendix A of the SipHash paper: key 00..0f, message 00..0e.
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(h.hash_bytes(&msg), 0xa129_ca61_49be_45e5);
        assert_eq!(h.hash_bytes(&[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    #[allow(deprecated)]
    fn matches_std_siphash_for_every_length() {
        let key = reference_key();
        let h = IpHasher::new(key);
        let msg: Vec<u8> = (0u8..70).collect();
        for len in 0..msg.len() {
            let mut std_hasher = std::hash::SipHasher::new_with_keys(h.k0, h.k1);
            std_hasher.write(&msg[..len]);
            assert_eq!(h.hash_bytes(&msg[..len]), std_hasher.finish(), "len {len}");
        }
    }

    #[test]
    fn keys_depend_on_address_key_and_period() {
        let a: IpAddr = "129.97.208.23".parse().unwrap();
        let b: IpAddr = "129.97.208.24".parse().unwrap();
        let mapped: IpAddr = "::ffff:129.97.208.23".parse().unwrap();
        let h = IpHasher::for_period([7; 16], 86_400);
        assert_ne!(h.key(a), h.key(b));
        assert_eq!(h.key(a), h.key(mapped));
        assert_eq!(h.key(a), IpHasher::for_period([7; 16], 86_400).key(a));
        assert_ne!(h.key(a), IpHasher::for_period([7; 16], 172_800).key(a));
        assert_ne!(h.key(a), IpHasher::for_period([8; 16], 86_400).key(a));
        let derived = IpHasher::for_period([7; 16], 86_400);
        assert_ne!(derived.k0, derived.k1);
    }

    #[test]
    fn hex_round_trips() {
        let k = IpKey(0x0123_4567_89ab_cdef);
        assert_eq!(k.to_hex(), "0123456789abcdef");
        assert_eq!(IpKey::from_hex("0123456789abcdef"), Some(k));
        assert_eq!(IpKey::from_hex("0123"), None);
        assert_eq!(IpKey::from_hex("+123456789abcdef"), None);
        assert_eq!(format!("{:?}", IpHasher::new([1; 16])), "IpHasher(..)");
    }
}
