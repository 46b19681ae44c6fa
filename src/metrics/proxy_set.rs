//! The per-period set of proxy addresses behind the `snowflake-ips*` lines,
//! with N's semantics (docs/protocol.md §12.10): one record per address, holding
//! the address's country and the NAT types and proxy types it polled with.
//!
//! * `snowflake-ips` and `snowflake-ips-total` count each address once;
//! * `snowflake-ips-nat-*` count (address, NAT) pairs;
//! * `snowflake-ips-<type>` count (address, known type) pairs.
//!
//! Records are keyed by [`IpKey`], never by address. Merging two sets is a
//! set union (NAT and type sets are OR-ed, the country is chosen by
//! [`Country::preferred`]), which is commutative, associative and idempotent:
//! shards can each keep a set and the union publishes what one set would.

use super::ip_key::IpKey;
use super::labels::{nat_bit, type_bit, Country};
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Addresses one set keeps before it stops adding new ones: about 20 MB of
/// memory, far above the ~10⁵ daily proxy addresses upstream sees, but a
/// bound against a flood of IPv6 addresses from one prefix.
pub const DEFAULT_LIMIT: usize = 1_000_000;

/// What one period knows about one proxy address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRecord {
    pub country: Country,
    /// Bit set of NAT types (see `labels::nat_bit`).
    pub nats: u8,
    /// Bit set of known proxy types (see `labels::type_bit`).
    pub types: u8,
}

impl ProxyRecord {
    /// The record packed as country (2 bytes), NAT bits, type bits,
    /// big-endian in a `u32`: one storage row's value (exact in a JavaScript
    /// number), and the last 4 bytes of each record in the serialized set.
    pub fn to_u32(self) -> u32 {
        let [c0, c1] = self.country.bytes();
        u32::from_be_bytes([c0, c1, self.nats, self.types])
    }

    pub fn from_u32(packed: u32) -> ProxyRecord {
        let [c0, c1, nats, types] = packed.to_be_bytes();
        ProxyRecord {
            country: Country::from_bytes([c0, c1]),
            nats,
            types,
        }
    }

    fn union(self, other: ProxyRecord) -> ProxyRecord {
        ProxyRecord {
            country: self.country.preferred(other.country),
            nats: self.nats | other.nats,
            types: self.types | other.types,
        }
    }
}

/// The unique-address set of one period.
#[derive(Debug, Clone)]
pub struct ProxySet {
    records: BTreeMap<IpKey, ProxyRecord>,
    limit: usize,
    /// New addresses refused because the set was full.
    dropped: u64,
    /// Records new or changed since they were last taken for saving: only
    /// these are written, one storage row each.
    unsaved: BTreeSet<IpKey>,
}

impl Default for ProxySet {
    fn default() -> Self {
        ProxySet {
            records: BTreeMap::new(),
            limit: DEFAULT_LIMIT,
            dropped: 0,
            unsaved: BTreeSet::new(),
        }
    }
}

/// Equal when they hold the same records; bookkeeping is not compared.
impl PartialEq for ProxySet {
    fn eq(&self, other: &Self) -> bool {
        self.records == other.records
    }
}

impl ProxySet {
    /// Records one poll from the address `key`.
    pub fn observe(&mut self, key: IpKey, country: Country, nat: Nat, kind: ProxyType) {
        let seen = ProxyRecord {
            country,
            nats: nat_bit(nat),
            types: type_bit(kind),
        };
        self.add(key, seen);
    }

    fn add(&mut self, key: IpKey, record: ProxyRecord) {
        let full = self.records.len() >= self.limit;
        match self.records.get_mut(&key) {
            Some(old) => {
                let new = old.union(record);
                if new != *old {
                    *old = new;
                    self.unsaved.insert(key);
                }
            }
            None if full => self.dropped = self.dropped.saturating_add(1),
            None => {
                self.records.insert(key, record);
                self.unsaved.insert(key);
            }
        }
    }

    /// The records new or changed since the last call, to be saved; the
    /// set then counts them as saved ([`ProxySet::unsave`] undoes that if
    /// the write fails).
    pub fn take_unsaved(&mut self) -> Vec<(IpKey, ProxyRecord)> {
        let keys = std::mem::take(&mut self.unsaved);
        keys.into_iter()
            .filter_map(|k| self.records.get(&k).map(|r| (k, *r)))
            .collect()
    }

    /// Marks records as unsaved again (their write failed).
    pub fn unsave(&mut self, keys: impl IntoIterator<Item = IpKey>) {
        self.unsaved.extend(keys);
    }

    /// Adds a record read back from storage (already saved).
    pub fn add_saved(&mut self, key: IpKey, record: ProxyRecord) {
        let was_unsaved = self.unsaved.contains(&key);
        self.add(key, record);
        if !was_unsaved {
            self.unsaved.remove(&key);
        }
    }

    /// Adds every record of `other` (set union).
    pub fn merge(&mut self, other: &ProxySet) {
        for (key, record) in &other.records {
            self.add(*key, *record);
        }
        self.dropped = self.dropped.saturating_add(other.dropped);
    }

    /// New addresses refused since this set was created because it was full.
    /// Non-zero means the published counts are too low.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Unique addresses (`snowflake-ips-total`).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = (IpKey, ProxyRecord)> + '_ {
        self.records.iter().map(|(k, r)| (*k, *r))
    }

    /// Addresses per country (`snowflake-ips`).
    pub fn countries(&self) -> BTreeMap<Country, u64> {
        let mut counts = BTreeMap::new();
        for record in self.records.values() {
            let n: &mut u64 = counts.entry(record.country).or_default();
            *n += 1;
        }
        counts
    }

    /// Addresses that polled with this NAT type (`snowflake-ips-nat-*`).
    pub fn with_nat(&self, nat: Nat) -> u64 {
        let bit = nat_bit(nat);
        self.records.values().filter(|r| r.nats & bit != 0).count() as u64
    }

    /// Addresses that polled as this proxy type (`snowflake-ips-<type>`);
    /// always 0 for `unknown`.
    pub fn with_type(&self, kind: ProxyType) -> u64 {
        let bit = type_bit(kind);
        if bit == 0 {
            return 0;
        }
        self.records.values().filter(|r| r.types & bit != 0).count() as u64
    }
}

/// Bytes per record in the serialized form: key (8, big-endian), country
/// (2), NAT bits (1), type bits (1).
const RECORD_BYTES: usize = 12;

/// The serialized form: `{"v":1,"records":"<base64>"}`, records sorted by
/// key and packed in 12 bytes each (16 characters of base64 per address),
/// so 100,000 addresses take about 1.6 MB.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    records: String,
}

impl Serialize for ProxySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut packed = Vec::with_capacity(self.records.len() * RECORD_BYTES);
        for (key, record) in &self.records {
            packed.extend_from_slice(&key.0.to_be_bytes());
            packed.extend_from_slice(&record.to_u32().to_be_bytes());
        }
        Wire {
            v: 1,
            records: base64::engine::general_purpose::STANDARD.encode(packed),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProxySet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = Wire::deserialize(d)?;
        if wire.v != 1 {
            return Err(D::Error::custom(format!(
                "ProxySet: unknown version {}",
                wire.v
            )));
        }
        let packed = base64::engine::general_purpose::STANDARD
            .decode(wire.records.as_bytes())
            .map_err(|e| D::Error::custom(format!("ProxySet: {e}")))?;
        let chunks = packed.chunks_exact(RECORD_BYTES);
        if !chunks.remainder().is_empty() {
            return Err(D::Error::custom("ProxySet: truncated record"));
        }
        let mut set = ProxySet::default();
        for chunk in chunks {
            // Records that arrive this way (an old whole-set snapshot, a
            // reply over the seam) have no rows yet.
            let mut key = [0u8; 8];
            let mut rest = [0u8; 4];
            let (k, r) = chunk.split_at(8);
            key.copy_from_slice(k);
            rest.copy_from_slice(r);
            set.add(
                IpKey(u64::from_be_bytes(key)),
                ProxyRecord::from_u32(u32::from_be_bytes(rest)),
            );
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Country {
        Country::new(Some("CA"))
    }

    #[test]
    fn counts_addresses_nat_pairs_and_type_pairs() {
        let mut set = ProxySet::default();
        set.observe(IpKey(1), ca(), Nat::Unknown, ProxyType::Unknown);
        set.observe(IpKey(1), ca(), Nat::Restricted, ProxyType::Standalone);
        set.observe(IpKey(1), ca(), Nat::Restricted, ProxyType::Badge);
        set.observe(IpKey(2), Country::UNKNOWN, Nat::Open, ProxyType::Standalone);
        assert_eq!(set.len(), 2);
        assert_eq!(set.with_nat(Nat::Unknown), 1);
        assert_eq!(set.with_nat(Nat::Restricted), 1);
        assert_eq!(set.with_nat(Nat::Open), 1);
        assert_eq!(set.with_nat(Nat::Strict), 0);
        assert_eq!(set.with_type(ProxyType::Standalone), 2);
        assert_eq!(set.with_type(ProxyType::Badge), 1);
        assert_eq!(set.with_type(ProxyType::Unknown), 0);
        let countries: Vec<_> = set.countries().into_iter().collect();
        assert_eq!(countries, vec![(Country::UNKNOWN, 1), (ca(), 1)]);
    }

    #[test]
    fn stops_growing_at_its_limit() {
        let mut set = ProxySet {
            limit: 2,
            ..ProxySet::default()
        };
        for k in 0..5 {
            set.observe(IpKey(k), ca(), Nat::Unknown, ProxyType::Unknown);
        }
        // Known addresses still update.
        set.observe(IpKey(0), ca(), Nat::Open, ProxyType::Unknown);
        assert_eq!(set.len(), 2);
        assert_eq!(set.dropped(), 3);
        assert_eq!(set.with_nat(Nat::Open), 1);
    }

    #[test]
    fn only_new_and_changed_records_await_saving() {
        let mut set = ProxySet::default();
        set.observe(IpKey(1), ca(), Nat::Unknown, ProxyType::Standalone);
        set.observe(IpKey(2), ca(), Nat::Unknown, ProxyType::Standalone);
        assert_eq!(set.take_unsaved().len(), 2);
        assert!(set.take_unsaved().is_empty());
        // The same poll again changes nothing; a new NAT type changes the record.
        set.observe(IpKey(1), ca(), Nat::Unknown, ProxyType::Standalone);
        assert!(set.take_unsaved().is_empty());
        set.observe(IpKey(2), ca(), Nat::Open, ProxyType::Standalone);
        let unsaved = set.take_unsaved();
        assert_eq!(unsaved.len(), 1);
        assert_eq!(unsaved[0].0, IpKey(2));
        // A failed write puts them back; rows read back are saved already.
        set.unsave([IpKey(2)]);
        assert_eq!(set.take_unsaved(), unsaved);
        let mut restored = ProxySet::default();
        restored.add_saved(IpKey(9), ProxyRecord::from_u32(unsaved[0].1.to_u32()));
        assert!(restored.take_unsaved().is_empty());
        assert_eq!(restored.with_nat(Nat::Open), 1);
        assert_eq!(ProxyRecord::from_u32(unsaved[0].1.to_u32()), unsaved[0].1);
    }

    #[test]
    fn serializes_compactly_and_rejects_damage() {
        let mut set = ProxySet::default();
        set.observe(
            IpKey(0x0102_0304_0506_0708),
            ca(),
            Nat::Open,
            ProxyType::Bloco,
        );
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"{"v":1,"records":"AQIDBAUGBwhDQSAQ"}"#);
        let back: ProxySet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<ProxySet>(r#"{"v":1,"records":"AQID"}"#).is_err());
        assert!(serde_json::from_str::<ProxySet>(r#"{"v":2,"records":""}"#).is_err());
        assert!(serde_json::from_str::<ProxySet>(r#"{"v":1,"records":"!!"}"#).is_err());
    }
}
