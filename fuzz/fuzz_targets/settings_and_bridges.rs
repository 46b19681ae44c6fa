//! Settings and the bridge list: `config::Config::from_lookup` with arbitrary
//! values (the input split at NUL bytes gives the values of `SETTINGS` in
//! order; each value is also tried alone, so an early bad setting does not
//! hide the later ones), `BridgeList::parse` of the whole input, and
//! `Config::relay_pattern_accepted` with arbitrary patterns.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use snowflake_broker::config::{Config, SETTINGS};
use snowflake_broker::protocol::bridges::BridgeList;

fn check(config: &Config, values: &[&str]) {
    assert!((1..=25_000).contains(&config.proxy_poll_timeout_ms));
    assert!((1..=60_000).contains(&config.client_timeout_ms));
    assert!(!config.bridges.is_empty());
    for pattern in values {
        let _ = config.relay_pattern_accepted(Some(pattern));
    }
    let _ = config.relay_pattern_accepted(None);
}

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);

    match BridgeList::parse(&text) {
        Ok(list) => {
            assert!(!list.is_empty());
            let _ = list.has_default();
        }
        Err(e) => assert!(!e.is_empty()),
    }

    let values: Vec<&str> = text.split('\0').collect();
    let lookup = |name: &str| {
        let i = SETTINGS.iter().position(|s| s.name == name)?;
        values.get(i).map(|v| v.to_string())
    };
    match Config::from_lookup(lookup) {
        Ok(config) => check(&config, &values),
        Err(e) => {
            assert!(snowflake_broker::config::is_setting(e.setting));
            let _ = e.to_string();
        }
    }
    for (name, value) in SETTINGS.iter().zip(&values) {
        match Config::from_lookup(|k| (k == name.name).then(|| value.to_string())) {
            Ok(config) => check(&config, &[value]),
            Err(e) => assert_eq!(e.setting, name.name),
        }
    }
});
