//! The channels parked requests wait on, keyed by ticket: a [`Wake`] from
//! the shard is delivered to exactly the request it names. Plain
//! `futures-channel` oneshots, so native tests drive the same delivery the
//! Durable Object uses.

use super::api::{OfferReply, PollReply};
use super::{Ticket, Wake};
use futures_channel::oneshot;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Waiters {
    polls: HashMap<Ticket, oneshot::Sender<PollReply>>,
    offers: HashMap<Ticket, oneshot::Sender<OfferReply>>,
}

impl Waiters {
    pub fn park_poll(&mut self, ticket: Ticket) -> oneshot::Receiver<PollReply> {
        let (tx, rx) = oneshot::channel();
        self.polls.insert(ticket, tx);
        rx
    }

    pub fn park_offer(&mut self, ticket: Ticket) -> oneshot::Receiver<OfferReply> {
        let (tx, rx) = oneshot::channel();
        self.offers.insert(ticket, tx);
        rx
    }

    /// Sends each reply to its parked request. A request that has gone away
    /// (its receiver dropped) simply loses it; a wake for a ticket nobody
    /// waits on is dropped.
    pub fn deliver(&mut self, wakes: impl IntoIterator<Item = Wake>) {
        for wake in wakes {
            match wake {
                Wake::Poll(t, reply) => {
                    if let Some(tx) = self.polls.remove(&t) {
                        let _ = tx.send(reply);
                    }
                }
                Wake::Offer(t, reply) => {
                    if let Some(tx) = self.offers.remove(&t) {
                        let _ = tx.send(reply);
                    }
                }
            }
        }
    }

    /// Forgets a ticket whose request went away.
    pub fn forget(&mut self, ticket: Ticket) {
        self.polls.remove(&ticket);
        self.offers.remove(&ticket);
    }
}
