//! Addresses the matcher lately refused for holding `MAX_POLLS_PER_ADDRESS`
//! sessions, remembered by the Worker for a moment so that a flood's
//! re-polls are answered without a matcher request.
//!
//! A flood that ignores `NextPoll` re-polls as fast as it is answered; if
//! every refusal cost a Worker-to-matcher hop, the matcher (one thread)
//! would spend itself refusing and honest polls would queue behind it. With
//! this memory each Worker isolate asks the matcher about such an address at
//! most once per [`REMEMBER_MS`]. Honest proxies are not affected: a refused
//! proxy is told to come back after 3× `NEXT_POLL_MS`, far longer.
//!
//! Addresses are kept only in memory, for at most [`REMEMBER_MS`], and only
//! as the prefix the matcher counts by (an IPv6 /64); never stored or logged.

use crate::metrics::counted_prefix;
use std::collections::HashMap;
use std::net::IpAddr;

/// How long an isolate answers a refused address itself.
pub const REMEMBER_MS: u64 = 1_000;

/// Addresses one isolate remembers at most; past that, new ones are not
/// remembered (they are still refused, by the matcher).
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub struct RecentRefusals {
    until: HashMap<IpAddr, u64>,
}

impl RecentRefusals {
    /// Whether `ip` was refused less than [`REMEMBER_MS`] before `now`.
    pub fn holds(&mut self, ip: IpAddr, now: u64) -> bool {
        let key = counted_prefix(ip);
        match self.until.get(&key) {
            Some(&until) if until > now => true,
            Some(_) => {
                self.until.remove(&key);
                false
            }
            None => false,
        }
    }

    /// The matcher refused `ip` at `now` for holding its maximum.
    pub fn note(&mut self, ip: IpAddr, now: u64) {
        if self.until.len() >= CAPACITY {
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= CAPACITY {
                return;
            }
        }
        self.until
            .insert(counted_prefix(ip), now.saturating_add(REMEMBER_MS));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_refused_address_is_held_for_a_moment_then_forgotten() {
        let mut r = RecentRefusals::default();
        assert!(!r.holds(ip("203.0.113.66"), 0));
        r.note(ip("203.0.113.66"), 1_000);
        assert!(r.holds(ip("203.0.113.66"), 1_999));
        assert!(!r.holds(ip("203.0.113.67"), 1_500));
        assert!(!r.holds(ip("203.0.113.66"), 2_000));
        assert_eq!(r.len(), 0, "an expired entry is dropped when looked up");
    }

    #[test]
    fn ipv6_addresses_are_held_by_their_64_and_mapped_ipv4_as_ipv4() {
        let mut r = RecentRefusals::default();
        r.note(ip("2001:db8:1:2::1"), 0);
        assert!(r.holds(ip("2001:db8:1:2:ffff::9"), 10));
        assert!(!r.holds(ip("2001:db8:1:3::1"), 10));
        r.note(ip("::ffff:198.51.100.7"), 0);
        assert!(r.holds(ip("198.51.100.7"), 10));
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = RecentRefusals::default();
        for i in 0..(CAPACITY as u32 + 500) {
            r.note(IpAddr::from(i.to_be_bytes()), 0);
        }
        assert_eq!(r.len(), CAPACITY);
        // Once the old entries expire, new addresses are remembered again.
        r.note(ip("192.0.2.1"), REMEMBER_MS);
        assert_eq!(r.len(), 1);
        assert!(r.holds(ip("192.0.2.1"), REMEMBER_MS + 1));
    }
}
