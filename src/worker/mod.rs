//! The Worker shell: routes requests, calls the pure handlers, and carries
//! matching work to the matcher Durable Object. No decisions are made here.

mod log;
mod matcher_do;
mod settings;
mod timer;

use crate::config::{Config, ConfigError};
use crate::handlers::{self, PollCheck, Reply};
use crate::matcher::shard_api::{OfferRequest, PollRequest, ProxySeen, ShardReply, ShardRequest};
use crate::metrics::Rendezvous;
use crate::routes::{self, Route};
use wasm_bindgen::JsCast;
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response, Result};

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// 16 random bytes from the platform's CSPRNG (`crypto.getRandomValues`).
pub fn random_secret() -> [u8; 16] {
    let array = js_sys::Uint8Array::new_with_length(16);
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).ok();
    let filled = crypto.and_then(|c| {
        let get = js_sys::Reflect::get(&c, &"getRandomValues".into()).ok()?;
        let get: js_sys::Function = get.dyn_into().ok()?;
        get.call1(&c, &array).ok()
    });
    let mut out = [0u8; 16];
    if filled.is_some() {
        array.copy_to(&mut out);
    } else {
        // Workers always have Web Crypto; this only keeps the function total.
        for (i, b) in out.iter_mut().enumerate() {
            *b = (js_sys::Math::random() * 256.0) as u8 ^ (i as u8);
        }
    }
    out
}

const CORS: [(&str, &str); 2] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "Origin, X-Session-ID"),
];

fn into_response(reply: Reply, cors: bool) -> Result<Response> {
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
    let response = if reply.body.is_empty() {
        Response::empty()?
    } else {
        Response::from_bytes(reply.body.into_bytes())?
    };
    Ok(response.with_status(reply.status).with_headers(headers))
}

/// The one matcher shard (design.md §4 keeps the door open for more).
async fn ask(env: &Env, request: &ShardRequest) -> Result<ShardReply> {
    let stub = env.durable_object("MATCHER")?.get_by_name("shard-0")?;
    let body =
        serde_json::to_string(request).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://matcher/", &init)?;
    let mut response = stub.fetch_with_request(req).await?;
    let text = response.text().await?;
    serde_json::from_str(&text)
        .map_err(|e| worker::Error::RustError(format!("shard reply {text:?}: {e}")))
}

/// A matcher that cannot be reached is the broker's failure, not the caller's.
fn unavailable(e: &worker::Error) -> Reply {
    log::error(&format!("snowflake-broker: matcher unavailable: {e}"));
    Reply::empty(500)
}

async fn read_body(req: &mut Request) -> Option<Vec<u8>> {
    req.bytes().await.ok()
}

#[event(fetch)]
pub async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let started = now_ms();
    let url = req.url()?;
    let route = routes::route(url.path(), url.query());
    let cors = route.has_cors();
    let method = req.method();
    if cors && method == Method::Options {
        return into_response(Reply::empty(200), true);
    }
    let loaded = settings::load(&env);
    let reply = match (&route, loaded.as_ref()) {
        (Route::Robots, _) => handlers::robots(),
        (Route::Redirect(to), _) => Reply::moved(to, matches!(method, Method::Get | Method::Head)),
        (Route::NotFound, _) => Reply::not_found(),
        (Route::Metrics, _) => metrics_text(&env, ShardRequest::MetricsLog).await,
        (Route::Prometheus, _) => metrics_text(&env, ShardRequest::Prometheus).await,
        (Route::Debug, config) => debug(&env, config).await,
        (_, Err(e)) => Reply::misconfigured(&e.to_string()),
        (Route::Proxy, Ok(config)) => match read_body(&mut req).await {
            Some(body) => {
                let seen = ProxySeen {
                    with_relay_pattern: false,
                    country: req.cf().and_then(|cf| cf.country()),
                    ip: header(&req, "CF-Connecting-IP").and_then(|ip| ip.trim().parse().ok()),
                };
                proxy(&env, config, &body, seen).await
            }
            None => Reply::empty(400),
        },
        (Route::Client, Ok(config)) => match read_body(&mut req).await {
            Some(body) => {
                let nat = header(&req, "Snowflake-NAT-Type");
                let country = handlers::client_country(
                    config,
                    header(&req, "Forwarded").as_deref(),
                    header(&req, "X-Forwarded-For").as_deref(),
                );
                client(&env, config, &body, nat.as_deref(), country, started).await
            }
            None => Reply::empty(400),
        },
        (Route::Answer, Ok(_)) => match read_body(&mut req).await {
            Some(body) => answer(&env, &body).await,
            None => Reply::empty(400),
        },
        (Route::AmpClient(suffix), Ok(config)) => amp(&env, config, suffix, started).await,
    };
    log::request(
        endpoint(&route),
        outcome(&reply),
        reply.status,
        now_ms().saturating_sub(started),
    );
    into_response(reply, cors)
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

/// A short name for how a request ended, read off its reply.
fn outcome(reply: &Reply) -> &'static str {
    const KNOWN: [(&str, &str); 9] = [
        ("\"client match\"", "client match"),
        ("\"no match\"", "no match"),
        ("\"incorrect relay pattern\"", "incorrect relay pattern"),
        ("\"success\"", "answer delivered"),
        ("\"client gone\"", "client gone"),
        ("{\"answer\"", "answered"),
        ("no snowflake proxies", "denied"),
        ("timed out waiting", "timed out"),
        ("{\"error\"", "refused"),
    ];
    match reply.status {
        200 if reply.content_type == Some("text/html") => "amp page",
        200 => KNOWN
            .iter()
            .find(|(needle, _)| reply.body.contains(needle))
            .map_or("ok", |(_, name)| name),
        400 => "bad request",
        404 => "not found",
        503 => "denied",
        504 => "timed out",
        _ => "error",
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

async fn proxy(env: &Env, config: &Config, body: &[u8], mut seen: ProxySeen) -> Reply {
    let poll = match handlers::proxy_poll(config, body) {
        Ok(PollCheck::Accepted {
            poll,
            with_relay_pattern,
        }) => {
            seen.with_relay_pattern = with_relay_pattern;
            PollRequest { poll, seen }
        }
        Ok(PollCheck::Rejected {
            reply,
            nat,
            proxy_type,
            with_relay_pattern,
        }) => {
            let count = ShardRequest::RejectedPoll {
                nat,
                proxy_type,
                with_relay_pattern,
            };
            if let Err(e) = ask(env, &count).await {
                log::error(&format!(
                    "snowflake-broker: counting a rejected poll failed: {e}"
                ));
            }
            return reply;
        }
        Err(reply) => return reply,
    };
    match ask(env, &ShardRequest::Poll(poll)).await {
        Ok(ShardReply::Poll(reply)) => handlers::proxy_poll_reply(config, &reply),
        Ok(_) => Reply::empty(500),
        Err(e) => unavailable(&e),
    }
}

async fn client(
    env: &Env,
    config: &Config,
    body: &[u8],
    nat: Option<&str>,
    country: Option<String>,
    started: u64,
) -> Reply {
    let (offer, format) = match handlers::client(config, body, nat, started) {
        Ok(ok) => ok,
        Err(reply) => return reply,
    };
    let request = OfferRequest {
        offer,
        method: Rendezvous::Http,
        country,
    };
    match ask(env, &ShardRequest::Offer(request)).await {
        Ok(ShardReply::Offer(reply)) => handlers::client_reply(format, &reply),
        Ok(_) => Reply::empty(500),
        Err(e) => unavailable(&e),
    }
}

async fn amp(env: &Env, config: &Config, suffix: &str, started: u64) -> Reply {
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
    };
    match ask(env, &ShardRequest::Offer(request)).await {
        Ok(ShardReply::Offer(reply)) => handlers::amp_reply(&reply),
        Ok(_) => Reply::empty(500),
        Err(e) => unavailable(&e),
    }
}

async fn answer(env: &Env, body: &[u8]) -> Reply {
    let answer = match handlers::answer(body) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let request = ShardRequest::Answer {
        sid: answer.sid,
        answer: answer.answer,
    };
    match ask(env, &request).await {
        Ok(ShardReply::Answer(result)) => handlers::answer_reply(result),
        Ok(_) => Reply::empty(500),
        Err(e) => unavailable(&e),
    }
}

/// `/metrics` and `/prometheus` come from the matcher's counts.
async fn metrics_text(env: &Env, request: ShardRequest) -> Reply {
    let prometheus = request == ShardRequest::Prometheus;
    match ask(env, &request).await {
        Ok(ShardReply::Text(text)) if prometheus => handlers::prometheus(text),
        Ok(ShardReply::Text(text)) => Reply::text(200, text),
        Ok(_) => Reply::empty(500),
        Err(e) => unavailable(&e),
    }
}

async fn debug(env: &Env, config: &std::result::Result<Config, ConfigError>) -> Reply {
    let mut problems: Vec<String> = match config {
        Err(e) => vec![format!("configuration error: {e}")],
        Ok(c) => c.warnings.iter().map(|w| format!("warning: {w}")).collect(),
    };
    let census = match ask(env, &ShardRequest::Census).await {
        Ok(ShardReply::Census(c)) => c,
        Ok(_) => Default::default(),
        Err(e) => {
            problems.push(format!("matcher unavailable: {e}"));
            Default::default()
        }
    };
    Reply::text(200, crate::debug::render(&census, &problems))
}
