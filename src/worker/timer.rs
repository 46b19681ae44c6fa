//! Shared deadline timers for parked requests.
//!
//! workerd allows about 10,000 active timers per Durable Object, and
//! `worker::Delay` panics (resetting every object in the isolate) when
//! `setTimeout` fails. So parked requests never get a timer each: deadlines
//! are rounded up to 100 ms buckets and every request in a bucket awaits one
//! shared timer. With a 10 s poll timeout that is at most ~150 timers however
//! many requests are parked.

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use std::cell::RefCell;
use std::collections::BTreeMap;
use wasm_bindgen::{JsCast, JsValue};

pub const BUCKET_MS: u64 = 100;

pub type Timer = Shared<LocalBoxFuture<'static, ()>>;

/// The end of the bucket `deadline` falls in: the time its timer fires.
pub fn bucket_end(deadline: u64) -> u64 {
    deadline.div_ceil(BUCKET_MS).saturating_mul(BUCKET_MS)
}

/// Resolves after `ms` milliseconds. If `setTimeout` is refused it resolves
/// at once instead of panicking; the caller re-checks deadlines anyway.
pub fn sleep(ms: u64) -> LocalBoxFuture<'static, ()> {
    let ms = f64::from(u32::try_from(ms).unwrap_or(u32::MAX));
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let scheduled = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .map(|set_timeout| set_timeout.call2(&global, &resolve, &JsValue::from_f64(ms)));
        if !matches!(scheduled, Some(Ok(_))) {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    async move {
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
    .boxed_local()
}

/// One timer per bucket end time, created on demand.
#[derive(Default)]
pub struct Timers {
    buckets: RefCell<BTreeMap<u64, Timer>>,
}

impl Timers {
    /// The shared timer that fires at `bucket_end(deadline)`.
    pub fn for_deadline(&self, deadline: u64, now: u64) -> Timer {
        let end = bucket_end(deadline);
        let mut buckets = self.buckets.borrow_mut();
        buckets
            .entry(end)
            .or_insert_with(|| sleep(end.saturating_sub(now)).shared())
            .clone()
    }

    /// Drops the timers of buckets that have fired.
    pub fn forget_until(&self, end: u64) {
        let mut buckets = self.buckets.borrow_mut();
        let later = buckets.split_off(&end.saturating_add(1));
        *buckets = later;
    }
}
