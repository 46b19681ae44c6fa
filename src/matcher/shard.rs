//! One matcher shard: the engine plus the metrics of everything it decides.
//!
//! Every outcome of the engine passes through here, so each one is counted
//! exactly once, in one place; the Durable Object only adds channels, timers
//! and storage. Metrics are per shard and mergeable, so the published text
//! does not depend on how many shards there are (docs/design.md §4).

use super::api::{
    AnswerOutcome, AnswerRequest, ClosedPeriod, Done, LiveMetrics, OfferReply, OfferRequest,
    PeriodKey, PollReply, PollRequest, ProxyAddress, RejectedPoll, SqsMalformed,
};
use super::interval::PollGate;
use super::routing::{PoolHead, Pools};
use super::{Census, Engine, Millis, OfferStart, PollStart, Settings, Ticket, Wake};
use crate::metrics::ip_key::parse_hex16;
use crate::metrics::{
    AnswerStatus, BrokerMetrics, ClientStatus, Country, IpHasher, IpKey, PeriodCounters,
    PromCounters, ProxyRecord, Rendezvous,
};
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a call starts: answered at once, or parked under a ticket until a
/// wake for it or its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started<R> {
    Now(R),
    Parked { ticket: Ticket, deadline: Millis },
}

/// What one call did: how it starts, and the replies now due to other
/// parked requests (deliver them after parking this one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Step<R> {
    pub start: Started<R>,
    pub wakes: Vec<Wake>,
}

impl<R> Step<R> {
    fn now(reply: R) -> Step<R> {
        Step {
            start: Started::Now(reply),
            wakes: Vec::new(),
        }
    }
}

/// How an offer starts on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum OfferStep {
    /// This shard decides the client's reply.
    Here(Step<OfferReply>),
    /// Nothing here for it: the Worker tries the next shard.
    Elsewhere,
}

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

/// Everything a shard must keep across a restart, as read back. The
/// address set is saved apart, one row per address ([`Shard::unsaved_addresses`]);
/// a snapshot written before that holds the whole set, which is read too.
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

/// The snapshot as written: the same fields, the address set left out.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    metrics: MetricsOut<'a>,
    period_start: u64,
    ip_secret: String,
}

#[derive(Serialize)]
struct MetricsOut<'a> {
    period: PeriodOut<'a>,
    lifetime: &'a PromCounters,
}

#[derive(Serialize)]
struct PeriodOut<'a> {
    counters: &'a PeriodCounters,
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
    /// `PROXY_POLL_INTERVAL_MS`, in memory only: a reset forgets it, which
    /// lets each address poll once early.
    gate: PollGate,
}

impl Shard {
    pub fn new(
        settings: Settings,
        period_seconds: u64,
        now_unix: u64,
        ip_secret: [u8; 16],
    ) -> Shard {
        let period_seconds = period_seconds.max(1);
        // Periods are aligned to the epoch, so every shard of a deployment
        // closes the same periods without asking any other.
        let period_start = now_unix - now_unix % period_seconds;
        Shard {
            engine: Engine::new(settings),
            metrics: BrokerMetrics::default(),
            labels: HashMap::new(),
            period_start,
            period_seconds,
            ip_secret,
            hasher: IpHasher::for_period(ip_secret, period_start),
            gate: PollGate::new(settings.poll_interval),
        }
    }

    /// What each pool holds, for the Worker's board.
    pub fn pools(&self) -> Pools {
        self.engine.pool_heads().map(|(n, head)| PoolHead {
            parked: u32::try_from(n).unwrap_or(u32::MAX),
            next: head,
        })
    }

    /// This shard's address hasher for the current period: the
    /// deployment's, when this is shard 0.
    pub fn address_hasher(&self) -> IpHasher {
        self.hasher
    }

    /// [`Shard::address_hasher`]'s key, as the Worker is sent it.
    pub fn period_key(&self) -> PeriodKey {
        PeriodKey {
            end: self.period_end(),
            key: crate::hex::encode(&self.hasher.key_bytes()),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &BrokerMetrics {
        &self.metrics
    }

    /// A decoded poll refused for its relay pattern (it never parks).
    pub fn rejected_poll(&mut self, call: RejectedPoll) -> Done {
        let RejectedPoll {
            nat,
            proxy_type,
            with_relay_pattern,
        } = call;
        self.metrics.proxy_poll(nat, proxy_type, with_relay_pattern);
        self.metrics.proxy_rejected_relay_pattern(nat, proxy_type);
        Done
    }

    /// An SQS message deleted unanswered.
    pub fn sqs_malformed(&mut self, call: SqsMalformed) -> Done {
        self.metrics.lifetime.sqs_malformed(&call.reason);
        Done
    }

    /// The keyed hash an address counts under here.
    fn address_key(&self, address: ProxyAddress) -> IpKey {
        match address {
            ProxyAddress::Key(key) => key,
            ProxyAddress::Ip(ip) => self.hasher.key(ip),
        }
    }

    /// A proxy poll: refused at once, or parked until a client's offer or
    /// its deadline. `wakes` are replies now due to other parked requests
    /// (an earlier poll under the same Sid).
    pub fn poll(&mut self, now: Millis, request: PollRequest) -> Step<PollReply> {
        let PollRequest {
            poll,
            seen,
            at,
            refused_meanwhile,
            refused_addresses,
        } = request;
        for refused in &refused_meanwhile {
            self.metrics.refused_by_worker(refused);
        }
        for refused in refused_addresses {
            let key = self.address_key(refused.address);
            let country = Country::new(refused.country.as_deref());
            self.metrics
                .address_refused_by_worker(key, country, refused.nat, refused.proxy_type);
        }
        let at = at.unwrap_or(now);
        let pool = poll.nat.proxy_pool();
        let (nat, kind) = (poll.nat, poll.proxy_type);
        self.metrics.proxy_poll(nat, kind, seen.with_relay_pattern);
        let owner = seen.address.map(|address| self.address_key(address));
        if let Some(key) = owner {
            self.metrics
                .proxy_accepted(key, Country::new(seen.country.as_deref()), nat, kind);
            if let Err(left) = self.gate.check(at, pool, key) {
                self.metrics.proxy_too_soon(nat, kind);
                return Step::now(PollReply::TooSoon(left));
            }
        }
        // The deadline counts from when the Worker took the poll (never
        // later than now), as the Worker's own bounded wait does: time the
        // poll spent on the hop or queued here does not eat the Worker's
        // margin, so a busy shard still answers before the Worker gives up.
        match self.engine.poll(at.min(now), poll, owner) {
            PollStart::Parked {
                ticket,
                deadline,
                replaced,
            } => {
                if let Some(key) = owner {
                    self.gate.accepted(at, pool, key);
                }
                self.labels.insert(ticket, Labels::Proxy { nat, kind });
                self.metrics.proxy_parked(nat, kind);
                let wakes: Vec<Wake> = replaced.into_iter().collect();
                for wake in &wakes {
                    self.count(wake);
                }
                Step {
                    start: Started::Parked { ticket, deadline },
                    wakes,
                }
            }
            PollStart::Full | PollStart::SidBusy => {
                self.metrics.proxy_idle(nat, kind);
                Step::now(PollReply::Refused)
            }
            PollStart::AddressFull => {
                self.metrics.proxy_idle(nat, kind);
                Step::now(PollReply::AddressFull)
            }
        }
    }

    /// A client offer: denied at once, or handed to a proxy (the wake) and
    /// parked until that proxy's answer or the client's deadline. An offer
    /// that is not `last` and finds nothing here is `Elsewhere`, uncounted.
    pub fn offer(&mut self, now: Millis, request: OfferRequest) -> OfferStep {
        let OfferRequest {
            offer,
            method,
            country,
            last,
        } = request;
        let nat = offer.nat;
        let country = Country::new(country.as_deref());
        match self.engine.offer(now, offer) {
            OfferStart::Parked {
                ticket,
                deadline,
                wake,
                proxy_type,
            } => {
                self.labels.insert(
                    ticket,
                    Labels::Client {
                        nat,
                        country,
                        method,
                        proxy_kind: proxy_type,
                    },
                );
                self.count(&wake);
                OfferStep::Here(Step {
                    start: Started::Parked { ticket, deadline },
                    wakes: vec![wake],
                })
            }
            OfferStart::Denied if !last => OfferStep::Elsewhere,
            OfferStart::Denied => {
                self.metrics
                    .client(method, nat, country, ClientStatus::Denied);
                OfferStep::Here(Step::now(OfferReply::Denied))
            }
            OfferStart::Expired => {
                self.metrics
                    .client(method, nat, country, ClientStatus::TimedOut);
                OfferStep::Here(Step::now(OfferReply::TimedOut))
            }
        }
    }

    /// A proxy's answer: delivered to its client (the wake) or `client
    /// gone`; `Elsewhere` if this shard does not know the Sid and is not
    /// the last the Worker asks.
    pub fn answer(&mut self, request: AnswerRequest) -> (AnswerOutcome, Vec<Wake>) {
        if !request.last && !self.engine.knows_sid(&request.sid) {
            return (AnswerOutcome::Elsewhere, Vec::new());
        }
        let (reply, wake) = self.engine.answer(&request.sid, request.answer);
        match &wake {
            Some(w) => {
                let kind = match self.labels.get(&w.ticket()) {
                    Some(Labels::Client { proxy_kind, .. }) => Some(*proxy_kind),
                    _ => None,
                };
                self.metrics.proxy_answer(AnswerStatus::Success, kind);
                self.count(w);
            }
            None => self.metrics.proxy_answer(AnswerStatus::Timeout, None),
        }
        (AnswerOutcome::Ended(reply), wake.into_iter().collect())
    }

    /// Ends every parked request whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<Wake> {
        let wakes = self.engine.expire(now);
        for wake in &wakes {
            self.count(wake);
        }
        wakes
    }

    /// The caller of a parked request went away. A poll that left was never
    /// answered, so only the gauge of waiting proxies changes; a client that
    /// left before its answer is counted as timed out (it got none), and its
    /// proxy is free to poll again under its Sid.
    pub fn cancel(&mut self, ticket: Ticket) {
        match self.engine.cancel(ticket) {
            Some(wake @ Wake::Offer(..)) => self.count(&wake),
            Some(Wake::Poll(..)) | None => {
                if let Some(Labels::Proxy { nat, kind }) = self.labels.remove(&ticket) {
                    self.metrics.proxy_unparked(nat, kind);
                }
            }
        }
    }

    /// The sessions this shard knows, for `/debug`.
    pub fn census(&self) -> Census {
        self.engine.census()
    }

    /// The lifetime counters and gauges, as numbers.
    pub fn live_metrics(&self) -> LiveMetrics {
        LiveMetrics {
            lifetime: self.metrics.lifetime.clone(),
            available: self.metrics.available.clone(),
            requests: Default::default(),
        }
    }

    /// Counts one outcome and forgets the request's labels.
    fn count(&mut self, wake: &Wake) {
        match (self.labels.remove(&wake.ticket()), wake) {
            (Some(Labels::Proxy { nat, kind }), Wake::Poll(_, reply)) => {
                self.metrics.proxy_unparked(nat, kind);
                match reply {
                    PollReply::Matched(_) => self.metrics.proxy_matched(nat, kind),
                    PollReply::NoMatch | PollReply::Refused | PollReply::AddressFull => {
                        self.metrics.proxy_idle(nat, kind)
                    }
                    // Decided before parking; never a parked poll's wake.
                    PollReply::TooSoon(_) => self.metrics.proxy_too_soon(nat, kind),
                }
            }
            (
                Some(Labels::Client {
                    nat,
                    country,
                    method,
                    ..
                }),
                Wake::Offer(_, reply),
            ) => {
                let status = match reply {
                    OfferReply::Answer(_) => ClientStatus::Matched,
                    OfferReply::TimedOut => ClientStatus::TimedOut,
                    OfferReply::Denied => ClientStatus::Denied,
                };
                self.metrics.client(method, nat, country, status);
            }
            _ => {}
        }
    }

    /// When the current period ends, Unix seconds: the next multiple of the
    /// period's length (a period restored from before periods were aligned
    /// ends early, at the first aligned boundary).
    pub fn period_end(&self) -> u64 {
        let s = self.period_seconds;
        (self.period_start / s).saturating_add(1).saturating_mul(s)
    }

    /// Closes every period that has ended by `now_unix`, returning each
    /// one's numbers and address set, oldest first; they are rendered once
    /// every shard's are merged. A new secret is drawn for each new period;
    /// if none can be drawn the current one is kept (still random, only no
    /// longer unlinkable across the two periods).
    pub fn close_periods(
        &mut self,
        now_unix: u64,
        mut new_secret: impl FnMut() -> Option<[u8; 16]>,
    ) -> Vec<ClosedPeriod> {
        let mut closed = Vec::new();
        while self.period_end() <= now_unix {
            let end = self.period_end();
            closed.push(ClosedPeriod {
                end,
                seconds: end.saturating_sub(self.period_start),
                stats: self.metrics.take_period(),
            });
            self.period_start = end;
            // A broker that was down for many periods publishes them all
            // (empty), as the Go broker's ticker would have; but not forever.
            if closed.len() >= 1_000 {
                self.period_start = now_unix - now_unix % self.period_seconds;
                break;
            }
        }
        if !closed.is_empty() {
            if let Some(secret) = new_secret() {
                self.ip_secret = secret;
            }
            self.hasher = IpHasher::for_period(self.ip_secret, self.period_start);
        }
        closed
    }

    /// The snapshot's text: counters, period clock and secret, a few KB
    /// whatever the number of addresses.
    pub fn snapshot_text(&self) -> serde_json::Result<String> {
        serde_json::to_string(&SnapshotOut {
            metrics: MetricsOut {
                period: PeriodOut {
                    counters: &self.metrics.period.counters,
                },
                lifetime: &self.metrics.lifetime,
            },
            period_start: self.period_start,
            ip_secret: crate::hex::encode(&self.ip_secret),
        })
    }

    /// Start of the current period (the address rows are saved under it).
    pub fn period_start(&self) -> u64 {
        self.period_start
    }

    /// The current period's address records new or changed since the last
    /// call, to be written as rows under [`Shard::period_start`].
    pub fn unsaved_addresses(&mut self) -> Vec<(IpKey, ProxyRecord)> {
        self.metrics.period.proxies.take_unsaved()
    }

    /// Their write failed: they are written with the next save, if their
    /// period is still the current one.
    pub fn unsave_addresses(&mut self, period_start: u64, keys: Vec<IpKey>) {
        if period_start == self.period_start {
            self.metrics.period.proxies.unsave(keys);
        }
    }

    /// Address rows read back after a restart, for the period starting at
    /// `period_start` (ignored if that is not the current period).
    pub fn restore_addresses(
        &mut self,
        period_start: u64,
        rows: impl IntoIterator<Item = (IpKey, ProxyRecord)>,
    ) {
        if period_start != self.period_start {
            return;
        }
        for (key, record) in rows {
            self.metrics.period.proxies.add_saved(key, record);
        }
    }

    /// No request is parked: a good moment to save, before an idle object
    /// is evicted.
    pub fn is_idle(&self) -> bool {
        self.engine.is_idle()
    }

    /// Continues from a saved snapshot (after a restart). Events counted
    /// since this shard started are kept too.
    pub fn restore(&mut self, snapshot: &Snapshot) {
        if let Some(secret) = parse_hex16(&snapshot.ip_secret) {
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
