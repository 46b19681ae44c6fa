//! The Worker shell: routes requests, calls the pure handlers, and carries
//! matching work to the matcher Durable Object. Every reply and its logged
//! outcome come from `handlers`; this file only moves bytes.

mod js;
mod log;
mod matcher_do;
mod settings;
mod sqs;
mod timer;

use crate::config::{Config, ConfigError, SqsSetting};
use crate::handlers::{self, BodyPlan, ClientFormat, PollCheck, Reply};
use crate::matcher::api::{AnswerOutcome, Answered, OfferOutcome, PeriodKeyRequest, ProxyAddress};
use crate::matcher::api::{
    AnswerRequest, Call, CallError, CensusRequest, ClosedPeriodsRequest, LiveMetricsRequest,
    OfferReply, OfferRequest, PollRequest, ProxySeen, RejectedPoll,
};
use crate::matcher::merge;
use crate::matcher::routing::{self, Board};
use crate::metrics::IpHasher;
use crate::metrics::Rendezvous;
use crate::protocol::READ_LIMIT;
use crate::refusals::{PollSeen, PollsInFlight, RecentRefusals};
use crate::routes::{self, Route};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use js::Caller;
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use worker::{event, Context, Env, Headers, Method, Request, Response, Result};

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// 16 random bytes from the platform's CSPRNG (`crypto.getRandomValues`,
/// through `getrandom`), for the IP-hash key. `None`, logged, if the
/// platform refuses: there is no weaker source to fall back to, since a
/// guessable key would let anyone who reads the stored hashes test
/// addresses against them.
pub fn random_secret() -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    match getrandom::fill(&mut out) {
        Ok(()) => Some(out),
        Err(e) => {
            log::error(&format!(
                "snowflake-broker: no random numbers from the platform: {e}"
            ));
            None
        }
    }
}

const CORS: [(&str, &str); 2] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "Origin, X-Session-ID"),
];

/// The response for `reply`. A `HEAD` request gets the headers a `GET` would,
/// `Content-Length` included (as Go sends it), and no body: the runtime only
/// keeps that length when it is given as a header on an empty body.
fn into_response(reply: Reply, cors: bool, head: bool) -> Result<Response> {
    let headers = Headers::new();
    if cors {
        for (k, v) in CORS {
            headers.set(k, v)?;
        }
    }
    if let Some(ct) = reply.content_type {
        headers.set("Content-Type", ct)?;
    }
    for (k, v) in &reply.headers {
        headers.set(k, v)?;
    }
    let response = if head {
        headers.set("Content-Length", &reply.body.len().to_string())?;
        Response::empty()?
    } else if reply.body.is_empty() {
        Response::empty()?
    } else {
        Response::from_bytes(reply.body.into_bytes())?
    };
    Ok(response.with_status(reply.status).with_headers(headers))
}

/// The matcher Durable Object binding; shard `i` is the object named `shard-i`.
const MATCHER: &str = "MATCHER";

fn shard_name(shard: u32) -> String {
    format!("shard-{shard}")
}

/// How long past a call's own deadline the Worker waits for the matcher: a
/// parked request the matcher lost (its instance was reset) is answered in
/// the protocol's terms instead of hanging. The matcher itself answers a
/// deadline within its 100 ms timer bucket, so 500 ms leaves room for that
/// and the hop, and a lost request still ends within 1 s of its deadline.
const MARGIN_MS: u64 = 500;
/// How much later than that the entry's guard (src/entry.mjs) answers a
/// request still waiting, with its endpoint's failure reply: the module
/// trapped, or the matcher never replied. The deadline plus 0.5 s plus
/// this is still within 1 s of the deadline. (Calls without a guard, the
/// SQS consumer's, abandon the matcher at the margin instead.)
const GUARD_MS: u64 = 200;
/// The header with which the entry asks for an endpoint's failure reply
/// (src/entry.mjs). Anyone may send it; it only fails their own request.
const STRANDED: &str = "x-snowflake-broker-stranded";
/// How long an over-limit body is drained before the 400 is sent anyway.
const DRAIN_MS: u64 = 1_000;

/// How long a call that parks nothing (answers, pages) may take.
const QUICK_CALL_MS: u64 = 10_000;

thread_local! {
    /// This isolate's view of every shard's pools (src/matcher/routing.rs).
    static BOARD: RefCell<Board> = RefCell::new(Board::new(1));
    /// This isolate's copy of the deployment's address key for the current
    /// metrics period, from shard 0.
    static PERIOD_KEY: RefCell<PeriodKeyState> = const { RefCell::new(PeriodKeyState::Unknown) };
    /// Where offers start among equal shards; moves on with every offer.
    static ROTATE: Cell<u32> = Cell::new(random_secret().map_or(0, |[a, b, c, d, ..]| u32::from_le_bytes([a, b, c, d])));
}

/// The board, sized for `shards` (a new size starts it afresh).
fn with_board<T>(shards: u32, f: impl FnOnce(&mut Board) -> T) -> T {
    BOARD.with(|b| {
        let mut board = b.borrow_mut();
        if board.shards() != shards {
            *board = Board::new(shards);
        }
        f(&mut board)
    })
}

/// Makes a call on one shard, logging any failure with what failed, and
/// notes what the reply says of the shard's pools. If the matcher has not
/// replied after `wait_ms` (and a little), the request gets its endpoint's
/// failure reply.
async fn ask<C: Call>(
    env: &Env,
    config: Option<&Config>,
    shard: u32,
    call: &C,
    caller: &Caller,
    wait_ms: u64,
) -> std::result::Result<C::Reply, CallError> {
    let guarded = caller.guard(wait_ms.saturating_add(GUARD_MS));
    let timeout = (!guarded).then_some(wait_ms);
    call_shard(env, config, shard, call, caller, timeout).await
}

/// [`ask`] without the guard: the call is abandoned after `timeout` ms
/// (None: never; the caller's guard bounds it). A call the request can do
/// without passes its own timeout, fails with `NoReplyInTime`, and the
/// request goes on.
async fn call_shard<C: Call>(
    env: &Env,
    config: Option<&Config>,
    shard: u32,
    call: &C,
    caller: &Caller,
    timeout: Option<u64>,
) -> std::result::Result<C::Reply, CallError> {
    let shards = config.map_or(1, |c| c.matcher_shards);
    let reply = js::call(
        env,
        MATCHER,
        &shard_name(shard),
        call,
        &caller.signal,
        timeout,
    )
    .await;
    let now = now_ms();
    match reply {
        Ok(Answered { reply, pools }) => {
            with_board(shards, |b| b.note_summary(shard, pools, now));
            Ok(reply)
        }
        Err(e) => {
            if matches!(e, CallError::Overloaded(_) | CallError::Unreachable(_)) {
                with_board(shards, |b| b.note_failure(shard, now));
            }
            log::error(&e.log_line(C::PATH));
            Err(e)
        }
    }
}

/// The same call on every shard at once: all their replies, or the first
/// failure (a page that leaves a shard out would publish wrong totals).
async fn ask_all<C: Call>(
    env: &Env,
    config: Option<&Config>,
    call: &C,
    caller: &Caller,
) -> std::result::Result<Vec<C::Reply>, CallError> {
    let shards = config.map_or(1, |c| c.matcher_shards);
    let calls = (0..shards).map(|shard| ask(env, config, shard, call, caller, QUICK_CALL_MS));
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}

/// A client's offer to the matcher, however it arrived (HTTP, AMP): the
/// one way an offer reaches a proxy. Tries shards in the board's order
/// until one decides; the last one tried counts a denial.
pub(crate) async fn rendezvous(
    env: &Env,
    config: &Config,
    mut request: OfferRequest,
    caller: &Caller,
) -> std::result::Result<OfferReply, CallError> {
    let wait = config.client_timeout_ms.saturating_add(MARGIN_MS);
    let rotate = ROTATE.with(|r| {
        let v = r.get();
        r.set(v.wrapping_add(1));
        v
    });
    let order = with_board(config.matcher_shards, |b| {
        b.offer_order(request.offer.nat, now_ms(), rotate)
    });
    let mut failure = CallError::Unreachable("no shard to try".into());
    for (i, shard) in order.iter().enumerate() {
        let last = i + 1 == order.len();
        request.last = last;
        let began = now_ms();
        match ask(env, Some(config), *shard, &request, caller, wait).await {
            Ok(OfferOutcome::Ended(reply)) => return Ok(reply),
            Ok(OfferOutcome::Elsewhere) => continue,
            // A shard that refused the call at once never saw the offer:
            // the next one may still serve the client.
            Err(e @ (CallError::Overloaded(_) | CallError::Unreachable(_)))
                if !last && now_ms().saturating_sub(began) < MARGIN_MS =>
            {
                failure = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(failure)
}

/// The deployment's address key for now: shard 0's, asked once per period
/// and isolate. None with one shard (it hashes addresses itself) or if
/// shard 0 cannot say: each shard then hashes with its own key (an address
/// may count once per shard), and the isolate asks again only after
/// `KEY_RETRY_MS`, so a slow shard 0 never holds up every poll.
async fn period_key(env: &Env, config: &Config, caller: &Caller) -> Option<IpHasher> {
    if config.matcher_shards <= 1 {
        return None;
    }
    let now = now_ms();
    match PERIOD_KEY.with(|k| *k.borrow()) {
        PeriodKeyState::Known { end_ms, hasher } if end_ms > now => return Some(hasher),
        PeriodKeyState::FailedUntil(until) if until > now => return None,
        _ => {}
    }
    let key = call_shard(
        env,
        Some(config),
        0,
        &PeriodKeyRequest,
        caller,
        Some(KEY_CALL_MS),
    )
    .await;
    let known = key.ok().and_then(|key| {
        let hasher = IpHasher::from_hex(&key.key)?;
        Some((key.end.saturating_mul(1000), hasher))
    });
    let state = match known {
        Some((end_ms, hasher)) => PeriodKeyState::Known { end_ms, hasher },
        None => PeriodKeyState::FailedUntil(now.saturating_add(KEY_RETRY_MS)),
    };
    PERIOD_KEY.with(|k| *k.borrow_mut() = state);
    known.map(|(_, hasher)| hasher)
}

/// How long the period-key call may take, and how long after a failed one
/// the isolate does without.
const KEY_CALL_MS: u64 = 1_000;
const KEY_RETRY_MS: u64 = 5_000;

#[derive(Clone, Copy)]
enum PeriodKeyState {
    Unknown,
    Known { end_ms: u64, hasher: IpHasher },
    FailedUntil(u64),
}

/// Reads a body the Worker will parse, never keeping more than `READ_LIMIT`
/// bytes of it; `None` (answered 400, as Go's `MaxBytesReader` answers) if
/// it is over the limit or could not be read. An attacker-sized body must
/// not be buffered: a 2 GiB one would abort the module and every parked
/// request with it.
async fn read_body(req: &mut Request) -> Option<Vec<u8>> {
    let plan = handlers::body_plan(header(req, "Content-Length").as_deref());
    match plan {
        BodyPlan::Refuse => return None,
        BodyPlan::Whole => return req.bytes().await.ok(),
        BodyPlan::Capped | BodyPlan::Drain => {}
    }
    let Ok(mut stream) = req.stream() else {
        // No body at all: empty, unless its length said it was too long.
        return (plan == BodyPlan::Capped).then(Vec::new);
    };
    if plan == BodyPlan::Capped {
        let mut body = Vec::new();
        loop {
            match stream.next().await {
                None => return Some(body),
                Some(Err(_)) => return None,
                Some(Ok(chunk)) if body.len().saturating_add(chunk.len()) > READ_LIMIT => break,
                Some(Ok(chunk)) => body.extend_from_slice(&chunk),
            }
        }
    }
    drain(&mut stream).await;
    None
}

/// Discards the rest of an over-limit body, so that its sender reads the
/// 400 instead of a reset connection: at most `DRAIN_LIMIT` bytes and
/// `DRAIN_MS`, so a body that never ends is still answered promptly.
async fn drain(stream: &mut worker::ByteStream) {
    let mut seen: u64 = 0;
    let mut give_up = timer::sleep(DRAIN_MS);
    while seen <= handlers::DRAIN_LIMIT {
        match select(stream.next(), &mut give_up).await {
            Either::Left((Some(Ok(chunk)), _)) => {
                seen = seen.saturating_add(chunk.len() as u64);
            }
            _ => return,
        }
    }
}

/// Cloudflare's cron trigger (wrangler.toml `[triggers]`): starts the SQS
/// consumer's loop when SQS is on, so that it runs before any request
/// arrives, and again should its alarm ever be lost.
#[event(scheduled)]
pub async fn scheduled(_event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    if let Ok(Config {
        sqs: SqsSetting::On(_),
        ..
    }) = settings::load(&env).as_ref()
    {
        sqs::start(&env).await;
    }
}

#[event(fetch)]
pub async fn fetch(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = now_ms();
    let url = req.url()?;
    let route = routes::route(url.path(), url.query());
    let cors = route.has_cors();
    let method = req.method();
    if cors && method == Method::Options {
        return into_response(Reply::empty(200), true, false);
    }
    let caller = Caller::of(&req);
    let loaded = settings::load(&env);
    if let Ok(Config {
        sqs: SqsSetting::On(_),
        ..
    }) = loaded.as_ref()
    {
        sqs::start_once(&env, &ctx);
    }
    let stranded = header(&req, STRANDED).is_some();
    let reply = match (&route, loaded.as_ref()) {
        _ if stranded => stranded_reply(&route, loaded.as_ref().as_ref()),
        (Route::Robots, _) => handlers::robots(),
        (Route::Redirect(to), _) => Reply::moved(to, matches!(method, Method::Get | Method::Head)),
        (Route::NotFound, _) => Reply::not_found(),
        (Route::Metrics, config) => {
            match ask_all(&env, config.as_ref().ok(), &ClosedPeriodsRequest, &caller).await {
                Ok(periods) => Reply::text(200, merge::metrics_text(periods)),
                Err(e) => handlers::page_failed(&e),
            }
        }
        (Route::Prometheus, config) => {
            match ask_all(&env, config.as_ref().ok(), &LiveMetricsRequest, &caller).await {
                Ok(live) => handlers::prometheus(merge::prometheus_text(live)),
                Err(e) => handlers::page_failed(&e),
            }
        }
        (Route::Debug, config) => debug(&env, config, &caller).await,
        (_, Err(e)) => Reply::misconfigured(&e.to_string()),
        (Route::Proxy, Ok(config)) => match read_body(&mut req).await {
            Some(body) => {
                let country = req.cf().and_then(|cf| cf.country());
                proxy(&env, config, &body, (country, caller_ip(&req)), &caller).await
            }
            None => Reply::bad_request(),
        },
        (Route::Client, Ok(config)) => match read_body(&mut req).await {
            Some(body) => {
                let nat = header(&req, "Snowflake-NAT-Type");
                let country =
                    handlers::client_country(config, header(&req, "X-Forwarded-For").as_deref());
                let client = Client {
                    nat: nat.as_deref(),
                    country,
                    started,
                };
                client.send(&env, config, &body, &caller).await
            }
            None => Reply::bad_request(),
        },
        (Route::Answer, Ok(config)) => match read_body(&mut req).await {
            Some(body) => answer(&env, config, &body, caller_ip(&req), &caller).await,
            None => Reply::bad_request(),
        },
        (Route::AmpClient(suffix), Ok(config)) => amp(&env, config, suffix, started, &caller).await,
    };
    log::request(
        endpoint(&route),
        reply.outcome.as_str(),
        reply.status,
        now_ms().saturating_sub(started),
    );
    into_response(reply, cors, method == Method::Head)
}

/// The failure reply of each endpoint, for a request the module lost
/// (src/entry.mjs): never asks the matcher.
fn stranded_reply(route: &Route, config: std::result::Result<&Config, &ConfigError>) -> Reply {
    match (route, config) {
        (_, Err(e)) => Reply::misconfigured(&e.to_string()),
        (Route::Proxy, Ok(config)) => handlers::proxy_poll_failed(config),
        // Deployed clients send the 1.0 format; the body is gone by now.
        (Route::Client, Ok(_)) => handlers::client_failed(ClientFormat::V1),
        (Route::AmpClient(_), Ok(_)) => handlers::amp_failed(),
        (Route::Answer, Ok(_)) => handlers::answer_failed(),
        (_, Ok(_)) => handlers::page_failed(&CallError::NoReplyInTime),
    }
}

fn endpoint(route: &Route) -> &'static str {
    match route {
        Route::Robots => "/robots.txt",
        Route::Proxy => "/proxy",
        Route::Client => "/client",
        Route::Answer => "/answer",
        Route::Debug => "/debug",
        Route::Metrics => "/metrics",
        Route::Prometheus => "/prometheus",
        Route::AmpClient(_) => "/amp/client/",
        Route::Redirect(_) => "redirect",
        Route::NotFound => "not found",
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The address of a proxy, which calls the Worker directly: Cloudflare's
/// view of the caller.
fn caller_ip(req: &Request) -> Option<IpAddr> {
    header(req, "CF-Connecting-IP").and_then(|ip| ip.trim().parse().ok())
}

async fn proxy(
    env: &Env,
    config: &Config,
    body: &[u8],
    (country, ip): (Option<String>, Option<IpAddr>),
    caller: &Caller,
) -> Reply {
    let (poll, with_relay_pattern) = match handlers::proxy_poll(config, body) {
        Ok(PollCheck::Accepted {
            poll,
            with_relay_pattern,
        }) => (poll, with_relay_pattern),
        Ok(PollCheck::Rejected {
            reply,
            nat,
            proxy_type,
            with_relay_pattern,
        }) => {
            let count = RejectedPoll {
                nat,
                proxy_type,
                with_relay_pattern,
            };
            // Any shard may count it; only a count is lost if this fails
            // (and `ask` logs it).
            let shard = ROTATE.with(Cell::get) % config.matcher_shards.max(1);
            let _ = ask(env, Some(config), shard, &count, caller, QUICK_CALL_MS).await;
            return reply;
        }
        Err(reply) => return reply,
    };
    let at = now_ms();
    let pool = poll.nat.proxy_pool();
    // Every poll of one address goes to one shard, which keeps its poll
    // interval and its count of sessions (src/matcher/routing.rs).
    let shard = routing::poll_shard(ip, &poll.sid, config.matcher_shards);
    // A refusal the matcher gave this address a moment ago is given here
    // again without a matcher request, and tallied for the shard to count
    // with the next poll sent to it (src/refusals.rs).
    let seen = ip.map(|ip| PollSeen {
        ip,
        pool,
        nat: poll.nat,
        proxy_type: poll.proxy_type,
        with_relay_pattern,
        country: country.as_deref(),
        shard,
    });
    if let Some(seen) = &seen {
        if let Some(reply) = REFUSALS.with(|r| r.borrow_mut().refuse(seen, at)) {
            return handlers::proxy_poll_reply(config, &reply, config.next_poll_ms);
        }
    }
    let address = match (ip, period_key(env, config, caller).await) {
        (Some(ip), Some(hasher)) => Some(ProxyAddress::Key(hasher.key(ip))),
        (ip, _) => ip.map(ProxyAddress::Ip),
    };
    // So is a poll to a shard that just reported itself full: past
    // capacity a refusal costs no hop (README, "Overload").
    // (Not a poll that replaces one of this isolate's under its Sid: the
    // shard takes that one even when full.)
    if let Some(seen) = &seen {
        let full = with_board(config.matcher_shards, |b| {
            b.full(shard, config.max_parked_polls, at)
        }) && !IN_FLIGHT.with(|f| f.borrow().holds(&poll.sid, at));
        if full {
            if let Some(reply) = REFUSALS.with(|r| r.borrow_mut().refuse_full(seen, address)) {
                return handlers::proxy_poll_reply(config, &reply, config.next_poll_ms);
            }
        }
    }
    let deadline = at.saturating_add(config.proxy_poll_timeout_ms);
    with_board(config.matcher_shards, |b| {
        b.note_poll(shard, poll.nat, poll.clients, deadline)
    });
    let request = PollRequest {
        poll,
        seen: ProxySeen {
            with_relay_pattern,
            country,
            address,
        },
        at: Some(at),
        refused_meanwhile: REFUSALS.with(|r| r.borrow_mut().take(shard)),
        refused_addresses: REFUSALS.with(|r| r.borrow_mut().take_addresses(shard)),
    };
    let wait = config.proxy_poll_timeout_ms.saturating_add(MARGIN_MS);
    let sid = request.poll.sid.clone();
    let until = at.saturating_add(wait).saturating_add(GUARD_MS);
    IN_FLIGHT.with(|f| f.borrow_mut().begin(&sid, until, at));
    let reply = ask(env, Some(config), shard, &request, caller, wait).await;
    IN_FLIGHT.with(|f| f.borrow_mut().end(&sid));
    match reply {
        Ok(reply) => {
            let now = now_ms();
            if let Some(ip) = ip {
                REFUSALS.with(|r| r.borrow_mut().note(ip, pool, &reply, now));
            }
            let next_poll = handlers::accepted_next_poll_ms(config, pool, now.saturating_sub(at));
            handlers::proxy_poll_reply(config, &reply, next_poll)
        }
        Err(_) => handlers::proxy_poll_failed(config),
    }
}

thread_local! {
    /// This isolate's memory of polls the matcher refused at once.
    static REFUSALS: std::cell::RefCell<RecentRefusals> = std::cell::RefCell::default();
    /// This isolate's polls now with a shard, by Sid.
    static IN_FLIGHT: std::cell::RefCell<PollsInFlight> = std::cell::RefCell::default();
}

/// What the Worker knows of a `/client` request besides its body.
struct Client<'a> {
    nat: Option<&'a str>,
    country: Option<String>,
    started: u64,
}

impl Client<'_> {
    async fn send(self, env: &Env, config: &Config, body: &[u8], caller: &Caller) -> Reply {
        let (offer, format): (_, ClientFormat) =
            match handlers::client(config, body, self.nat, self.started) {
                Ok(ok) => ok,
                Err(reply) => return reply,
            };
        let request = OfferRequest {
            offer,
            method: Rendezvous::Http,
            country: self.country,
            last: true,
        };
        match rendezvous(env, config, request, caller).await {
            Ok(reply) => handlers::client_reply(format, &reply),
            Err(_) => handlers::client_failed(format),
        }
    }
}

async fn amp(env: &Env, config: &Config, suffix: &str, started: u64, caller: &Caller) -> Reply {
    let offer = match handlers::amp_client(config, suffix, started) {
        Ok(offer) => offer,
        Err(reply) => return reply,
    };
    // Behind the AMP cache the only trace of the client is its candidates.
    let country = handlers::offer_country(&offer.offer);
    let request = OfferRequest {
        offer,
        method: Rendezvous::Ampcache,
        country,
        last: true,
    };
    match rendezvous(env, config, request, caller).await {
        Ok(reply) => handlers::amp_reply(&reply),
        Err(_) => handlers::amp_failed(),
    }
}

async fn answer(
    env: &Env,
    config: &Config,
    body: &[u8],
    ip: Option<IpAddr>,
    caller: &Caller,
) -> Reply {
    let answer = match handlers::answer(body) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    // The answer goes first to the shard its poll most likely parked on;
    // a shard that does not know the Sid passes it on (src/matcher/routing.rs).
    let order = routing::answer_order(ip, &answer.sid, config.matcher_shards);
    let mut request = AnswerRequest {
        sid: answer.sid,
        answer: answer.answer,
        last: false,
    };
    for (i, shard) in order.iter().enumerate() {
        let last = i + 1 == order.len();
        request.last = last;
        match ask(env, Some(config), *shard, &request, caller, QUICK_CALL_MS).await {
            Ok(AnswerOutcome::Ended(reply)) => return handlers::answer_reply(reply),
            Ok(AnswerOutcome::Elsewhere) => continue,
            // A shard that refused the call at once never saw the answer; the
            // Sid may still be on a later one.
            Err(CallError::Overloaded(_) | CallError::Unreachable(_)) if !last => continue,
            Err(_) => return handlers::answer_failed(),
        }
    }
    handlers::answer_failed()
}

async fn debug(
    env: &Env,
    config: &std::result::Result<Config, ConfigError>,
    caller: &Caller,
) -> Reply {
    let mut problems: Vec<String> = match config {
        Err(e) => vec![format!("configuration error: {e}")],
        Ok(c) => crate::debug::settings_notes(c),
    };
    if let Ok(Config {
        sqs: SqsSetting::On(_),
        ..
    }) = config
    {
        problems.push(sqs::status(env).await);
    }
    let census = match ask_all(env, config.as_ref().ok(), &CensusRequest, caller).await {
        Ok(c) => c,
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    Reply::text(200, crate::debug::render(&merge::census(census), &problems))
}
