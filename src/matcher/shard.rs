//! One matcher shard: the engine plus the metrics of everything it decides.
//!
//! Every outcome of the engine passes through here, so each one is counted
//! exactly once, in one place; the Durable Object only adds channels, timers
//! and storage. Metrics are per shard and mergeable, so the published text
//! does not depend on how many shards there are (design.md §4).

use super::shard_api::{OfferRequest, PollRequest};
use super::{
    AnswerResult, ClientOutcome as Ended, Engine, Millis, OfferStart, PollStart, ProxyOutcome,
    Settings, Ticket, Wake,
};
use crate::metrics::{
    AnswerStatus, BrokerMetrics, ClientOutcome, Country, IpHasher, PeriodStats, Rendezvous,
};
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the metrics need to know about a parked request.
#[derive(Debug, Clone, Copy)]
enum Labels {
    Proxy {
        nat: Nat,
        kind: ProxyType,
    },
    Client {
        nat: Nat,
        country: Country,
        method: Rendezvous,
        proxy_kind: ProxyType,
    },
}

/// Everything a shard must keep across a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub metrics: BrokerMetrics,
    /// Start of the current `snowflake-stats` period, Unix seconds.
    pub period_start: u64,
    /// Hex of the 16-byte secret IP keys are derived from. It never leaves
    /// the shard's own storage and is replaced at the end of every period,
    /// so keys of different periods cannot be linked.
    pub ip_secret: String,
}

#[derive(Debug)]
pub struct Shard {
    engine: Engine,
    metrics: BrokerMetrics,
    labels: HashMap<Ticket, Labels>,
    period_start: u64,
    period_seconds: u64,
    ip_secret: [u8; 16],
    hasher: IpHasher,
}

impl Shard {
    pub fn new(
        settings: Settings,
        period_seconds: u64,
        now_unix: u64,
        ip_secret: [u8; 16],
    ) -> Shard {
        Shard {
            engine: Engine::new(settings),
            metrics: BrokerMetrics::default(),
            labels: HashMap::new(),
            period_start: now_unix,
            period_seconds: period_seconds.max(1),
            ip_secret,
            hasher: IpHasher::for_period(ip_secret, now_unix),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &BrokerMetrics {
        &self.metrics
    }

    /// A decoded poll refused for its relay pattern (it never parks).
    pub fn rejected_poll(&mut self, nat: Nat, kind: ProxyType, with_relay_pattern: bool) {
        self.metrics.proxy_poll(nat, kind, with_relay_pattern);
        self.metrics.proxy_rejected_relay_pattern(nat, kind);
    }

    pub fn poll(&mut self, now: Millis, request: PollRequest) -> PollStart {
        let PollRequest { poll, seen } = request;
        let (nat, kind) = (poll.nat, poll.proxy_type);
        self.metrics.proxy_poll(nat, kind, seen.with_relay_pattern);
        if let Some(ip) = seen.ip {
            let key = self.hasher.key(ip);
            self.metrics
                .proxy_accepted(key, Country::new(seen.country.as_deref()), nat, kind);
        }
        let start = self.engine.poll(now, poll);
        match &start {
            PollStart::Parked {
                ticket, replaced, ..
            } => {
                self.labels.insert(*ticket, Labels::Proxy { nat, kind });
                self.metrics.proxy_parked(nat, kind);
                if let Some(wake) = replaced {
                    self.count(wake);
                }
            }
            PollStart::Full | PollStart::SidBusy => self.metrics.proxy_idle(nat, kind),
        }
        start
    }

    pub fn offer(&mut self, now: Millis, request: OfferRequest) -> OfferStart {
        let OfferRequest {
            offer,
            method,
            country,
        } = request;
        let nat = offer.nat;
        let country = Country::new(country.as_deref());
        let start = self.engine.offer(now, offer);
        match &start {
            OfferStart::Parked {
                ticket,
                wake,
                proxy_type,
                ..
            } => {
                self.labels.insert(
                    *ticket,
                    Labels::Client {
                        nat,
                        country,
                        method,
                        proxy_kind: *proxy_type,
                    },
                );
                self.count(wake);
            }
            OfferStart::Denied => self
                .metrics
                .client(method, nat, country, ClientOutcome::Denied),
            OfferStart::Expired => {
                self.metrics
                    .client(method, nat, country, ClientOutcome::TimedOut)
            }
        }
        start
    }

    pub fn answer(&mut self, sid: &str, answer: String) -> (AnswerResult, Option<Wake>) {
        let (result, wake) = self.engine.answer(sid, answer);
        match &wake {
            Some(w) => {
                let kind = match w {
                    Wake::Client(t, _) => match self.labels.get(t) {
                        Some(Labels::Client { proxy_kind, .. }) => Some(*proxy_kind),
                        _ => None,
                    },
                    Wake::Proxy(..) => None,
                };
                self.metrics.proxy_answer(AnswerStatus::Success, kind);
                self.count(w);
            }
            None => self.metrics.proxy_answer(AnswerStatus::Timeout, None),
        }
        (result, wake)
    }

    pub fn expire(&mut self, now: Millis) -> Vec<Wake> {
        let wakes = self.engine.expire(now);
        for wake in &wakes {
            self.count(wake);
        }
        wakes
    }

    /// The caller of a parked request went away: nothing was answered, so
    /// only the gauge of waiting proxies changes.
    pub fn cancel(&mut self, ticket: Ticket) {
        self.engine.cancel(ticket);
        if let Some(Labels::Proxy { nat, kind }) = self.labels.remove(&ticket) {
            self.metrics.proxy_unparked(nat, kind);
        }
    }

    /// Counts one outcome and forgets the request's labels.
    fn count(&mut self, wake: &Wake) {
        let ticket = match wake {
            Wake::Proxy(t, _) | Wake::Client(t, _) => *t,
        };
        match (self.labels.remove(&ticket), wake) {
            (Some(Labels::Proxy { nat, kind }), Wake::Proxy(_, outcome)) => {
                self.metrics.proxy_unparked(nat, kind);
                match outcome {
                    ProxyOutcome::Matched(_) => self.metrics.proxy_matched(nat, kind),
                    ProxyOutcome::NoMatch => self.metrics.proxy_idle(nat, kind),
                }
            }
            (
                Some(Labels::Client {
                    nat,
                    country,
                    method,
                    ..
                }),
                Wake::Client(_, outcome),
            ) => {
                let outcome = match outcome {
                    Ended::Answer(_) => ClientOutcome::Matched,
                    Ended::TimedOut => ClientOutcome::TimedOut,
                };
                self.metrics.client(method, nat, country, outcome);
            }
            _ => {}
        }
    }

    /// When the current period ends, Unix seconds.
    pub fn period_end(&self) -> u64 {
        self.period_start.saturating_add(self.period_seconds)
    }

    /// Closes every period that has ended by `now_unix`, returning each
    /// one's end time and `snowflake-stats` block, oldest first. A new
    /// secret is drawn for each new period.
    pub fn close_periods(
        &mut self,
        now_unix: u64,
        mut new_secret: impl FnMut() -> [u8; 16],
    ) -> Vec<(u64, String)> {
        let mut blocks = Vec::new();
        while self.period_end() <= now_unix {
            let end = self.period_end();
            let stats: PeriodStats = self.metrics.take_period();
            blocks.push((end, stats.descriptor(end, self.period_seconds)));
            self.period_start = end;
            self.ip_secret = new_secret();
            self.hasher = IpHasher::for_period(self.ip_secret, end);
            // A broker that was down for many periods publishes them all
            // (empty), as the Go broker's ticker would have; but not forever.
            if blocks.len() >= 1_000 {
                self.period_start = now_unix;
                break;
            }
        }
        blocks
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            metrics: self.metrics.clone(),
            period_start: self.period_start,
            ip_secret: self.ip_secret.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Continues from a saved snapshot (after a restart). Events counted
    /// since this shard started are kept too.
    pub fn restore(&mut self, snapshot: &Snapshot) {
        let mut secret = [0u8; 16];
        let hex = snapshot.ip_secret.as_bytes();
        let parsed = hex.len() == 32
            && secret.iter_mut().zip(hex.chunks_exact(2)).all(|(b, pair)| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .map(|v| *b = v)
                    .is_some()
            });
        if parsed {
            self.ip_secret = secret;
        }
        self.period_start = snapshot.period_start;
        self.hasher = IpHasher::for_period(self.ip_secret, self.period_start);
        let mut restored = snapshot.metrics.clone();
        restored.available = Default::default();
        let current = std::mem::replace(&mut self.metrics, restored);
        self.metrics.merge(&current);
    }
}
