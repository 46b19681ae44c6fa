//! Inputs that `cargo fuzz` (fuzz/) found, kept as plain tests so that
//! `cargo test` guards them without a nightly-flag build. Each test names
//! the fuzz target that found it.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use snowflake_broker::routes::{route, Route};

/// Follows a `Location` as a browser does: split at the first `?`.
fn follow(location: &str) -> Route {
    match location.split_once('?') {
        Some((path, query)) => route(path, Some(query)),
        None => route(location, None),
    }
}

fn location(raw_path: &str) -> String {
    match route(raw_path, None) {
        Route::Redirect(to) => to,
        other => panic!("{raw_path:?} should redirect, got {other:?}"),
    }
}

/// Found by `amp_and_routes` (e.g. input `Li8ENQ==`, `./\x04` + `5`, which
/// the Worker sees as `/./%045` and redirected to `/\x045`). `route`
/// percent-decoded the path, cleaned it and put the *decoded* path in the
/// 301's `Location`; Go re-escapes it (`url.URL{Path: …}.String()`), and so
/// does `route` since 956381e. Unescaped, a `%0a` became a raw LF and
/// `%E2%82%AC` a character above U+00FF, and the Worker's
/// `Headers.set("Location", …)` threw a TypeError, so the request failed
/// with an exception instead of a 301.
#[test]
fn redirect_location_is_a_valid_header_value() {
    for raw in [
        "//x%0ay",
        "//x%0d%0aSet-Cookie:%20a=b",
        "//%E2%82%AC",
        "//a%00b",
    ] {
        let to = location(raw);
        assert!(
            to.bytes().all(|b| b.is_ascii_graphic()),
            "{raw:?} redirects to {to:?}, which is not a valid header value"
        );
    }
}

/// Found by `amp_and_routes` (e.g. input `Iy8uLw==`, `#/./`, which the
/// Worker sees as `/%23/./` and redirected to `/#/`, a fragment). The
/// decoded path was decoded a second time when the browser followed the
/// redirect, so `//%252e%252e` (the path segment `%2e%2e`, a name and not
/// `..`) redirected to `/%2e%2e`, which then means `/..` and redirected
/// again to `/`; an encoded `?` or `#` became the start of a query or
/// fragment. Go's Locations are `/%252e%252e`, `/a%3Fb` and `/%23/`.
#[test]
fn redirect_location_names_the_cleaned_path() {
    let to = location("//%252e%252e");
    let again = follow(&to);
    assert!(
        !matches!(again, Route::Redirect(_)),
        "//%252e%252e redirects to {to:?}, which redirects again ({again:?})"
    );
    for raw in ["//a%3fb", "/%23/./"] {
        let to = location(raw);
        assert!(!to.contains(['?', '#']), "{raw:?} redirects to {to:?}");
    }
    // What stays as it is: clean paths route directly, and the query is kept.
    assert_eq!(location("//proxy"), "/proxy");
    assert_eq!(follow(&location("//pro%78y")), Route::Proxy);
    assert_eq!(
        route("//proxy", Some("a=1")),
        Route::Redirect("/proxy?a=1".into())
    );
}
