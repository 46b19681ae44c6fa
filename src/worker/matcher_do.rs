//! The matcher Durable Object: channels, timers and storage around one
//! [`Shard`], which makes every decision. Each call arrives at its own path
//! ([`Call::PATH`]) and is answered with its own reply type.
//!
//! Rules that keep it safe (README, "Why the matcher cannot panic"): no
//! `RefCell` borrow lives across an `.await`; every parked request has a
//! deadline enforced by a shared bucket timer; a reply is delivered by
//! whichever event decides it first.

use super::timer::{bucket_end, Timers};
use super::{js, now_ms, random_secret, settings};
use crate::config::Config;
use crate::matcher::api::{
    decode_call, AnswerRequest, Call, CensusRequest, ClosedPeriod, ClosedPeriodsRequest,
    LiveMetricsRequest, OfferReply, OfferRequest, PollReply, PollRequest, RejectedPoll,
    FAILED_STATUS,
};
use crate::matcher::shard::{Shard, Snapshot, Started, Step};
use crate::matcher::waiters::Waiters;
use crate::matcher::{Settings, Ticket};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, ScheduledTime, State, Storage,
};

/// Storage keys: the shard's snapshot, and one key per closed period.
const SNAPSHOT_KEY: &str = "metrics-snapshot";
const CLOSED_PREFIX: &str = "metrics-closed:";

struct Inner {
    shard: RefCell<Shard>,
    waiters: RefCell<Waiters>,
    timers: Timers,
    /// Closed periods not yet written to storage (kept if a write fails, so
    /// the alarm's retry writes them).
    unwritten: RefCell<Vec<ClosedPeriod>>,
}

impl Inner {
    fn deliver(&self, wakes: Vec<crate::matcher::Wake>) {
        self.waiters.borrow_mut().deliver(wakes);
    }

    /// Carries a call's [`Step`] to its reply: at once, or parked until a
    /// wake, its deadline, or its caller going away. `fallback` is the
    /// reply of a deadline with nothing delivered (the engine always
    /// delivers by then; this only keeps the function total).
    async fn settle<R>(
        self: &Rc<Self>,
        step: Step<R>,
        park: fn(&mut Waiters, Ticket) -> oneshot::Receiver<R>,
        fallback: R,
        caller_left: js::Aborted,
    ) -> R {
        let (ticket, deadline) = match step.start {
            Started::Now(reply) => {
                self.deliver(step.wakes);
                return reply;
            }
            Started::Parked { ticket, deadline } => (ticket, deadline),
        };
        let mut rx = park(&mut self.waiters.borrow_mut(), ticket);
        self.deliver(step.wakes);
        let mut guard = CancelOnDrop {
            inner: self.clone(),
            ticket,
            armed: true,
        };
        let timer = self.timers.for_deadline(deadline, now_ms());
        let reply = match select(&mut rx, select(timer, caller_left)).await {
            Either::Left((received, _)) => received.ok(),
            Either::Right((Either::Left(((), _)), _)) => {
                let end = bucket_end(deadline);
                self.timers.forget_until(end);
                // Timers may fire a little early by the clock; the bucket's
                // end is the time every deadline in it is due.
                let wakes = self.shard.borrow_mut().expire(now_ms().max(end));
                self.deliver(wakes);
                rx.try_recv().ok().flatten()
            }
            // The caller went away: the guard forgets the request.
            Either::Right((Either::Right(((), _)), _)) => return fallback,
        };
        guard.armed = reply.is_none();
        reply.unwrap_or(fallback)
    }
}

/// If a parked request ends before its reply (its caller went away), the
/// shard forgets it so no proxy or answer is wasted on it.
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
            waiters.forget(self.ticket);
        }
    }
}

#[durable_object]
pub struct Matcher {
    /// Why the object cannot match, if it cannot: the settings and their
    /// defaults are invalid (a test rules that out), or the platform gave no
    /// random IP-hash key. Every call then fails with this text.
    inner: std::result::Result<Rc<Inner>, &'static str>,
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

/// The settings in force, or the defaults when they are invalid (the
/// Worker then refuses matching requests before they get here).
fn config(env: &Env) -> Option<Config> {
    match settings::load(env).as_ref() {
        Ok(c) => Some(c.clone()),
        Err(_) => Config::from_lookup(|_| None).ok(),
    }
}

/// The object's state, or why it cannot match.
fn start(config: Option<Config>) -> std::result::Result<Rc<Inner>, &'static str> {
    let c = config.ok_or("settings and their defaults are invalid")?;
    let secret = random_secret().ok_or("the platform gave no random IP-hash key")?;
    let shard = Shard::new(
        Settings::from(&c),
        c.metrics_period_seconds,
        now_ms() / 1000,
        secret,
    );
    Ok(Rc::new(Inner {
        shard: RefCell::new(shard),
        waiters: RefCell::new(Waiters::default()),
        timers: Timers::default(),
        unwritten: RefCell::new(Vec::new()),
    }))
}

impl DurableObject for Matcher {
    fn new(state: State, env: Env) -> Self {
        let config = config(&env);
        let period = config.as_ref().map_or(86_400, |c| c.metrics_period_seconds);
        let inner = start(config);
        let matcher = Matcher {
            inner,
            storage: state.storage(),
            save_every_ms: save_interval_ms(period),
        };
        // Restore before any request is delivered (the runtime holds them
        // until this finishes). Errors are logged, never thrown: a throw
        // would reset the object.
        if let Ok(inner) = matcher.inner.clone() {
            let storage = state.storage();
            let save_every = matcher.save_every_ms;
            // The JS call is made here; its future only reports the result,
            // which the runtime already acts on, so it is not awaited.
            #[allow(clippy::let_underscore_future)]
            let _ = state.block_concurrency_while(async move {
                if let Err(e) = restore(&inner, &storage, save_every).await {
                    super::log::error(&format!(
                        "snowflake-broker: storage: metrics restore failed: {e}"
                    ));
                }
                Ok(())
            });
        }
        matcher
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let inner = match &self.inner {
            Ok(inner) => inner.clone(),
            Err(why) => return failed(why),
        };
        let path = req.path();
        let caller_left = js::aborted(&js::request_signal(&req));
        let body = req.bytes().await?;
        let now = now_ms();
        match path.as_str() {
            PollRequest::PATH => {
                let Some(call) = decode_call::<PollRequest>(&body) else {
                    return bad_call(&path);
                };
                let step = inner.shard.borrow_mut().poll(now, call);
                let reply = inner
                    .settle(step, Waiters::park_poll, PollReply::NoMatch, caller_left)
                    .await;
                reply_json(&reply)
            }
            OfferRequest::PATH => {
                let Some(call) = decode_call::<OfferRequest>(&body) else {
                    return bad_call(&path);
                };
                let step = inner.shard.borrow_mut().offer(now, call);
                let reply = inner
                    .settle(step, Waiters::park_offer, OfferReply::TimedOut, caller_left)
                    .await;
                reply_json(&reply)
            }
            AnswerRequest::PATH => {
                let Some(call) = decode_call::<AnswerRequest>(&body) else {
                    return bad_call(&path);
                };
                let (reply, wakes) = inner.shard.borrow_mut().answer(call);
                inner.deliver(wakes);
                reply_json(&reply)
            }
            RejectedPoll::PATH => {
                let Some(call) = decode_call::<RejectedPoll>(&body) else {
                    return bad_call(&path);
                };
                let done = inner.shard.borrow_mut().rejected_poll(call);
                reply_json(&done)
            }
            CensusRequest::PATH => reply_json(&inner.shard.borrow().census()),
            LiveMetricsRequest::PATH => reply_json(&inner.shard.borrow().live_metrics()),
            ClosedPeriodsRequest::PATH => match closed_periods(&self.storage).await {
                Ok(periods) => reply_json(&periods),
                Err(e) => {
                    super::log::error(&format!(
                        "snowflake-broker: storage: reading closed metrics periods failed: {e}"
                    ));
                    failed(&format!("storage: {e}"))
                }
            },
            _ => bad_call(&path),
        }
    }

    /// Closes finished periods and saves the metrics.
    async fn alarm(&self) -> Result<Response> {
        let Ok(inner) = self.inner.as_ref() else {
            return Response::ok("");
        };
        let now = now_ms();
        let closed = inner
            .shard
            .borrow_mut()
            .close_periods(now / 1000, random_secret);
        inner.unwritten.borrow_mut().extend(closed);
        // The next alarm first: if a write below fails and the runtime's
        // retries give up, saving and closing periods still go on.
        let period_end_ms = inner.shard.borrow().period_end().saturating_mul(1000);
        schedule(
            &self.storage,
            now.saturating_add(self.save_every_ms).min(period_end_ms),
        )
        .await?;
        loop {
            let next = inner.unwritten.borrow().first().cloned();
            let Some(period) = next else { break };
            let text = json(&period)?;
            self.storage
                .put(&format!("{CLOSED_PREFIX}{:020}", period.end), text)
                .await?;
            inner.unwritten.borrow_mut().retain(|p| p.end != period.end);
        }
        save(inner, &self.storage).await?;
        Response::ok("")
    }
}

fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))
}

fn reply_json<T: Serialize>(reply: &T) -> Result<Response> {
    Response::from_bytes(json(reply)?.into_bytes())
}

/// The call failed inside the object; the text says what failed.
fn failed(what: &str) -> Result<Response> {
    Response::error(what, FAILED_STATUS)
}

/// A call this object does not know, or whose body is not its request type:
/// a version skew between the Worker and the object, not a client's fault.
fn bad_call(path: &str) -> Result<Response> {
    super::log::error(&format!(
        "snowflake-broker: matcher got an unreadable call to {path}"
    ));
    Response::error(format!("unreadable call to {path}"), 400)
}

async fn save(inner: &Inner, storage: &Storage) -> Result<()> {
    let snapshot = inner.shard.borrow().snapshot();
    storage.put(SNAPSHOT_KEY, json(&snapshot)?).await
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
                "snowflake-broker: storage: saved metrics unreadable, starting afresh: {e}"
            )),
        }
    }
    if storage.get_alarm().await?.is_none() {
        schedule(storage, now_ms().saturating_add(save_every_ms)).await?;
    }
    Ok(())
}

/// Every closed period this shard keeps, oldest first (keys sort by end).
/// A stored period that cannot be read is logged and skipped.
async fn closed_periods(storage: &Storage) -> Result<Vec<ClosedPeriod>> {
    let map = storage
        .list_with_options(worker::ListOptions::new().prefix(CLOSED_PREFIX))
        .await?;
    let mut out = Vec::new();
    for value in map.values() {
        let Some(text) = value.ok().and_then(|v| v.as_string()) else {
            continue;
        };
        match serde_json::from_str::<ClosedPeriod>(&text) {
            Ok(period) => out.push(period),
            Err(e) => super::log::error(&format!(
                "snowflake-broker: storage: a closed metrics period is unreadable: {e}"
            )),
        }
    }
    Ok(out)
}
