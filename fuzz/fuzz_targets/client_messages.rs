//! `/client` bodies in both formats: `ClientOffer::decode` (`1.0\n{json}`),
//! `ClientOffer::decode_legacy` (raw offer + `Snowflake-NAT-Type`),
//! `sdp::validate` and `handlers::client` with the default settings.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use snowflake_broker::config::Config;
use snowflake_broker::handlers::{self, ClientFormat};
use snowflake_broker::protocol::client::{self, ClientOffer};
use snowflake_broker::protocol::sdp;
use std::sync::OnceLock;

const DEFAULT_RELAY: &str = "wss://snowflake.torproject.net/";

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_lookup(|_| None).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let decoded = ClientOffer::decode(data);
    if let Ok(offer) = &decoded {
        assert!(!offer.offer.is_empty());
        assert!(sdp::validate(&offer.offer).is_ok());
    }

    // The NAT header: absent, a valid one, and a prefix of the body (so
    // arbitrary header text is fuzzed too).
    let prefix = common::text(&data[..data.len().min(16)]);
    for header in [None, Some("restricted"), Some(prefix.as_str())] {
        if let Ok(offer) = ClientOffer::decode_legacy(data, header) {
            assert!(sdp::validate(&offer.offer).is_ok());
        }
        match handlers::client(config(), data, header, 0) {
            Ok((offer, format)) => {
                assert_eq!(format == ClientFormat::Legacy, client::is_legacy(data));
                // The default settings know only the default bridge.
                assert_eq!(offer.relay_url, DEFAULT_RELAY);
                if format == ClientFormat::V1 {
                    assert_eq!(Some(&offer.offer), decoded.as_ref().ok().map(|o| &o.offer));
                }
            }
            Err(reply) if client::is_legacy(data) || reply.status != 200 => {
                assert!(matches!(reply.status, 400 | 500), "status {}", reply.status);
            }
            Err(reply) => {
                // A 1.0 client always gets 200 with `{"error":…}`.
                let json = common::json_object(&reply.body);
                assert!(json.get("error").is_some_and(|e| e.is_string()));
            }
        }
    }

    let _ = sdp::validate(&common::text(data));
});
