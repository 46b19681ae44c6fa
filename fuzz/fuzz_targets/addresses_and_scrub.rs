//! Addresses from untrusted text: `scrub` (log lines),
//! `client_ip::client_ip` / `proxy_ip` / `parse_addr` (forwarding headers),
//! `client_ip::offer_sdp`, `candidate_addrs`, `best_candidate_addr` (offers
//! and their ICE candidates), and the geolocation wrappers
//! `handlers::client_country` / `offer_country` on the embedded table.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use snowflake_broker::client_ip::{self, is_public};
use snowflake_broker::config::Config;
use snowflake_broker::handlers;
use snowflake_broker::scrub::scrub;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// An address made of the input's last bytes (v4 or v6 by their count).
fn address_from(data: &[u8]) -> IpAddr {
    let mut bytes = [0u8; 16];
    let tail = &data[data.len().saturating_sub(16)..];
    bytes[..tail.len()].copy_from_slice(tail);
    if data.first().is_some_and(|b| b % 2 == 0) {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    } else {
        Ipv6Addr::from(bytes).into()
    }
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_lookup(|_| None).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);

    let _ = scrub(&text);
    // Any address written between spaces is scrubbed, whatever surrounds it
    // (scrub is not idempotent on glued text: in `[v6]:8.420::12` the first
    // pass scrubs `[v6]:8` and keeps `.420::12`, glued to the port; a second
    // pass sees `420::12` after `]` and scrubs it too).
    let ip = address_from(data);
    let written = match (ip, data.len() % 3) {
        (IpAddr::V6(v6), 0) => format!("[{v6}]:{}", data.len() % 65536),
        (IpAddr::V6(v6), 1) => format!("[{v6}]"),
        _ => ip.to_string(),
    };
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (a, b) = text.split_at(mid);
    let line = format!("{a} {written} {b}");
    let out = scrub(&line);
    assert!(
        !out.contains(&format!(" {written} ")),
        "{written} left in {out:?}"
    );
    assert!(
        out.contains(" [scrubbed] "),
        "{written} not scrubbed in {out:?}"
    );

    // Headers: the whole input as either header, and split at the first
    // newline into `Forwarded` and `X-Forwarded-For`.
    let (forwarded, xff) = text.split_once('\n').unwrap_or((&text, &text));
    for hops in [0, 1, 2, 7, usize::MAX] {
        if let Some(ip) = client_ip::client_ip(Some(forwarded), Some(xff), hops) {
            assert!(is_public(ip), "client_ip gave non-public {ip}");
        }
        let _ = client_ip::client_ip(None, Some(&text), hops);
        let _ = client_ip::proxy_ip(Some(forwarded), Some(xff), hops);
        let _ = client_ip::proxy_ip(Some(&text), None, hops);
    }
    let _ = client_ip::parse_addr(&text);
    let _ = handlers::client_country(config(), Some(xff));

    // Offers and SDPs: the input as an SDP, and as an offer's JSON.
    let addrs = client_ip::candidate_addrs(&text);
    if let Some(best) = client_ip::best_candidate_addr(&text) {
        assert!(addrs.contains(&best));
        assert!(is_public(best));
    }
    if let Some(sdp) = client_ip::offer_sdp(&text) {
        let _ = client_ip::candidate_addrs(&sdp);
        let _ = client_ip::best_candidate_addr(&sdp);
    }
    let _ = handlers::offer_country(&text);
});
