//! A whole deployment in one process: every shard, the Worker's routing
//! and each isolate's board, driven one event at a time. Native tests and
//! the scale simulation (`examples/shard_sim.rs`) use it to check the
//! sharding invariants of docs/design.md §4 against the real engine and
//! routing; the Worker does the same steps over Durable Object requests
//! (src/worker/mod.rs).

use super::api::{
    AnswerOutcome, AnswerReply, AnswerRequest, OfferRequest, PollReply, PollRequest, ProxyAddress,
    ProxySeen,
};
use super::routing::{self, Board};
use super::shard::{OfferStep, Shard, Started, Step};
use super::{Millis, Offer, OfferReply, Poll, Settings, Ticket, Wake};
use crate::metrics::Rendezvous;
use crate::protocol::nat::Nat;
use std::collections::HashMap;
use std::net::IpAddr;

/// A parked request: the shard that holds it and its ticket there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    pub shard: u32,
    pub ticket: Ticket,
}

/// How a poll or an offer started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun<R> {
    Parked(Handle),
    Now(R),
}

/// A reply delivered to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Poll(Handle, PollReply),
    Offer(Handle, OfferReply),
}

pub struct Deployment {
    shards: Vec<Shard>,
    boards: Vec<Board>,
    /// Parked requests, and the isolate each one's reply goes back to.
    parked: HashMap<Handle, u32>,
    pending: Vec<Delivered>,
    /// Durable Object requests each shard received.
    pub requests: Vec<u64>,
    /// Offers (client rendezvous) and the shard requests they cost.
    pub offers_made: u64,
    pub offer_requests: u64,
    /// Denials, and denials made while a proxy the client could use was
    /// parked on some shard.
    pub denials: u64,
    pub wrong_denials: u64,
    /// Shard requests the answers cost.
    pub answer_requests: u64,
    rotate: u32,
}

impl Deployment {
    /// `shards` matcher shards, `isolates` Worker isolates (each with its
    /// own board), all started at `now_unix` with one secret.
    pub fn new(
        shards: u32,
        isolates: u32,
        settings: Settings,
        period_seconds: u64,
        now_unix: u64,
        secret: [u8; 16],
    ) -> Deployment {
        let n = shards.clamp(1, routing::MAX_SHARDS);
        Deployment {
            shards: (0..n)
                .map(|_| Shard::new(settings, period_seconds, now_unix, secret))
                .collect(),
            boards: (0..isolates.max(1)).map(|_| Board::new(n)).collect(),
            parked: HashMap::new(),
            pending: Vec::new(),
            requests: vec![0; n as usize],
            offers_made: 0,
            offer_requests: 0,
            denials: 0,
            wrong_denials: 0,
            answer_requests: 0,
            rotate: 0,
        }
    }

    /// Every isolate's board tuned as [`Board::tuned`].
    pub fn tune(&mut self, fresh_ms: Millis, probes: usize) {
        let n = self.shard_count();
        for b in &mut self.boards {
            *b = Board::tuned(n, fresh_ms, probes);
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    fn board(&mut self, isolate: u32) -> Option<&mut Board> {
        let n = self.boards.len();
        self.boards.get_mut(isolate as usize % n.max(1))
    }

    /// The shard's reply reaches `isolate`, with the shard's pools.
    fn heard(&mut self, isolate: u32, shard: u32, now: Millis) {
        let pools = match self.shards.get(shard as usize) {
            Some(s) => s.pools(),
            None => return,
        };
        if let Some(b) = self.board(isolate) {
            b.note_summary(shard, pools, now);
        }
    }

    fn count_request(&mut self, shard: u32) {
        if let Some(n) = self.requests.get_mut(shard as usize) {
            *n = n.saturating_add(1);
        }
    }

    /// A proxy poll through `isolate`, as the Worker routes it: the address
    /// hashed with shard 0's period key when there are several shards.
    pub fn poll(
        &mut self,
        now: Millis,
        isolate: u32,
        poll: Poll,
        ip: Option<IpAddr>,
        country: Option<String>,
    ) -> Begun<PollReply> {
        let shards = self.shard_count();
        let address = match (ip, self.shards.first()) {
            // Shard 0's hasher, as the Worker gets it from `/period-key`.
            (Some(ip), Some(first)) if shards > 1 => {
                Some(ProxyAddress::Key(first.address_hasher().key(ip)))
            }
            (ip, _) => ip.map(ProxyAddress::Ip),
        };
        let shard = routing::poll_shard(ip, &poll.sid, shards);
        let timeout = self
            .shards
            .first()
            .map_or(0, |s| s.engine().settings().proxy_poll_timeout_ms);
        let (nat, clients) = (poll.nat, poll.clients);
        if let Some(b) = self.board(isolate) {
            b.note_poll(shard, nat, clients, now.saturating_add(timeout));
        }
        self.count_request(shard);
        let request = PollRequest {
            poll,
            seen: ProxySeen {
                with_relay_pattern: true,
                country,
                address,
            },
            at: Some(now),
            refused_meanwhile: Vec::new(),
            refused_addresses: Vec::new(),
        };
        let Some(s) = self.shards.get_mut(shard as usize) else {
            return Begun::Now(PollReply::Refused);
        };
        let step = s.poll(now, request);
        let begun = self.park(shard, isolate, step, now);
        if matches!(begun, Begun::Now(_)) {
            self.heard(isolate, shard, now);
        }
        begun
    }

    /// A client's offer through `isolate`, tried on shards in the board's
    /// order as the Worker does.
    pub fn offer(
        &mut self,
        now: Millis,
        isolate: u32,
        offer: Offer,
        method: Rendezvous,
        country: Option<String>,
    ) -> Begun<OfferReply> {
        self.rotate = self.rotate.wrapping_add(1);
        let nat = offer.nat;
        let rotate = self.rotate;
        let order = match self.board(isolate) {
            Some(b) => b.offer_order(nat, now, rotate),
            None => vec![0],
        };
        self.offers_made += 1;
        let usable_somewhere = self.usable_anywhere(nat);
        for (i, shard) in order.iter().copied().enumerate() {
            let last = i + 1 == order.len();
            self.count_request(shard);
            self.offer_requests += 1;
            let request = OfferRequest {
                offer: offer.clone(),
                method,
                country: country.clone(),
                last,
            };
            let Some(s) = self.shards.get_mut(shard as usize) else {
                continue;
            };
            let step = match s.offer(now, request) {
                OfferStep::Elsewhere => {
                    self.heard(isolate, shard, now);
                    continue;
                }
                OfferStep::Here(step) => step,
            };
            let begun = self.park(shard, isolate, step, now);
            self.heard(isolate, shard, now);
            if begun == Begun::Now(OfferReply::Denied) {
                self.denials += 1;
                if usable_somewhere {
                    self.wrong_denials += 1;
                }
            }
            return begun;
        }
        Begun::Now(OfferReply::Denied)
    }

    /// A proxy's answer from `ip`, routed as the Worker routes it: the
    /// address's shard first, then the others until one knows the Sid.
    pub fn answer(
        &mut self,
        now: Millis,
        isolate: u32,
        ip: Option<IpAddr>,
        sid: &str,
        answer: String,
    ) -> AnswerReply {
        let order = routing::answer_order(ip, sid, self.shard_count());
        for (i, shard) in order.iter().copied().enumerate() {
            self.count_request(shard);
            self.answer_requests += 1;
            let Some(s) = self.shards.get_mut(shard as usize) else {
                continue;
            };
            let (outcome, wakes) = s.answer(AnswerRequest {
                sid: sid.to_string(),
                answer: answer.clone(),
                last: i + 1 == order.len(),
            });
            self.deliver(shard, wakes, now);
            self.heard(isolate, shard, now);
            if let AnswerOutcome::Ended(reply) = outcome {
                return reply;
            }
        }
        AnswerReply::ClientGone
    }

    /// Time passes: every shard ends what is due.
    pub fn advance(&mut self, now: Millis) {
        for shard in 0..self.shard_count() {
            let wakes = match self.shards.get_mut(shard as usize) {
                Some(s) => s.expire(now),
                None => continue,
            };
            self.deliver(shard, wakes, now);
        }
    }

    /// Parks the request a step started (or returns its reply), then
    /// delivers the replies it made due to others: in that order, as the
    /// Durable Object does.
    fn park<R>(&mut self, shard: u32, isolate: u32, step: Step<R>, now: Millis) -> Begun<R> {
        let begun = match step.start {
            Started::Now(reply) => Begun::Now(reply),
            Started::Parked { ticket, .. } => {
                let handle = Handle { shard, ticket };
                self.parked.insert(handle, isolate);
                Begun::Parked(handle)
            }
        };
        self.deliver(shard, step.wakes, now);
        begun
    }

    /// Each reply goes to its parked request, and back to that request's
    /// isolate with the shard's pools; a wake for a request no longer
    /// parked is dropped (as `Waiters` drops it).
    fn deliver(&mut self, shard: u32, wakes: Vec<Wake>, now: Millis) {
        for wake in wakes {
            let handle = Handle {
                shard,
                ticket: wake.ticket(),
            };
            let Some(isolate) = self.parked.remove(&handle) else {
                continue;
            };
            self.heard(isolate, shard, now);
            self.pending.push(match wake {
                Wake::Poll(_, reply) => Delivered::Poll(handle, reply),
                Wake::Offer(_, reply) => Delivered::Offer(handle, reply),
            });
        }
    }

    /// Replies delivered since the last call, in the order they were made.
    pub fn delivered(&mut self) -> Vec<Delivered> {
        std::mem::take(&mut self.pending)
    }

    /// Whether any shard holds a parked poll a client with `nat` may use.
    pub fn usable_anywhere(&self, nat: Nat) -> bool {
        self.shards.iter().any(|s| {
            let pools = s.pools();
            nat.client_pools()
                .iter()
                .any(|p| pools.get(p.index()).is_some_and(|h| h.parked > 0))
        })
    }

    /// Closes the period on every shard at `now_unix` and renders
    /// `/metrics` as the Worker does: every shard's periods merged.
    pub fn metrics_text(&mut self, now_unix: u64) -> String {
        let mut secret = 0u8;
        let periods: Vec<_> = self
            .shards
            .iter_mut()
            .map(|s| {
                s.close_periods(now_unix, || {
                    secret = secret.wrapping_add(1);
                    Some([secret; 16])
                })
            })
            .collect();
        super::merge::metrics_text(periods)
    }
}
