//! Request URLs: `routes::route` on a raw path and query (split at the
//! first `?`), both as given and percent-encoded as the Worker's URL parser
//! would give it; for the AMP subtree `amp::decode_path` and
//! `handlers::amp_client` with the default settings (both also run on the
//! whole input). Every AMP refusal must be a 200 AMP page whose armor
//! carries `{"error":…}`; a redirect's `Location` must be a valid header
//! value that does not redirect again.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use snowflake_broker::config::Config;
use snowflake_broker::routes::{self, Route};
use snowflake_broker::{amp, handlers};
use std::sync::OnceLock;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_lookup(|_| None).unwrap())
}

fn check_amp(suffix: &str) {
    let _ = amp::decode_path(suffix).map_err(|e| e.to_string());
    match handlers::amp_client(config(), suffix, 0) {
        Ok(offer) => assert!(!offer.offer.is_empty()),
        Err(reply) => {
            assert_eq!(reply.status, 200);
            assert_eq!(reply.content_type, Some("text/html"));
            let json = common::armored_json(&reply.body);
            assert!(json.get("error").is_some_and(|e| e.is_string()), "{json:?}");
        }
    }
}

/// A redirect's `Location` is sent as a header: its path part must be a
/// valid header value that a browser requests unchanged, i.e. re-escaped as
/// Go's `url.URL.String()` does (visible ASCII, no raw `?` or `#`), and
/// following it must not redirect again (the Worker's `Headers.set` throws on
/// CR, LF, NUL and characters above U+00FF). Fuzzing found both broken
/// (fixed in 956381e; tests/fuzz_regressions.rs keeps the inputs).
fn check_redirect(location: &str, query: Option<&str>) {
    let path = match query {
        Some(q) if !q.is_empty() => location
            .strip_suffix(q)
            .and_then(|l| l.strip_suffix('?'))
            .unwrap_or_else(|| panic!("{location:?} does not end with the query {q:?}")),
        _ => location,
    };
    assert!(
        path.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#'),
        "Location path {path:?} is not escaped"
    );
    let again = routes::route(path, None);
    // `/amp/client` redirects once more to `/amp/client/`, as in Go.
    assert!(
        !matches!(&again, Route::Redirect(to) if !(path == "/amp/client" && to == "/amp/client/")),
        "{path:?} redirects again to {again:?}"
    );
}

/// `raw` as the Worker's `url.path()` can give it: starting with `/`, every
/// byte that is not visible ASCII (and `?`, `#`) percent-encoded.
fn as_url_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 1);
    if !raw.starts_with('/') {
        out.push('/');
    }
    for b in raw.bytes() {
        if b.is_ascii_graphic() && b != b'?' && b != b'#' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_route(path: &str, query: Option<&str>, realistic: bool) {
    let cleaned = routes::clean_path(path);
    assert_eq!(
        routes::clean_path(&cleaned),
        cleaned,
        "clean_path is not idempotent"
    );
    let route = routes::route(path, query);
    let _ = route.has_cors();
    match &route {
        Route::Redirect(location) => {
            if realistic {
                check_redirect(location, query);
            }
            let _ = handlers::Reply::moved(location, true);
        }
        Route::AmpClient(suffix) => check_amp(suffix),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let url = common::text(data);
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url.as_str(), None),
    };
    // Any text must not panic; a path as the Worker sees it must also give
    // a valid redirect.
    check_route(path, query, false);
    check_route(&as_url_path(path), query, true);
    check_amp(&url);
});
