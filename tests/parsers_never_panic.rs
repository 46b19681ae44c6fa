//! Every parser of untrusted input returns an error rather than panicking,
//! whatever bytes arrive (a panic would reset every Durable Object).

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use snowflake_broker::config::Config;
use snowflake_broker::protocol::bridges::BridgeList;
use snowflake_broker::protocol::client::ClientOffer;
use snowflake_broker::protocol::proxy::{ProxyAnswer, ProxyPoll};
use snowflake_broker::{amp, handlers, routes};

fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    // Mostly JSON-shaped noise, so the fuzzing reaches past the first byte.
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\"".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"null".to_vec()),
        Just(b"\"Sid\"".to_vec()),
        Just(b"\"Version\"".to_vec()),
        Just(b"\"1.3\"".to_vec()),
        Just(b"\"Answer\"".to_vec()),
        Just(b"\"offer\"".to_vec()),
        Just(b"1.0\n".to_vec()),
        Just(b"a=candidate".to_vec()),
        Just(b"-9e99".to_vec()),
        Just(b"\\u00".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(b"[".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn message_parsers(body in json_ish(), header in proptest::option::of(".{0,12}")) {
        let _ = ProxyPoll::decode(&body);
        let _ = ProxyAnswer::decode(&body);
        let _ = ClientOffer::decode(&body);
        let _ = ClientOffer::decode_legacy(&body, header.as_deref());
        let config = Config::from_lookup(|_| None).unwrap();
        let _ = handlers::proxy_poll(&config, &body);
        let _ = handlers::client(&config, &body, header.as_deref(), 0);
        let _ = handlers::answer(&body);
        let text = String::from_utf8_lossy(&body);
        let _ = BridgeList::parse(&text);
        let _ = amp::decode_path(&text);
        let _ = handlers::amp_client(&config, &text, 0);
        let _ = routes::route(&text, Some(&text));
    }

    #[test]
    fn settings(value in ".{0,40}", name in prop::sample::select(snowflake_broker::config::SETTINGS.map(|s| s.name).to_vec())) {
        let _ = Config::from_lookup(|k| (k == name).then(|| value.clone()));
    }
}
