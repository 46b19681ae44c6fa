//! Reading the settings from the Worker's environment, once per isolate.

use crate::config::{is_setting, Config, ConfigError, SqsSetting};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::Env;

pub type Loaded = Rc<Result<Config, ConfigError>>;

thread_local! {
    // Vars cannot change without a new deploy, which starts a new isolate.
    static CACHE: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// A var as text. `[vars]` values should be strings, but wrangler also
/// accepts numbers and booleans there; read those as their text rather than
/// silently ignoring them.
fn var(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    if let Some(s) = value.as_string() {
        return Some(s);
    }
    if let Some(n) = value.as_f64() {
        return Some(format!("{n}"));
    }
    value.as_bool().map(|b| b.to_string())
}

pub fn load(env: &Env) -> Loaded {
    if let Some(loaded) = CACHE.with(|c| c.borrow().clone()) {
        return loaded;
    }
    let loaded: Loaded = Rc::new(Config::from_lookup(|name| {
        if is_setting(name) {
            var(env, name)
        } else {
            None
        }
    }));
    match loaded.as_ref() {
        Err(e) => super::log::error(&format!(
            "snowflake-broker: {e}; matching requests get 500 until it is fixed"
        )),
        Ok(c) => {
            super::log::set_unsafe(c.unsafe_logging);
            if let SqsSetting::Broken(e) = &c.sqs {
                super::log::error(&format!(
                    "snowflake-broker: SQS rendezvous is off: {e}; HTTP and AMP rendezvous are not affected"
                ));
            }
        }
    }
    CACHE.with(|c| *c.borrow_mut() = Some(loaded.clone()));
    loaded
}
