//! The few JavaScript calls the shell makes itself instead of through
//! `worker`'s wrappers: the abort signal of a request, and a Durable Object
//! call made and read in one go. Every step is fallible and returns an
//! error value; nothing here can panic.

use crate::matcher::api::{decode_reply, is_overloaded, Answered, Call, CallError};
use futures_util::future::{FutureExt, LocalBoxFuture};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn method(target: &JsValue, name: &str) -> Result<Function, String> {
    get(target, name)
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(|| format!("no {name}()"))
}

/// A thrown JavaScript value as text.
fn describe(error: &JsValue) -> String {
    if let Some(e) = error.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(e.name()), String::from(e.message()));
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}

/// The request's `AbortSignal` (it fires when the caller goes away; the
/// `enable_request_signal` compatibility flag turns it on), if it has one.
pub fn request_signal(req: &worker::Request) -> Option<JsValue> {
    get(req.inner(), "signal")
}

/// What the Worker holds of its caller: the request's abort signal, and the
/// guard `src/entry.mjs` set on the request (see there).
pub struct Caller {
    pub signal: Option<JsValue>,
    guard: Option<Function>,
}

impl Caller {
    pub fn of(req: &worker::Request) -> Caller {
        Caller {
            signal: request_signal(req),
            guard: get(req.inner(), "snowflakeGuard").and_then(|g| g.dyn_into::<Function>().ok()),
        }
    }

    /// No caller: a call the broker makes on its own (the SQS consumer's).
    pub fn none() -> Caller {
        Caller {
            signal: None,
            guard: None,
        }
    }

    /// Asks the entry to answer the request itself after `ms` if the module
    /// has not by then (it trapped, or the matcher never replied); true if
    /// it will. The guard is then what bounds the wait: one timer per
    /// request, not one more per matcher call.
    pub fn guard(&self, ms: u64) -> bool {
        let Some(guard) = &self.guard else {
            return false;
        };
        guard
            .call1(&JsValue::UNDEFINED, &JsValue::from_f64(ms as f64))
            .is_ok()
    }
}

/// Resolves when `signal` fires; never, when there is none.
pub type Aborted = LocalBoxFuture<'static, ()>;

pub fn aborted(signal: &Option<JsValue>) -> Aborted {
    let Some(signal) = signal.clone() else {
        return futures_util::future::pending().boxed_local();
    };
    let promise = Promise::new(&mut |resolve, _reject| {
        if get(&signal, "aborted").and_then(|a| a.as_bool()) == Some(true) {
            let _ = resolve.call0(&JsValue::UNDEFINED);
            return;
        }
        if let Ok(add) = method(&signal, "addEventListener") {
            let _ = add.call2(&signal, &JsValue::from_str("abort"), &resolve);
        }
    });
    JsFuture::from(promise).map(|_| ()).boxed_local()
}

/// The call's signal: the caller's, so that the matcher forgets a request
/// whose caller went away; with a `timeout_ms`, `AbortSignal.timeout(ms)`
/// too (`AbortSignal.any`), so the call is also abandoned at its deadline.
fn call_signal(caller: &Option<JsValue>, timeout_ms: Option<u64>) -> Option<JsValue> {
    let Some(timeout_ms) = timeout_ms else {
        return caller.clone();
    };
    let class = get(&js_sys::global(), "AbortSignal")?;
    let ms = JsValue::from_f64(timeout_ms as f64);
    let timeout = method(&class, "timeout").ok()?.call1(&class, &ms).ok()?;
    let Some(caller) = caller else {
        return Some(timeout);
    };
    let both = js_sys::Array::of2(caller, &timeout);
    let any = method(&class, "any").ok();
    // Without `AbortSignal.any`, the deadline alone still bounds the call.
    any.and_then(|any| any.call1(&class, &both).ok())
        .or(Some(timeout))
}

async fn promised(value: Result<JsValue, JsValue>) -> Result<JsValue, JsValue> {
    let promise: Promise = value?.dyn_into()?;
    JsFuture::from(promise).await
}

/// Makes call `C` on the matcher object named `shard` of binding `binding`
/// and reads its reply, abandoning it when the caller's `signal` fires or
/// after `timeout_ms` (None: the caller's guard bounds the wait instead,
/// [`Caller::guard`]).
pub async fn call<C: Call>(
    env: &worker::Env,
    binding: &str,
    shard: &str,
    call: &C,
    signal: &Option<JsValue>,
    timeout_ms: Option<u64>,
) -> Result<Answered<C::Reply>, CallError> {
    let unreachable = |e: String| CallError::Unreachable(e);
    let body = serde_json::to_vec(call).map_err(|e| CallError::BadReply(e.to_string()))?;
    let namespace =
        get(env.as_ref(), binding).ok_or_else(|| unreachable(format!("no {binding} binding")))?;
    let stub = method(&namespace, "getByName")
        .and_then(|f| {
            f.call1(&namespace, &JsValue::from_str(shard))
                .map_err(|e| describe(&e))
        })
        .map_err(unreachable)?;
    let init = Object::new();
    let set = |k: &str, v: &JsValue| Reflect::set(&init, &JsValue::from_str(k), v).is_ok();
    let bytes = Uint8Array::from(body.as_slice());
    let mut ok = set("method", &JsValue::from_str("POST")) && set("body", &bytes);
    if let Some(signal) = call_signal(signal, timeout_ms) {
        ok = ok && set("signal", &signal);
    }
    if !ok {
        return Err(unreachable("cannot build the request".into()));
    }
    let url = JsValue::from_str(&format!("https://matcher{}", C::PATH));
    let fetch = method(&stub, "fetch").map_err(unreachable)?;
    let response = promised(fetch.call2(&stub, &url, &init))
        .await
        .map_err(|e| thrown(&e))?;
    let status = get(&response, "status")
        .and_then(|s| s.as_f64())
        .unwrap_or(0.0) as u16;
    let read = method(&response, "arrayBuffer").map_err(CallError::BadReply)?;
    let buffer = promised(read.call0(&response))
        .await
        .map_err(|e| thrown(&e))?;
    decode_reply::<C>(status, &Uint8Array::new(&buffer).to_vec())
}

/// What a rejected call means.
fn thrown(error: &JsValue) -> CallError {
    let text = describe(error);
    let overloaded = get(error, "overloaded").and_then(|o| o.as_bool()) == Some(true);
    if overloaded || is_overloaded(&text) {
        CallError::Overloaded(text)
    } else if text.starts_with("TimeoutError") {
        CallError::NoReplyInTime
    } else {
        CallError::Unreachable(text)
    }
}
