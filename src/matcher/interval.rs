//! N's per-address poll interval (`PROXY_POLL_INTERVAL_MS`, docs/protocol.md
//! §12.3): a proxy address whose last accepted poll for a pool was less than
//! that pool's interval ago is answered `polled too soon` at once.
//!
//! Every poll from one address goes to one shard (src/matcher/routing.rs),
//! so the shard that holds this state sees all of that address's polls and
//! the limit is exact at any shard count. Addresses are kept only as their
//! keyed hash ([`IpKey`]) and only until their interval has passed: the
//! state never holds more than the addresses accepted within one interval.

use super::Millis;
use crate::metrics::IpKey;
use crate::protocol::nat::Pool;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// N's interval for every pool when the limit is on.
pub const N_DEFAULT_MS: Millis = 20_000;

/// The most one pool's interval may be: a day, as `NEXT_POLL_MS`.
pub const MAX_MS: Millis = 86_400_000;

/// The interval of each pool (indexed by `Pool::index`); 0 leaves that
/// pool unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollInterval(pub [Millis; 3]);

impl PollInterval {
    /// No limit (the setting unset).
    pub const OFF: PollInterval = PollInterval([0; 3]);

    pub fn of(self, pool: Pool) -> Millis {
        self.0.get(pool.index()).copied().unwrap_or(0)
    }

    pub fn is_on(self) -> bool {
        self.0.iter().any(|&ms| ms > 0)
    }

    /// The setting's text: one number of milliseconds for every pool, or
    /// `open=…,moderate=…,strict=…` (any of the three, in any order; a pool
    /// not named is not limited).
    pub fn parse(text: &str) -> Result<PollInterval, String> {
        let text = text.trim();
        if !text.contains('=') {
            let ms = number(text)?;
            return Ok(PollInterval([ms; 3]));
        }
        let mut out = [None::<Millis>; 3];
        for part in text.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{:?} is not pool=milliseconds", part.trim()))?;
            let pool = match name.trim() {
                "open" => Pool::Open,
                "moderate" => Pool::Moderate,
                "strict" => Pool::Strict,
                other => {
                    return Err(format!(
                        "{other:?} is not a pool (\"open\", \"moderate\" or \"strict\")"
                    ))
                }
            };
            let slot = out
                .get_mut(pool.index())
                .ok_or_else(|| "no such pool".to_string())?;
            if slot.is_some() {
                return Err(format!("pool {:?} is given twice", name.trim()));
            }
            *slot = Some(number(value)?);
        }
        Ok(PollInterval(out.map(|ms| ms.unwrap_or(0))))
    }
}

fn number(text: &str) -> Result<Millis, String> {
    let text = text.trim();
    let ms: Millis = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))?;
    if ms > MAX_MS {
        return Err(format!("{ms} is outside 0..={MAX_MS}"));
    }
    Ok(ms)
}

/// When each address may next poll in each pool.
#[derive(Debug, Clone, Default)]
pub struct PollGate {
    interval: PollInterval,
    not_before: HashMap<(usize, IpKey), Millis>,
    /// The same entries ordered by time, so expired ones are dropped
    /// oldest first (N keeps a min-heap for the same reason).
    queue: BTreeSet<(Millis, usize, IpKey)>,
}

impl PollGate {
    pub fn new(interval: PollInterval) -> PollGate {
        PollGate {
            interval,
            ..PollGate::default()
        }
    }

    /// Whether `key` may poll in `pool` at `now`: `Err` with the
    /// milliseconds left if it is too soon.
    pub fn check(&mut self, now: Millis, pool: Pool, key: IpKey) -> Result<(), Millis> {
        self.forget_before(now);
        match self.not_before.get(&(pool.index(), key)) {
            Some(&at) if at > now => Err(at - now),
            _ => Ok(()),
        }
    }

    /// `key`'s poll in `pool` was accepted at `now`.
    pub fn accepted(&mut self, now: Millis, pool: Pool, key: IpKey) {
        let ms = self.interval.of(pool);
        if ms == 0 {
            return;
        }
        let at = now.saturating_add(ms);
        if let Some(old) = self.not_before.insert((pool.index(), key), at) {
            self.queue.remove(&(old, pool.index(), key));
        }
        self.queue.insert((at, pool.index(), key));
    }

    /// Drops every address whose interval has passed by `now`.
    fn forget_before(&mut self, now: Millis) {
        while let Some(&(at, pool, key)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.pop_first();
            self.not_before.remove(&(pool, key));
        }
    }

    /// Addresses (per pool) remembered now.
    pub fn len(&self) -> usize {
        self.not_before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.not_before.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpKey = IpKey(1);
    const B: IpKey = IpKey(2);

    #[test]
    fn parses_one_number_or_per_pool() {
        assert_eq!(PollInterval::parse("20000"), Ok(PollInterval([20_000; 3])));
        assert_eq!(PollInterval::parse(" 0 "), Ok(PollInterval::OFF));
        assert_eq!(
            PollInterval::parse("strict=30000, open=1000"),
            Ok(PollInterval([1_000, 0, 30_000]))
        );
        assert_eq!(
            PollInterval::parse("open=1,moderate=2,strict=3"),
            Ok(PollInterval([1, 2, 3]))
        );
        for bad in [
            "",
            "x",
            "-1",
            "86400001",
            "open=1,open=2",
            "restricted=5",
            "open=",
            "open=1,",
            "open",
        ] {
            assert!(PollInterval::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_second_poll_within_the_interval_is_too_soon_with_the_time_left() {
        let mut g = PollGate::new(PollInterval([2_000; 3]));
        assert_eq!(g.check(10_000, Pool::Strict, A), Ok(()));
        g.accepted(10_000, Pool::Strict, A);
        assert_eq!(g.check(10_001, Pool::Strict, A), Err(1_999));
        assert_eq!(g.check(11_999, Pool::Strict, A), Err(1));
        assert_eq!(g.check(12_000, Pool::Strict, A), Ok(()));
    }

    #[test]
    fn pools_and_addresses_are_apart() {
        let mut g = PollGate::new(PollInterval([1_000, 0, 5_000]));
        g.accepted(0, Pool::Strict, A);
        assert_eq!(g.check(1, Pool::Strict, B), Ok(()));
        assert_eq!(g.check(1, Pool::Open, A), Ok(()));
        g.accepted(1, Pool::Open, A);
        assert_eq!(g.check(2, Pool::Open, A), Err(999));
        assert_eq!(g.check(2, Pool::Strict, A), Err(4_998));
        // An unlimited pool keeps nothing.
        g.accepted(2, Pool::Moderate, A);
        assert_eq!(g.check(3, Pool::Moderate, A), Ok(()));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn memory_holds_only_the_addresses_of_one_interval() {
        let mut g = PollGate::new(PollInterval([1_000; 3]));
        for i in 0..10_000u64 {
            g.accepted(i / 10, Pool::Strict, IpKey(i));
        }
        assert_eq!(g.len(), 10_000);
        // At 1,500 ms the polls accepted at or before 500 ms are forgotten.
        assert_eq!(g.check(1_500, Pool::Strict, IpKey(u64::MAX)), Ok(()));
        assert_eq!(g.len(), 4_990);
        assert_eq!(g.check(2_000, Pool::Strict, IpKey(u64::MAX)), Ok(()));
        assert!(g.is_empty());
        assert!(g.queue.is_empty());
    }

    #[test]
    fn accepting_again_moves_the_time_on() {
        let mut g = PollGate::new(PollInterval([1_000; 3]));
        g.accepted(0, Pool::Open, A);
        g.accepted(600, Pool::Open, A);
        assert_eq!(g.check(1_200, Pool::Open, A), Err(400));
        assert_eq!(g.queue.len(), 1);
    }
}
