//! The SQS consumer (docs/sqs.md): one Durable Object, `SqsConsumer`
//! named `sqs`, that runs on its own alarm, without any request arriving.
//!
//! Each alarm makes one long-polling receive (up to 10 messages, 15 s) and
//! hands every message to its own task (`wait_until`), so a slow rendezvous
//! never holds up the next receive or another message; then it sets the
//! next alarm. A message's task creates the client's queue, runs the offer
//! through the shards as an HTTP client's would (method `sqs`), sends the
//! reply to that queue and deletes the message. Every 30 s it deletes
//! client queues idle for 2 minutes. The Worker starts the loop (`/start`)
//! from its cron trigger and once per isolate when SQS is configured; a
//! stored alarm survives deploys.
//! Errors are logged and retried later; refused credentials are retried
//! every minute, and HTTP rendezvous never depends on any of this.

use super::js::Caller;
use super::{log, now_ms, rendezvous, settings, timer};
use crate::config::{Config, SqsConfig, SqsSetting};
use crate::handlers;
use crate::matcher::api::{OfferRequest, SqsMalformed};
use crate::metrics::Rendezvous;
use crate::sqs::{self, Call, Incoming, Message, SqsError};
use futures_util::future::{select, Either};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    Result, ScheduledTime, State,
};

/// The binding and the one object's name.
pub const BINDING: &str = "SQS_CONSUMER";
pub const NAME: &str = "sqs";

/// An SQS call that is not a long poll must answer within this.
const CALL_MS: u64 = 10_000;
/// After a failed receive, and after refused credentials.
const RETRY_MS: u64 = 5_000;
const AUTH_RETRY_MS: u64 = 60_000;
/// Set first by every alarm, so that the loop goes on even if this one
/// never finishes.
const FALLBACK_MS: u64 = 60_000;

/// N's 2 minutes and 30 s; the test-only build (`fault-injection`) sweeps
/// every second and deletes queues idle 2 s, so a test can watch it.
#[cfg(not(feature = "fault-injection"))]
const SWEEP: (u64, u64) = (sqs::CLEANUP_EVERY_MS, sqs::CLIENT_QUEUE_IDLE_MS);
#[cfg(feature = "fault-injection")]
const SWEEP: (u64, u64) = (1_000, 2_000);

#[durable_object]
pub struct SqsConsumer {
    state: State,
    env: Env,
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The broker queue's URL, once `CreateQueue` has given it.
    queue_url: RefCell<Option<String>>,
    next_cleanup: Cell<u64>,
    answered: Cell<u64>,
    malformed: Cell<u64>,
    last_error: RefCell<Option<String>>,
}

impl DurableObject for SqsConsumer {
    fn new(state: State, env: Env) -> Self {
        SqsConsumer {
            state,
            env,
            inner: Rc::default(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match req.path().as_str() {
            // Starts the loop if it is not running: an alarm is set unless one is.
            "/start" => {
                let storage = self.state.storage();
                if storage.get_alarm().await?.is_none() {
                    set_alarm(&self.state, now_ms()).await?;
                }
                Response::ok("started")
            }
            "/status" => Response::ok(self.status()),
            _ => Response::error("no such call", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        set_alarm(&self.state, now_ms().saturating_add(FALLBACK_MS)).await?;
        let loaded = settings::load(&self.env);
        let Ok(config) = loaded.as_ref() else {
            return Response::ok("misconfigured");
        };
        let SqsSetting::On(sqs_config) = &config.sqs else {
            // Turned off (or broken): stop until started again.
            self.state.storage().delete_alarm().await?;
            return Response::ok("off");
        };
        let next = match self.receive(config, sqs_config).await {
            Ok(()) => {
                *self.inner.last_error.borrow_mut() = None;
                now_ms()
            }
            Err(e) => {
                let wait = if e.is_auth() { AUTH_RETRY_MS } else { RETRY_MS };
                log::error(&format!(
                    "snowflake-broker: SQS: {}: {e}; trying again in {} s{}",
                    sqs_config.queue.name,
                    wait / 1000,
                    if e.is_auth() {
                        " (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    } else {
                        ""
                    }
                ));
                *self.inner.last_error.borrow_mut() = Some(e.to_string());
                now_ms().saturating_add(wait)
            }
        };
        set_alarm(&self.state, next).await?;
        Response::ok("received")
    }
}

impl SqsConsumer {
    /// One receive, and a task for each message it brought.
    async fn receive(
        &self,
        config: &Config,
        sqs_config: &SqsConfig,
    ) -> std::result::Result<(), SqsError> {
        let queue_url = self.queue_url(sqs_config).await?;
        if now_ms() >= self.inner.next_cleanup.get() {
            self.inner
                .next_cleanup
                .set(now_ms().saturating_add(SWEEP.0));
            let sqs_config = sqs_config.clone();
            self.state
                .wait_until(async move { cleanup(&sqs_config).await });
        }
        let wait_ms = u64::from(sqs::WAIT_SECONDS) * 1000 + CALL_MS;
        let output = send(
            sqs_config,
            &Call::receive(&queue_url, sqs::WAIT_SECONDS),
            wait_ms,
        )
        .await?;
        for message in sqs::messages_of(&output) {
            let env = self.env.clone();
            let (config, sqs_config) = (config.clone(), sqs_config.clone());
            let (inner, queue_url) = (self.inner.clone(), queue_url.clone());
            self.state.wait_until(async move {
                handle(&env, &config, &sqs_config, &inner, &queue_url, message).await;
            });
        }
        Ok(())
    }

    /// The broker queue's URL, creating the queue (5 minutes' retention, as
    /// N) if it is missing; asked once per object.
    async fn queue_url(&self, sqs_config: &SqsConfig) -> std::result::Result<String, SqsError> {
        if let Some(url) = self.inner.queue_url.borrow().clone() {
            return Ok(url);
        }
        let call = Call::create_queue(&sqs_config.queue.name, Some(sqs::RETENTION_SECONDS));
        let output = send(sqs_config, &call, CALL_MS).await?;
        let url = sqs::queue_url_of(&output).unwrap_or_else(|| sqs_config.queue.url.clone());
        log::info(&format!(
            "snowflake-broker: SQS: receiving offers from {} ({})",
            sqs_config.queue.name, sqs_config.queue.region
        ));
        *self.inner.queue_url.borrow_mut() = Some(url.clone());
        Ok(url)
    }

    fn status(&self) -> String {
        let queue = self.inner.queue_url.borrow().clone();
        let state = match (&queue, self.inner.last_error.borrow().as_deref()) {
            (_, Some(e)) => format!("failing: {e}"),
            (Some(_), None) => "receiving".to_string(),
            (None, None) => "starting".to_string(),
        };
        format!(
            "SQS rendezvous: {state}; {} offers answered, {} messages malformed since the consumer started",
            self.inner.answered.get(),
            self.inner.malformed.get()
        )
    }
}

async fn set_alarm(state: &State, at_ms: u64) -> Result<()> {
    let date = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    state.storage().set_alarm(ScheduledTime::new(date)).await
}

/// One message: answered, or deleted as malformed. Never retried forever:
/// whatever happens, the message is deleted.
async fn handle(
    env: &Env,
    config: &Config,
    sqs_config: &SqsConfig,
    inner: &Inner,
    queue_url: &str,
    message: Message,
) {
    let outcome = match sqs::decode(&message) {
        Ok(incoming) => answer(env, config, sqs_config, &incoming).await,
        Err(malformed) => Handled::Malformed(malformed.as_str().to_string()),
    };
    match outcome {
        Handled::Answered => inner.answered.set(inner.answered.get().saturating_add(1)),
        // Logged where it failed; the client's own retry is its next chance.
        Handled::Failed => {}
        Handled::Malformed(reason) => {
            inner.malformed.set(inner.malformed.get().saturating_add(1));
            log::info(&format!(
                "snowflake-broker: SQS: message deleted unanswered: {reason}"
            ));
            let call = SqsMalformed { reason };
            let _ = super::ask(env, Some(config), 0, &call, &Caller::none(), CALL_MS).await;
        }
    }
    let delete = Call::delete_message(queue_url, &message.receipt_handle);
    if let Err(e) = send(sqs_config, &delete, CALL_MS).await {
        log::error(&format!("snowflake-broker: SQS: DeleteMessage: {e}"));
    }
}

/// What became of one message.
enum Handled {
    /// Its reply is on the client's queue.
    Answered,
    /// An SQS call failed (logged); the offer was not made or its reply not sent.
    Failed,
    /// Deleted unanswered, for this reason (counted).
    Malformed(String),
}

/// Creates the client's queue first (the client looks for it a second after
/// sending), runs the offer, and sends the reply there.
async fn answer(
    env: &Env,
    config: &Config,
    sqs_config: &SqsConfig,
    incoming: &Incoming,
) -> Handled {
    let started = now_ms();
    let created = send(
        sqs_config,
        &Call::create_queue(&incoming.queue_name(), None),
        CALL_MS,
    )
    .await;
    let client_queue = match created.map(|o| sqs::queue_url_of(&o)) {
        Ok(Some(url)) => url,
        Ok(None) => {
            log::error("snowflake-broker: SQS: CreateQueue gave no QueueUrl");
            return Handled::Failed;
        }
        Err(e) => {
            log::error(&format!("snowflake-broker: SQS: CreateQueue: {e}"));
            return Handled::Failed;
        }
    };
    let reply = match handlers::client(config, incoming.body.as_bytes(), None, started) {
        Ok((offer, format)) => {
            // Behind SQS the only trace of the client is its candidates, as N.
            let country = handlers::offer_country(&offer.offer);
            let request = OfferRequest {
                offer,
                method: Rendezvous::Sqs,
                country,
                last: true,
            };
            match rendezvous(env, config, request, &Caller::none()).await {
                Ok(reply) => handlers::client_reply(format, &reply),
                Err(_) => handlers::client_failed(format),
            }
        }
        Err(reply) => reply,
    };
    // A 1.0 message is always answered 200 (with an error text if refused);
    // anything else was not a client message at all.
    if reply.status != 200 {
        return Handled::Malformed("refused".to_string());
    }
    match send(sqs_config, &Call::send(&client_queue, &reply.body), CALL_MS).await {
        Ok(_) => Handled::Answered,
        Err(e) => {
            log::error(&format!("snowflake-broker: SQS: SendMessage: {e}"));
            Handled::Failed
        }
    }
}

/// Deletes client queues unchanged for 2 minutes (`SWEEP`).
async fn cleanup(sqs_config: &SqsConfig) {
    let mut urls = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let listed = send(
            sqs_config,
            &Call::list_client_queues(token.as_deref()),
            CALL_MS,
        )
        .await;
        match listed {
            Ok(output) => {
                let (page, next) = sqs::queue_urls_of(&output);
                urls.extend(page);
                match next {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
            Err(e) => {
                log::error(&format!("snowflake-broker: SQS: ListQueues: {e}"));
                return;
            }
        }
    }
    let now = now_ms();
    for url in urls.iter().filter(|u| sqs::is_client_queue(u)) {
        // A queue being deleted may still be listed and then fail here.
        let Ok(output) = send(sqs_config, &Call::last_modified(url), CALL_MS).await else {
            continue;
        };
        if sqs::last_modified_of(&output).is_some_and(|t| sqs::is_idle(t, SWEEP.1, now)) {
            if let Err(e) = send(sqs_config, &Call::delete_queue(url), CALL_MS).await {
                log::error(&format!("snowflake-broker: SQS: DeleteQueue: {e}"));
            }
        }
    }
}

/// Sends one signed call and reads its reply, giving up after `wait_ms`.
async fn send(
    sqs_config: &SqsConfig,
    call: &Call,
    wait_ms: u64,
) -> std::result::Result<Value, SqsError> {
    let signed = call.signed(&sqs_config.queue, &sqs_config.credentials, now_ms());
    let transport = |message: String| SqsError {
        code: format!("{} failed", call.operation),
        message,
    };
    let headers = Headers::new();
    for (name, value) in &signed.headers {
        headers
            .set(name, value)
            .map_err(|e| transport(e.to_string()))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&signed.body)));
    let request =
        Request::new_with_init(&signed.url, &init).map_err(|e| transport(e.to_string()))?;
    let exchange = async move {
        let mut response = Fetch::Request(request).send().await?;
        let status = response.status_code();
        let text = response.text().await?;
        Ok::<_, worker::Error>((status, text))
    };
    let (status, text) = match select(Box::pin(exchange), timer::sleep(wait_ms)).await {
        Either::Left((Ok(reply), _)) => reply,
        Either::Left((Err(e), _)) => return Err(transport(e.to_string())),
        Either::Right(_) => return Err(transport(format!("no reply in {wait_ms} ms"))),
    };
    sqs::read_reply(status, &text).map_err(|e| SqsError {
        code: e.code,
        message: format!("{} ({})", e.message, call.operation),
    })
}

thread_local! {
    /// Whether this isolate has started the consumer.
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the consumer's loop, once per isolate (it is idempotent).
pub fn start_once(env: &Env, ctx: &worker::Context) {
    if STARTED.with(|s| s.replace(true)) {
        return;
    }
    let env = env.clone();
    ctx.wait_until(async move {
        if let Err(e) = ask_consumer(&env, "/start").await {
            STARTED.with(|s| s.set(false));
            log::error(&format!(
                "snowflake-broker: SQS: cannot start the consumer: {e}"
            ));
        }
    });
}

/// Starts the consumer's loop (from the cron trigger).
pub async fn start(env: &Env) {
    if let Err(e) = ask_consumer(env, "/start").await {
        log::error(&format!(
            "snowflake-broker: SQS: cannot start the consumer: {e}"
        ));
    }
}

/// The consumer's status line, for `/debug`.
pub async fn status(env: &Env) -> String {
    match select(
        Box::pin(ask_consumer(env, "/status")),
        timer::sleep(CALL_MS),
    )
    .await
    {
        Either::Left((Ok(text), _)) => text,
        Either::Left((Err(e), _)) => format!("SQS rendezvous: the consumer cannot be reached: {e}"),
        Either::Right(_) => "SQS rendezvous: the consumer did not answer".to_string(),
    }
}

async fn ask_consumer(env: &Env, path: &str) -> Result<String> {
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(NAME)?
        .get_stub()?;
    let mut response = stub.fetch_with_str(&format!("https://sqs{path}")).await?;
    response.text().await
}
