//! Polls the matcher lately refused at once, remembered by the Worker for a
//! moment so that a flood's re-polls are answered without a matcher
//! request: an address holding `MAX_POLLS_PER_ADDRESS` sessions, and an
//! address and pool told `polled too soon` (`PROXY_POLL_INTERVAL_MS`). And
//! polls to a shard that just reported `MAX_PARKED_POLLS` parked
//! ([`crate::matcher::routing::Board::full`]): past capacity, refusing must
//! cost far less than serving, or proxies that re-poll at once keep the
//! shard's one thread busy refusing while honest requests queue.
//!
//! A flood that ignores `NextPoll` re-polls as fast as it is answered; if
//! every refusal cost a Worker-to-matcher hop, the matcher (one thread)
//! would spend itself refusing and honest polls would queue behind it. With
//! this memory each Worker isolate asks the matcher about such an address at
//! most once per [`REMEMBER_MS`]. Honest proxies are not affected: they come
//! back after the `NextPoll` they were told, which is later. The refusals
//! answered from this memory are tallied and sent with the isolate's next
//! poll to the same shard, which counts them as its own
//! ([`RecentRefusals::take`]); only the tally of an isolate that ends first
//! is lost.
//!
//! Addresses are kept only in memory and never stored or logged: refused
//! ones for at most [`REMEMBER_MS`], as the prefix the matcher counts by (an
//! IPv6 /64); those of polls refused as full (at most [`ADDRESS_CAPACITY`])
//! until the next poll to their shard carries them there, as a poll carries
//! its own (hashed with the period key when there are several shards).

use crate::matcher::api::{ProxyAddress, RefusedAddress};
use crate::matcher::PollReply;
use crate::metrics::counted_prefix;
use crate::metrics::recorder::{Refusal, RefusedPolls};
use crate::protocol::nat::{Nat, Pool};
use crate::protocol::proxy::ProxyType;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// How long an isolate answers a refused address itself.
pub const REMEMBER_MS: u64 = 1_000;

/// Refusals one isolate remembers at most; past that, new ones are not
/// remembered (they are still refused, by the matcher).
pub const CAPACITY: usize = 10_000;

/// Kinds of refused poll (by shard, refusal, NAT, type, relay pattern and
/// country) one isolate tallies at most before they are sent; past that a
/// new kind is not answered from memory but sent to the matcher as usual.
pub const TALLY_CAPACITY: usize = 4_096;

/// Addresses of polls refused as full one isolate holds at most until it
/// sends them; a poll whose address would be one more is sent to the
/// matcher instead, so that every polling address is still counted.
pub const ADDRESS_CAPACITY: usize = 4_096;

/// One kind of refused poll, and the shard that refused it first.
type TallyKey = (u32, Refusal, Nat, ProxyType, bool, Option<String>);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Forgotten from then on.
    until: u64,
    /// For `polled too soon`: when the address may poll again.
    not_before: Option<u64>,
}

#[derive(Debug, Default)]
pub struct RecentRefusals {
    /// By address prefix and, for `polled too soon`, pool.
    entries: HashMap<(IpAddr, Option<usize>), Entry>,
    /// Refusals answered from memory and not yet sent to their shard.
    unsent: HashMap<TallyKey, u64>,
    /// By shard: the addresses of polls refused as full, not yet sent.
    full_addresses: HashMap<u32, HashSet<RefusedAddress>>,
    /// How many addresses `full_addresses` holds in all.
    addresses_held: usize,
}

/// What the Worker knows of a poll it may refuse itself.
#[derive(Debug, Clone)]
pub struct PollSeen<'a> {
    pub ip: IpAddr,
    pub pool: Pool,
    pub nat: Nat,
    pub proxy_type: ProxyType,
    pub with_relay_pattern: bool,
    pub country: Option<&'a str>,
    /// The shard its address goes to.
    pub shard: u32,
}

impl RecentRefusals {
    /// The reply to give `poll` without asking the matcher, if the matcher
    /// refused its address a moment ago and that still holds at `now`; it
    /// is tallied for the shard.
    pub fn refuse(&mut self, poll: &PollSeen<'_>, now: u64) -> Option<PollReply> {
        let reply = self.holds(poll.ip, poll.pool, now)?;
        let refusal = match reply {
            PollReply::TooSoon(_) => Refusal::TooSoon,
            _ => Refusal::AddressFull,
        };
        self.tally(poll, refusal).then_some(reply)
    }

    /// The reply to give `poll`, whose shard is full (the caller read that
    /// from the board), without asking the matcher: tallied, its `address`
    /// kept for the shard to count. None when the memory for either is
    /// full: the poll then goes to the matcher, which refuses and counts it.
    pub fn refuse_full(
        &mut self,
        poll: &PollSeen<'_>,
        address: Option<ProxyAddress>,
    ) -> Option<PollReply> {
        let address = address.map(|address| RefusedAddress {
            address,
            country: poll.country.map(str::to_string),
            nat: poll.nat,
            proxy_type: poll.proxy_type,
        });
        let known = address.as_ref().is_none_or(|a| {
            self.full_addresses
                .get(&poll.shard)
                .is_some_and(|set| set.contains(a))
        });
        if !known && self.addresses_held >= ADDRESS_CAPACITY {
            return None;
        }
        if !self.tally(poll, Refusal::Full) {
            return None;
        }
        if let (Some(a), false) = (address, known) {
            self.full_addresses.entry(poll.shard).or_default().insert(a);
            self.addresses_held = self.addresses_held.saturating_add(1);
        }
        Some(PollReply::Refused)
    }

    /// Counts one refused `poll` for its shard; false (not counted) if the
    /// tally has no room for a new kind.
    fn tally(&mut self, poll: &PollSeen<'_>, refusal: Refusal) -> bool {
        let key = (
            poll.shard,
            refusal,
            poll.nat,
            poll.proxy_type,
            poll.with_relay_pattern,
            poll.country.map(str::to_string),
        );
        if let Some(n) = self.unsent.get_mut(&key) {
            *n = n.saturating_add(1);
        } else if self.unsent.len() < TALLY_CAPACITY {
            self.unsent.insert(key, 1);
        } else {
            return false;
        }
        true
    }

    /// The addresses of polls refused as full for `shard`, to send with a
    /// poll to it.
    pub fn take_addresses(&mut self, shard: u32) -> Vec<RefusedAddress> {
        let taken: Vec<RefusedAddress> = self
            .full_addresses
            .remove(&shard)
            .map(|set| set.into_iter().collect())
            .unwrap_or_default();
        self.addresses_held = self.addresses_held.saturating_sub(taken.len());
        taken
    }

    /// The refusals tallied for `shard`, to send with a poll to it.
    pub fn take(&mut self, shard: u32) -> Vec<RefusedPolls> {
        let keys: Vec<TallyKey> = self
            .unsent
            .keys()
            .filter(|k| k.0 == shard)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                let count = self.unsent.remove(&key)?;
                let (_, refusal, nat, proxy_type, with_relay_pattern, country) = key;
                Some(RefusedPolls {
                    refusal,
                    nat,
                    proxy_type,
                    with_relay_pattern,
                    country,
                    count,
                })
            })
            .collect()
    }

    /// The reply the matcher gave a poll from `ip` in `pool` less than
    /// [`REMEMBER_MS`] ago, if it still holds at `now`.
    fn holds(&mut self, ip: IpAddr, pool: Pool, now: u64) -> Option<PollReply> {
        let prefix = counted_prefix(ip);
        if self.live((prefix, None), now).is_some() {
            return Some(PollReply::AddressFull);
        }
        let entry = self.live((prefix, Some(pool.index())), now)?;
        let not_before = entry.not_before?;
        Some(PollReply::TooSoon(not_before.saturating_sub(now)))
    }

    fn live(&mut self, key: (IpAddr, Option<usize>), now: u64) -> Option<Entry> {
        match self.entries.get(&key).copied() {
            Some(e) if e.until > now => Some(e),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// The matcher answered a poll from `ip` in `pool` with `reply` at
    /// `now`; refusals that will hold for the next poll are remembered.
    pub fn note(&mut self, ip: IpAddr, pool: Pool, reply: &PollReply, now: u64) {
        let prefix = counted_prefix(ip);
        let (key, entry) = match reply {
            PollReply::AddressFull => (
                (prefix, None),
                Entry {
                    until: now.saturating_add(REMEMBER_MS),
                    not_before: None,
                },
            ),
            PollReply::TooSoon(left) => {
                let not_before = now.saturating_add(*left);
                (
                    (prefix, Some(pool.index())),
                    Entry {
                        until: not_before.min(now.saturating_add(REMEMBER_MS)),
                        not_before: Some(not_before),
                    },
                )
            }
            PollReply::Matched(_) | PollReply::NoMatch | PollReply::Refused => return,
        };
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, e| e.until > now);
            if self.entries.len() >= CAPACITY {
                return;
            }
        }
        self.entries.insert(key, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Polls one isolate holds in flight at most in [`PollsInFlight`]; past
/// that a new one is not tracked (a poll replacing it may then be refused
/// as full, as from another isolate).
pub const IN_FLIGHT_CAPACITY: usize = 100_000;

/// The Sids of the polls this isolate has sent to a shard and not yet had
/// replies for, each until its deadline has surely passed. A new poll
/// under one of them replaces that poll, which a full shard accepts (the
/// count stays the same), so it is never refused from the board.
#[derive(Debug, Default)]
pub struct PollsInFlight {
    until: HashMap<String, u64>,
}

impl PollsInFlight {
    /// A poll under `sid` was sent; it ends by `until` whatever happens.
    pub fn begin(&mut self, sid: &str, until: u64, now: u64) {
        if self.until.len() >= IN_FLIGHT_CAPACITY {
            // Replies that never came (their requests were cancelled).
            self.until.retain(|_, u| *u > now);
        }
        if self.until.len() < IN_FLIGHT_CAPACITY || self.until.contains_key(sid) {
            self.until.insert(sid.to_string(), until);
        }
    }

    /// The poll under `sid` has its reply.
    pub fn end(&mut self, sid: &str) {
        self.until.remove(sid);
    }

    /// Whether a poll under `sid` is in flight at `now`.
    pub fn holds(&self, sid: &str, now: u64) -> bool {
        self.until.get(sid).is_some_and(|u| *u > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const FULL: PollReply = PollReply::AddressFull;

    #[test]
    fn a_refused_address_is_held_for_a_moment_then_forgotten() {
        let mut r = RecentRefusals::default();
        assert_eq!(r.holds(ip("203.0.113.66"), Pool::Strict, 0), None);
        r.note(ip("203.0.113.66"), Pool::Strict, &FULL, 1_000);
        // A full address is full in every pool.
        assert_eq!(r.holds(ip("203.0.113.66"), Pool::Open, 1_999), Some(FULL));
        assert_eq!(r.holds(ip("203.0.113.67"), Pool::Strict, 1_500), None);
        assert_eq!(r.holds(ip("203.0.113.66"), Pool::Strict, 2_000), None);
        assert_eq!(r.len(), 0, "an expired entry is dropped when looked up");
    }

    #[test]
    fn too_soon_is_held_per_pool_with_the_time_left_and_never_past_it() {
        let mut r = RecentRefusals::default();
        let a = ip("198.51.100.1");
        r.note(a, Pool::Strict, &PollReply::TooSoon(5_000), 10_000);
        assert_eq!(
            r.holds(a, Pool::Strict, 10_400),
            Some(PollReply::TooSoon(4_600))
        );
        assert_eq!(r.holds(a, Pool::Open, 10_400), None);
        // Remembered for REMEMBER_MS at most: then the matcher is asked.
        assert_eq!(r.holds(a, Pool::Strict, 10_000 + REMEMBER_MS), None);
        // And never past the time the address may poll again.
        r.note(a, Pool::Open, &PollReply::TooSoon(300), 20_000);
        assert_eq!(r.holds(a, Pool::Open, 20_299), Some(PollReply::TooSoon(1)));
        assert_eq!(r.holds(a, Pool::Open, 20_300), None);
        // Replies that do not repeat are not remembered.
        r.note(a, Pool::Open, &PollReply::NoMatch, 30_000);
        r.note(a, Pool::Open, &PollReply::Refused, 30_000);
        assert_eq!(r.holds(a, Pool::Open, 30_001), None);
    }

    #[test]
    fn ipv6_addresses_are_held_by_their_64_and_mapped_ipv4_as_ipv4() {
        let mut r = RecentRefusals::default();
        r.note(ip("2001:db8:1:2::1"), Pool::Strict, &FULL, 0);
        assert!(r
            .holds(ip("2001:db8:1:2:ffff::9"), Pool::Strict, 10)
            .is_some());
        assert!(r.holds(ip("2001:db8:1:3::1"), Pool::Strict, 10).is_none());
        r.note(ip("::ffff:198.51.100.7"), Pool::Strict, &FULL, 0);
        assert!(r.holds(ip("198.51.100.7"), Pool::Strict, 10).is_some());
    }

    fn seen(ip: IpAddr, shard: u32) -> PollSeen<'static> {
        PollSeen {
            ip,
            pool: Pool::Strict,
            nat: Nat::Restricted,
            proxy_type: ProxyType::Webext,
            with_relay_pattern: true,
            country: Some("DE"),
            shard,
        }
    }

    #[test]
    fn refusals_from_memory_are_tallied_for_their_shard_once() {
        let mut r = RecentRefusals::default();
        let a = ip("198.51.100.1");
        assert_eq!(r.refuse(&seen(a, 3), 0), None);
        r.note(a, Pool::Strict, &PollReply::TooSoon(5_000), 0);
        for t in 1..=4 {
            assert_eq!(
                r.refuse(&seen(a, 3), t),
                Some(PollReply::TooSoon(5_000 - t))
            );
        }
        assert!(r.take(2).is_empty());
        let sent = r.take(3);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].refusal, sent[0].count, sent[0].country.as_deref()),
            (Refusal::TooSoon, 4, Some("DE"))
        );
        assert!(r.take(3).is_empty(), "sent once");
    }

    #[test]
    fn polls_to_a_full_shard_are_tallied_with_each_address_once() {
        let mut r = RecentRefusals::default();
        let (a, b) = (ip("198.51.100.1"), ip("198.51.100.2"));
        let key = |ip| Some(ProxyAddress::Ip(ip));
        for _ in 0..3 {
            assert_eq!(r.refuse_full(&seen(a, 1), key(a)), Some(PollReply::Refused));
        }
        assert_eq!(r.refuse_full(&seen(b, 1), key(b)), Some(PollReply::Refused));
        let polls = r.take(1);
        assert_eq!(polls.len(), 1);
        assert_eq!((polls[0].refusal, polls[0].count), (Refusal::Full, 4));
        let mut addresses: Vec<_> = r.take_addresses(1).into_iter().map(|x| x.address).collect();
        addresses.sort_by_key(|x| format!("{x:?}"));
        assert_eq!(addresses, vec![key(a).unwrap(), key(b).unwrap()]);
        assert!(r.take_addresses(1).is_empty(), "sent once");
        assert_eq!(r.addresses_held, 0);
    }

    #[test]
    fn a_new_address_past_the_address_memory_goes_to_the_matcher() {
        let mut r = RecentRefusals::default();
        let at = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..ADDRESS_CAPACITY as u32 {
            let a = at(i);
            assert!(r
                .refuse_full(&seen(a, 0), Some(ProxyAddress::Ip(a)))
                .is_some());
        }
        let new = at(ADDRESS_CAPACITY as u32);
        assert_eq!(
            r.refuse_full(&seen(new, 0), Some(ProxyAddress::Ip(new))),
            None
        );
        // One already held is still refused here, and after a send there is room.
        let old = at(0);
        assert!(r
            .refuse_full(&seen(old, 0), Some(ProxyAddress::Ip(old)))
            .is_some());
        assert_eq!(r.take_addresses(0).len(), ADDRESS_CAPACITY);
        assert!(r
            .refuse_full(&seen(new, 0), Some(ProxyAddress::Ip(new)))
            .is_some());
    }

    #[test]
    fn a_poll_in_flight_is_held_until_its_reply_or_its_time() {
        let mut f = PollsInFlight::default();
        assert!(!f.holds("a", 0));
        f.begin("a", 10_000, 0);
        assert!(f.holds("a", 9_999));
        assert!(!f.holds("a", 10_000), "a reply that never came");
        assert!(!f.holds("b", 1));
        f.end("a");
        assert!(!f.holds("a", 1));
        for i in 0..IN_FLIGHT_CAPACITY {
            f.begin(&format!("s{i}"), 10_000, 0);
        }
        f.begin("late", 30_000, 5_000);
        assert!(!f.holds("late", 5_001), "full of live polls: not tracked");
        f.begin("late", 30_000, 10_000);
        assert!(f.holds("late", 10_001), "the lapsed ones made room");
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = RecentRefusals::default();
        for i in 0..(CAPACITY as u32 + 500) {
            r.note(IpAddr::from(i.to_be_bytes()), Pool::Strict, &FULL, 0);
        }
        assert_eq!(r.len(), CAPACITY);
        // Once the old entries expire, new addresses are remembered again.
        r.note(ip("192.0.2.1"), Pool::Strict, &FULL, REMEMBER_MS);
        assert_eq!(r.len(), 1);
        assert!(r
            .holds(ip("192.0.2.1"), Pool::Strict, REMEMBER_MS + 1)
            .is_some());
    }
}
