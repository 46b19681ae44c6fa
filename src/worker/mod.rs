//! The Worker shell: routes requests, calls the pure handlers, and carries
//! matching work to the matcher Durable Object. No decisions are made here.

mod matcher_do;
mod settings;
mod timer;

use crate::config::Config;
use crate::handlers::{self, Reply};
use crate::matcher::shard_api::{ShardReply, ShardRequest};
use crate::routes::{self, Route};
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response, Result};

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
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
    worker::console_error!("snowflake-broker: matcher unavailable: {e}");
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
        (Route::NotFound | Route::Prometheus, _) => Reply::not_found(),
        (Route::Metrics, _) => handlers::metrics_disabled(),
        (Route::Debug, config) => debug(&env, config.as_ref().err()).await,
        (_, Err(e)) => Reply::misconfigured(&e.to_string()),
        (Route::Proxy, Ok(config)) => match read_body(&mut req).await {
            Some(body) => proxy(&env, config, &body).await,
            None => Reply::empty(400),
        },
        (Route::Client, Ok(config)) => match read_body(&mut req).await {
            Some(body) => {
                let nat = req.headers().get("Snowflake-NAT-Type").ok().flatten();
                client(&env, config, &body, nat.as_deref(), started).await
            }
            None => Reply::empty(400),
        },
        (Route::Answer, Ok(_)) => match read_body(&mut req).await {
            Some(body) => answer(&env, &body).await,
            None => Reply::empty(400),
        },
        (Route::AmpClient(suffix), Ok(config)) => amp(&env, config, suffix, started).await,
    };
    into_response(reply, cors)
}

async fn proxy(env: &Env, config: &Config, body: &[u8]) -> Reply {
    let poll = match handlers::proxy_poll(config, body) {
        Ok(poll) => poll,
        Err(reply) => return reply,
    };
    match ask(env, &ShardRequest::Poll(poll)).await {
        Ok(ShardReply::Poll(reply)) => handlers::proxy_poll_reply(config, &reply),
        Ok(_) => Reply::empty(500),
        Err(e) => unavailable(&e),
    }
}

async fn client(env: &Env, config: &Config, body: &[u8], nat: Option<&str>, started: u64) -> Reply {
    let (offer, format) = match handlers::client(config, body, nat, started) {
        Ok(ok) => ok,
        Err(reply) => return reply,
    };
    match ask(env, &ShardRequest::Offer(offer)).await {
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
    match ask(env, &ShardRequest::Offer(offer)).await {
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

async fn debug(env: &Env, problem: Option<&crate::config::ConfigError>) -> Reply {
    let mut problems: Vec<String> = Vec::new();
    if let Some(e) = problem {
        problems.push(format!("configuration error: {e}"));
    }
    if let Ok(c) = settings::load(env).as_ref() {
        problems.extend(c.warnings.iter().map(|w| format!("warning: {w}")));
    }
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
