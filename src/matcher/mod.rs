//! The matching engine: waiting proxies, waiting clients and their deadlines.
//!
//! A pure state machine: every event (poll, offer, answer, time passing,
//! cancellation) is one method call taking `now` and returning what to tell
//! which parked request. Because each call runs to completion, the choice
//! between "match" and "timed out" is atomic: an offer can never go to a poll
//! that has already been answered `no match`.
//!
//! Parked requests are named by [`Ticket`]s; the Durable Object maps tickets
//! to the channels its requests wait on.

use crate::config::TimeoutFrom;
use crate::metrics::IpKey;
use crate::protocol::nat::{Nat, Pool};
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

pub mod api;
#[cfg(not(target_arch = "wasm32"))]
pub mod deployment;
pub mod interval;
pub mod merge;
pub mod routing;
pub mod shard;
pub mod waiters;

pub use api::{AnswerReply, OfferReply, PollReply};

/// Names one parked request. Tickets increase, so among proxies of equal
/// load the one that has waited longest is matched first.
pub type Ticket = u64;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub proxy_poll_timeout_ms: u64,
    pub client_timeout_ms: u64,
    pub client_timeout_from: TimeoutFrom,
    pub max_parked_polls: usize,
    /// Sessions (parked or answering) one address may hold at once.
    pub max_polls_per_address: usize,
    /// `PROXY_POLL_INTERVAL_MS`, kept by the shard ([`interval::PollGate`]).
    pub poll_interval: interval::PollInterval,
}

/// A proxy poll that passed validation and the relay-pattern check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub sid: String,
    pub nat: Nat,
    pub proxy_type: ProxyType,
    pub clients: i64,
}

/// A client offer bound for one bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub offer: String,
    pub nat: Nat,
    pub relay_url: String,
    /// When the client's request reached the broker (for `TimeoutFrom::Request`).
    pub started_at: Millis,
}

/// What a matched proxy's poll returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub offer: String,
    pub client_nat: Nat,
    pub relay_url: String,
}

/// The reply for a parked request, decided now, to be delivered by the
/// caller to whatever waits on the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    Poll(Ticket, PollReply),
    Offer(Ticket, OfferReply),
}

impl Wake {
    pub fn ticket(&self) -> Ticket {
        match self {
            Wake::Poll(t, _) | Wake::Offer(t, _) => *t,
        }
    }
}

/// How a proxy poll starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStart {
    /// Parked until matched or `deadline`; `replaced` is an earlier live poll
    /// with the same Sid, which must now be told `no match`.
    Parked {
        ticket: Ticket,
        deadline: Millis,
        replaced: Option<Wake>,
    },
    /// The shard already holds its maximum of parked polls: answer at once.
    Full,
    /// The poll's address already holds its maximum of sessions here.
    AddressFull,
    /// The Sid belongs to a proxy whose client is waiting for its answer; a
    /// second poll under it must not disturb that rendezvous.
    SidBusy,
}

/// How a client offer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferStart {
    /// Handed to a proxy (`wake` delivers it); the client waits until `deadline`.
    Parked {
        ticket: Ticket,
        deadline: Millis,
        wake: Wake,
        proxy_type: ProxyType,
    },
    /// No waiting proxy may serve this client.
    Denied,
    /// The client's own deadline passed before a proxy could be given the offer.
    Expired,
}

#[derive(Debug, Clone)]
struct ParkedProxy {
    sid: String,
    pool: Pool,
    clients: i64,
    deadline: Millis,
}

#[derive(Debug, Clone)]
struct WaitingClient {
    sid: String,
    deadline: Millis,
}

/// What the Sid table knows about a proxy session.
#[derive(Debug, Clone)]
struct Session {
    nat: Nat,
    proxy_type: ProxyType,
    state: SessionState,
    /// The keyed hash of the address that polled, when it is known.
    owner: Option<IpKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    Polling(Ticket),
    /// Matched; the client holding this ticket waits for the proxy's answer.
    Answering(Ticket),
}

/// Counts for `/debug`: every session (polling or answering) by type and NAT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    pub sessions: usize,
    pub by_type: Vec<(ProxyType, usize)>,
    pub by_nat: Vec<(Nat, usize)>,
    pub parked_polls: usize,
    pub waiting_clients: usize,
}

#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    next_ticket: Ticket,
    /// Per pool, parked polls ordered by reported load, then by age.
    pools: [BTreeSet<(i64, Ticket)>; 3],
    proxies: HashMap<Ticket, ParkedProxy>,
    clients: HashMap<Ticket, WaitingClient>,
    sessions: HashMap<String, Session>,
    /// Sessions per address, for `max_polls_per_address`; an address with
    /// none has no entry, so this is bounded by the sessions.
    owners: HashMap<IpKey, usize>,
    deadlines: BTreeSet<(Millis, Ticket)>,
}

impl Engine {
    pub fn new(settings: Settings) -> Engine {
        Engine {
            settings,
            next_ticket: 1,
            pools: Default::default(),
            proxies: HashMap::new(),
            clients: HashMap::new(),
            sessions: HashMap::new(),
            owners: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    fn ticket(&mut self) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        t
    }

    fn pool_mut(&mut self, pool: Pool) -> Option<&mut BTreeSet<(i64, Ticket)>> {
        self.pools.get_mut(pool.index())
    }

    /// Parks a proxy poll from the address whose keyed hash is `owner`.
    pub fn poll(&mut self, now: Millis, poll: Poll, owner: Option<IpKey>) -> PollStart {
        let (earlier, earlier_owner) = match self.sessions.get(&poll.sid) {
            Some(Session {
                state: SessionState::Answering(_),
                ..
            }) => return PollStart::SidBusy,
            Some(Session {
                state: SessionState::Polling(old),
                owner,
                ..
            }) => (Some(*old), *owner),
            None => (None, None),
        };
        // A poll that replaces an earlier one takes its place in the count.
        let others = self
            .proxies
            .len()
            .saturating_sub(usize::from(earlier.is_some()));
        if others >= self.settings.max_parked_polls {
            return PollStart::Full;
        }
        if let Some(key) = owner {
            let replacing_own = earlier.is_some() && earlier_owner == Some(key);
            let held = self
                .owners
                .get(&key)
                .copied()
                .unwrap_or(0)
                .saturating_sub(usize::from(replacing_own));
            if held >= self.settings.max_polls_per_address {
                return PollStart::AddressFull;
            }
        }
        // A second live poll with the same Sid ends the first one.
        let replaced = earlier.and_then(|old| {
            self.remove_proxy(old)
                .map(|_| Wake::Poll(old, PollReply::NoMatch))
        });
        let ticket = self.ticket();
        let deadline = now.saturating_add(self.settings.proxy_poll_timeout_ms);
        let pool = poll.nat.proxy_pool();
        if let Some(set) = self.pool_mut(pool) {
            set.insert((poll.clients, ticket));
        }
        self.deadlines.insert((deadline, ticket));
        self.proxies.insert(
            ticket,
            ParkedProxy {
                sid: poll.sid.clone(),
                pool,
                clients: poll.clients,
                deadline,
            },
        );
        self.remove_session(&poll.sid);
        if let Some(key) = owner {
            *self.owners.entry(key).or_default() += 1;
        }
        self.sessions.insert(
            poll.sid,
            Session {
                nat: poll.nat,
                proxy_type: poll.proxy_type,
                state: SessionState::Polling(ticket),
                owner,
            },
        );
        PollStart::Parked {
            ticket,
            deadline,
            replaced,
        }
    }

    /// Forgets a session and its place in its address's count.
    fn remove_session(&mut self, sid: &str) {
        let Some(owner) = self.sessions.remove(sid).and_then(|s| s.owner) else {
            return;
        };
        if let Some(count) = self.owners.get_mut(&owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.owners.remove(&owner);
            }
        }
    }

    /// Takes a parked proxy out of its pool and the deadline queue; leaves the
    /// session entry to the caller.
    fn remove_proxy(&mut self, ticket: Ticket) -> Option<ParkedProxy> {
        let proxy = self.proxies.remove(&ticket)?;
        if let Some(set) = self.pool_mut(proxy.pool) {
            set.remove(&(proxy.clients, ticket));
        }
        self.deadlines.remove(&(proxy.deadline, ticket));
        Some(proxy)
    }

    /// Nothing is parked.
    pub fn is_idle(&self) -> bool {
        self.proxies.is_empty() && self.clients.is_empty()
    }

    /// How many polls are parked in each pool (indexed by `Pool::index`).
    pub fn pool_sizes(&self) -> [usize; 3] {
        let mut sizes = [0; 3];
        for (size, pool) in sizes.iter_mut().zip(&self.pools) {
            *size = pool.len();
        }
        sizes
    }

    /// For each pool (indexed by `Pool::index`): how many polls it holds,
    /// and the key of the one it would hand out next (its reported load
    /// and deadline; an older poll has the earlier deadline).
    pub fn pool_heads(&self) -> [(usize, Option<(i64, Millis)>); 3] {
        let mut heads = [(0, None); 3];
        for (head, pool) in heads.iter_mut().zip(&self.pools) {
            let first = pool.first().and_then(|(clients, ticket)| {
                self.proxies.get(ticket).map(|p| (*clients, p.deadline))
            });
            *head = (pool.len(), first);
        }
        heads
    }

    /// Hands a client's offer to the least-loaded proxy it may use.
    pub fn offer(&mut self, now: Millis, offer: Offer) -> OfferStart {
        let deadline = match self.settings.client_timeout_from {
            TimeoutFrom::Request => offer
                .started_at
                .saturating_add(self.settings.client_timeout_ms),
            TimeoutFrom::Match => now.saturating_add(self.settings.client_timeout_ms),
        };
        let chosen = offer.nat.client_pools().iter().find_map(|pool| {
            self.pools
                .get(pool.index())
                .and_then(|set| set.first().copied())
        });
        let Some((_, proxy_ticket)) = chosen else {
            return OfferStart::Denied;
        };
        if deadline <= now {
            // Matching now would spend a proxy on a client that has given up.
            return OfferStart::Expired;
        }
        let Some(proxy) = self.remove_proxy(proxy_ticket) else {
            return OfferStart::Denied;
        };
        let ticket = self.ticket();
        let proxy_type = match self.sessions.get_mut(&proxy.sid) {
            Some(session) => {
                session.state = SessionState::Answering(ticket);
                session.proxy_type
            }
            None => ProxyType::Unknown,
        };
        self.deadlines.insert((deadline, ticket));
        self.clients.insert(
            ticket,
            WaitingClient {
                sid: proxy.sid,
                deadline,
            },
        );
        OfferStart::Parked {
            ticket,
            deadline,
            proxy_type,
            wake: Wake::Poll(
                proxy_ticket,
                PollReply::Matched(Assignment {
                    offer: offer.offer,
                    client_nat: offer.nat,
                    relay_url: offer.relay_url,
                }),
            ),
        }
    }

    /// Whether this engine knows the Sid (polling or answering): an
    /// `/answer` under a Sid it does not know may be for another shard.
    pub fn knows_sid(&self, sid: &str) -> bool {
        self.sessions.contains_key(sid)
    }

    /// Delivers a proxy's answer to exactly the client whose offer it got.
    /// Any Sid without a waiting client (never seen, still polling, timed
    /// out, already answered) is `client gone` at once.
    pub fn answer(&mut self, sid: &str, answer: String) -> (AnswerReply, Option<Wake>) {
        let client = match self.sessions.get(sid).map(|s| s.state) {
            Some(SessionState::Answering(client)) => client,
            _ => return (AnswerReply::ClientGone, None),
        };
        self.remove_session(sid);
        match self.clients.remove(&client) {
            Some(waiting) => {
                self.deadlines.remove(&(waiting.deadline, client));
                (
                    AnswerReply::Delivered,
                    Some(Wake::Offer(client, OfferReply::Answer(answer))),
                )
            }
            None => (AnswerReply::ClientGone, None),
        }
    }

    /// Ends every parked request whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<Wake> {
        let mut wakes = Vec::new();
        while let Some(&(deadline, ticket)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(wake) = self.end(ticket) {
                wakes.push(wake);
            }
        }
        wakes
    }

    /// Forgets a parked request whose caller went away, as if it had timed
    /// out; returns the reply it would have had, for the metrics.
    pub fn cancel(&mut self, ticket: Ticket) -> Option<Wake> {
        self.end(ticket)
    }

    /// Ends one parked request as timed out, whatever it is.
    fn end(&mut self, ticket: Ticket) -> Option<Wake> {
        if let Some(proxy) = self.remove_proxy(ticket) {
            self.forget_session(&proxy.sid, SessionState::Polling(ticket));
            return Some(Wake::Poll(ticket, PollReply::NoMatch));
        }
        if let Some(client) = self.clients.remove(&ticket) {
            self.deadlines.remove(&(client.deadline, ticket));
            self.forget_session(&client.sid, SessionState::Answering(ticket));
            return Some(Wake::Offer(ticket, OfferReply::TimedOut));
        }
        None
    }

    /// Removes a session only if it is still the one that ended, so a newer
    /// poll under the same Sid keeps its place (R deleted it: §3.6).
    fn forget_session(&mut self, sid: &str, state: SessionState) {
        if self.sessions.get(sid).is_some_and(|s| s.state == state) {
            self.remove_session(sid);
        }
    }

    pub fn census(&self) -> Census {
        let mut by_type: HashMap<ProxyType, usize> = HashMap::new();
        let mut by_nat: HashMap<Nat, usize> = HashMap::new();
        for session in self.sessions.values() {
            *by_type.entry(session.proxy_type).or_default() += 1;
            *by_nat.entry(session.nat).or_default() += 1;
        }
        let mut by_type: Vec<_> = by_type.into_iter().collect();
        by_type.sort();
        let mut by_nat: Vec<_> = by_nat.into_iter().collect();
        by_nat.sort();
        Census {
            sessions: self.sessions.len(),
            by_type,
            by_nat,
            parked_polls: self.proxies.len(),
            waiting_clients: self.clients.len(),
        }
    }

    /// Internal consistency, for tests: every index agrees with the others.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let pooled: usize = self.pools.iter().map(BTreeSet::len).sum();
        if pooled != self.proxies.len() {
            return Err(format!("{pooled} pooled vs {} proxies", self.proxies.len()));
        }
        if self.deadlines.len() != self.proxies.len() + self.clients.len() {
            return Err("deadline count differs from parked requests".into());
        }
        for (ticket, p) in &self.proxies {
            let in_pool = self
                .pools
                .get(p.pool.index())
                .is_some_and(|s| s.contains(&(p.clients, *ticket)));
            let session_ok = self
                .sessions
                .get(&p.sid)
                .is_some_and(|s| s.state == SessionState::Polling(*ticket));
            if !in_pool || !session_ok || !self.deadlines.contains(&(p.deadline, *ticket)) {
                return Err(format!("proxy {ticket} not indexed"));
            }
        }
        for (ticket, c) in &self.clients {
            let session_ok = self
                .sessions
                .get(&c.sid)
                .is_some_and(|s| s.state == SessionState::Answering(*ticket));
            if !session_ok || !self.deadlines.contains(&(c.deadline, *ticket)) {
                return Err(format!("client {ticket} not indexed"));
            }
        }
        if self.sessions.len() != self.proxies.len() + self.clients.len() {
            return Err("sessions differ from parked requests".into());
        }
        let mut owners: HashMap<IpKey, usize> = HashMap::new();
        for owner in self.sessions.values().filter_map(|s| s.owner) {
            *owners.entry(owner).or_default() += 1;
        }
        if owners != self.owners {
            return Err("per-address counts differ from the sessions".into());
        }
        if owners
            .values()
            .any(|&n| n > self.settings.max_polls_per_address)
        {
            return Err("an address holds more sessions than allowed".into());
        }
        Ok(())
    }
}
