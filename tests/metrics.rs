//! The metrics core as the broker's outputs show it: `/metrics` descriptors
//! (docs/protocol.md §5.1, §12.10, §9 #40–#46 and N's own tests), `/prometheus`
//! text (§5.3, §12.11), log scrubbing (§5.4), client addresses (§12.7–8),
//! and the guarantees the Durable Object shell relies on: serde round trips
//! and identical output whatever the number of shards.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use snowflake_broker::client_ip::*;
use snowflake_broker::metrics::*;
use snowflake_broker::protocol::nat::Nat;
use snowflake_broker::protocol::proxy::ProxyType;
use snowflake_broker::scrub::scrub;
use std::collections::BTreeMap;
use std::net::IpAddr;

const END: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
const DAY: u64 = 86_400;

fn hasher() -> IpHasher {
    IpHasher::for_period([42; 16], END - DAY)
}

fn key(ip: &str) -> IpKey {
    hasher().key(ip.parse().unwrap())
}

fn cc(code: &str) -> Country {
    Country::new(Some(code))
}

/// One proxy poll as the broker reports it when no client comes: decoded
/// with a relay pattern, accepted, parked, then `no match`.
fn idle_poll(m: &mut BrokerMetrics, ip: &str, country: &str, nat: Nat, kind: ProxyType) {
    m.proxy_poll(nat, kind, true);
    m.proxy_accepted(key(ip), cc(country), nat, kind);
    m.proxy_parked(nat, kind);
    m.proxy_unparked(nat, kind);
    m.proxy_idle(nat, kind);
}

fn descriptor(m: &BrokerMetrics) -> String {
    m.period.descriptor(END, DAY)
}

/// The client part of the block, from `client-denied-count` to
/// `client-sqs-ips`, as N's tests compare it.
fn client_lines(block: &str) -> String {
    block
        .lines()
        .skip_while(|l| !l.starts_with("client-denied-count"))
        .take_while(|l| !l.starts_with("snowflake-ips-nat"))
        .map(|l| format!("{l}\n"))
        .collect()
}

const EMPTY_BLOCK: &str = "snowflake-stats-end 2023-11-14 22:13:20 (86400 s)
snowflake-ips \nsnowflake-ips-standalone 0
snowflake-ips-webext 0
snowflake-ips-badge 0
snowflake-ips-iptproxy 0
snowflake-ips-bloco 0
snowflake-ips-total 0
snowflake-idle-count 0
snowflake-proxy-poll-with-relay-url-count 0
snowflake-proxy-poll-without-relay-url-count 0
snowflake-proxy-rejected-for-relay-url-count 0
client-denied-count 0
client-restricted-denied-count 0
client-unrestricted-denied-count 0
client-nat-strict-denied-count 0
client-nat-moderate-denied-count 0
client-nat-open-denied-count 0
client-nat-unknown-denied-count 0
client-snowflake-match-count 0
client-snowflake-timeout-count 0
client-http-count 0
client-http-ips \nclient-ampcache-count 0
client-ampcache-ips \nclient-sqs-count 0
client-sqs-ips \nsnowflake-ips-nat-restricted 0
snowflake-ips-nat-unrestricted 0
snowflake-ips-nat-unknown 0
snowflake-ips-nat-strict 0
snowflake-ips-nat-moderate 0
snowflake-ips-nat-open 0
";

// ---------------------------------------------------------------- descriptor

#[test]
fn empty_period_prints_every_line_with_trailing_spaces_on_empty_lists() {
    assert_eq!(descriptor(&BrokerMetrics::default()), EMPTY_BLOCK);
}

#[test]
fn header_uses_the_given_end_and_period_length() {
    let block = PeriodStats::default().descriptor(1_709_164_800 + 3_723, 3_600);
    assert!(block.starts_with("snowflake-stats-end 2024-02-29 01:02:03 (3600 s)\n"));
    let block = PeriodStats::default().descriptor(0, 86_400);
    assert!(block.starts_with("snowflake-stats-end 1970-01-01 00:00:00 (86400 s)\n"));
}

/// N's TestMetricsForProxyPolls: four CA addresses, one per type (absent,
/// standalone, badge, webext), each poll idle.
#[test]
fn proxy_polls_from_four_addresses_give_n_block() {
    let mut m = BrokerMetrics::default();
    for (i, kind) in ["", "standalone", "badge", "webext"]
        .into_iter()
        .enumerate()
    {
        let ip = format!("129.97.208.{}", 23 + i);
        idle_poll(&mut m, &ip, "CA", Nat::Unknown, ProxyType::parse(kind));
    }
    assert_eq!(
        descriptor(&m),
        "snowflake-stats-end 2023-11-14 22:13:20 (86400 s)
snowflake-ips CA=4
snowflake-ips-standalone 1
snowflake-ips-webext 1
snowflake-ips-badge 1
snowflake-ips-iptproxy 0
snowflake-ips-bloco 0
snowflake-ips-total 4
snowflake-idle-count 8
snowflake-proxy-poll-with-relay-url-count 8
snowflake-proxy-poll-without-relay-url-count 0
snowflake-proxy-rejected-for-relay-url-count 0
client-denied-count 0
client-restricted-denied-count 0
client-unrestricted-denied-count 0
client-nat-strict-denied-count 0
client-nat-moderate-denied-count 0
client-nat-open-denied-count 0
client-nat-unknown-denied-count 0
client-snowflake-match-count 0
client-snowflake-timeout-count 0
client-http-count 0
client-http-ips \nclient-ampcache-count 0
client-ampcache-ips \nclient-sqs-count 0
client-sqs-ips \nsnowflake-ips-nat-restricted 0
snowflake-ips-nat-unrestricted 0
snowflake-ips-nat-unknown 4
snowflake-ips-nat-strict 0
snowflake-ips-nat-moderate 0
snowflake-ips-nat-open 0
"
    );
}

/// §9 #40 with N's semantics: one address polling as four types counts
/// once in total and country, once per known type, once for its NAT.
#[test]
fn one_address_polling_as_four_types_counts_once_per_type() {
    let mut m = BrokerMetrics::default();
    for kind in ["", "standalone", "badge", "webext"] {
        m.proxy_poll(Nat::Unknown, ProxyType::parse(kind), false);
        m.proxy_accepted(
            key("129.97.208.23"),
            cc("CA"),
            Nat::Unknown,
            ProxyType::parse(kind),
        );
        m.proxy_idle(Nat::Unknown, ProxyType::parse(kind));
    }
    let block = descriptor(&m);
    assert!(block.starts_with(
        "snowflake-stats-end 2023-11-14 22:13:20 (86400 s)\nsnowflake-ips CA=1\n\
         snowflake-ips-standalone 1\nsnowflake-ips-webext 1\nsnowflake-ips-badge 1\n\
         snowflake-ips-iptproxy 0\nsnowflake-ips-bloco 0\nsnowflake-ips-total 1\n\
         snowflake-idle-count 8\nsnowflake-proxy-poll-with-relay-url-count 0\n\
         snowflake-proxy-poll-without-relay-url-count 8\n"
    ));
    assert!(block.ends_with(
        "snowflake-ips-nat-restricted 0\nsnowflake-ips-nat-unrestricted 0\n\
         snowflake-ips-nat-unknown 1\nsnowflake-ips-nat-strict 0\n\
         snowflake-ips-nat-moderate 0\nsnowflake-ips-nat-open 0\n"
    ));
    assert!(!block.contains("snowflake-ips-unknown"));
}

/// §9 #41 and N's TestMetricsForNoProxiesAvailable: a denied client, then
/// the next period starts from zero.
#[test]
fn denied_client_then_reset() {
    let mut m = BrokerMetrics::default();
    m.client(
        Rendezvous::Http,
        Nat::Unknown,
        cc("CA"),
        ClientStatus::Denied,
    );
    assert_eq!(
        client_lines(&descriptor(&m)),
        "client-denied-count 8
client-restricted-denied-count 0
client-unrestricted-denied-count 0
client-nat-strict-denied-count 0
client-nat-moderate-denied-count 0
client-nat-open-denied-count 0
client-nat-unknown-denied-count 8
client-snowflake-match-count 0
client-snowflake-timeout-count 0
client-http-count 8
client-http-ips CA=8
client-ampcache-count 0
client-ampcache-ips \nclient-sqs-count 0
client-sqs-ips \n"
    );
    let closed = m.take_period();
    assert_eq!(closed.counters.client_denied, 1);
    m.proxy_accepted(key("8.8.8.8"), cc("US"), Nat::Open, ProxyType::Webext);
    m.take_period();
    assert_eq!(descriptor(&m), EMPTY_BLOCK);
    // Lifetime counters are not reset with the period.
    assert!(m.prometheus().contains(
        "snowflake_rounded_client_poll_total{cc=\"CA\",nat=\"unknown\",rendezvous_method=\"http\",status=\"denied\"} 8\n"
    ));
}

/// N's expected blocks for HTTP, legacy and AMP clients (`??` when the
/// client's country is unknown).
#[test]
fn client_outcomes_per_rendezvous_method() {
    let cases = [
        (Rendezvous::Http, Nat::Unknown, ClientStatus::Matched, "client-denied-count 0\nclient-restricted-denied-count 0\nclient-unrestricted-denied-count 0\nclient-nat-strict-denied-count 0\nclient-nat-moderate-denied-count 0\nclient-nat-open-denied-count 0\nclient-nat-unknown-denied-count 0\nclient-snowflake-match-count 8\nclient-snowflake-timeout-count 0\nclient-http-count 8\nclient-http-ips ??=8\nclient-ampcache-count 0\nclient-ampcache-ips \nclient-sqs-count 0\nclient-sqs-ips \n"),
        (Rendezvous::Http, Nat::Restricted, ClientStatus::Denied, "client-denied-count 8\nclient-restricted-denied-count 8\nclient-unrestricted-denied-count 0\nclient-nat-strict-denied-count 0\nclient-nat-moderate-denied-count 0\nclient-nat-open-denied-count 0\nclient-nat-unknown-denied-count 0\nclient-snowflake-match-count 0\nclient-snowflake-timeout-count 0\nclient-http-count 8\nclient-http-ips ??=8\nclient-ampcache-count 0\nclient-ampcache-ips \nclient-sqs-count 0\nclient-sqs-ips \n"),
        (Rendezvous::Ampcache, Nat::Unknown, ClientStatus::Denied, "client-denied-count 8\nclient-restricted-denied-count 0\nclient-unrestricted-denied-count 0\nclient-nat-strict-denied-count 0\nclient-nat-moderate-denied-count 0\nclient-nat-open-denied-count 0\nclient-nat-unknown-denied-count 8\nclient-snowflake-match-count 0\nclient-snowflake-timeout-count 0\nclient-http-count 0\nclient-http-ips \nclient-ampcache-count 8\nclient-ampcache-ips ??=8\nclient-sqs-count 0\nclient-sqs-ips \n"),
        (Rendezvous::Ampcache, Nat::Unknown, ClientStatus::Matched, "client-denied-count 0\nclient-restricted-denied-count 0\nclient-unrestricted-denied-count 0\nclient-nat-strict-denied-count 0\nclient-nat-moderate-denied-count 0\nclient-nat-open-denied-count 0\nclient-nat-unknown-denied-count 0\nclient-snowflake-match-count 8\nclient-snowflake-timeout-count 0\nclient-http-count 0\nclient-http-ips \nclient-ampcache-count 8\nclient-ampcache-ips ??=8\nclient-sqs-count 0\nclient-sqs-ips \n"),
        (Rendezvous::Http, Nat::Open, ClientStatus::TimedOut, "client-denied-count 0\nclient-restricted-denied-count 0\nclient-unrestricted-denied-count 0\nclient-nat-strict-denied-count 0\nclient-nat-moderate-denied-count 0\nclient-nat-open-denied-count 0\nclient-nat-unknown-denied-count 0\nclient-snowflake-match-count 0\nclient-snowflake-timeout-count 8\nclient-http-count 8\nclient-http-ips ??=8\nclient-ampcache-count 0\nclient-ampcache-ips \nclient-sqs-count 0\nclient-sqs-ips \n"),
    ];
    for (method, nat, outcome, want) in cases {
        let mut m = BrokerMetrics::default();
        m.client(method, nat, Country::UNKNOWN, outcome);
        assert_eq!(
            client_lines(&descriptor(&m)),
            want,
            "{method:?} {nat:?} {outcome:?}"
        );
    }
}

/// §9 #42: binning at the boundary, without a reset in between.
#[test]
fn denials_are_binned_to_multiples_of_eight() {
    let mut m = BrokerMetrics::default();
    for _ in 0..8 {
        m.client(
            Rendezvous::Http,
            Nat::Restricted,
            cc("CA"),
            ClientStatus::Denied,
        );
    }
    let block = descriptor(&m);
    assert!(block.contains("\nclient-denied-count 8\nclient-restricted-denied-count 8\n"));
    assert!(block.contains("\nclient-http-count 8\nclient-http-ips CA=8\n"));
    m.client(
        Rendezvous::Http,
        Nat::Restricted,
        cc("CA"),
        ClientStatus::Denied,
    );
    let block = descriptor(&m);
    assert!(block.contains("\nclient-denied-count 16\nclient-restricted-denied-count 16\n"));
    assert!(block.contains("\nclient-http-count 16\nclient-http-ips CA=16\n"));
}

/// §9 #43: the same address twice is one proxy.
#[test]
fn same_address_twice_is_one_proxy() {
    let mut m = BrokerMetrics::default();
    idle_poll(
        &mut m,
        "129.97.208.23",
        "CA",
        Nat::Unknown,
        ProxyType::Unknown,
    );
    idle_poll(
        &mut m,
        "129.97.208.23",
        "CA",
        Nat::Unknown,
        ProxyType::Unknown,
    );
    let block = descriptor(&m);
    assert!(block.contains("\nsnowflake-ips CA=1\n"));
    assert!(block.contains("\nsnowflake-ips-total 1\n"));
    assert!(block.contains("\nsnowflake-idle-count 8\n"));
}

/// An IPv6 proxy counts once per /64 (one host may use any address in its
/// /64; counting /128s would let one machine be millions of addresses).
#[test]
fn ipv6_addresses_count_by_their_64() {
    let mut m = BrokerMetrics::default();
    for ip in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff:ffff:ffff:ffff",
    ] {
        idle_poll(&mut m, ip, "DE", Nat::Unknown, ProxyType::Standalone);
    }
    idle_poll(
        &mut m,
        "2001:db8:1:3::1",
        "DE",
        Nat::Unknown,
        ProxyType::Standalone,
    );
    let block = descriptor(&m);
    assert!(block.contains("\nsnowflake-ips DE=2\n"), "{block}");
    assert!(block.contains("\nsnowflake-ips-total 2\n"), "{block}");
}

/// §9 #44 and N's TestMetricsProxyCountsByNATType, plus one address
/// seen with two NAT types (counted under both, N's per-(IP, NAT) pairs).
#[test]
fn nat_lines_count_address_nat_pairs() {
    let mut m = BrokerMetrics::default();
    idle_poll(
        &mut m,
        "129.97.208.23",
        "CA",
        Nat::Restricted,
        ProxyType::Unknown,
    );
    idle_poll(
        &mut m,
        "129.97.208.24",
        "CA",
        Nat::Unrestricted,
        ProxyType::Unknown,
    );
    assert!(descriptor(&m).ends_with(
        "snowflake-ips-nat-restricted 1\nsnowflake-ips-nat-unrestricted 1\n\
         snowflake-ips-nat-unknown 0\nsnowflake-ips-nat-strict 0\n\
         snowflake-ips-nat-moderate 0\nsnowflake-ips-nat-open 0\n"
    ));
    idle_poll(
        &mut m,
        "129.97.208.23",
        "CA",
        Nat::Strict,
        ProxyType::Unknown,
    );
    idle_poll(&mut m, "2001:4860::8", "DE", Nat::Open, ProxyType::Bloco);
    let block = descriptor(&m);
    assert!(block.contains("\nsnowflake-ips CA=2,DE=1\n"));
    assert!(block.contains("\nsnowflake-ips-bloco 1\n"));
    assert!(block.contains("\nsnowflake-ips-total 3\n"));
    assert!(block.ends_with(
        "snowflake-ips-nat-restricted 1\nsnowflake-ips-nat-unrestricted 1\n\
         snowflake-ips-nat-unknown 0\nsnowflake-ips-nat-strict 1\n\
         snowflake-ips-nat-moderate 0\nsnowflake-ips-nat-open 1\n"
    ));
}

/// §9 #45 and N's TestDeniedClientNATMetrics: each NAT name feeds exactly
/// one category line.
#[test]
fn denied_clients_by_nat_category() {
    let line_for = [
        (Nat::Restricted, "client-restricted-denied-count"),
        (Nat::Unrestricted, "client-unrestricted-denied-count"),
        (Nat::Strict, "client-nat-strict-denied-count"),
        (Nat::Moderate, "client-nat-moderate-denied-count"),
        (Nat::Open, "client-nat-open-denied-count"),
        (Nat::Unknown, "client-nat-unknown-denied-count"),
    ];
    let mut all = BrokerMetrics::default();
    for (nat, line) in line_for {
        let mut m = BrokerMetrics::default();
        m.client(
            Rendezvous::Http,
            nat,
            Country::UNKNOWN,
            ClientStatus::Denied,
        );
        all.client(
            Rendezvous::Http,
            nat,
            Country::UNKNOWN,
            ClientStatus::Denied,
        );
        let block = descriptor(&m);
        for (_, other) in line_for {
            let want = if other == line { 8 } else { 0 };
            assert!(
                block.contains(&format!("\n{other} {want}\n")),
                "{nat:?}: {other}"
            );
        }
    }
    assert!(descriptor(&all).contains(
        "client-denied-count 8\nclient-restricted-denied-count 8\n\
         client-unrestricted-denied-count 8\nclient-nat-strict-denied-count 8\n\
         client-nat-moderate-denied-count 8\nclient-nat-open-denied-count 8\n\
         client-nat-unknown-denied-count 8\n"
    ));
}

fn country_map(pairs: &[(&str, u64)]) -> BTreeMap<Country, u64> {
    pairs.iter().map(|(c, n)| (cc(c), *n)).collect()
}

/// §9 #46 and N's TestFormatAndClearCountryStats: binned lists are sorted
/// after binning.
#[test]
fn country_lists_sort_by_count_then_code() {
    let counts = country_map(&[
        ("IT", 50),
        ("FR", 200),
        ("TZ", 100),
        ("CN", 250),
        ("RU", 150),
        ("CA", 1),
        ("BE", 1),
        ("PH", 1),
        ("AT", 105),
        ("MY", 112),
        ("ZA", 108),
    ]);
    assert_eq!(
        format_country_counts(&counts, false),
        "CN=250,FR=200,RU=150,MY=112,ZA=108,AT=105,TZ=100,IT=50,BE=1,CA=1,PH=1"
    );
    assert_eq!(
        format_country_counts(&counts, true),
        "CN=256,FR=200,RU=152,AT=112,MY=112,ZA=112,TZ=104,IT=56,BE=8,CA=8,PH=8"
    );
}

#[test]
fn proxy_country_list_is_unbinned_and_client_lists_binned() {
    let mut m = BrokerMetrics::default();
    for i in 0..3 {
        idle_poll(
            &mut m,
            &format!("8.8.8.{i}"),
            "US",
            Nat::Unknown,
            ProxyType::Webext,
        );
    }
    idle_poll(&mut m, "9.9.9.9", "", Nat::Unknown, ProxyType::Webext);
    idle_poll(&mut m, "9.9.9.10", "de", Nat::Unknown, ProxyType::Webext);
    for _ in 0..9 {
        m.client(
            Rendezvous::Ampcache,
            Nat::Unknown,
            cc("IR"),
            ClientStatus::Matched,
        );
    }
    m.client(
        Rendezvous::Ampcache,
        Nat::Unknown,
        cc("RU"),
        ClientStatus::Matched,
    );
    let block = descriptor(&m);
    assert!(block.contains("\nsnowflake-ips US=3,??=1,DE=1\n"));
    assert!(block.contains("\nclient-ampcache-count 16\nclient-ampcache-ips IR=16,RU=8\n"));
}

#[test]
fn relay_pattern_counters() {
    let mut m = BrokerMetrics::default();
    m.proxy_poll(Nat::Unknown, ProxyType::Standalone, false);
    m.proxy_rejected_relay_pattern(Nat::Unknown, ProxyType::Standalone);
    for _ in 0..9 {
        m.proxy_poll(Nat::Open, ProxyType::Standalone, true);
    }
    let block = descriptor(&m);
    assert!(block.contains(
        "\nsnowflake-proxy-poll-with-relay-url-count 16\n\
         snowflake-proxy-poll-without-relay-url-count 8\n\
         snowflake-proxy-rejected-for-relay-url-count 8\n"
    ));
    // A rejected poll is not a proxy address.
    assert!(block.contains("\nsnowflake-ips-total 0\n"));
}

// ------------------------------------------------------- shards and restarts

/// One event the broker can report, for replaying streams.
#[derive(Debug, Clone)]
enum Event {
    Poll(Nat, ProxyType, bool),
    Rejected(Nat, ProxyType),
    Accepted(String, String, Nat, ProxyType),
    Parked(Nat, ProxyType),
    Unparked(Nat, ProxyType),
    Idle(Nat, ProxyType),
    Matched(Nat, ProxyType),
    Answer(AnswerStatus, Option<ProxyType>),
    Client(Rendezvous, Nat, String, ClientStatus),
}

fn apply(m: &mut BrokerMetrics, e: &Event) {
    match e {
        Event::Poll(n, t, p) => m.proxy_poll(*n, *t, *p),
        Event::Rejected(n, t) => m.proxy_rejected_relay_pattern(*n, *t),
        Event::Accepted(ip, c, n, t) => m.proxy_accepted(key(ip), cc(c), *n, *t),
        Event::Parked(n, t) => m.proxy_parked(*n, *t),
        Event::Unparked(n, t) => m.proxy_unparked(*n, *t),
        Event::Idle(n, t) => m.proxy_idle(*n, *t),
        Event::Matched(n, t) => m.proxy_matched(*n, *t),
        Event::Answer(s, t) => m.proxy_answer(*s, *t),
        Event::Client(r, n, c, o) => m.client(*r, *n, cc(c), *o),
    }
}

const NATS: [Nat; 6] = Nat::ALL;
const TYPES: [ProxyType; 6] = [
    ProxyType::Standalone,
    ProxyType::Webext,
    ProxyType::Badge,
    ProxyType::Iptproxy,
    ProxyType::Bloco,
    ProxyType::Unknown,
];
const COUNTRIES: [&str; 5] = ["CA", "DE", "IR", "", "RU"];

/// A deterministic, varied stream: a small linear congruential generator
/// picks each field, with few distinct addresses so they repeat across
/// shards (including one address seen with two countries).
fn stream(len: usize, seed: u64) -> Vec<Event> {
    let mut state = seed;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % n as u64) as usize
    };
    (0..len)
        .map(|_| {
            let nat = NATS[next(6)];
            let kind = TYPES[next(6)];
            let country = COUNTRIES[next(5)].to_string();
            match next(9) {
                0 => Event::Poll(nat, kind, next(2) == 0),
                1 => Event::Rejected(nat, kind),
                2 | 3 => {
                    let ip = if next(2) == 0 {
                        format!("198.{}.0.{}", next(3), next(40))
                    } else {
                        format!("2a00:1450::{:x}", next(40))
                    };
                    Event::Accepted(ip, country, nat, kind)
                }
                4 => Event::Idle(nat, kind),
                5 => Event::Matched(nat, kind),
                6 => {
                    let status = [AnswerStatus::Success, AnswerStatus::Timeout][next(2)];
                    Event::Answer(status, (next(3) > 0).then_some(kind))
                }
                7 if next(2) == 0 => Event::Parked(nat, kind),
                7 => Event::Unparked(nat, kind),
                _ => {
                    let method = Rendezvous::ALL[next(2)];
                    let outcome = [
                        ClientStatus::Denied,
                        ClientStatus::Matched,
                        ClientStatus::TimedOut,
                    ][next(3)];
                    Event::Client(method, nat, country, outcome)
                }
            }
        })
        .collect()
}

/// Feeds `events` to `shards` accumulators (by `pick`), merges them and
/// returns the published texts.
fn sharded(events: &[Event], shards: usize, pick: impl Fn(usize) -> usize) -> (String, String) {
    let mut parts = vec![BrokerMetrics::default(); shards];
    for (i, e) in events.iter().enumerate() {
        apply(&mut parts[pick(i) % shards], e);
    }
    let mut merged = BrokerMetrics::default();
    for p in &parts {
        merged.merge(p);
    }
    (descriptor(&merged), merged.prometheus())
}

#[test]
fn output_is_identical_with_one_two_and_four_shards() {
    let events = stream(5_000, 7);
    let one = sharded(&events, 1, |i| i);
    assert!(one.0.contains("snowflake-ips-total"));
    assert!(!one.0.contains("snowflake-ips-total 0\n"));
    for shards in [2, 4] {
        assert_eq!(
            sharded(&events, shards, |i| i),
            one,
            "{shards} shards, round robin"
        );
        assert_eq!(
            sharded(&events, shards, |i| i / 997),
            one,
            "{shards} shards, in runs"
        );
    }
}

#[test]
fn restart_mid_period_continues_the_counts() {
    let events = stream(3_000, 11);
    let mut uninterrupted = BrokerMetrics::default();
    for e in &events {
        apply(&mut uninterrupted, e);
    }
    let mut m = BrokerMetrics::default();
    for e in &events[..1_234] {
        apply(&mut m, e);
    }
    let saved = serde_json::to_string(&m).unwrap();
    let mut restored: BrokerMetrics = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored.period, m.period);
    assert_eq!(restored.lifetime, m.lifetime);
    // The gauge is not saved: a restarted object holds no parked polls.
    assert!(restored.available.series.is_empty());
    restored.available = m.available.clone();
    for e in &events[1_234..] {
        apply(&mut restored, e);
    }
    assert_eq!(descriptor(&restored), descriptor(&uninterrupted));
    assert_eq!(restored.prometheus(), uninterrupted.prometheus());
}

#[test]
fn serialized_forms_are_stable_json() {
    let mut m = BrokerMetrics::default();
    idle_poll(
        &mut m,
        "129.97.208.23",
        "CA",
        Nat::Unknown,
        ProxyType::Standalone,
    );
    m.client(
        Rendezvous::Http,
        Nat::Unknown,
        cc("CA"),
        ClientStatus::Denied,
    );
    m.proxy_answer(AnswerStatus::Timeout, None);
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["period"]["counters"]["proxy_idle"], 1);
    assert_eq!(json["period"]["counters"]["http_clients"]["CA"], 1);
    assert_eq!(json["period"]["proxies"]["v"], 1);
    // One 12-byte record is 16 characters of base64.
    assert_eq!(
        json["period"]["proxies"]["records"].as_str().unwrap().len(),
        16
    );
    assert_eq!(
        json["lifetime"]["proxy_answer"],
        serde_json::json!([[["timeout", ""], 1]])
    );
    assert!(json.get("available").is_none());
    // Missing fields default, so older snapshots still load.
    let old: BrokerMetrics =
        serde_json::from_str(r#"{"period":{"counters":{"proxy_idle":3}}}"#).unwrap();
    assert_eq!(old.period.counters.proxy_idle, 3);
    assert!(serde_json::from_str::<BrokerMetrics>(
        r#"{"period":{"proxies":{"v":1,"records":"AAAA"}}}"#
    )
    .is_err());
}

#[test]
fn an_address_seen_in_two_countries_is_counted_once_whatever_the_order() {
    let mut ab = PeriodStats::default();
    ab.proxy_seen(key("8.8.8.8"), cc("US"), Nat::Unknown, ProxyType::Unknown);
    ab.proxy_seen(key("8.8.8.8"), cc("CA"), Nat::Unknown, ProxyType::Unknown);
    let mut ba = PeriodStats::default();
    ba.proxy_seen(
        key("8.8.8.8"),
        Country::UNKNOWN,
        Nat::Unknown,
        ProxyType::Unknown,
    );
    ba.proxy_seen(key("8.8.8.8"), cc("US"), Nat::Unknown, ProxyType::Unknown);
    ba.proxy_seen(key("8.8.8.8"), cc("CA"), Nat::Unknown, ProxyType::Unknown);
    assert_eq!(ab.descriptor(END, DAY), ba.descriptor(END, DAY));
    assert!(ab.descriptor(END, DAY).contains("\nsnowflake-ips CA=1\n"));
}

fn arb_event() -> impl Strategy<Value = Event> {
    let nat = prop::sample::select(NATS.to_vec());
    let kind = prop::sample::select(TYPES.to_vec());
    let country = prop::sample::select(COUNTRIES.to_vec()).prop_map(str::to_string);
    let ip = (0u8..6, any::<bool>()).prop_map(|(n, v6)| {
        if v6 {
            format!("2a00:{n}::1")
        } else {
            format!("8.8.4.{n}")
        }
    });
    prop_oneof![
        (nat.clone(), kind.clone(), any::<bool>()).prop_map(|(n, t, p)| Event::Poll(n, t, p)),
        (nat.clone(), kind.clone()).prop_map(|(n, t)| Event::Rejected(n, t)),
        (ip, country.clone(), nat.clone(), kind.clone())
            .prop_map(|(i, c, n, t)| Event::Accepted(i, c, n, t)),
        (nat.clone(), kind.clone()).prop_map(|(n, t)| Event::Parked(n, t)),
        (nat.clone(), kind.clone()).prop_map(|(n, t)| Event::Unparked(n, t)),
        (nat.clone(), kind.clone()).prop_map(|(n, t)| Event::Idle(n, t)),
        (nat.clone(), kind.clone()).prop_map(|(n, t)| Event::Matched(n, t)),
        (any::<bool>(), prop::option::of(kind.clone())).prop_map(|(ok, t)| {
            Event::Answer(
                if ok {
                    AnswerStatus::Success
                } else {
                    AnswerStatus::Timeout
                },
                t,
            )
        }),
        (0usize..3, nat, country, 0usize..3).prop_map(|(r, n, c, o)| {
            let outcome = [
                ClientStatus::Denied,
                ClientStatus::Matched,
                ClientStatus::TimedOut,
            ][o];
            Event::Client(Rendezvous::ALL[r], n, c, outcome)
        }),
    ]
}

proptest! {
    /// Any split of any stream over any number of shards, merged in any
    /// order, publishes what one accumulator would.
    #[test]
    fn merging_any_split_matches_one_accumulator(
        events in prop::collection::vec(arb_event(), 0..200),
        assignment in prop::collection::vec(0usize..5, 200),
        reverse in any::<bool>(),
    ) {
        let one = sharded(&events, 1, |_| 0);
        let mut parts = vec![BrokerMetrics::default(); 5];
        for (e, shard) in events.iter().zip(&assignment) {
            apply(&mut parts[*shard], e);
        }
        if reverse {
            parts.reverse();
        }
        // Merge as a tree, not a chain: ((0+1)+(2+3))+4.
        let mut left = parts[0].clone();
        left.merge(&parts[1]);
        let mut right = parts[2].clone();
        right.merge(&parts[3]);
        left.merge(&right);
        left.merge(&parts[4]);
        prop_assert_eq!((descriptor(&left), left.prometheus()), one);
        // Merging a copy of itself changes no address count (idempotent sets).
        let mut twice = left.period.clone();
        twice.merge(&left.period);
        prop_assert_eq!(twice.proxies.len(), left.period.proxies.len());
    }

    #[test]
    fn serde_round_trip_preserves_everything(events in prop::collection::vec(arb_event(), 0..100)) {
        let mut m = BrokerMetrics::default();
        for e in &events {
            apply(&mut m, e);
        }
        let back: BrokerMetrics = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        prop_assert_eq!(descriptor(&back), descriptor(&m));
        prop_assert_eq!(&back.lifetime, &m.lifetime);
    }
}

// ---------------------------------------------------------------- prometheus

fn small_registry() -> BrokerMetrics {
    let mut m = BrokerMetrics::default();
    let (nat, kind) = (Nat::Unrestricted, ProxyType::Standalone);
    m.proxy_poll(nat, kind, true);
    m.proxy_accepted(key("129.97.208.23"), cc("CA"), nat, kind);
    m.proxy_parked(nat, kind);
    m.proxy_matched(nat, kind);
    m.proxy_unparked(nat, kind);
    m.proxy_answer(AnswerStatus::Success, Some(kind));
    m.proxy_poll(Nat::Unknown, ProxyType::Unknown, false);
    m.proxy_rejected_relay_pattern(Nat::Unknown, ProxyType::Unknown);
    m.proxy_poll(Nat::Open, ProxyType::Webext, true);
    m.proxy_accepted(key("2a00:1450::1"), cc("DE"), Nat::Open, ProxyType::Webext);
    m.proxy_parked(Nat::Open, ProxyType::Webext);
    m.proxy_answer(AnswerStatus::Timeout, None);
    m.client(
        Rendezvous::Http,
        Nat::Unknown,
        Country::UNKNOWN,
        ClientStatus::Matched,
    );
    for _ in 0..9 {
        m.client(
            Rendezvous::Ampcache,
            Nat::Restricted,
            cc("CA"),
            ClientStatus::Denied,
        );
    }
    m
}

const SMALL_REGISTRY_TEXT: &str = r#"# HELP snowflake_available_proxies The number of currently available snowflake proxies
# TYPE snowflake_available_proxies gauge
snowflake_available_proxies{nat="open",type="webext"} 1
snowflake_available_proxies{nat="unrestricted",type="standalone"} 0
# HELP snowflake_proxy_total The number of unique snowflake IPs
# TYPE snowflake_proxy_total counter
snowflake_proxy_total{cc="CA",nat="unrestricted",type="standalone"} 1
snowflake_proxy_total{cc="DE",nat="open",type="webext"} 1
# HELP snowflake_rounded_client_poll_total The number of snowflake client polls, rounded up to a multiple of 8
# TYPE snowflake_rounded_client_poll_total counter
snowflake_rounded_client_poll_total{cc="??",nat="unknown",rendezvous_method="http",status="matched"} 8
snowflake_rounded_client_poll_total{cc="CA",nat="restricted",rendezvous_method="ampcache",status="denied"} 16
# HELP snowflake_rounded_proxy_answer_total The number of snowflake proxy answers, rounded up to a multiple of 8
# TYPE snowflake_rounded_proxy_answer_total counter
snowflake_rounded_proxy_answer_total{status="success",type="standalone"} 8
snowflake_rounded_proxy_answer_total{status="timeout",type=""} 8
# HELP snowflake_rounded_proxy_poll_rejected_relay_url_extension_total The number of snowflake proxy polls rejected by Relay URL Extension, rounded up to a multiple of 8
# TYPE snowflake_rounded_proxy_poll_rejected_relay_url_extension_total counter
snowflake_rounded_proxy_poll_rejected_relay_url_extension_total{nat="unknown",type="unknown"} 8
# HELP snowflake_rounded_proxy_poll_total The number of snowflake proxy polls, rounded up to a multiple of 8
# TYPE snowflake_rounded_proxy_poll_total counter
snowflake_rounded_proxy_poll_total{nat="unrestricted",status="matched",type="standalone"} 8
# HELP snowflake_rounded_proxy_poll_with_relay_url_extension_total The number of snowflake proxy polls with Relay URL Extension, rounded up to a multiple of 8
# TYPE snowflake_rounded_proxy_poll_with_relay_url_extension_total counter
snowflake_rounded_proxy_poll_with_relay_url_extension_total{nat="open",type="webext"} 8
snowflake_rounded_proxy_poll_with_relay_url_extension_total{nat="unrestricted",type="standalone"} 8
# HELP snowflake_rounded_proxy_poll_without_relay_url_extension_total The number of snowflake proxy polls without Relay URL Extension, rounded up to a multiple of 8
# TYPE snowflake_rounded_proxy_poll_without_relay_url_extension_total counter
snowflake_rounded_proxy_poll_without_relay_url_extension_total{nat="unknown",type="unknown"} 8
"#;

#[test]
fn prometheus_text_is_byte_exact() {
    assert_eq!(small_registry().prometheus(), SMALL_REGISTRY_TEXT);
}

#[test]
fn prometheus_leaves_out_families_without_samples() {
    assert_eq!(BrokerMetrics::default().prometheus(), "");
    let mut m = BrokerMetrics::default();
    m.proxy_idle(Nat::Strict, ProxyType::Iptproxy);
    assert_eq!(
        m.prometheus(),
        "# HELP snowflake_rounded_proxy_poll_total The number of snowflake proxy polls, rounded up to a multiple of 8\n\
         # TYPE snowflake_rounded_proxy_poll_total counter\n\
         snowflake_rounded_proxy_poll_total{nat=\"strict\",status=\"idle\",type=\"iptproxy\"} 8\n"
    );
    assert_eq!(
        PROMETHEUS_CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn prometheus_escapes_label_values_from_storage() {
    // Label values only come from fixed vocabularies, but a damaged
    // snapshot could hold anything: it must still render valid text.
    let json = r#"{"lifetime":{"proxy_answer":[[["timeout","a\"b\\c\nd"],1]]}}"#;
    let m: BrokerMetrics = serde_json::from_str(json).unwrap();
    assert!(m.prometheus().ends_with(
        "snowflake_rounded_proxy_answer_total{status=\"timeout\",type=\"a\\\"b\\\\c\\nd\"} 8\n"
    ));
    // Samples with the wrong number of labels are dropped, not misprinted.
    let m: BrokerMetrics =
        serde_json::from_str(r#"{"lifetime":{"proxy_answer":[[["timeout"],1]]}}"#).unwrap();
    assert_eq!(m.prometheus(), "");
}

#[test]
fn rounded_counters_are_rounded_after_merging_shards() {
    let mut a = BrokerMetrics::default();
    let mut b = BrokerMetrics::default();
    for _ in 0..5 {
        a.proxy_idle(Nat::Open, ProxyType::Webext);
        b.proxy_idle(Nat::Open, ProxyType::Webext);
    }
    a.merge(&b);
    assert!(a
        .prometheus()
        .ends_with("{nat=\"open\",status=\"idle\",type=\"webext\"} 16\n"));
}

/// Runs Debian's `promtool check metrics` on the output when it is
/// installed (the `prometheus` package); skipped otherwise.
#[test]
fn promtool_accepts_the_output() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut events = stream(2_000, 3);
    events.extend(stream(500, 4));
    let mut m = small_registry();
    for e in &events {
        apply(&mut m, e);
    }
    for text in [SMALL_REGISTRY_TEXT.to_string(), m.prometheus()] {
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("promtool not installed; skipping");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------ scrubbing

#[test]
fn scrubs_the_examples_of_protocol_md() {
    let cases = [
        (
            "http: TLS handshake error from 129.97.208.23:38310: ",
            "http: TLS handshake error from [scrubbed]: ",
        ),
        ("[2620:101:f000:780:9097:75b1:519f:dbb8]:58344", "[scrubbed]"),
        (
            "client_ip=fd00%3A8888%3Abbbb%3Acccc%3Adddd%3Aeeee%3A2222%3A123",
            "client_ip=[scrubbed]",
        ),
        (
            "a=fingerprint:sha-256 33:B6:FA:F6:94:CA:74:61:45:4A:D2:1F:2C:2F:75:8A:D9:EB:23:34:B2:30:E9:1B:2A:A6:A9:E0:44:72:CC:74",
            "a=fingerprint:sha-256 33:B6:FA:F6:94:CA:74:61:45:4A:D2:1F:2C:2F:75:8A:D9:EB:23:34:B2:30:E9:1B:2A:A6:A9:E0:44:72:CC:74",
        ),
        ("2019/05/08 15:37:31 starting", "2019/05/08 15:37:31 starting"),
        // An address after a label's colon.
        ("ip:1.2.3.4", "ip:[scrubbed]"),
        ("host:2a00:1::1 z", "host:[scrubbed] z"),
        ("peer:[2a00:1::1]:443 up", "peer:[scrubbed] up"),
        ("from=ip:129.97.208.23:38310: x", "from=ip:[scrubbed]: x"),
        // ... but not a version or a time after one.
        ("v:1.2.3.4.5", "v:1.2.3.4.5"),
        ("at:15:37:31", "at:15:37:31"),
    ];
    for (input, want) in cases {
        assert_eq!(scrub(input), want, "{input}");
    }
}

#[test]
fn scrubs_upstream_test_messages() {
    let cases = [
        (
            "http2: panic serving [2620:101:f000:780:9097:75b1:519f:dbb8]:58344: interface conversion: *http2.responseWriter is not http.Hijacker: missing method Hijack\n",
            "http2: panic serving [scrubbed]: interface conversion: *http2.responseWriter is not http.Hijacker: missing method Hijack\n",
        ),
        ("(1:2:3:4:c:d:e:f) {1:2:3:4:c:d:e:f}", "([scrubbed]) {[scrubbed]}"),
        (
            "error dialing relay: wss://snowflake.torproject.net/?client_ip=6201%3ac8%3A3004%3A%3A1234",
            "error dialing relay: wss://snowflake.torproject.net/?client_ip=[scrubbed]",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(scrub(input), want, "{input}");
    }
}

#[test]
fn scrubs_every_upstream_address_format() {
    for addr in [
        "1.2.3.4",
        "255.255.255.255",
        "1.2.3.4:55",
        "255.255.255.255:65535",
        "1:2:3:4:c:d:e:f",
        "1111:2222:3333:4444:CCCC:DDDD:EEEE:FFFF",
        "[1:2:3:4:c:d:e:f]",
        "[1111:2222:3333:4444:CCCC:DDDD:EEEE:FFFF]",
        "[1:2:3:4:c:d:e:f]:55",
        "[1111:2222:3333:4444:CCCC:DDDD:EEEE:FFFF]:65535",
        "::f",
        "::d:e:f",
        "1:2:3::",
        "1:2:3::d:e:f",
        "1:2:3:d:e:f::",
        "::1:2:3:d:e:f",
        "1111:2222:3333::DDDD:EEEE:FFFF",
        "[::d:e:f]",
        "[1:2:3::]",
        "[1:2:3::d:e:f]",
        "[1111:2222:3333::DDDD:EEEE:FFFF]",
        "[1:2:3:4:5:6::8]",
        "[1::7:8]",
        "[1::]:58344",
        "[::d:e:f]:55",
        "[1:2:3::]:55",
        "[1:2:3::d:e:f]:55",
        "[1111:2222:3333::DDDD:EEEE:FFFF]:65535",
        "::255.255.255.255",
        "::ffff:255.255.255.255",
        "[::255.255.255.255]",
        "[::ffff:255.255.255.255]",
        "[::255.255.255.255]:65535",
        "[::ffff:255.255.255.255]:65535",
        "[::ffff:0:255.255.255.255]",
        "[2001:db8:3:4::192.0.2.33]",
    ] {
        assert_eq!(scrub(addr), "[scrubbed]", "{addr}");
        assert_eq!(scrub(&format!("{addr}\n")), "[scrubbed]\n", "{addr}");
    }
}

#[test]
fn scrubs_addresses_in_context() {
    let cases = [
        ("from 8.8.8.8.", "from [scrubbed]."),
        (
            "from 8.8.8.8, then 9.9.9.9;",
            "from [scrubbed], then [scrubbed];",
        ),
        ("peer=2001:4860::8888 ok", "peer=[scrubbed] ok"),
        ("addr:\t1.2.3.4\tnext", "addr:\t[scrubbed]\tnext"),
        ("\"1.2.3.4\"", "\"[scrubbed]\""),
        ("(::1)", "([scrubbed])"),
        ("ip=[::1]: refused", "ip=[scrubbed]: refused"),
        ("à 1.2.3.4 é", "à [scrubbed] é"),
        ("1.2.3.4\n5.6.7.8\n", "[scrubbed]\n[scrubbed]\n"),
        (
            "x-forwarded-for: 203.0.113.9, 198.51.100.1",
            "x-forwarded-for: [scrubbed], [scrubbed]",
        ),
        ("c=IN IP4 129.97.208.23\r\n", "c=IN IP4 [scrubbed]\r\n"),
        (
            "a=candidate:3769337065 1 udp 2122260223 129.97.208.23 56688 typ host generation 0",
            "a=candidate:3769337065 1 udp 2122260223 [scrubbed] 56688 typ host generation 0",
        ),
        (
            "a=candidate:1 1 UDP 1 2a00:1450:4001::5 9 typ srflx raddr 0.0.0.0 rport 0",
            "a=candidate:1 1 UDP 1 [scrubbed] 9 typ srflx raddr [scrubbed] rport 0",
        ),
        ("wss://1.2.3.4:443/path", "wss://[scrubbed]/path"),
        ("%3A%3A1", "[scrubbed]"),
        ("connect 1.2.3.4:", "connect [scrubbed]:"),
        (
            "dial tcp 1.2.3.4:443: i/o timeout",
            "dial tcp [scrubbed]: i/o timeout",
        ),
        ("..1.2.3.4..", "..[scrubbed].."),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(scrub(input), want, "{input:?}");
    }
}

proptest! {
    /// Every address Rust can print (compressed IPv6, embedded IPv4), in
    /// every form a log shows it, is scrubbed.
    #[test]
    fn scrubs_any_address(v4 in any::<std::net::Ipv4Addr>(), v6 in any::<std::net::Ipv6Addr>(), port in 1u16..) {
        for addr in [
            v4.to_string(),
            format!("{v4}:{port}"),
            v6.to_string(),
            format!("[{v6}]"),
            format!("[{v6}]:{port}"),
            v6.to_string().replace(':', "%3A"),
        ] {
            prop_assert_eq!(scrub(&format!("peer {addr}: closed")), "peer [scrubbed]: closed", "{}", addr);
            prop_assert_eq!(scrub(&format!("({addr})")), "([scrubbed])", "{}", addr);
        }
    }

    /// Any text: no panic, valid UTF-8 out, unchanged where no address can
    /// be, and scrubbing twice changes nothing more.
    #[test]
    fn scrub_is_total_and_idempotent(
        text in "\\PC{0,80}",
        addressy in "([0-9a-fA-F.:\\[\\] ]|%3[aA]){0,80}",
        noise in "[g-zG-Z _/=-]{0,40}",
    ) {
        for t in [text, addressy] {
            let once = scrub(&t);
            prop_assert_eq!(scrub(&once), once.clone());
        }
        prop_assert_eq!(scrub(&noise), noise);
    }
}

#[test]
fn leaves_look_alikes_alone() {
    for text in [
        "snowflake 1.2.3.4.5 released",
        "version v1.2.3.4 and 2.8.1",
        "10:30:00 and 23:59:59.999",
        "2024-02-29T12:00:00Z",
        "a=fingerprint:sha-256 C8:88:EE:B9:E7:02:2E:21:37:ED:7A:D1:EB:2B:A3:15:A2:3B:5B:1C:3D:D4:D5:1F:06:CF:52:40:03:F8:DD:66",
        "mac 00:1a:2b:3c:4d:5e",
        "sid=ymbcCMto7KHNGYlp fp=2B280B23E1107BB62ABFC40DDCC8824814F80A72",
        "deadbeef cafe:babe",
        "a=ice-ufrag:aMAZ a=sctpmap:5000 webrtc-datachannel 1024",
        "o=- 4358805017720277108 2 IN IP4 x",
        "m=application 56688 DTLS/SCTP 5000",
        "256.1.1.1 and 1.2.3.999",
        "std::vector::push_back",
        "ip1.2.3.4 a1.2.3.4b 1.2.3.4x 1.2.3.4_",
        // (`port:1.2.3.4` used to be listed here: an address after a label's
        // colon is an address and is scrubbed, see scrubs_the_examples_of_protocol_md.)
        "1.2.3.4:123456",
        "[1.2.3.4x]",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "took 1.5s, 12.25ms",
        "fe80::1::2",
    ] {
        assert_eq!(scrub(text), text, "{text}");
    }
}

// ------------------------------------------------------------- client address

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn client_ip_reads_forwarded_then_x_forwarded_for() {
    assert_eq!(
        client_ip(Some("for=129.97.208.23;proto=https"), Some("8.8.8.8"), 1),
        Some(ip("129.97.208.23"))
    );
    assert_eq!(
        client_ip(Some(r#"For="[2001:4860::1]:4711""#), None, 1),
        Some(ip("2001:4860::1"))
    );
    assert_eq!(
        client_ip(Some("for=\"129.97.208.23:80\""), None, 1),
        Some(ip("129.97.208.23"))
    );
    assert_eq!(
        client_ip(Some("proto=http;by=8.8.8.8"), Some("9.9.9.9"), 1),
        Some(ip("9.9.9.9"))
    );
    assert_eq!(
        client_ip(Some("for=_hidden"), Some("9.9.9.9"), 1),
        Some(ip("9.9.9.9"))
    );
    assert_eq!(client_ip(None, Some(" 9.9.9.9 "), 1), Some(ip("9.9.9.9")));
    assert_eq!(client_ip(None, None, 1), None);
}

#[test]
fn client_ip_believes_only_trusted_hops() {
    // The client forged "1.1.1.1"; the fronting CDN appended the real address.
    let xff = "1.1.1.1, 129.97.208.23";
    assert_eq!(client_ip(None, Some(xff), 1), Some(ip("129.97.208.23")));
    // With two trusted hops the window holds both; the leftmost public wins.
    assert_eq!(client_ip(None, Some(xff), 2), Some(ip("1.1.1.1")));
    // Private addresses in the window are skipped, leftmost public kept.
    let xff = "6.6.6.6, 10.0.0.7, 129.97.208.23, 192.168.1.1";
    assert_eq!(client_ip(None, Some(xff), 3), Some(ip("129.97.208.23")));
    assert_eq!(client_ip(None, Some(xff), 1), None);
    // Zero hops: nothing is believed.
    assert_eq!(client_ip(Some("for=8.8.8.8"), Some("8.8.8.8"), 0), None);
    // Unparsable items still count as hops.
    assert_eq!(client_ip(None, Some("8.8.8.8, garbage"), 1), None);
    assert_eq!(
        client_ip(None, Some("8.8.8.8, garbage"), 2),
        Some(ip("8.8.8.8"))
    );
    // More hops than items: every item is looked at.
    assert_eq!(client_ip(None, Some("8.8.8.8"), 5), Some(ip("8.8.8.8")));
    let forwarded = "for=1.1.1.1, for=\"[2001:4860::9]\";proto=https";
    assert_eq!(
        client_ip(Some(forwarded), None, 1),
        Some(ip("2001:4860::9"))
    );
}

#[test]
fn proxy_ip_takes_the_outermost_trusted_item() {
    assert_eq!(
        proxy_ip(None, Some("1.1.1.1, 8.8.8.8"), 1),
        Some(ip("8.8.8.8"))
    );
    assert_eq!(
        proxy_ip(None, Some("1.1.1.1, 8.8.8.8"), 2),
        Some(ip("1.1.1.1"))
    );
    assert_eq!(proxy_ip(None, Some("10.0.0.1"), 1), Some(ip("10.0.0.1")));
    assert_eq!(proxy_ip(None, Some("8.8.8.8"), 2), None);
    assert_eq!(proxy_ip(None, Some("8.8.8.8"), 0), None);
    assert_eq!(
        proxy_ip(Some("for=9.9.9.9"), Some("8.8.8.8"), 1),
        Some(ip("9.9.9.9"))
    );
    assert_eq!(
        proxy_ip(Some("for=unknown"), Some("8.8.8.8"), 1),
        Some(ip("8.8.8.8"))
    );
}

/// The SDP of N's tests (`rawOffer`), unescaped.
const N_OFFER_SDP: &str = "v=0\r\no=- 4358805017720277108 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE data\r\na=msid-semantic: WMS\r\nm=application 56688 DTLS/SCTP 5000\r\nc=IN IP4 0.0.0.0\r\na=candidate:3769337065 1 udp 2122260223 129.97.208.23 56688 typ host generation 0 network-id 1 network-cost 50\r\na=candidate:2921887769 1 tcp 1518280447 129.97.208.23 35441 typ host tcptype passive generation 0 network-id 1 network-cost 50\r\na=ice-ufrag:aMAZ\r\na=ice-pwd:jcHb08Jjgrazp2dzjdrvPPvV\r\na=ice-options:trickle\r\na=fingerprint:sha-256 C8:88:EE:B9:E7:02:2E:21:37:ED:7A:D1:EB:2B:A3:15:A2:3B:5B:1C:3D:D4:D5:1F:06:CF:52:40:03:F8:DD:66\r\na=setup:actpass\r\na=mid:data\r\na=sctpmap:5000 webrtc-datachannel 1024\r\n";

#[test]
fn candidate_addresses_of_n_test_offer() {
    assert_eq!(
        candidate_addrs(N_OFFER_SDP),
        vec![ip("129.97.208.23"), ip("129.97.208.23")]
    );
    assert_eq!(best_candidate_addr(N_OFFER_SDP), Some(ip("129.97.208.23")));
}

#[test]
fn offer_json_gives_its_sdp() {
    let offer = serde_json::json!({"type": "offer", "sdp": N_OFFER_SDP}).to_string();
    let sdp = offer_sdp(&offer).unwrap();
    assert_eq!(sdp, N_OFFER_SDP);
    assert_eq!(best_candidate_addr(&sdp), Some(ip("129.97.208.23")));
    assert_eq!(offer_sdp("fake"), None);
    assert_eq!(offer_sdp(r#"{"type":"offer","SDP":"v=0"}"#), None);
    assert_eq!(offer_sdp(r#"{"type":"offer","sdp":1}"#), None);
    assert_eq!(offer_sdp(r#"["sdp"]"#), None);
}

#[test]
fn candidates_are_ordered_by_type_then_priority() {
    let sdp = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\n\
        a=candidate:1 1 udp 1686052607 203.0.113.5 50000 typ srflx raddr 192.168.1.2 rport 50000\n\
        a=candidate:2 1 udp 2122260223 192.168.1.2 50000 typ host\n\
        a=candidate:3 1 udp 2122194687 0b8e2a5c-0f0e-4c3d-9f6e-3c1a6b2d7e8f.local 50001 typ host\n\
        a=candidate:4 1 udp 41885439 8.8.8.8 3478 typ relay raddr 203.0.113.5 rport 50000\n\
        a=candidate:5 1 udp 1686052608 129.97.208.23 50002 typ srflx\n\
        a=candidate:6 1 udp 2122260224 fd00::2 50003 typ host\n\
        a=candidate:7 1 udp 1 2a00:1450::7 50004 typ prflx\n\
        a=candidate:8 1 udp x 1.1.1.1 1 typ host\n\
        a=candidate:9 1 udp 1 1.1.1.1 1 typ bogus\n\
        a=candidate:10 1 udp 1 1.1.1.1 1 type host\n\
        a=candidate:11 1 udp 1 1.1.1.1\n";
    assert_eq!(
        candidate_addrs(sdp),
        vec![
            ip("fd00::2"),
            ip("192.168.1.2"),
            ip("2a00:1450::7"),
            ip("129.97.208.23"),
            ip("203.0.113.5"),
            ip("8.8.8.8"),
        ]
    );
    // The first public one, relays excluded: the peer-reflexive address.
    assert_eq!(best_candidate_addr(sdp), Some(ip("2a00:1450::7")));
    let kinds: Vec<_> = candidates(sdp).into_iter().map(|c| c.kind).collect();
    assert_eq!(kinds[0], CandidateType::Host);
    assert_eq!(kinds[5], CandidateType::Relay);
}

#[test]
fn best_candidate_skips_private_and_relay_addresses() {
    let only_private = "a=candidate:1 1 udp 2122260223 10.0.0.2 1 typ host\r\n\
                        a=candidate:2 1 udp 5 8.8.8.8 3478 typ relay\r\n";
    assert_eq!(best_candidate_addr(only_private), None);
    assert_eq!(best_candidate_addr(""), None);
    assert_eq!(best_candidate_addr("not an sdp at all"), None);
    let c = parse_candidate("a=candidate:1 1 udp 7 ::ffff:8.8.8.8 1 typ srflx").unwrap();
    assert_eq!((c.addr, c.priority), (ip("8.8.8.8"), 7));
}
