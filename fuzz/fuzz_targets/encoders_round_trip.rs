//! The encoders round-trip:
//!
//! * `amp::encode_armor` of arbitrary bytes decodes back to them (a tiny
//!   decoder: the text between `<pre>` and `</pre>`, whitespace stripped,
//!   the leading `0` dropped, base64);
//! * `protocol::json::go_string` is a JSON string literal that serde_json
//!   reads back as the same string, and the response builders
//!   (`poll_response`, `answer_response`, `error_response`) are JSON objects
//!   carrying their arguments;
//! * base64url of arbitrary bytes behind `0<junk>/` is what
//!   `amp::decode_path` decodes.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use snowflake_broker::amp;
use snowflake_broker::protocol::client::{answer_response, error_response};
use snowflake_broker::protocol::json::{go_lossy_utf8, go_string};
use snowflake_broker::protocol::proxy::poll_response;

fuzz_target!(|data: &[u8]| {
    // AMP armor.
    let page = amp::encode_armor(data);
    assert!(page.starts_with(amp::armor::HEADER) && page.ends_with(amp::armor::TRAILER));
    let back = common::decode_armor(&page).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, data, "armor does not round-trip");

    // Go-escaped JSON strings.
    let s = go_lossy_utf8(data);
    let literal = go_string(&s);
    assert!(
        !literal.contains(['<', '>', '&', '\u{2028}', '\u{2029}']),
        "unescaped HTML-unsafe character in {literal:?}"
    );
    let parsed: String = serde_json::from_str(&literal)
        .unwrap_or_else(|e| panic!("go_string gave invalid JSON {literal:?}: {e}"));
    assert_eq!(parsed, s);

    let poll = common::json_object(&poll_response(&s, &s, &s, u64::from(data.len() as u32), &s));
    for key in ["Status", "Offer", "NAT", "RelayURL"] {
        assert_eq!(poll[key].as_str(), Some(&*s), "{key}");
    }
    assert_eq!(
        poll["NextPoll"].as_u64(),
        Some(u64::from(data.len() as u32))
    );
    assert_eq!(
        common::json_object(&answer_response(&s))["answer"].as_str(),
        Some(&*s)
    );
    assert_eq!(
        common::json_object(&error_response(&s))["error"].as_str(),
        Some(&*s)
    );

    // AMP path: `0` + junk without `/` + `/` + base64url(data).
    let junk: String = s.chars().filter(|c| *c != '/').take(8).collect();
    let path = format!("0{junk}/{}", URL_SAFE_NO_PAD.encode(data));
    assert_eq!(
        amp::decode_path(&path).as_deref(),
        Ok(data),
        "path {path:?}"
    );
});
