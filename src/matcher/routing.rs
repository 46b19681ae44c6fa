//! Which matcher shard a request goes to (docs/design.md §4).
//!
//! - A proxy poll goes to the shard of its address (IPv6: its /64): a keyed
//!   hash with a fixed key, then jump consistent hashing, so every isolate
//!   and every deploy agrees, and changing `MATCHER_SHARDS` from S to S+1
//!   moves only 1/(S+1) of the addresses. One shard then sees every poll
//!   of an address, so `PROXY_POLL_INTERVAL_MS` and `MAX_POLLS_PER_ADDRESS`
//!   hold exactly at any shard count, without an extra request. A poll
//!   without an address (none in production) goes by its Sid instead.
//! - Its `/answer` carries only the Sid, so it goes first to the shard of
//!   the answering address, which is the poll's unless the proxy's address
//!   changed in between; a shard that does not know the Sid passes, and the
//!   others are asked in turn ([`answer_order`]).
//! - A client's offer tries shards in an order the Worker draws from its
//!   [`Board`]: what each shard last said of its pools (every reply carries
//!   that summary, so it costs no extra request). Shards believed to hold a
//!   proxy in the client's first pool come first (least loaded, then
//!   oldest), then its later pools, then the one shard whose summary is the
//!   oldest of those not fresh ([`PROBES`]); a shard known to be empty for
//!   this client a moment ago is skipped. The last shard tried counts the
//!   denial, so a denial is counted once however many shards were tried.
//!
//! Pure: no clock, no randomness of its own (callers pass `now` and a
//! rotation), so native tests and the simulation drive exactly this code.

use super::Millis;
use crate::metrics::{counted_prefix, IpHasher};
use crate::protocol::nat::{Nat, Pool};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The most shards a deployment may have (the `MATCHER_SHARDS` bound).
pub const MAX_SHARDS: u32 = 256;

/// How long a shard's report that it holds nothing for a client is
/// believed. Within one isolate the Worker sees every poll it routes, so
/// its board is exact; a proxy another isolate parked is found by this
/// isolate within this long. Shorter finds such proxies sooner and costs
/// more requests per denial (the simulation prints both).
pub const FRESH_MS: Millis = 500;

/// How many shards without a fresh report a client tries besides those
/// believed to hold a proxy for it (the ones heard from longest ago): what
/// bounds a denial's cost when many isolates each see little of the load.
pub const PROBES: usize = 1;

/// A fixed key: an address's (or Sid's) shard must be the same in every
/// isolate and after every deploy. A proxy can find which shard its
/// address goes to whatever the key; what one shard holds is bounded by
/// `MAX_PARKED_POLLS` and `MAX_POLLS_PER_ADDRESS` instead.
const SID_KEY: [u8; 16] = *b"snowflake-shards";

/// The shard (0-based) of a Sid among `shards`.
pub fn shard_for_sid(sid: &str, shards: u32) -> u32 {
    let hash = IpHasher::new(SID_KEY).hash_bytes(sid.as_bytes());
    jump_hash(hash, shards.max(1))
}

/// The shard of a proxy's address: of the part that counts as one address
/// ([`counted_prefix`]), so that every address of one IPv6 /64 shares it.
/// The address is hashed here only to be routed, never kept.
pub fn shard_for_address(ip: IpAddr, shards: u32) -> u32 {
    let prefix = match counted_prefix(ip) {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let hash = IpHasher::new(SID_KEY).hash_bytes(&prefix);
    jump_hash(hash, shards.max(1))
}

/// The shard a poll parks on: its address's, else its Sid's.
pub fn poll_shard(ip: Option<IpAddr>, sid: &str, shards: u32) -> u32 {
    match ip {
        Some(ip) => shard_for_address(ip, shards),
        None => shard_for_sid(sid, shards),
    }
}

/// The shards an `/answer` asks, in turn: the one its poll most likely
/// parked on (the answering address's), then every other in order. Only
/// the last one asked counts a Sid that no shard knows.
pub fn answer_order(ip: Option<IpAddr>, sid: &str, shards: u32) -> Vec<u32> {
    let first = poll_shard(ip, sid, shards);
    std::iter::once(first)
        .chain((0..shards.max(1)).filter(|&s| s != first))
        .collect()
}

/// Lamping and Veach's jump consistent hash: a bucket in `0..buckets`.
fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let scale = (1u64 << 31) as f64 / (((key >> 33) + 1) as f64);
        j = ((b + 1) as f64 * scale) as i64;
    }
    u32::try_from(b).unwrap_or(0)
}

/// What a shard holds in one pool, sent with every reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolHead {
    /// Polls parked in the pool.
    pub parked: u32,
    /// The poll it would hand out next: its reported client load and its
    /// deadline. Offers go to the shard whose next poll is least loaded,
    /// then oldest, so several shards choose as one would.
    pub next: Option<(i64, Millis)>,
}

/// A shard's pools, indexed by `Pool::index`.
pub type Pools = [PoolHead; 3];

/// Every shard's pools as this isolate last heard of them.
#[derive(Debug, Clone)]
pub struct Board {
    shards: Vec<Entry>,
    fresh_ms: Millis,
    probes: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    pools: Pools,
    /// When the summary was current; None: never heard of.
    seen_at: Option<Millis>,
    /// Shed until then: the shard was overloaded or unreachable.
    shed_until: Millis,
}

/// How long a shard's report that it holds `MAX_PARKED_POLLS` is believed:
/// polls to it are refused in the Worker meanwhile, without a request
/// (src/refusals.rs). Every reply from the shard renews the report, so a
/// shard with room again is found within this long.
pub const FULL_FRESH_MS: Millis = 1_000;

/// How long a shard that failed a call is passed over by offers.
pub const SHED_MS: Millis = 1_000;

impl Board {
    pub fn new(shards: u32) -> Board {
        let n = shards.clamp(1, MAX_SHARDS) as usize;
        Board {
            shards: vec![Entry::default(); n],
            fresh_ms: FRESH_MS,
            probes: PROBES,
        }
    }

    /// A board that believes an empty report for `fresh_ms` and tries
    /// `probes` shards without a fresh report per client (the simulation
    /// compares choices; the Worker uses [`Board::new`]).
    pub fn tuned(shards: u32, fresh_ms: Millis, probes: usize) -> Board {
        Board {
            fresh_ms,
            probes,
            ..Board::new(shards)
        }
    }

    pub fn shards(&self) -> u32 {
        self.shards.len() as u32
    }

    /// A shard's summary, current at `now`.
    pub fn note_summary(&mut self, shard: u32, pools: Pools, now: Millis) {
        if let Some(e) = self.shards.get_mut(shard as usize) {
            e.pools = pools;
            e.seen_at = Some(now);
        }
    }

    /// A poll with load `clients` and deadline `deadline` was just sent to
    /// `shard`: count it at once, so a client routed by this isolate finds
    /// it before the shard's next summary.
    pub fn note_poll(&mut self, shard: u32, nat: Nat, clients: i64, deadline: Millis) {
        if let Some(e) = self.shards.get_mut(shard as usize) {
            if let Some(head) = e.pools.get_mut(nat.proxy_pool().index()) {
                head.parked = head.parked.saturating_add(1);
                let key = (clients, deadline);
                if head.next.is_none_or(|next| key < next) {
                    head.next = Some(key);
                }
            }
        }
    }

    /// Whether `shard` held `limit` polls or more in its report of less
    /// than [`FULL_FRESH_MS`] before `now` (with the polls this isolate has
    /// sent it since): a poll to it would only be refused.
    pub fn full(&self, shard: u32, limit: usize, now: Millis) -> bool {
        self.shards.get(shard as usize).is_some_and(|e| {
            let parked: u64 = e.pools.iter().map(|h| u64::from(h.parked)).sum();
            let fresh = e
                .seen_at
                .is_some_and(|t| now.saturating_sub(t) < FULL_FRESH_MS);
            fresh && parked >= limit as u64
        })
    }

    /// `shard` was overloaded or unreachable: offers pass it over for a while.
    pub fn note_failure(&mut self, shard: u32, now: Millis) {
        if let Some(e) = self.shards.get_mut(shard as usize) {
            e.shed_until = now.saturating_add(SHED_MS);
        }
    }

    /// The shards a client with `nat` tries, in order; never empty. Among
    /// equals the order starts at `rotate` (any number: a random one
    /// spreads clients evenly). The last one counts the denial.
    pub fn offer_order(&self, nat: Nat, now: Millis, rotate: u32) -> Vec<u32> {
        let n = self.shards.len();
        let start = rotate as usize % n.max(1);
        let ring: Vec<(u32, &Entry)> = (0..n)
            .map(|i| (start + i) % n)
            .filter_map(|i| self.shards.get(i).map(|e| (i as u32, e)))
            .collect();
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let up = |e: &Entry| e.shed_until <= now;
        for pool in nat.client_pools() {
            let mut holding: Vec<(u32, PoolHead)> = ring
                .iter()
                .filter(|(i, e)| up(e) && !order.contains(i))
                .filter_map(|(i, e)| head(e, *pool).map(|h| (*i, h)))
                .collect();
            // Least loaded, then oldest, first; a stable sort keeps the
            // rotation among equals.
            holding.sort_by_key(|(_, h)| h.next.unwrap_or((i64::MAX, Millis::MAX)));
            order.extend(holding.into_iter().map(|(i, _)| i));
        }
        // Shards not heard from lately may hold what this isolate has not
        // seen: the `probes` heard from longest ago are tried too, so that
        // every report is renewed in turn at a bounded cost per client.
        let mut stale: Vec<(u32, &Entry)> = ring
            .iter()
            .copied()
            .filter(|(i, e)| {
                let fresh = e
                    .seen_at
                    .is_some_and(|t| now.saturating_sub(t) < self.fresh_ms);
                up(e) && !fresh && !order.contains(i)
            })
            .collect();
        stale.sort_by_key(|(_, e)| e.seen_at.unwrap_or(0));
        order.extend(stale.iter().take(self.probes).map(|(i, _)| *i));
        if order.is_empty() {
            // Known empty everywhere: the shard heard from longest ago still
            // decides (and counts the denial), and its reply renews its report.
            let oldest = ring
                .iter()
                .filter(|(_, e)| up(e))
                .min_by_key(|(_, e)| e.seen_at.unwrap_or(0))
                .or_else(|| ring.first())
                .map_or(0, |(i, _)| *i);
            order.push(oldest);
        }
        order
    }
}

/// The shard's head of `pool`, if it holds any poll there.
fn head(e: &Entry, pool: Pool) -> Option<PoolHead> {
    e.pools.get(pool.index()).copied().filter(|h| h.parked > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pools holding `n` polls each, all of load 0 and deadline 0.
    fn pools(n: [u32; 3]) -> Pools {
        n.map(|parked| PoolHead {
            parked,
            next: (parked > 0).then_some((0, 0)),
        })
    }

    #[test]
    fn a_full_report_is_believed_for_a_moment_and_polls_sent_count() {
        let mut b = Board::new(2);
        assert!(!b.full(0, 10, 0), "never heard of: ask");
        b.note_summary(0, pools([4, 5, 0]), 1_000);
        assert!(!b.full(0, 10, 1_000));
        b.note_poll(0, Nat::Restricted, 0, 20_000);
        assert!(b.full(0, 10, 1_000), "9 reported + 1 sent since");
        assert!(b.full(0, 10, 1_000 + FULL_FRESH_MS - 1));
        assert!(!b.full(0, 10, 1_000 + FULL_FRESH_MS), "stale: ask again");
        assert!(!b.full(1, 10, 1_000), "only the shard that reported");
        b.note_summary(0, pools([4, 5, 0]), 1_500);
        assert!(!b.full(0, 10, 1_500), "a reply with room clears it");
    }

    #[test]
    fn a_sid_always_has_the_same_shard() {
        // Fixed values: a change here re-routes every deployed proxy's answers.
        assert_eq!(shard_for_sid("abc", 1), 0);
        let a = shard_for_sid("9FzFQxWk3cP2Lhpr6Ir9Vw", 16);
        assert_eq!(a, shard_for_sid("9FzFQxWk3cP2Lhpr6Ir9Vw", 16));
        assert!(a < 16);
    }

    #[test]
    fn sids_spread_evenly_and_move_little_when_shards_are_added() {
        let sids: Vec<String> = (0..64_000).map(|i| format!("sid-{i}")).collect();
        let mut counts = [0u32; 64];
        for s in &sids {
            counts[shard_for_sid(s, 64) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "{min}..{max}");
        let moved = sids
            .iter()
            .filter(|s| shard_for_sid(s, 16) != shard_for_sid(s, 17))
            .count();
        // Ideal: 1/17 of them.
        assert!(moved < 64_000 / 17 + 400, "{moved}");
    }

    #[test]
    fn addresses_spread_evenly_and_one_ipv6_64_is_one_shard() {
        let mut counts = [0u32; 16];
        for i in 0..32_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i * 7));
            counts[shard_for_address(ip, 16) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 1_800 && *max < 2_200, "{min}..{max}");
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        for n in [2, 16, 256] {
            assert_eq!(shard_for_address(a, n), shard_for_address(b, n));
        }
        // IPv4 written IPv4-mapped is the same address.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(shard_for_address(v4, 16), shard_for_address(mapped, 16));
    }

    #[test]
    fn an_answer_asks_its_address_shard_first_then_every_other_once() {
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let order = answer_order(Some(ip), "sid", 16);
        assert_eq!(order.first(), Some(&shard_for_address(ip, 16)));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
        assert_eq!(answer_order(None, "sid", 4)[0], shard_for_sid("sid", 4));
        assert_eq!(answer_order(Some(ip), "sid", 1), vec![0]);
        assert_eq!(poll_shard(Some(ip), "sid", 16), order[0]);
    }

    #[test]
    fn a_client_tries_shards_holding_its_first_pool_first() {
        let mut b = Board::new(4);
        for s in 0..4 {
            b.note_summary(s, pools([0, 0, 0]), 1_000);
        }
        b.note_summary(2, pools([1, 0, 0]), 1_000);
        b.note_summary(3, pools([0, 0, 5]), 1_000);
        // Open clients take strict proxies first.
        assert_eq!(b.offer_order(Nat::Open, 1_000, 0), vec![3, 2]);
        // Restricted clients only open ones.
        assert_eq!(b.offer_order(Nat::Restricted, 1_000, 0), vec![2]);
    }

    #[test]
    fn a_denial_costs_one_shard_when_all_are_known_empty() {
        let mut b = Board::new(16);
        for s in 0..16 {
            b.note_summary(s, pools([0, 0, 3]), 1_000 + u64::from(s));
        }
        let order = b.offer_order(Nat::Restricted, 1_100, 7);
        assert_eq!(order, vec![0], "the shard heard from longest ago");
    }

    #[test]
    fn unknown_and_stale_shards_are_tried_after_known_ones() {
        let mut b = Board::new(3);
        b.note_summary(0, pools([0, 0, 0]), 1_000);
        b.note_summary(1, pools([2, 0, 0]), 1_000);
        assert_eq!(b.offer_order(Nat::Strict, 1_100, 0), vec![1, 2]);
        b.note_summary(2, pools([0, 0, 0]), 1_200);
        assert_eq!(b.offer_order(Nat::Strict, 1_300, 0), vec![1]);
        // Once reports are old, the oldest one is tried again (one per client).
        assert_eq!(b.offer_order(Nat::Strict, 1_200 + FRESH_MS, 0), vec![1, 0]);
        let mut wide = Board::new(64);
        assert_eq!(wide.offer_order(Nat::Strict, 0, 5).len(), 1);
        wide.note_summary(9, pools([1, 0, 0]), 0);
        assert_eq!(wide.offer_order(Nat::Strict, 1, 5), vec![9, 5]);
    }

    #[test]
    fn a_poll_sent_counts_at_once_and_failed_shards_are_passed_over() {
        let mut b = Board::new(2);
        b.note_summary(0, pools([0, 0, 0]), 1_000);
        b.note_summary(1, pools([0, 0, 0]), 1_000);
        b.note_poll(1, Nat::Unrestricted, 0, 20_000);
        assert_eq!(b.offer_order(Nat::Restricted, 1_001, 0), vec![1]);
        b.note_failure(1, 1_001);
        assert_eq!(b.offer_order(Nat::Restricted, 1_002, 0), vec![0]);
        // Back after the pause; 0's old report is worth checking again by then.
        assert_eq!(
            b.offer_order(Nat::Restricted, 1_001 + SHED_MS, 0),
            vec![1, 0]
        );
    }

    #[test]
    fn the_least_loaded_then_oldest_poll_is_chosen_across_shards() {
        let mut b = Board::new(3);
        let head = |clients, deadline| PoolHead {
            parked: 1,
            next: Some((clients, deadline)),
        };
        let empty = PoolHead::default();
        b.note_summary(0, [empty, empty, head(1, 100)], 0);
        b.note_summary(1, [empty, empty, head(0, 900)], 0);
        b.note_summary(2, [empty, empty, head(0, 500)], 0);
        assert_eq!(b.offer_order(Nat::Open, 1, 0), vec![2, 1, 0]);
    }

    #[test]
    fn rotation_spreads_equal_shards() {
        let mut b = Board::new(4);
        for s in 0..4 {
            b.note_summary(s, pools([0, 0, 9]), 0);
        }
        let firsts: Vec<u32> = (0..4).map(|r| b.offer_order(Nat::Open, 1, r)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 3]);
    }
}
