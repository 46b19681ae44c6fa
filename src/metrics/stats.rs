//! The `snowflake-stats` descriptor of one period (`/metrics`, docs/protocol.md
//! §5.1 with N's additions of §12.10): the accumulator and its formatter.
//!
//! A [`PeriodStats`] holds everything one period's block needs. It is
//! serializable (to survive a Durable Object restart mid-period) and
//! mergeable (several matcher shards each keep one; their union publishes
//! exactly what a single accumulator fed all events would).

use super::ip_key::IpKey;
use super::labels::{bin_count, ClientStatus, Country, Rendezvous};
use super::proxy_set::ProxySet;
use super::utc::format_utc;
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The period's counters. Field comments name the descriptor line each
/// feeds; lines marked (binned) are rounded up to a multiple of 8 when
/// published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeriodCounters {
    /// `snowflake-idle-count` (binned): polls that ended `no match`.
    pub proxy_idle: u64,
    /// `snowflake-proxy-poll-with-relay-url-count` (binned): decoded polls
    /// that carried `AcceptedRelayPattern`.
    pub proxy_poll_with_relay_url: u64,
    /// `snowflake-proxy-poll-without-relay-url-count` (binned): decoded
    /// polls without it.
    pub proxy_poll_without_relay_url: u64,
    /// `snowflake-proxy-rejected-for-relay-url-count` (binned): polls
    /// answered `incorrect relay pattern`.
    pub proxy_rejected_relay_url: u64,
    /// `client-denied-count` (binned): clients told no proxy is available.
    pub client_denied: u64,
    /// `client-restricted-denied-count` (binned): denied, NAT `restricted`.
    pub client_restricted_denied: u64,
    /// `client-unrestricted-denied-count` (binned): denied, `unrestricted`.
    pub client_unrestricted_denied: u64,
    /// `client-nat-strict-denied-count` (binned).
    pub client_strict_denied: u64,
    /// `client-nat-moderate-denied-count` (binned).
    pub client_moderate_denied: u64,
    /// `client-nat-open-denied-count` (binned).
    pub client_open_denied: u64,
    /// `client-nat-unknown-denied-count` (binned): denied, NAT `unknown`
    /// (N counts these here only, no longer as restricted).
    pub client_unknown_denied: u64,
    /// `client-snowflake-match-count` (binned): answers delivered.
    pub client_matched: u64,
    /// `client-snowflake-timeout-count` (binned): matched clients whose
    /// answer never came.
    pub client_timed_out: u64,
    /// `client-http-count` / `client-http-ips` (both binned): every counted
    /// client outcome over HTTP, per client country.
    pub http_clients: BTreeMap<Country, u64>,
    /// `client-ampcache-count` / `client-ampcache-ips`.
    pub ampcache_clients: BTreeMap<Country, u64>,
    /// `client-sqs-count` / `client-sqs-ips`.
    pub sqs_clients: BTreeMap<Country, u64>,
}

impl PeriodCounters {
    fn clients(&self, method: Rendezvous) -> &BTreeMap<Country, u64> {
        match method {
            Rendezvous::Http => &self.http_clients,
            Rendezvous::Ampcache => &self.ampcache_clients,
            Rendezvous::Sqs => &self.sqs_clients,
        }
    }

    fn clients_mut(&mut self, method: Rendezvous) -> &mut BTreeMap<Country, u64> {
        match method {
            Rendezvous::Http => &mut self.http_clients,
            Rendezvous::Ampcache => &mut self.ampcache_clients,
            Rendezvous::Sqs => &mut self.sqs_clients,
        }
    }

    fn denied_by_nat(&mut self, nat: Nat) -> &mut u64 {
        match nat {
            Nat::Restricted => &mut self.client_restricted_denied,
            Nat::Unrestricted => &mut self.client_unrestricted_denied,
            Nat::Strict => &mut self.client_strict_denied,
            Nat::Moderate => &mut self.client_moderate_denied,
            Nat::Open => &mut self.client_open_denied,
            Nat::Unknown => &mut self.client_unknown_denied,
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &PeriodCounters) {
        let pairs: [(&mut u64, u64); 13] = [
            (&mut self.proxy_idle, other.proxy_idle),
            (
                &mut self.proxy_poll_with_relay_url,
                other.proxy_poll_with_relay_url,
            ),
            (
                &mut self.proxy_poll_without_relay_url,
                other.proxy_poll_without_relay_url,
            ),
            (
                &mut self.proxy_rejected_relay_url,
                other.proxy_rejected_relay_url,
            ),
            (&mut self.client_denied, other.client_denied),
            (
                &mut self.client_restricted_denied,
                other.client_restricted_denied,
            ),
            (
                &mut self.client_unrestricted_denied,
                other.client_unrestricted_denied,
            ),
            (&mut self.client_strict_denied, other.client_strict_denied),
            (
                &mut self.client_moderate_denied,
                other.client_moderate_denied,
            ),
            (&mut self.client_open_denied, other.client_open_denied),
            (&mut self.client_unknown_denied, other.client_unknown_denied),
            (&mut self.client_matched, other.client_matched),
            (&mut self.client_timed_out, other.client_timed_out),
        ];
        for (mine, theirs) in pairs {
            *mine = mine.saturating_add(theirs);
        }
        for method in Rendezvous::ALL {
            let theirs = other.clients(method).clone();
            let mine = self.clients_mut(method);
            for (country, n) in theirs {
                let slot = mine.entry(country).or_default();
                *slot = slot.saturating_add(n);
            }
        }
    }
}

/// One period's accumulator: counters plus the unique-proxy-address set.
///
/// Serialized as `{"counters":{…},"proxies":{"v":1,"records":"…"}}`; see
/// [`ProxySet`] for the size of the address part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeriodStats {
    pub counters: PeriodCounters,
    pub proxies: ProxySet,
}

fn bump(n: &mut u64) {
    *n = n.saturating_add(1);
}

impl PeriodStats {
    /// A proxy poll was decoded. Feeds the with/without relay URL lines.
    pub fn proxy_poll(&mut self, with_relay_pattern: bool) {
        self.proxy_polls(with_relay_pattern, 1);
    }

    /// `n` such polls.
    pub fn proxy_polls(&mut self, with_relay_pattern: bool, n: u64) {
        let c = &mut self.counters;
        let count = if with_relay_pattern {
            &mut c.proxy_poll_with_relay_url
        } else {
            &mut c.proxy_poll_without_relay_url
        };
        *count = count.saturating_add(n);
    }

    /// A poll was answered `incorrect relay pattern`.
    pub fn proxy_rejected_relay_pattern(&mut self) {
        bump(&mut self.counters.proxy_rejected_relay_url);
    }

    /// A poll from the address `key` passed the relay check. Feeds
    /// `snowflake-ips`, `-ips-<type>`, `-ips-total`, `-ips-nat-*`.
    pub fn proxy_seen(&mut self, key: IpKey, country: Country, nat: Nat, kind: ProxyType) {
        self.proxies.observe(key, country, nat, kind);
    }

    /// A poll ended `no match`. Feeds `snowflake-idle-count`.
    pub fn proxy_idle(&mut self) {
        self.proxy_idles(1);
    }

    /// `n` polls ended `no match`.
    pub fn proxy_idles(&mut self, n: u64) {
        let c = &mut self.counters.proxy_idle;
        *c = c.saturating_add(n);
    }

    /// A client request ended (counted once, with its final outcome). Feeds
    /// the `client-*` lines: denied counts by NAT, match, timeout, and the
    /// per-method count and country list.
    pub fn client(
        &mut self,
        method: Rendezvous,
        nat: Nat,
        country: Country,
        outcome: ClientStatus,
    ) {
        let c = &mut self.counters;
        match outcome {
            ClientStatus::Denied => {
                bump(&mut c.client_denied);
                bump(c.denied_by_nat(nat));
            }
            ClientStatus::Matched => bump(&mut c.client_matched),
            ClientStatus::TimedOut => bump(&mut c.client_timed_out),
        }
        bump(c.clients_mut(method).entry(country).or_default());
    }

    /// Adds everything `other` saw (sums of counters, union of addresses).
    pub fn merge(&mut self, other: &PeriodStats) {
        self.counters.merge(&other.counters);
        self.proxies.merge(&other.proxies);
    }

    /// The descriptor block for this period: N's lines in N's order, each
    /// ending in `\n`. `end_unix` is the end of the period in Unix seconds,
    /// `period_seconds` its length. The `snowflake-ips-<type>` lines, in
    /// random order upstream, come in a fixed order here.
    pub fn descriptor(&self, end_unix: u64, period_seconds: u64) -> String {
        let c = &self.counters;
        let p = &self.proxies;
        let mut out = String::with_capacity(1536);
        // `write!` to a String cannot fail.
        let mut line = |key: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{key} {value}");
        };
        line(
            "snowflake-stats-end",
            &format_args!("{} ({period_seconds} s)", format_utc(end_unix)),
        );
        line(
            "snowflake-ips",
            &format_country_counts(&p.countries(), false),
        );
        for kind in ProxyType::KNOWN {
            line(
                &format!("snowflake-ips-{}", kind.as_str()),
                &p.with_type(kind),
            );
        }
        line("snowflake-ips-total", &p.len());
        let binned = [
            ("snowflake-idle-count", c.proxy_idle),
            (
                "snowflake-proxy-poll-with-relay-url-count",
                c.proxy_poll_with_relay_url,
            ),
            (
                "snowflake-proxy-poll-without-relay-url-count",
                c.proxy_poll_without_relay_url,
            ),
            (
                "snowflake-proxy-rejected-for-relay-url-count",
                c.proxy_rejected_relay_url,
            ),
            ("client-denied-count", c.client_denied),
            ("client-restricted-denied-count", c.client_restricted_denied),
            (
                "client-unrestricted-denied-count",
                c.client_unrestricted_denied,
            ),
            ("client-nat-strict-denied-count", c.client_strict_denied),
            ("client-nat-moderate-denied-count", c.client_moderate_denied),
            ("client-nat-open-denied-count", c.client_open_denied),
            ("client-nat-unknown-denied-count", c.client_unknown_denied),
            ("client-snowflake-match-count", c.client_matched),
            ("client-snowflake-timeout-count", c.client_timed_out),
        ];
        for (key, n) in binned {
            line(key, &bin_count(n));
        }
        for method in Rendezvous::ALL {
            let countries = c.clients(method);
            let total = countries.values().fold(0u64, |a, n| a.saturating_add(*n));
            line(
                &format!("client-{}-count", method.as_str()),
                &bin_count(total),
            );
            line(
                &format!("client-{}-ips", method.as_str()),
                &format_country_counts(countries, true),
            );
        }
        for nat in [
            Nat::Restricted,
            Nat::Unrestricted,
            Nat::Unknown,
            Nat::Strict,
            Nat::Moderate,
            Nat::Open,
        ] {
            line(
                &format!("snowflake-ips-nat-{}", nat.as_str()),
                &p.with_nat(nat),
            );
        }
        out
    }
}

/// `CC=n,CC=n,…` sorted by count descending, then code ascending. With
/// `binned`, counts are rounded up to a multiple of 8 *before* sorting, so
/// equal binned counts are ordered by code (N). Empty for no countries.
pub fn format_country_counts(counts: &BTreeMap<Country, u64>, binned: bool) -> String {
    let mut rows: Vec<(Country, u64)> = counts
        .iter()
        .map(|(cc, n)| (*cc, if binned { bin_count(*n) } else { *n }))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = String::new();
    for (i, (cc, n)) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{cc}={n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<Country, u64> {
        pairs
            .iter()
            .map(|(cc, n)| (Country::new(Some(cc)), *n))
            .collect()
    }

    #[test]
    fn sorts_country_lists_like_upstream() {
        let c = counts(&[
            ("IT", 50),
            ("FR", 200),
            ("TZ", 100),
            ("CN", 250),
            ("RU", 150),
            ("CA", 1),
            ("BE", 1),
            ("PH", 1),
        ]);
        assert_eq!(
            format_country_counts(&c, false),
            "CN=250,FR=200,RU=150,TZ=100,IT=50,BE=1,CA=1,PH=1"
        );
        assert_eq!(format_country_counts(&BTreeMap::new(), true), "");
    }

    #[test]
    fn merges_counters_by_summing() {
        let mut a = PeriodStats::default();
        a.proxy_idle();
        a.client(
            Rendezvous::Http,
            Nat::Open,
            Country::UNKNOWN,
            ClientStatus::Denied,
        );
        let mut b = PeriodStats::default();
        b.proxy_idle();
        b.client(
            Rendezvous::Http,
            Nat::Open,
            Country::UNKNOWN,
            ClientStatus::Denied,
        );
        a.merge(&b);
        assert_eq!(a.counters.proxy_idle, 2);
        assert_eq!(a.counters.client_open_denied, 2);
        assert_eq!(a.counters.http_clients.get(&Country::UNKNOWN), Some(&2));
    }
}
