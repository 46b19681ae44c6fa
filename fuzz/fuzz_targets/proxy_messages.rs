//! `/proxy` and `/answer` bodies: `ProxyPoll::decode`, `ProxyAnswer::decode`,
//! `sdp::validate` and the handlers that wrap them (`handlers::proxy_poll`,
//! `handlers::answer`) with the default settings.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use snowflake_broker::config::Config;
use snowflake_broker::handlers::{self, PollCheck};
use snowflake_broker::protocol::proxy::{ProxyAnswer, ProxyPoll};
use snowflake_broker::protocol::{has_candidate, sdp, READ_LIMIT};
use std::sync::OnceLock;

fn default_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_lookup(|_| None).unwrap())
}

fn config_with_default_pattern() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        // A default relay pattern too, so pattern-less polls are accepted
        // and reach the accepted branch.
        Config::from_lookup(|k| {
            (k == "DEFAULT_RELAY_PATTERN").then(|| "snowflake.torproject.net$".to_string())
        })
        .expect("valid settings")
    })
}

fuzz_target!(|data: &[u8]| {
    let poll = ProxyPoll::decode(data);
    if let Ok(p) = &poll {
        assert!(!p.sid.is_empty(), "accepted a poll without a sid");
        assert!(p.clients >= 0, "negative client count {}", p.clients);
    }
    let answer = ProxyAnswer::decode(data);
    if let Ok(a) = &answer {
        assert!(!a.sid.is_empty() && !a.answer.is_empty());
        assert!(sdp::validate(&a.answer).is_ok());
    }
    // Only error texts of these are shown (in logs).
    if let Err(e) = &poll {
        let _ = e.to_string();
    }
    if let Err(e) = &answer {
        let _ = e.to_string();
    }

    for config in [default_config(), config_with_default_pattern()] {
        match handlers::proxy_poll(config, data) {
            Ok(PollCheck::Accepted { poll: p, .. }) => {
                let decoded = poll.as_ref().expect("accepted a poll ProxyPoll refuses");
                assert_eq!(p.sid, decoded.sid);
            }
            Ok(PollCheck::Rejected { reply, .. }) => {
                assert_eq!(reply.status, 200);
                let json = common::json_object(&reply.body);
                assert_eq!(json["Status"], "incorrect relay pattern");
            }
            Err(reply) => {
                assert_eq!(reply.status, 400);
                assert!(poll.is_err() || data.len() > READ_LIMIT);
            }
        }
    }
    match handlers::answer(data) {
        Ok(a) => {
            assert!(has_candidate(data));
            assert_eq!(Some(&a), answer.as_ref().ok());
        }
        Err(reply) => assert_eq!(reply.status, 400),
    }

    let _ = sdp::validate(&common::text(data));
});
