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
    decode_call, AnswerRequest, Answered, Call, CensusRequest, ClosedPeriod, ClosedPeriodsRequest,
    LiveMetricsRequest, OfferOutcome, OfferReply, OfferRequest, PeriodKeyRequest, PollReply,
    PollRequest, RejectedPoll, ShardRequests, SqsMalformed, FAILED_STATUS,
};
use crate::matcher::shard::{OfferStep, Shard, Snapshot, Started, Step};
use crate::matcher::waiters::Waiters;
use crate::matcher::{Settings, Ticket};
use crate::metrics::{IpKey, PeriodStats, ProxyRecord, ProxySet};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use js_sys::{Object, Reflect};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, ScheduledTime, State, Storage,
};

/// Storage keys: the shard's snapshot (counters and period clock, a few
/// KB), one key per closed period (its counters), and one row per proxy
/// address and period, `ips:<period start>:<key>`, written once when the
/// address is first seen (again only if its record changes). Each key is a
/// row of the object's SQLite storage, so no value grows with the network.
const SNAPSHOT_KEY: &str = "metrics-snapshot";
const CLOSED_PREFIX: &str = "metrics-closed:";
const ADDRESS_PREFIX: &str = "ips:";
/// Keys per `put` (the storage API's limit).
const PUT_BATCH: usize = 128;
/// How soon to save once nothing is parked: an idle object may be evicted
/// after 10 s, losing what it counted since the last save.
const IDLE_SAVE_MS: u64 = 1_000;

/// A deadline timer this late has used up half the Worker's margin
/// (src/worker/mod.rs, `MARGIN_MS`): worth a log line.
const LATE_TIMER_MS: u64 = 250;

fn address_prefix(period_start: u64) -> String {
    format!("{ADDRESS_PREFIX}{period_start:020}:")
}

struct Inner {
    shard: RefCell<Shard>,
    waiters: RefCell<Waiters>,
    timers: Timers,
    /// Closed periods not yet written to storage (kept if a write fails, so
    /// the alarm's retry writes them).
    unwritten: RefCell<Vec<ClosedPeriod>>,
    /// The snapshot text last written, so an unchanged one is not written again.
    saved: RefCell<Option<String>>,
    /// When the next alarm is set for, as far as this instance knows.
    alarm_at: Cell<Option<u64>>,
    /// Requests served since this instance started (`/prometheus`).
    requests: Cell<ShardRequests>,
}

impl Inner {
    fn count(&self, f: impl FnOnce(&mut ShardRequests)) {
        let mut requests = self.requests.get();
        f(&mut requests);
        self.requests.set(requests);
    }

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
        caller: Option<JsValue>,
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
        // Listened to only by requests that park: most calls end at once.
        let caller_left = js::aborted(&caller);
        let reply = match select(&mut rx, select(timer, caller_left)).await {
            Either::Left((received, _)) => received.ok(),
            Either::Right((Either::Left(((), _)), _)) => {
                let end = bucket_end(deadline);
                // One line per late bucket (the first request woken ends
                // the rest): it explains the Worker's "did not reply in
                // time" for the requests of that bucket.
                let late = now_ms().saturating_sub(end);
                if late >= LATE_TIMER_MS {
                    super::log::error(&format!(
                        "snowflake-broker: matcher: a deadline timer fired {late} ms late (the object's thread was busy)"
                    ));
                }
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
    /// The object's state, for the fault-injection test build's reset.
    #[cfg(feature = "fault-injection")]
    raw_state: JsValue,
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
        saved: RefCell::new(None),
        alarm_at: Cell::new(None),
        requests: Cell::new(ShardRequests::default()),
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
            #[cfg(feature = "fault-injection")]
            raw_state: AsRef::<JsValue>::as_ref(state.as_raw()).clone(),
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
        inner.count(|r| r.count(&path));
        #[cfg(feature = "fault-injection")]
        if path == "/fault/reset" {
            return self.reset_for_test();
        }
        // A trap, as a panic would be: the whole wasm module (the Worker's
        // requests in this isolate with it) is lost and re-created.
        #[cfg(feature = "fault-injection")]
        if path == "/fault/trap" {
            core::arch::wasm32::unreachable();
        }
        let caller = js::request_signal(&req);
        let body = req.bytes().await?;
        let now = now_ms();
        match path.as_str() {
            PollRequest::PATH => {
                let Some(call) = decode_call::<PollRequest>(&body) else {
                    return bad_call(&path);
                };
                let step = inner.shard.borrow_mut().poll(now, call);
                let reply = inner
                    .settle(step, Waiters::park_poll, PollReply::NoMatch, caller)
                    .await;
                self.keep_saving(&inner).await;
                reply_json(&inner, &reply)
            }
            OfferRequest::PATH => {
                let Some(call) = decode_call::<OfferRequest>(&body) else {
                    return bad_call(&path);
                };
                let step = inner.shard.borrow_mut().offer(now, call);
                let outcome = match step {
                    OfferStep::Elsewhere => OfferOutcome::Elsewhere,
                    OfferStep::Here(step) => {
                        inner.count(|r| r.offers_ended = r.offers_ended.saturating_add(1));
                        OfferOutcome::Ended(
                            inner
                                .settle(step, Waiters::park_offer, OfferReply::TimedOut, caller)
                                .await,
                        )
                    }
                };
                self.keep_saving(&inner).await;
                reply_json(&inner, &outcome)
            }
            AnswerRequest::PATH => {
                let Some(call) = decode_call::<AnswerRequest>(&body) else {
                    return bad_call(&path);
                };
                let (reply, wakes) = inner.shard.borrow_mut().answer(call);
                inner.deliver(wakes);
                self.keep_saving(&inner).await;
                reply_json(&inner, &reply)
            }
            RejectedPoll::PATH => {
                let Some(call) = decode_call::<RejectedPoll>(&body) else {
                    return bad_call(&path);
                };
                let done = inner.shard.borrow_mut().rejected_poll(call);
                self.keep_saving(&inner).await;
                reply_json(&inner, &done)
            }
            SqsMalformed::PATH => {
                let Some(call) = decode_call::<SqsMalformed>(&body) else {
                    return bad_call(&path);
                };
                let done = inner.shard.borrow_mut().sqs_malformed(call);
                self.keep_saving(&inner).await;
                reply_json(&inner, &done)
            }
            CensusRequest::PATH => reply_json(&inner, &inner.shard.borrow().census()),
            LiveMetricsRequest::PATH => {
                let mut live = inner.shard.borrow().live_metrics();
                live.requests = inner.requests.get();
                reply_json(&inner, &live)
            }
            PeriodKeyRequest::PATH => {
                // Asked right after the period ended, before the alarm closed
                // it: close it now, so the key handed out is the new period's.
                if close_ended(&inner, now) {
                    self.keep_saving(&inner).await;
                }
                let key = inner.shard.borrow().period_key();
                reply_json(&inner, &key)
            }
            ClosedPeriodsRequest::PATH => match closed_periods(&self.storage).await {
                Ok(periods) => reply_json(&inner, &periods),
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

    /// Saves what changed (new address rows, the snapshot if it differs),
    /// closes finished periods, and sets the next alarm: in `save_every_ms`
    /// while there is traffic, at the period's end once there is none.
    async fn alarm(&self) -> Result<Response> {
        let Ok(inner) = self.inner.as_ref() else {
            return Response::ok("");
        };
        let now = now_ms();
        inner.alarm_at.set(None);
        let closed_any = close_ended(inner, now);
        // The next alarm before any write: if a write below fails and the
        // runtime's retries give up, saving and closing periods still go
        // on. Always in the future: an alarm set for the very time of the
        // one running is dropped when it returns.
        let period_end_ms = inner.shard.borrow().period_end().saturating_mul(1000);
        let soon = now
            .saturating_add(self.save_every_ms)
            .min(period_end_ms)
            .max(now.saturating_add(1));
        schedule(inner, &self.storage, soon).await?;
        loop {
            let next = {
                let mut unwritten = inner.unwritten.borrow_mut();
                (!unwritten.is_empty()).then(|| unwritten.remove(0))
            };
            let Some(mut period) = next else { break };
            if let Err(e) = write_closed(&self.storage, &mut period).await {
                inner.unwritten.borrow_mut().insert(0, period);
                return Err(e);
            }
        }
        let wrote_rows = save_rows(inner, &self.storage).await?;
        let wrote_snapshot = save_snapshot(inner, &self.storage).await?;
        // Nothing counted since the last alarm and nothing parked: no need
        // to wake before the period ends (a request sets an earlier alarm).
        let quiet = !wrote_rows && !wrote_snapshot && !closed_any;
        if quiet && inner.shard.borrow().is_idle() && period_end_ms > soon {
            schedule(inner, &self.storage, period_end_ms).await?;
        }
        Response::ok("")
    }
}

impl Matcher {
    /// `ctx.abort()` a moment later, from a timer: the runtime drops this
    /// instance as an eviction or a deploy would, failing every call in
    /// flight, and the next call starts a fresh one from storage. (Called
    /// from inside the wasm module, the abort would unwind through it and
    /// terminate the module, a different fault.)
    #[cfg(feature = "fault-injection")]
    fn reset_for_test(&self) -> Result<Response> {
        let get = |target: &JsValue, name: &str| {
            js_sys::Reflect::get(target, &JsValue::from_str(name))
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        };
        let global = js_sys::global();
        if let (Some(abort), Some(set_timeout)) =
            (get(&self.raw_state, "abort"), get(&global, "setTimeout"))
        {
            let later = abort.bind1(&self.raw_state, &JsValue::from_str("fault injection"));
            let _ = set_timeout.call2(&global, &later, &JsValue::from_f64(0.0));
        }
        Response::ok("reset")
    }

    /// After a call that counted something: make sure a save comes within
    /// `save_every_ms`, or within a second once nothing is parked (an idle
    /// object may be evicted before a later alarm). Sets the alarm only
    /// when none is due soon enough, so steady traffic costs no writes.
    async fn keep_saving(&self, inner: &Inner) {
        let now = now_ms();
        let within = if inner.shard.borrow().is_idle() {
            IDLE_SAVE_MS
        } else {
            self.save_every_ms
        };
        let due = now.saturating_add(within);
        if inner.alarm_at.get().is_some_and(|at| at <= due) {
            return;
        }
        if let Err(e) = schedule(inner, &self.storage, due).await {
            super::log::error(&format!(
                "snowflake-broker: storage: setting the save alarm failed: {e}"
            ));
        }
    }
}

fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// A call's reply, with this shard's pools as they are now.
fn reply_json<T: Serialize>(inner: &Inner, reply: &T) -> Result<Response> {
    let pools = inner.shard.borrow().pools();
    Response::from_bytes(json(&Answered { reply, pools })?.into_bytes())
}

/// Closes every period that has ended by `now_ms`, keeping them to be
/// written (with any unsaved rows) by the alarm; true if any closed.
fn close_ended(inner: &Inner, now_ms: u64) -> bool {
    let closed = inner
        .shard
        .borrow_mut()
        .close_periods(now_ms / 1000, random_secret);
    let any = !closed.is_empty();
    inner.unwritten.borrow_mut().extend(closed);
    any
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

/// Writes the current period's new and changed address rows; true if there
/// were any. On failure they stay unsaved for the next alarm.
async fn save_rows(inner: &Inner, storage: &Storage) -> Result<bool> {
    let (start, rows) = {
        let mut shard = inner.shard.borrow_mut();
        (shard.period_start(), shard.unsaved_addresses())
    };
    if rows.is_empty() {
        return Ok(false);
    }
    if let Err(e) = put_rows(storage, start, &rows).await {
        let keys = rows.into_iter().map(|(k, _)| k).collect();
        inner.shard.borrow_mut().unsave_addresses(start, keys);
        return Err(e);
    }
    Ok(true)
}

/// One row per address: `ips:<period start>:<key hex>` → the record as a number.
async fn put_rows(storage: &Storage, start: u64, rows: &[(IpKey, ProxyRecord)]) -> Result<()> {
    let prefix = address_prefix(start);
    for batch in rows.chunks(PUT_BATCH) {
        let object = Object::new();
        for (key, record) in batch {
            let name = JsValue::from_str(&format!("{prefix}{}", key.to_hex()));
            Reflect::set(
                &object,
                &name,
                &JsValue::from_f64(f64::from(record.to_u32())),
            )
            .map_err(worker::Error::from)?;
        }
        storage.put_multiple_raw(object).await?;
    }
    Ok(())
}

/// Every address row of the period that started at `start`. A row that
/// cannot be read is skipped (it only lowers a count).
async fn read_rows(storage: &Storage, start: u64) -> Result<Vec<(IpKey, ProxyRecord)>> {
    let prefix = address_prefix(start);
    let map = storage
        .list_with_options(worker::ListOptions::new().prefix(&prefix))
        .await?;
    let mut rows = Vec::new();
    for entry in map.entries() {
        let Some(pair) = entry.ok().and_then(|e| e.dyn_into::<js_sys::Array>().ok()) else {
            continue;
        };
        let key = pair
            .get(0)
            .as_string()
            .and_then(|k| k.strip_prefix(&prefix).and_then(IpKey::from_hex));
        let record = pair
            .get(1)
            .as_f64()
            .filter(|v| v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v))
            .map(|v| ProxyRecord::from_u32(v as u32));
        if let (Some(key), Some(record)) = (key, record) {
            rows.push((key, record));
        }
    }
    Ok(rows)
}

/// A closed period: any of its rows not yet written, then its counters
/// (the set is read back from the rows).
async fn write_closed(storage: &Storage, period: &mut ClosedPeriod) -> Result<()> {
    let rows = period.stats.proxies.take_unsaved();
    if let Err(e) = put_rows(storage, period.start(), &rows).await {
        period
            .stats
            .proxies
            .unsave(rows.into_iter().map(|(k, _)| k));
        return Err(e);
    }
    let counters = ClosedPeriod {
        end: period.end,
        seconds: period.seconds,
        stats: PeriodStats {
            counters: period.stats.counters.clone(),
            proxies: ProxySet::default(),
        },
    };
    storage
        .put(
            &format!("{CLOSED_PREFIX}{:020}", period.end),
            json(&counters)?,
        )
        .await
}

/// Writes the snapshot unless it is the one last written; true if it wrote.
async fn save_snapshot(inner: &Inner, storage: &Storage) -> Result<bool> {
    let text = inner
        .shard
        .borrow()
        .snapshot_text()
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    if inner.saved.borrow().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    storage.put(SNAPSHOT_KEY, text.clone()).await?;
    *inner.saved.borrow_mut() = Some(text);
    Ok(true)
}

async fn schedule(inner: &Inner, storage: &Storage, at_ms: u64) -> Result<()> {
    let date = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    storage.set_alarm(ScheduledTime::new(date)).await?;
    inner.alarm_at.set(Some(at_ms));
    Ok(())
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
    let start = inner.shard.borrow().period_start();
    let rows = read_rows(storage, start).await?;
    inner.shard.borrow_mut().restore_addresses(start, rows);
    match storage.get_alarm().await? {
        Some(at) => inner.alarm_at.set(u64::try_from(at).ok()),
        None => schedule(inner, storage, now_ms().saturating_add(save_every_ms)).await?,
    }
    Ok(())
}

/// Every closed period this shard keeps, oldest first (keys sort by end),
/// each with its address rows. A stored period that cannot be read is
/// logged and skipped.
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
            Ok(mut period) => {
                // Periods closed by an earlier version hold their set inline.
                for (key, record) in read_rows(storage, period.start()).await? {
                    period.stats.proxies.add_saved(key, record);
                }
                out.push(period);
            }
            Err(e) => super::log::error(&format!(
                "snowflake-broker: storage: a closed metrics period is unreadable: {e}"
            )),
        }
    }
    Ok(out)
}
