//! The one object the broker reports events to. Each method is named for
//! something the broker sees and updates both outputs: the period's
//! `snowflake-stats` accumulator and the lifetime Prometheus counters.

use super::ip_key::IpKey;
use super::labels::{AnswerStatus, ClientStatus, Country, Rendezvous};
use super::prometheus::{render, AvailableProxies, PromCounters};
use super::stats::PeriodStats;
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Serialize};

/// Why a Worker isolate refused polls itself (src/refusals.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Refusal {
    TooSoon,
    AddressFull,
    /// The shard held `MAX_PARKED_POLLS` when it last reported its pools.
    Full,
}

/// Polls of one kind a Worker isolate refused itself since its last poll
/// to the shard that refused them first; sent with that next poll, so the
/// shard counts them as if it had refused them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RefusedPolls {
    pub refusal: Refusal,
    pub nat: Nat,
    pub proxy_type: ProxyType,
    pub with_relay_pattern: bool,
    pub country: Option<String>,
    pub count: u64,
}

/// Metrics of one matcher shard (or of the whole broker, once merged).
///
/// Serialized as `{"period":{…},"lifetime":{…}}`; the gauge of parked polls
/// is left out because a restarted object holds none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerMetrics {
    /// The current period's `snowflake-stats` accumulator.
    pub period: PeriodStats,
    /// Prometheus counters since the broker was first deployed.
    pub lifetime: PromCounters,
    /// Proxy polls waiting right now.
    #[serde(skip)]
    pub available: AvailableProxies,
}

impl BrokerMetrics {
    /// A `/proxy` body was decoded (before any check). Feeds
    /// `snowflake-proxy-poll-with[out]-relay-url-count` and
    /// `snowflake_rounded_proxy_poll_with[out]_relay_url_extension_total`.
    pub fn proxy_poll(&mut self, nat: Nat, kind: ProxyType, with_relay_pattern: bool) {
        self.period.proxy_poll(with_relay_pattern);
        self.lifetime.proxy_poll(nat, kind, with_relay_pattern);
    }

    /// The poll was answered `incorrect relay pattern`. Feeds
    /// `snowflake-proxy-rejected-for-relay-url-count` and
    /// `snowflake_rounded_proxy_poll_rejected_relay_url_extension_total`.
    pub fn proxy_rejected_relay_pattern(&mut self, nat: Nat, kind: ProxyType) {
        self.period.proxy_rejected_relay_pattern();
        self.lifetime.proxy_rejected_relay_pattern(nat, kind);
    }

    /// The poll passed the relay check (call it even if the poll is then
    /// refused as `polled too soon`, as N counts it). `ip` is the keyed hash
    /// of the proxy's address, `country` its location. Feeds
    /// `snowflake-ips`, `snowflake-ips-<type>`, `snowflake-ips-total`,
    /// `snowflake-ips-nat-*` and `snowflake_proxy_total`.
    pub fn proxy_accepted(&mut self, ip: IpKey, country: Country, nat: Nat, kind: ProxyType) {
        self.period.proxy_seen(ip, country, nat, kind);
        self.lifetime.proxy_seen(country, nat, kind);
    }

    /// The poll now waits for a client. Feeds `snowflake_available_proxies`.
    pub fn proxy_parked(&mut self, nat: Nat, kind: ProxyType) {
        self.available.inc(nat, kind);
    }

    /// A waiting poll stopped waiting, for whatever reason. Feeds
    /// `snowflake_available_proxies`.
    pub fn proxy_unparked(&mut self, nat: Nat, kind: ProxyType) {
        self.available.dec(nat, kind);
    }

    /// The poll was answered `no match` (timed out, replaced by a newer poll
    /// with its Sid, or refused because the shard is full; not `polled too
    /// soon`). Feeds `snowflake-idle-count` and
    /// `snowflake_rounded_proxy_poll_total{status="idle"}`.
    pub fn proxy_idle(&mut self, nat: Nat, kind: ProxyType) {
        self.period.proxy_idle();
        self.lifetime.proxy_poll_done(nat, kind, false);
    }

    /// The poll was answered `polled too soon` (`PROXY_POLL_INTERVAL_MS`);
    /// it was counted by `proxy_poll` and `proxy_accepted` before. Feeds
    /// this broker's own `snowflake_proxy_polled_too_soon_total`.
    pub fn proxy_too_soon(&mut self, nat: Nat, kind: ProxyType) {
        self.lifetime.proxy_too_soon(nat, kind, 1);
    }

    /// `n` polls a Worker isolate refused itself, from its memory of this
    /// shard's refusals (src/refusals.rs), counted as the shard counts the
    /// refusals it makes: received, seen (the address was counted when it
    /// was first refused), and `polled too soon` or idle.
    pub fn refused_by_worker(&mut self, refused: &RefusedPolls) {
        let RefusedPolls {
            refusal,
            nat,
            proxy_type: kind,
            with_relay_pattern,
            ref country,
            count: n,
        } = *refused;
        self.period.proxy_polls(with_relay_pattern, n);
        self.lifetime.proxy_polls(nat, kind, with_relay_pattern, n);
        self.lifetime
            .proxies_seen(Country::new(country.as_deref()), nat, kind, n);
        match refusal {
            Refusal::TooSoon => self.lifetime.proxy_too_soon(nat, kind, n),
            Refusal::AddressFull | Refusal::Full => {
                self.period.proxy_idles(n);
                self.lifetime.proxy_polls_done(nat, kind, false, n);
            }
        }
    }

    /// An address a Worker isolate refused as `Full` without asking, for
    /// the period's set of proxy addresses: the shard counts the address of
    /// every poll it refuses as full, so these are counted alike (the polls
    /// themselves were counted by [`Self::refused_by_worker`]).
    pub fn address_refused_by_worker(
        &mut self,
        ip: IpKey,
        country: Country,
        nat: Nat,
        kind: ProxyType,
    ) {
        self.period.proxy_seen(ip, country, nat, kind);
    }

    /// The poll was answered `client match` (whether or not an answer
    /// follows). Feeds `snowflake_rounded_proxy_poll_total{status="matched"}`.
    pub fn proxy_matched(&mut self, nat: Nat, kind: ProxyType) {
        self.lifetime.proxy_poll_done(nat, kind, true);
    }

    /// An `/answer` was answered `success` (the answer reached a waiting
    /// client) or `client gone` (`AnswerStatus::Timeout`). `kind` is the
    /// matched proxy's type; pass `None` when the Sid is unknown (N's
    /// `type=""`). Feeds `snowflake_rounded_proxy_answer_total`.
    pub fn proxy_answer(&mut self, status: AnswerStatus, kind: Option<ProxyType>) {
        self.lifetime.proxy_answer(status, kind);
    }

    /// A client request (`/client`, legacy or 1.0, or AMP) ended: denied
    /// (no proxy), matched (answer delivered) or timed out (matched, no
    /// answer in time). Call it once per request; requests refused for a
    /// malformed body or an unknown bridge are not counted. Feeds
    /// `client-denied-count` and its NAT breakdown, `client-snowflake-match-count`,
    /// `client-snowflake-timeout-count`, `client-<method>-count`,
    /// `client-<method>-ips` and `snowflake_rounded_client_poll_total`.
    pub fn client(
        &mut self,
        method: Rendezvous,
        nat: Nat,
        country: Country,
        outcome: ClientStatus,
    ) {
        self.period.client(method, nat, country, outcome);
        self.lifetime.client(method, nat, country, outcome);
    }

    /// Adds another shard's metrics (or a restored snapshot).
    pub fn merge(&mut self, other: &BrokerMetrics) {
        self.period.merge(&other.period);
        self.lifetime.merge(&other.lifetime);
        self.available.merge(&other.available);
    }

    /// Ends the period: returns its accumulator and starts an empty one.
    /// Publish with `PeriodStats::descriptor` after merging every shard's.
    pub fn take_period(&mut self) -> PeriodStats {
        std::mem::take(&mut self.period)
    }

    /// The `/prometheus` text.
    pub fn prometheus(&self) -> String {
        render(&self.lifetime, &self.available)
    }
}
