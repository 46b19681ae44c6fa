//! The Tor Snowflake rendezvous broker as a Cloudflare Worker.
//!
//! Everything outside `worker` is plain Rust with no platform types, tested
//! natively with `cargo test`; `worker` is the thin wasm32 shell (fetch handler
//! and the matcher Durable Object). See README.md for a map of the code.

// A panic in the wasm module resets every Durable Object in the isolate and
// drops every parked proxy and client, so code that can panic is refused.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod amp;
pub mod client_ip;
pub mod config;
pub mod debug;
pub mod geoip;
pub mod handlers;
pub mod matcher;
pub mod metrics;
pub mod protocol;
pub mod routes;
pub mod scrub;

#[cfg(target_arch = "wasm32")]
mod worker;
