//! The matcher Durable Object: holds one [`Shard`] (the matching engine and
//! its metrics), parks the requests it is deciding about on oneshot channels,
//! and keeps the metrics in its storage.
//!
//! Rules that keep it safe (design.md §3): no `RefCell` borrow lives across
//! an `.await`; every parked request has a deadline enforced by a shared
//! bucket timer; an outcome is delivered by whichever event decides it first.

use super::timer::{bucket_end, Timers};
use super::{now_ms, random_secret, settings};
use crate::matcher::shard::{Shard, Snapshot};
use crate::matcher::shard_api::{OfferReply, PollReply, ShardReply, ShardRequest};
use crate::matcher::{ClientOutcome, OfferStart, PollStart, ProxyOutcome, Settings, Ticket, Wake};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, ScheduledTime, State, Storage,
};

/// Storage keys: the shard's snapshot, and one key per closed period.
const SNAPSHOT_KEY: &str = "metrics-snapshot";
const LOG_PREFIX: &str = "metrics-log:";

enum Outcome {
    Proxy(ProxyOutcome),
    Client(ClientOutcome),
}

struct Inner {
    shard: RefCell<Shard>,
    waiters: RefCell<HashMap<Ticket, oneshot::Sender<Outcome>>>,
    timers: Timers,
    /// Closed periods not yet written to storage (kept if a write fails, so
    /// the alarm's retry writes them).
    unwritten: RefCell<Vec<(u64, String)>>,
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
                let wakes = self.shard.borrow_mut().expire(now_ms().max(end));
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
        if let Ok(mut shard) = self.inner.shard.try_borrow_mut() {
            shard.cancel(self.ticket);
        }
        if let Ok(mut waiters) = self.inner.waiters.try_borrow_mut() {
            waiters.remove(&self.ticket);
        }
    }
}

#[durable_object]
pub struct Matcher {
    inner: Rc<Inner>,
    storage: Storage,
    /// How often metrics are saved: at most this much counting is lost if
    /// the object is reset between two saves.
    save_every_ms: u64,
}

/// Saving every 30 s keeps storage writes independent of traffic (about
/// 2,900 a day) while losing at most half a minute of counts; short test
/// periods save proportionally more often.
fn save_interval_ms(period_seconds: u64) -> u64 {
    period_seconds
        .saturating_mul(1000)
        .div_ceil(8)
        .clamp(250, 30_000)
}

impl DurableObject for Matcher {
    fn new(state: State, env: Env) -> Self {
        let config = settings::load(&env);
        let c = config.as_ref().as_ref().ok().cloned().unwrap_or_default();
        let settings = Settings {
            proxy_poll_timeout_ms: c.proxy_poll_timeout_ms,
            client_timeout_ms: c.client_timeout_ms,
            client_timeout_from: c.client_timeout_from,
            max_parked_polls: c.max_parked_polls,
        };
        let shard = Shard::new(
            settings,
            c.metrics_period_seconds,
            now_ms() / 1000,
            random_secret(),
        );
        let matcher = Matcher {
            inner: Rc::new(Inner {
                shard: RefCell::new(shard),
                waiters: RefCell::new(HashMap::new()),
                timers: Timers::default(),
                unwritten: RefCell::new(Vec::new()),
            }),
            storage: state.storage(),
            save_every_ms: save_interval_ms(c.metrics_period_seconds),
        };
        // Restore before any request is delivered (the runtime holds them
        // until this finishes). Errors are logged, never thrown: a throw
        // would reset the object.
        let inner = matcher.inner.clone();
        let storage = state.storage();
        let save_every = matcher.save_every_ms;
        // The JS call is made here; its future only reports the result,
        // which the runtime already acts on, so it is not awaited.
        #[allow(clippy::let_underscore_future)]
        let _ = state.block_concurrency_while(async move {
            if let Err(e) = restore(&inner, &storage, save_every).await {
                super::log::error(&format!("snowflake-broker: metrics restore failed: {e}"));
            }
            Ok(())
        });
        matcher
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

    /// Closes finished periods into the log and saves the metrics.
    async fn alarm(&self) -> Result<Response> {
        let now = now_ms();
        let closed = self
            .inner
            .shard
            .borrow_mut()
            .close_periods(now / 1000, random_secret);
        self.inner.unwritten.borrow_mut().extend(closed);
        // The next alarm first: if a write below fails and the runtime's
        // retries give up, saving and closing periods still go on.
        let period_end_ms = self.inner.shard.borrow().period_end().saturating_mul(1000);
        schedule(
            &self.storage,
            now.saturating_add(self.save_every_ms).min(period_end_ms),
        )
        .await?;
        loop {
            let next = self.inner.unwritten.borrow().first().cloned();
            let Some((end, text)) = next else { break };
            self.storage
                .put(&format!("{LOG_PREFIX}{end:020}"), text)
                .await?;
            self.inner.unwritten.borrow_mut().retain(|(e, _)| *e != end);
        }
        save(&self.inner, &self.storage).await?;
        Response::ok("")
    }
}

async fn save(inner: &Inner, storage: &Storage) -> Result<()> {
    let snapshot = inner.shard.borrow().snapshot();
    let text =
        serde_json::to_string(&snapshot).map_err(|e| worker::Error::RustError(e.to_string()))?;
    storage.put(SNAPSHOT_KEY, text).await
}

async fn schedule(storage: &Storage, at_ms: u64) -> Result<()> {
    let date = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    storage.set_alarm(ScheduledTime::new(date)).await
}

async fn restore(inner: &Inner, storage: &Storage, save_every_ms: u64) -> Result<()> {
    if let Some(text) = storage.get::<String>(SNAPSHOT_KEY).await? {
        match serde_json::from_str::<Snapshot>(&text) {
            Ok(snapshot) => inner.shard.borrow_mut().restore(&snapshot),
            Err(e) => super::log::error(&format!(
                "snowflake-broker: saved metrics unreadable, starting afresh: {e}"
            )),
        }
    }
    if storage.get_alarm().await?.is_none() {
        schedule(storage, now_ms().saturating_add(save_every_ms)).await?;
    }
    Ok(())
}

/// Every closed period's block, oldest first (keys sort by end time).
async fn metrics_log(storage: &Storage) -> Result<String> {
    let map = storage
        .list_with_options(worker::ListOptions::new().prefix(LOG_PREFIX))
        .await?;
    let mut out = String::new();
    for value in map.values() {
        if let Some(text) = value.ok().and_then(|v| v.as_string()) {
            out.push_str(&text);
        }
    }
    Ok(out)
}

impl Matcher {
    async fn handle(&self, request: ShardRequest) -> ShardReply {
        let inner = &self.inner;
        match request {
            ShardRequest::Poll(poll) => {
                let start = inner.shard.borrow_mut().poll(now_ms(), poll);
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
                let start = inner.shard.borrow_mut().offer(now_ms(), offer);
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
                let (result, wake) = inner.shard.borrow_mut().answer(&sid, answer);
                inner.deliver(wake);
                ShardReply::Answer(result)
            }
            ShardRequest::RejectedPoll {
                nat,
                proxy_type,
                with_relay_pattern,
            } => {
                inner
                    .shard
                    .borrow_mut()
                    .rejected_poll(nat, proxy_type, with_relay_pattern);
                ShardReply::Done
            }
            ShardRequest::Census => ShardReply::Census(inner.shard.borrow().engine().census()),
            ShardRequest::Prometheus => {
                ShardReply::Text(inner.shard.borrow().metrics().prometheus())
            }
            ShardRequest::MetricsLog => match metrics_log(&self.storage).await {
                Ok(text) => ShardReply::Text(text),
                Err(e) => {
                    super::log::error(&format!(
                        "snowflake-broker: reading the metrics log failed: {e}"
                    ));
                    ShardReply::Done
                }
            },
        }
    }
}
