//! The matcher Durable Object: holds one [`Engine`] and parks the requests
//! it is deciding about on oneshot channels.
//!
//! Rules that keep it safe (design.md §3): no `RefCell` borrow lives across
//! an `.await`; every parked request has a deadline enforced by a shared
//! bucket timer; an outcome is delivered by whichever event decides it first.

use super::timer::{bucket_end, Timers};
use super::{now_ms, settings};
use crate::matcher::shard_api::{OfferReply, PollReply, ShardReply, ShardRequest};
use crate::matcher::{
    ClientOutcome, Engine, OfferStart, PollStart, ProxyOutcome, Settings, Ticket, Wake,
};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

enum Outcome {
    Proxy(ProxyOutcome),
    Client(ClientOutcome),
}

struct Inner {
    engine: RefCell<Engine>,
    waiters: RefCell<HashMap<Ticket, oneshot::Sender<Outcome>>>,
    timers: Timers,
}

impl Inner {
    /// Sends each outcome to its parked request; a request that has gone
    /// away simply drops it.
    fn deliver(&self, wakes: impl IntoIterator<Item = Wake>) {
        for wake in wakes {
            let (ticket, outcome) = match wake {
                Wake::Proxy(t, o) => (t, Outcome::Proxy(o)),
                Wake::Client(t, o) => (t, Outcome::Client(o)),
            };
            let sender = self.waiters.borrow_mut().remove(&ticket);
            if let Some(sender) = sender {
                let _ = sender.send(outcome);
            }
        }
    }

    fn park(&self, ticket: Ticket) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(ticket, tx);
        rx
    }

    /// Waits for `ticket`'s outcome; the shared timer of its deadline's
    /// bucket makes sure one arrives.
    async fn wait(
        self: &Rc<Self>,
        ticket: Ticket,
        deadline: u64,
        mut rx: oneshot::Receiver<Outcome>,
    ) -> Option<Outcome> {
        let mut guard = CancelOnDrop {
            inner: self.clone(),
            ticket,
            armed: true,
        };
        let timer = self.timers.for_deadline(deadline, now_ms());
        let outcome = match select(&mut rx, timer).await {
            Either::Left((received, _)) => received.ok(),
            Either::Right(((), _)) => {
                let end = bucket_end(deadline);
                self.timers.forget_until(end);
                // Timers may fire a little early by the clock; the bucket's
                // end is the time every deadline in it is due.
                let wakes = self.engine.borrow_mut().expire(now_ms().max(end));
                self.deliver(wakes);
                rx.try_recv().ok().flatten()
            }
        };
        guard.armed = outcome.is_none();
        outcome
    }
}

/// If a parked request is dropped before its outcome (its caller went away),
/// the engine forgets it so no proxy or answer is wasted on it.
struct CancelOnDrop {
    inner: Rc<Inner>,
    ticket: Ticket,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut engine) = self.inner.engine.try_borrow_mut() {
            engine.cancel(self.ticket);
        }
        if let Ok(mut waiters) = self.inner.waiters.try_borrow_mut() {
            waiters.remove(&self.ticket);
        }
    }
}

#[durable_object]
pub struct Matcher {
    inner: Rc<Inner>,
}

fn engine_settings(env: &Env) -> Settings {
    let config = settings::load(env);
    let c = config.as_ref().as_ref().ok().cloned().unwrap_or_default();
    Settings {
        proxy_poll_timeout_ms: c.proxy_poll_timeout_ms,
        client_timeout_ms: c.client_timeout_ms,
        client_timeout_from: c.client_timeout_from,
        max_parked_polls: c.max_parked_polls,
    }
}

impl DurableObject for Matcher {
    fn new(_state: State, env: Env) -> Self {
        Matcher {
            inner: Rc::new(Inner {
                engine: RefCell::new(Engine::new(engine_settings(&env))),
                waiters: RefCell::new(HashMap::new()),
                timers: Timers::default(),
            }),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let body = req.bytes().await?;
        let request: ShardRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return Response::error(format!("bad shard request: {e}"), 400),
        };
        let reply = self.handle(request).await;
        Response::from_json(&reply)
    }
}

impl Matcher {
    async fn handle(&self, request: ShardRequest) -> ShardReply {
        let inner = &self.inner;
        match request {
            ShardRequest::Poll(poll) => {
                let start = inner.engine.borrow_mut().poll(now_ms(), poll);
                match start {
                    PollStart::Parked {
                        ticket,
                        deadline,
                        replaced,
                    } => {
                        let rx = inner.park(ticket);
                        inner.deliver(replaced);
                        let reply = match inner.wait(ticket, deadline, rx).await {
                            Some(Outcome::Proxy(ProxyOutcome::Matched(a))) => PollReply::Matched(a),
                            _ => PollReply::NoMatch,
                        };
                        ShardReply::Poll(reply)
                    }
                    PollStart::Full | PollStart::SidBusy => ShardReply::Poll(PollReply::Refused),
                }
            }
            ShardRequest::Offer(offer) => {
                let start = inner.engine.borrow_mut().offer(now_ms(), offer);
                match start {
                    OfferStart::Parked {
                        ticket,
                        deadline,
                        wake,
                        ..
                    } => {
                        let rx = inner.park(ticket);
                        inner.deliver([wake]);
                        let reply = match inner.wait(ticket, deadline, rx).await {
                            Some(Outcome::Client(ClientOutcome::Answer(a))) => {
                                OfferReply::Answer(a)
                            }
                            _ => OfferReply::TimedOut,
                        };
                        ShardReply::Offer(reply)
                    }
                    OfferStart::Denied => ShardReply::Offer(OfferReply::Denied),
                    OfferStart::Expired => ShardReply::Offer(OfferReply::TimedOut),
                }
            }
            ShardRequest::Answer { sid, answer } => {
                let (result, wake) = inner.engine.borrow_mut().answer(&sid, answer);
                inner.deliver(wake);
                ShardReply::Answer(result)
            }
            ShardRequest::Census => ShardReply::Census(inner.engine.borrow().census()),
        }
    }
}
