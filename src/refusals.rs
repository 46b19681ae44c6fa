//! Polls the matcher lately refused at once, remembered by the Worker for a
//! moment so that a flood's re-polls are answered without a matcher
//! request: an address holding `MAX_POLLS_PER_ADDRESS` sessions, and an
//! address and pool told `polled too soon` (`PROXY_POLL_INTERVAL_MS`).
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
//! Addresses are kept only in memory, for at most [`REMEMBER_MS`], and only
//! as the prefix the matcher counts by (an IPv6 /64); never stored or logged.

use crate::matcher::PollReply;
use crate::metrics::counted_prefix;
use crate::metrics::recorder::{Refusal, RefusedPolls};
use crate::protocol::nat::{Nat, Pool};
use crate::protocol::proxy::ProxyType;
use std::collections::HashMap;
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
            return None;
        }
        Some(reply)
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
