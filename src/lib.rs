//! The Tor Snowflake rendezvous broker as a Cloudflare Worker.
//!
//! Everything outside `worker` is plain Rust with no platform types, tested
//! natively with `cargo test`; `worker` is the thin wasm32 shell (fetch handler
//! and the matcher Durable Object). See README.md for a map of the code.

// Code that can panic is refused by the `[lints]` table in Cargo.toml.

pub mod amp;
pub mod client_ip;
pub mod config;
pub mod debug;
pub mod geoip;
pub mod handlers;
pub mod hex;
pub mod matcher;
pub mod metrics;
pub mod protocol;
pub mod refusals;
pub mod routes;
pub mod scrub;
pub mod sqs;

#[cfg(target_arch = "wasm32")]
mod worker;
