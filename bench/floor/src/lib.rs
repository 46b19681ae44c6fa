//! NOT PART OF THE BROKER. The benchmark's "floor" (bench/floor/README.md): the cheapest
//! Worker + Durable Object matcher of the broker's design, on the same platform, so that
//! bench/run-local.sh can measure the broker against it. It speaks just enough of the
//! protocol for bench/loadgen.mjs (proxy polls of version 1.x, `1.0\n{json}` client offers,
//! answers) with the broker's reply bytes, and has no validation, no NAT classes, no
//! metrics, no storage, no sharding and no limits. Never deploy it for real proxies.

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use js_sys::{global, Promise};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::web_sys::WorkerGlobalScope;
use worker::{durable_object, event, Context, DurableObject, Env, Method, Request, Response};
use worker::{Result, State};

const CORS: [(&str, &str); 2] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "Origin, X-Session-ID"),
];
const RELAY_URL: &str = "wss://snowflake.torproject.net/";

/// The Worker: `/robots.txt` itself, the three matching paths forwarded unchanged to the
/// one Durable Object, 404 for everything else.
#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get | Method::Head, "/robots.txt") => Response::ok("User-agent: *\nDisallow: /\n"),
        (Method::Post, "/proxy" | "/client" | "/answer") => {
            let stub = env
                .durable_object("MATCHER")?
                .id_from_name("floor")?
                .get_stub()?;
            stub.fetch_with_request(req).await
        }
        _ => {
            let mut r = Response::ok("404 page not found\n")?.with_status(404);
            r.headers_mut().set("X-Content-Type-Options", "nosniff")?;
            Ok(r)
        }
    }
}

/// A parked poll; a match sends it the client's offer string and NAT type.
struct Parked {
    id: u64,
    sid: String,
    tx: oneshot::Sender<(String, String)>,
}

#[durable_object]
pub struct Matcher {
    poll_ms: u64,
    client_ms: u64,
    next_poll_ms: u64,
    next_id: Cell<u64>,
    /// Parked polls, oldest first.
    polls: RefCell<VecDeque<Parked>>,
    /// Matched clients waiting for their proxy's answer, by the proxy's Sid.
    clients: RefCell<HashMap<String, oneshot::Sender<String>>>,
}

fn setting(env: &Env, name: &str, default: u64) -> u64 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().parse().ok())
        .unwrap_or(default)
}

impl DurableObject for Matcher {
    fn new(_state: State, env: Env) -> Self {
        Matcher {
            poll_ms: setting(&env, "PROXY_POLL_TIMEOUT_MS", 10_000),
            client_ms: setting(&env, "CLIENT_TIMEOUT_MS", 10_000),
            next_poll_ms: setting(&env, "NEXT_POLL_MS", 20_000),
            next_id: Cell::new(0),
            polls: RefCell::new(VecDeque::new()),
            clients: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let body = req.text().await?;
        match path.as_str() {
            "/proxy" => self.poll(&body).await,
            "/client" => self.offer(&body).await,
            _ => self.answer(&body),
        }
    }
}

/// A `/proxy` or `/answer` body: only the fields the floor needs.
#[derive(serde::Deserialize)]
struct ProxyMessage {
    #[serde(rename = "Sid")]
    sid: String,
    #[serde(rename = "Answer", default)]
    answer: String,
}

#[derive(serde::Deserialize)]
struct ClientPoll {
    offer: String,
    nat: Option<String>,
}

impl Matcher {
    /// `/proxy`: parks the poll until an offer or the deadline.
    async fn poll(&self, body: &str) -> Result<Response> {
        let Ok(ProxyMessage { sid, .. }) = serde_json::from_str(body) else {
            return bad_request();
        };
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.polls.borrow_mut().push_back(Parked { id, sid, tx });
        let (status, offer, nat, relay) = match select(rx, sleep(self.poll_ms)).await {
            Either::Left((Ok((offer, nat)), _)) => ("client match", offer, nat, RELAY_URL),
            _ => {
                self.polls.borrow_mut().retain(|p| p.id != id);
                ("no match", String::new(), String::new(), "")
            }
        };
        text(format!(
            "{{\"Status\":{},\"Offer\":{},\"NAT\":{},\"NextPoll\":{},\"RelayURL\":{}}}",
            go(status),
            go(&offer),
            go(&nat),
            self.next_poll_ms,
            go(relay)
        ))
    }

    /// `/client` (`1.0\n{json}`): hands the offer to the oldest parked poll, then waits
    /// for that proxy's answer until the deadline (counted from the request).
    async fn offer(&self, body: &str) -> Result<Response> {
        let parsed = body
            .strip_prefix("1.0\n")
            .map(serde_json::from_str::<ClientPoll>);
        let Some(Ok(client)) = parsed else {
            return bad_request();
        };
        let timeout = sleep(self.client_ms);
        let mut offer = (client.offer, client.nat.unwrap_or_else(|| "unknown".into()));
        let sid = loop {
            let Some(parked) = self.polls.borrow_mut().pop_front() else {
                return text(r#"{"error":"no snowflake proxies currently available"}"#.into());
            };
            // A poll that ended (timed out, or its caller left) gives the offer back.
            match parked.tx.send(offer) {
                Ok(()) => break parked.sid,
                Err(back) => offer = back,
            }
        };
        let (tx, rx) = oneshot::channel();
        self.clients.borrow_mut().insert(sid.clone(), tx);
        match select(rx, timeout).await {
            Either::Left((Ok(answer), _)) => text(format!("{{\"answer\":{}}}", go(&answer))),
            _ => {
                self.clients.borrow_mut().remove(&sid);
                text(r#"{"error":"timed out waiting for answer!"}"#.into())
            }
        }
    }

    /// `/answer`: delivers the answer to the client waiting on this Sid.
    fn answer(&self, body: &str) -> Result<Response> {
        let Ok(ProxyMessage { sid, answer }) = serde_json::from_str(body) else {
            return bad_request();
        };
        let waiting = self.clients.borrow_mut().remove(&sid);
        match waiting.map(|tx| tx.send(answer)) {
            Some(Ok(())) => text(r#"{"Status":"success"}"#.into()),
            _ => text(r#"{"Status":"client gone"}"#.into()),
        }
    }
}

/// 200 `text/plain` with the CORS headers, as the broker answers its matching paths.
fn text(body: String) -> Result<Response> {
    let mut r = Response::ok(body)?;
    for (k, v) in CORS {
        r.headers_mut().set(k, v)?;
    }
    Ok(r)
}

fn bad_request() -> Result<Response> {
    Ok(Response::empty()?.with_status(400))
}

/// `s` as a JSON string literal escaped as Go's encoding/json escapes it (the broker's bytes).
fn go(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8 + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `setTimeout` as a future. Unlike `worker::Delay` it never panics: workerd refuses
/// timeouts beyond its limit of active ones per object, and then this resolves at once (the
/// request gets its timeout reply) instead of resetting the object. Dropped, it clears its
/// timeout, so only pending requests hold one.
struct Sleep {
    id: Option<i32>,
    done: JsFuture,
}

fn sleep(ms: u64) -> Sleep {
    let scope: WorkerGlobalScope = global().unchecked_into();
    let ms = i32::try_from(ms).unwrap_or(i32::MAX);
    let mut id = None;
    let promise = Promise::new(&mut |resolve, _reject| {
        id = scope
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .ok();
        if id.is_none() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    Sleep {
        id,
        done: JsFuture::from(promise),
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        Pin::new(&mut self.done).poll(cx).map(|_| ())
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let scope: WorkerGlobalScope = global().unchecked_into();
            scope.clear_timeout_with_handle(id);
        }
    }
}
