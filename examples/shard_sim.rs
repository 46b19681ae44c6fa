//! The sharded matcher at Snowflake's scale, simulated: the real routing,
//! boards and shards (`matcher::deployment`) driven by a day shaped like
//! the real network (docs/protocol.md §11), in simulated time.
//!
//! `cargo run --release --example shard_sim` (or `make sim`; `--quick`: 1 and 4 shards only;
//! `--fresh-ms N`, `--probes N`: other board settings to compare). Prints, for
//! 1, 4, 16 and 64 shards and for 1 and 64 Worker isolates: Durable Object
//! requests per shard per second (mean and max over shards), DO requests
//! per client rendezvous and per answer, denials, and denials made while a proxy the
//! client could use was parked on some shard ("wrong").
//!
//! The model, and what is assumed:
//! - 81,000 proxies poll at once (2,700 polls/s when none is matched),
//!   by NAT as the broker's 2023-11 metrics: 59% restricted, 39% unknown,
//!   1.7% unrestricted; by type 80% webext, 16.5% iptproxy, 3% standalone,
//!   0.5% badge. Each poll is held up to 10 s (`PROXY_POLL_TIMEOUT_MS`), then
//!   the proxy polls again after 20 s (`NEXT_POLL_MS`); a refused poll after
//!   60 s. Every poll has a fresh Sid, as Go proxies make one per poll, and
//!   every proxy an address of its own, from which it also answers.
//! - Clients arrive at random (Poisson) at 44/s (an ordinary day, 2023-11),
//!   517/s (the Iran shutdown peak of 2022-09) and 5,170/s (ten times that);
//!   assumed NAT mix: 40% unknown, 30% restricted, 30% unrestricted. A
//!   matched proxy answers after 300 ms, or (1 in 10) never.
//! - Every request goes to a random isolate. Each regime runs 40 s of warm-up
//!   and 60 s measured.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::unreachable
)]

use snowflake_broker::config::TimeoutFrom;
use snowflake_broker::matcher::deployment::{Begun, Delivered, Deployment, Handle};
use snowflake_broker::matcher::routing;
use snowflake_broker::matcher::{Offer, OfferReply, Poll, PollReply, Settings};
use snowflake_broker::metrics::Rendezvous;
use snowflake_broker::protocol::nat::Nat;
use snowflake_broker::protocol::proxy::ProxyType;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

const PROXIES: u32 = 81_000;
const POLL_TIMEOUT_MS: u64 = 10_000;
const NEXT_POLL_MS: u64 = 20_000;
const REFUSED_WAIT_MS: u64 = 60_000;
const ANSWER_MS: u64 = 300;
const WARMUP_MS: u64 = 40_000;
const MEASURE_MS: u64 = 60_000;
const TICK_MS: u64 = 100;

/// xorshift64*: deterministic, so every run prints the same figures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Tick,
    Poll(u32),
    Client,
    Answer(u32, u64),
}

struct Row {
    shards: u32,
    isolates: u32,
    clients_per_s: u32,
    mean_rps: f64,
    max_rps: f64,
    per_client: f64,
    offers: u64,
    denials: u64,
    wrong: u64,
    refused_polls: u64,
    per_answer: f64,
}

fn proxy_nat(i: u32) -> Nat {
    match i % 1000 {
        0..=589 => Nat::Restricted,
        590..=982 => Nat::Unknown,
        _ => Nat::Unrestricted,
    }
}

fn proxy_type(i: u32) -> ProxyType {
    match (i / 7) % 200 {
        0..=159 => ProxyType::Webext,
        160..=192 => ProxyType::Iptproxy,
        193..=198 => ProxyType::Standalone,
        _ => ProxyType::Badge,
    }
}

fn run(shards: u32, isolates: u32, clients_per_s: u32, tune: (u64, usize)) -> Row {
    let settings = Settings {
        proxy_poll_timeout_ms: POLL_TIMEOUT_MS,
        client_timeout_ms: 5_000,
        client_timeout_from: TimeoutFrom::Request,
        max_parked_polls: 5_000,
        max_polls_per_address: 10,
        poll_interval: snowflake_broker::matcher::interval::PollInterval::OFF,
    };
    let start_unix = 1_699_920_000;
    let mut d = Deployment::new(shards, isolates, settings, 86_400, start_unix, [3; 16]);
    d.tune(tune.0, tune.1);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(shards * 1000 + isolates));
    let t0 = start_unix * 1000;
    let mut queue: BinaryHeap<Reverse<(u64, Event)>> = BinaryHeap::new();
    for p in 0..PROXIES {
        let at = t0 + rng.next() % (POLL_TIMEOUT_MS + NEXT_POLL_MS);
        queue.push(Reverse((at, Event::Poll(p))));
    }
    queue.push(Reverse((t0, Event::Tick)));
    queue.push(Reverse((t0, Event::Client)));
    let mut serial = 0u64;
    let mut poll_of: HashMap<Handle, (u32, String)> = HashMap::new();
    let end = t0 + WARMUP_MS + MEASURE_MS;
    let mut base: Option<(Vec<u64>, u64, u64, u64, u64)> = None;
    let mut refused = 0u64;
    let mut refused_at_base = 0u64;
    let mut answers = 0u64;
    let mut answers_at_base = (0u64, 0u64);
    let mut client_us = 0f64;
    while let Some(Reverse((now, event))) = queue.pop() {
        if now >= end {
            break;
        }
        if base.is_none() && now >= t0 + WARMUP_MS {
            base = Some((
                d.requests.clone(),
                d.offers_made,
                d.offer_requests,
                d.denials,
                d.wrong_denials,
            ));
            refused_at_base = refused;
            answers_at_base = (answers, d.answer_requests);
        }
        let isolate = rng.below(isolates);
        match event {
            Event::Tick => {
                d.advance(now);
                queue.push(Reverse((now + TICK_MS, Event::Tick)));
            }
            Event::Poll(p) => {
                serial += 1;
                let sid = format!("p{p}-{serial}");
                let poll = Poll {
                    sid: sid.clone(),
                    nat: proxy_nat(p),
                    proxy_type: proxy_type(p),
                    clients: 0,
                };
                let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + p));
                match d.poll(now, isolate, poll, Some(ip), None) {
                    Begun::Parked(h) => {
                        poll_of.insert(h, (p, sid));
                    }
                    Begun::Now(_) => {
                        refused += 1;
                        queue.push(Reverse((now + REFUSED_WAIT_MS, Event::Poll(p))));
                    }
                }
            }
            Event::Client => {
                let nat = match rng.below(10) {
                    0..=3 => Nat::Unknown,
                    4..=6 => Nat::Restricted,
                    _ => Nat::Unrestricted,
                };
                let offer = Offer {
                    offer: "sdp".into(),
                    nat,
                    relay_url: "wss://snowflake.torproject.net/".into(),
                    started_at: now,
                };
                let _ = d.offer(now, isolate, offer, Rendezvous::Http, None);
                // Arrivals keep microseconds, so rates above 1,000/s are not
                // rounded away; the deployment sees milliseconds.
                client_us += -(1.0 - rng.unit()).ln() * 1e6 / f64::from(clients_per_s);
                let at = t0 + (client_us / 1000.0) as u64;
                queue.push(Reverse((at.max(now), Event::Client)));
            }
            Event::Answer(p, s) => {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + p));
                let _ = d.answer(
                    now,
                    isolate,
                    Some(ip),
                    &format!("p{p}-{s}"),
                    "answer".into(),
                );
                answers += 1;
            }
        }
        for delivered in d.delivered() {
            if let Delivered::Poll(h, reply) = delivered {
                let Some((p, sid)) = poll_of.remove(&h) else {
                    continue;
                };
                if let PollReply::Matched(_) = reply {
                    if rng.below(10) != 0 {
                        let s: u64 = sid.rsplit('-').next().unwrap().parse().unwrap();
                        queue.push(Reverse((now + ANSWER_MS, Event::Answer(p, s))));
                    }
                }
                queue.push(Reverse((now + NEXT_POLL_MS, Event::Poll(p))));
            } else if let Delivered::Offer(_, OfferReply::Denied) = delivered {
                unreachable!("a parked client is never denied");
            }
        }
    }
    let (req0, offers0, oreq0, den0, wrong0) = base.unwrap();
    let secs = MEASURE_MS as f64 / 1000.0;
    let rates: Vec<f64> = d
        .requests
        .iter()
        .zip(&req0)
        .map(|(a, b)| (a - b) as f64 / secs)
        .collect();
    let offers = d.offers_made - offers0;
    Row {
        shards,
        isolates,
        clients_per_s,
        mean_rps: rates.iter().sum::<f64>() / rates.len() as f64,
        max_rps: rates.iter().cloned().fold(0.0, f64::max),
        per_client: (d.offer_requests - oreq0) as f64 / offers.max(1) as f64,
        offers,
        denials: d.denials - den0,
        wrong: d.wrong_denials - wrong0,
        refused_polls: refused - refused_at_base,
        per_answer: (d.answer_requests - answers_at_base.1) as f64
            / (answers - answers_at_base.0).max(1) as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let shard_counts: &[u32] = if quick { &[1, 4] } else { &[1, 4, 16, 64] };
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let tune = (
        arg("--fresh-ms").unwrap_or(routing::FRESH_MS),
        arg("--probes").map_or(routing::PROBES, |n| n as usize),
    );
    println!(
        "board: an empty report is believed {} ms; {} shard(s) without a fresh report tried per client",
        tune.0, tune.1
    );
    println!(
        "{PROXIES} proxies, poll held {} s, next poll {} s; {} s measured after {} s warm-up",
        POLL_TIMEOUT_MS / 1000,
        NEXT_POLL_MS / 1000,
        MEASURE_MS / 1000,
        WARMUP_MS / 1000
    );
    println!(
        "{:>9} {:>6} {:>8} | {:>12} {:>12} | {:>10} {:>10} | {:>9} {:>8} {:>7} | {:>13}",
        "clients/s",
        "shards",
        "isolates",
        "req/shard/s",
        "max shard",
        "DO/client",
        "DO/answer",
        "clients",
        "denied",
        "wrong",
        "polls refused"
    );
    for clients in [44, 517, 5_170] {
        for &shards in shard_counts {
            for isolates in [1, 64] {
                let r = run(shards, isolates, clients, tune);
                println!(
                    "{:>9} {:>6} {:>8} | {:>12.0} {:>12.0} | {:>10.3} {:>10.3} | {:>9} {:>7.1}% {:>7} | {:>13}",
                    r.clients_per_s,
                    r.shards,
                    r.isolates,
                    r.mean_rps,
                    r.max_rps,
                    r.per_client,
                    r.per_answer,
                    r.offers,
                    100.0 * r.denials as f64 / r.offers.max(1) as f64,
                    r.wrong,
                    r.refused_polls
                );
            }
        }
    }
}
