//! The sharding invariants of docs/design.md §4 under random workloads and
//! shard counts 1–16, through the real routing, boards and shards
//! (`matcher::deployment`): every answer reaches the client whose offer its
//! proxy got; no client is denied while a proxy it may use is parked on any
//! shard; no poll gets two replies (an offer never goes to a poll that was
//! already answered); and the same workload gives the same `/metrics` text
//! for every shard count.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use snowflake_broker::config::TimeoutFrom;
use snowflake_broker::matcher::deployment::{Begun, Delivered, Deployment, Handle};
use snowflake_broker::matcher::{AnswerReply, Offer, OfferReply, Poll, PollReply, Settings};
use snowflake_broker::metrics::Rendezvous;
use snowflake_broker::protocol::nat::Nat;
use snowflake_broker::protocol::proxy::ProxyType;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

// 2023-11-14 00:00:00 UTC, a period boundary.
const START: u64 = 1_699_920_000;
const PERIOD: u64 = 86_400;

#[derive(Debug, Clone)]
enum Event {
    /// A poll under Sid `sid`, from that Sid's address ([`address`]).
    Poll {
        sid: u8,
        nat: u8,
        kind: u8,
    },
    /// A client; `answered` says whether its proxy will answer.
    Offer {
        nat: u8,
        answered: bool,
        cc: u8,
    },
    /// The oldest matched proxy that means to answer does so; `moved`: from
    /// an address other than its poll's (a phone between networks).
    Answer {
        moved: bool,
    },
    Advance(u64),
}

fn nat(n: u8) -> Nat {
    Nat::ALL[n as usize % Nat::ALL.len()]
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        4 => (0u8..24, 0u8..6, 0u8..4)
            .prop_map(|(sid, nat, kind)| Event::Poll { sid, nat, kind }),
        4 => (0u8..6, any::<bool>(), 0u8..3)
            .prop_map(|(nat, answered, cc)| Event::Offer { nat, answered, cc }),
        2 => prop::bool::weighted(0.2).prop_map(|moved| Event::Answer { moved }),
        2 => (0u64..4_000).prop_map(Event::Advance),
    ];
    proptest::collection::vec(event, 1..160)
}

/// A proxy's address: each belongs to one, and most addresses poll under
/// two Sids (so one address is several proxies, as behind a home router).
fn address(sid: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, sid % 12))
}

fn settings() -> Settings {
    Settings {
        proxy_poll_timeout_ms: 10_000,
        client_timeout_ms: 5_000,
        client_timeout_from: TimeoutFrom::Match,
        // Per shard; high enough that no shard count reaches them.
        max_parked_polls: 10_000,
        max_polls_per_address: 10_000,
        poll_interval: snowflake_broker::matcher::interval::PollInterval::OFF,
    }
}

/// Plays `events` on `shards` shards and `isolates` Worker isolates; checks
/// the invariants as it goes and returns the `/metrics` text at the end.
fn play(events: &[Event], shards: u32, isolates: u32) -> String {
    let mut d = Deployment::new(shards, isolates, settings(), PERIOD, START, [5; 16]);
    let mut now = START * 1000 + 1;
    // What each parked request is, and what it has been told.
    let mut poll_sid: HashMap<Handle, (String, IpAddr)> = HashMap::new();
    let mut client_id: HashMap<Handle, (u64, bool)> = HashMap::new();
    let mut replied: HashSet<Handle> = HashSet::new();
    // Matched proxies that will answer: (sid, address, offer id), oldest first.
    let mut to_answer: Vec<(String, IpAddr, u64)> = Vec::new();
    let mut wants: HashMap<u64, bool> = HashMap::new();
    let mut next_id = 0u64;
    let mut isolate = 0u32;
    for event in events {
        isolate = (isolate + 1) % isolates;
        // Events a millisecond apart at least: polls of equal load are then
        // ordered by age across shards exactly as within one.
        now += 1;
        d.advance(now);
        match *event {
            Event::Poll { sid, nat: n, kind } => {
                let ip = address(sid);
                let sid = format!("sid-{sid}");
                // A proxy that polls again has given up its earlier offer.
                to_answer.retain(|(s, _, _)| *s != sid);
                let poll = Poll {
                    sid: sid.clone(),
                    nat: nat(n),
                    proxy_type: ProxyType::KNOWN[kind as usize % ProxyType::KNOWN.len()],
                    clients: 0,
                };
                if let Begun::Parked(h) = d.poll(now, isolate, poll, Some(ip), Some("CA".into())) {
                    poll_sid.insert(h, (sid, ip));
                }
            }
            Event::Offer {
                nat: n,
                answered,
                cc,
            } => {
                let id = next_id;
                next_id += 1;
                wants.insert(id, answered);
                let offer = Offer {
                    offer: format!("offer-{id}"),
                    nat: nat(n),
                    relay_url: "wss://r/".into(),
                    started_at: now,
                };
                let country = ["IR", "RU", "CN"][cc as usize % 3];
                match d.offer(now, isolate, offer, Rendezvous::Http, Some(country.into())) {
                    Begun::Parked(h) => {
                        client_id.insert(h, (id, answered));
                    }
                    Begun::Now(OfferReply::Denied) => {}
                    Begun::Now(other) => panic!("offer {id} ended at once with {other:?}"),
                }
            }
            Event::Answer { moved } => {
                if !to_answer.is_empty() {
                    let (sid, ip, id) = to_answer.remove(0);
                    let from = if moved {
                        IpAddr::V4(Ipv4Addr::new(10, 0, 1, id as u8))
                    } else {
                        ip
                    };
                    let reply = d.answer(now, isolate, Some(from), &sid, format!("answer-{id}"));
                    // Delivered unless the client has timed out meanwhile.
                    let _ = reply == AnswerReply::Delivered;
                }
            }
            Event::Advance(ms) => {
                now += ms;
                d.advance(now);
            }
        }
        for delivered in d.delivered() {
            let handle = match &delivered {
                Delivered::Poll(h, _) | Delivered::Offer(h, _) => *h,
            };
            assert!(replied.insert(handle), "{handle:?} replied to twice");
            match delivered {
                Delivered::Poll(h, PollReply::Matched(a)) => {
                    let id: u64 = a.offer.trim_start_matches("offer-").parse().unwrap();
                    assert!(
                        poll_sid.contains_key(&h),
                        "a poll nobody parked got an offer"
                    );
                    if wants[&id] {
                        let (sid, ip) = poll_sid[&h].clone();
                        to_answer.push((sid, ip, id));
                    }
                }
                Delivered::Poll(..) => {}
                Delivered::Offer(h, OfferReply::Answer(text)) => {
                    let (id, answered) = client_id[&h];
                    assert_eq!(
                        text,
                        format!("answer-{id}"),
                        "an answer reached the wrong client"
                    );
                    assert!(answered);
                }
                Delivered::Offer(_, OfferReply::TimedOut) => {}
                Delivered::Offer(h, OfferReply::Denied) => panic!("{h:?}: a parked client denied"),
            }
        }
    }
    // Let everything end, so every count is final.
    now += 60_000;
    d.advance(now);
    let _ = d.delivered();
    assert_eq!(
        d.wrong_denials, 0,
        "{} of {} denials while a usable proxy was parked ({shards} shards)",
        d.wrong_denials, d.denials
    );
    d.metrics_text(START + PERIOD)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_shard_count_behaves_as_one_broker(events in events()) {
        let one = play(&events, 1, 1);
        for shards in [2, 4, 16] {
            let many = play(&events, shards, 1);
            prop_assert_eq!(&one, &many, "{} shards differ from one", shards);
        }
    }
}

#[test]
fn a_lone_proxy_is_found_on_any_shard() {
    for shards in [1, 4, 16] {
        for i in 0..40u8 {
            let mut d = Deployment::new(shards, 1, settings(), PERIOD, START, [5; 16]);
            let now = START * 1000 + 1;
            // The isolate has heard from every shard: all empty.
            for c in 0..shards {
                let offer = Offer {
                    offer: format!("warm-{c}"),
                    nat: Nat::Unrestricted,
                    relay_url: "wss://r/".into(),
                    started_at: now,
                };
                let _ = d.offer(now, 0, offer, Rendezvous::Http, None);
            }
            let poll = Poll {
                sid: format!("lone-{i}"),
                nat: Nat::Unrestricted,
                proxy_type: ProxyType::Standalone,
                clients: 0,
            };
            let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, i));
            assert!(matches!(
                d.poll(now, 0, poll, Some(ip), None),
                Begun::Parked(_)
            ));
            let offer = Offer {
                offer: "o".into(),
                nat: Nat::Restricted,
                relay_url: "wss://r/".into(),
                started_at: now,
            };
            let before = d.offer_requests;
            assert!(
                matches!(
                    d.offer(now + 1, 0, offer, Rendezvous::Http, None),
                    Begun::Parked(_)
                ),
                "lone proxy {i} not found among {shards} shards"
            );
            assert_eq!(d.offer_requests - before, 1, "found at the first try");
        }
    }
}

#[test]
fn a_denial_under_exhaustion_costs_one_request() {
    let mut d = Deployment::new(16, 1, settings(), PERIOD, START, [5; 16]);
    let mut now = START * 1000 + 1;
    // Only strict proxies: restricted clients are denied everywhere.
    for i in 0..64 {
        let poll = Poll {
            sid: format!("p{i}"),
            nat: Nat::Restricted,
            proxy_type: ProxyType::Webext,
            clients: 0,
        };
        let _ = d.poll(now, 0, poll, None, None);
    }
    let offer = |d: &mut Deployment, now| {
        let o = Offer {
            offer: "o".into(),
            nat: Nat::Restricted,
            relay_url: "wss://r/".into(),
            started_at: now,
        };
        d.offer(now, 0, o, Rendezvous::Http, None)
    };
    // Warm the board (an isolate starts knowing nothing).
    let _ = offer(&mut d, now);
    let before = (d.offer_requests, d.denials);
    for _ in 0..1_000 {
        now += 3;
        assert_eq!(offer(&mut d, now), Begun::Now(OfferReply::Denied));
    }
    assert_eq!(d.denials - before.1, 1_000);
    assert_eq!(d.offer_requests - before.0, 1_000, "one request per denial");
}

/// A proxy that polls and is matched, on 16 shards; returns the deployment
/// and the matched Sid.
fn matched_proxy(ip: IpAddr) -> (Deployment, u64) {
    let mut d = Deployment::new(16, 1, settings(), PERIOD, START, [5; 16]);
    let now = START * 1000 + 1;
    let poll = Poll {
        sid: "moving".into(),
        nat: Nat::Unrestricted,
        proxy_type: ProxyType::Iptproxy,
        clients: 0,
    };
    assert!(matches!(
        d.poll(now, 0, poll, Some(ip), None),
        Begun::Parked(_)
    ));
    let offer = Offer {
        offer: "o".into(),
        nat: Nat::Unknown,
        relay_url: "wss://r/".into(),
        started_at: now,
    };
    assert!(matches!(
        d.offer(now, 0, offer, Rendezvous::Http, None),
        Begun::Parked(_)
    ));
    (d, now)
}

#[test]
fn an_answer_from_the_polling_address_costs_one_request_and_from_another_still_arrives() {
    let home = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let (mut d, now) = matched_proxy(home);
    let reply = d.answer(now + 5, 0, Some(home), "moving", "a".into());
    assert_eq!((reply, d.answer_requests), (AnswerReply::Delivered, 1));

    // The proxy's address changed between its poll and its answer.
    let (mut d, now) = matched_proxy(home);
    let away = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99));
    let reply = d.answer(now + 5, 0, Some(away), "moving", "a".into());
    assert_eq!(reply, AnswerReply::Delivered);
    assert!(d.answer_requests <= 16, "{}", d.answer_requests);
    let delivered = d.delivered();
    assert!(delivered
        .iter()
        .any(|x| matches!(x, Delivered::Offer(_, OfferReply::Answer(a)) if a == "a")));
}

#[test]
fn an_answer_no_shard_knows_asks_each_once_and_is_counted_once() {
    let mut d = Deployment::new(16, 1, settings(), PERIOD, START, [5; 16]);
    let now = START * 1000 + 1;
    let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8));
    let reply = d.answer(now, 0, Some(ip), "nobody", "a".into());
    assert_eq!((reply, d.answer_requests), (AnswerReply::ClientGone, 16));
    let gone: u64 = d
        .shards()
        .iter()
        .filter_map(|s| s.metrics().lifetime.proxy_answer.get(&["timeout", ""]))
        .sum();
    assert_eq!(gone, 1);
}

#[test]
fn the_poll_interval_holds_across_shards() {
    let mut settings = settings();
    settings.poll_interval = snowflake_broker::matcher::interval::PollInterval([2_000; 3]);
    let mut d = Deployment::new(16, 4, settings, PERIOD, START, [5; 16]);
    let now = START * 1000 + 1;
    let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
    let poll = |sid: &str| Poll {
        sid: sid.into(),
        nat: Nat::Restricted,
        proxy_type: ProxyType::Webext,
        clients: 0,
    };
    assert!(matches!(
        d.poll(now, 0, poll("a"), Some(ip), None),
        Begun::Parked(_)
    ));
    // Under 20 other Sids, through other isolates: too soon every time.
    for i in 0..20u64 {
        let sid = format!("other-{i}");
        let got = d.poll(now + 100 + i, (i % 4) as u32, poll(&sid), Some(ip), None);
        assert_eq!(got, Begun::Now(PollReply::TooSoon(1_900 - i)));
    }
    d.advance(now + 2_000);
    assert!(matches!(
        d.poll(now + 2_000, 1, poll("b"), Some(ip), None),
        Begun::Parked(_)
    ));
}
