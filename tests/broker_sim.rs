//! docs/protocol.md §9's black-box cases, played against the pure core: the
//! handlers that validate and format requests, and the matching engine,
//! driven synchronously with an explicit clock. The Worker shell only moves
//! these values over HTTP, which tests/worker/ checks separately.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use futures_channel::oneshot;
use snowflake_broker::config::{Config, TimeoutFrom};
use snowflake_broker::handlers::{self, ClientFormat, Outcome, PollCheck, Reply};
use snowflake_broker::matcher::api::{
    decode_reply, AnswerOutcome, AnswerRequest, CallError, ClosedPeriodsRequest, OfferRequest,
    PollRequest, ProxyAddress, ProxySeen,
};
use snowflake_broker::matcher::shard::{OfferStep, Shard, Started};
use snowflake_broker::matcher::waiters::Waiters;
use snowflake_broker::matcher::{OfferReply, PollReply, Settings, Ticket, Wake};
use snowflake_broker::metrics::Rendezvous;
use snowflake_broker::protocol::nat::Pool;
use std::collections::HashMap;

const FP: &str = "2B280B23E1107BB62ABFC40DDCC8824814F80A72";

fn sdp_json(kind: &str, sdp: &str) -> String {
    serde_json::json!({"type": kind, "sdp": sdp}).to_string()
}

fn client_body(offer: &str, nat: Option<&str>) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("offer".into(), offer.into());
    if let Some(n) = nat {
        m.insert("nat".into(), n.into());
    }
    m.insert("fingerprint".into(), FP.into());
    format!("1.0\n{}", serde_json::Value::Object(m)).into_bytes()
}

fn poll_body(sid: &str, nat: &str, clients: i64) -> Vec<u8> {
    serde_json::json!({"Sid": sid, "Version": "1.3", "Type": "standalone", "NAT": nat,
        "Clients": clients, "AcceptedRelayPattern": "snowflake.torproject.net$"})
    .to_string()
    .into_bytes()
}

fn answer_body(sid: &str, answer: &str) -> Vec<u8> {
    serde_json::json!({"Version": "1.3", "Sid": sid, "Answer": answer})
        .to_string()
        .into_bytes()
}

/// The broker with the Durable Object's channels driven by hand: the real
/// shard (engine and metrics) and the real wake delivery ([`Waiters`]), an
/// explicit clock instead of timers, and the handlers' replies.
struct Sim {
    config: Config,
    shard: Shard,
    waiters: Waiters,
    now: u64,
    proxies: HashMap<Ticket, Pending<PollReply>>,
    clients: HashMap<Ticket, (ClientFormat, Pending<OfferReply>)>,
}

/// A parked request's channel, and its reply once it has one.
struct Pending<R> {
    rx: oneshot::Receiver<R>,
    got: Option<R>,
}

impl<R> Pending<R> {
    fn new(rx: oneshot::Receiver<R>) -> Self {
        Pending { rx, got: None }
    }

    /// Takes a delivered reply; a second delivery would be a bug.
    fn check(&mut self) {
        if let Ok(Some(r)) = self.rx.try_recv() {
            assert!(self.got.is_none(), "answered twice");
            self.got = Some(r);
        }
    }
}

fn defaults() -> Config {
    Config::from_lookup(|_| None).unwrap()
}

impl Sim {
    fn new(config: Config) -> Sim {
        let shard = Shard::new(Settings::from(&config), 86_400, 1_000, [0; 16]);
        Sim {
            config,
            shard,
            waiters: Waiters::default(),
            now: 1_000_000,
            proxies: HashMap::new(),
            clients: HashMap::new(),
        }
    }

    fn deliver(&mut self, wakes: Vec<Wake>) {
        self.waiters.deliver(wakes);
        for p in self.proxies.values_mut() {
            p.check();
        }
        for (_, c) in self.clients.values_mut() {
            c.check();
        }
        self.shard.engine().check_invariants().unwrap();
    }

    /// Returns the ticket of a parked poll, or the immediate reply.
    fn poll(&mut self, body: &[u8]) -> Result<Ticket, Reply> {
        self.poll_from(body, None)
    }

    /// A poll from the address `ip` (as Cloudflare reports the caller).
    fn poll_from(&mut self, body: &[u8], ip: Option<&str>) -> Result<Ticket, Reply> {
        let poll = match handlers::proxy_poll(&self.config, body)? {
            PollCheck::Accepted { poll, .. } => poll,
            PollCheck::Rejected { reply, .. } => return Err(reply),
        };
        let request = PollRequest {
            poll,
            seen: ProxySeen {
                address: ip.map(|a| ProxyAddress::Ip(a.parse().unwrap())),
                ..ProxySeen::default()
            },
            at: None,
            refused_meanwhile: Vec::new(),
            refused_addresses: Vec::new(),
        };
        let step = self.shard.poll(self.now, request);
        match step.start {
            Started::Parked { ticket, .. } => {
                let rx = self.waiters.park_poll(ticket);
                self.proxies.insert(ticket, Pending::new(rx));
                self.deliver(step.wakes);
                Ok(ticket)
            }
            Started::Now(reply) => Err(handlers::proxy_poll_reply(
                &self.config,
                &reply,
                self.config.next_poll_ms,
            )),
        }
    }

    fn client(&mut self, body: &[u8], nat_header: Option<&str>) -> Result<Ticket, Reply> {
        let started = self.now;
        self.client_started(body, nat_header, started)
            .map(|(ticket, _)| ticket)
    }

    /// A client whose request reached the broker at `started`; returns its
    /// ticket and deadline.
    fn client_started(
        &mut self,
        body: &[u8],
        nat_header: Option<&str>,
        started: u64,
    ) -> Result<(Ticket, u64), Reply> {
        let (offer, format) = handlers::client(&self.config, body, nat_header, started)?;
        let request = OfferRequest {
            offer,
            method: Rendezvous::Http,
            country: None,
            last: true,
        };
        let OfferStep::Here(step) = self.shard.offer(self.now, request) else {
            panic!("the last shard tried always decides");
        };
        match step.start {
            Started::Parked { ticket, deadline } => {
                let rx = self.waiters.park_offer(ticket);
                self.clients.insert(ticket, (format, Pending::new(rx)));
                self.deliver(step.wakes);
                Ok((ticket, deadline))
            }
            Started::Now(reply) => Err(handlers::client_reply(format, &reply)),
        }
    }

    fn answer(&mut self, body: &[u8]) -> Reply {
        match handlers::answer(body) {
            Err(reply) => reply,
            Ok(a) => {
                let (result, wakes) = self.shard.answer(AnswerRequest {
                    sid: a.sid,
                    answer: a.answer,
                    last: true,
                });
                self.deliver(wakes);
                let AnswerOutcome::Ended(result) = result else {
                    panic!("the last shard asked always decides");
                };
                handlers::answer_reply(result)
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        let wakes = self.shard.expire(self.now);
        self.deliver(wakes);
    }

    fn proxy_reply(&self, t: Ticket) -> Option<Reply> {
        let got = self.proxies.get(&t)?.got.as_ref()?;
        Some(handlers::proxy_poll_reply(
            &self.config,
            got,
            self.config.next_poll_ms,
        ))
    }

    fn client_reply(&self, t: Ticket) -> Option<Reply> {
        let (format, pending) = self.clients.get(&t)?;
        Some(handlers::client_reply(*format, pending.got.as_ref()?))
    }
}

/// A 200 text reply, logged as `outcome`.
fn text(outcome: Outcome, body: &str) -> Reply {
    Reply::text(200, body).outcome(outcome)
}

fn no_match() -> Reply {
    text(
        Outcome::NoMatch,
        r#"{"Status":"no match","Offer":"","NAT":"","NextPoll":20000,"RelayURL":""}"#,
    )
}

#[test]
fn case_2_no_proxies() {
    let mut sim = Sim::new(defaults());
    let r = sim.client(
        &client_body(&sdp_json("offer", "v=0"), Some("unknown")),
        None,
    );
    assert_eq!(
        r,
        Err(text(
            Outcome::Denied,
            r#"{"error":"no snowflake proxies currently available"}"#
        ))
    );
}

#[test]
fn cases_3_14_19_rendezvous_end_to_end() {
    let mut sim = Sim::new(defaults());
    let offer = sdp_json("offer", "v=0\r\no=- 123456789 2 IN IP4 127.0.0.1\r\na=candidate:1 1 udp 2 8.8.8.8 3000 typ host\r\n");
    // R's unit test injected an unknown proxy; over HTTP an unknown-NAT client
    // may only use an open proxy (N's pools), so an unknown one cannot serve it.
    let p = sim
        .poll(br#"{"Sid":"ymbcCMto7KHNGYlp","Version":"1.0","AcceptedRelayPattern":""}"#)
        .unwrap();
    assert_eq!(
        sim.client(&client_body(&offer, None), None),
        Err(text(
            Outcome::Denied,
            r#"{"error":"no snowflake proxies currently available"}"#
        ))
    );
    assert_eq!(sim.proxy_reply(p), None);
    let mut sim = Sim::new(defaults());
    let p = sim
        .poll(&poll_body("ymbcCMto7KHNGYlp", "unrestricted", 0))
        .unwrap();
    let c = sim.client(&client_body(&offer, None), None).unwrap();
    let expected = format!(
        r#"{{"Status":"client match","Offer":{},"NAT":"unknown","NextPoll":20000,"RelayURL":"wss://snowflake.torproject.net/"}}"#,
        snowflake_broker::protocol::json::go_string(&offer)
    );
    assert_eq!(
        sim.proxy_reply(p),
        Some(text(Outcome::ClientMatch, &expected))
    );
    let answer = sdp_json(
        "answer",
        "v=0\r\na=candidate:2 1 udp 2 9.9.9.9 4000 typ host\r\n",
    );
    assert_eq!(
        sim.answer(&answer_body("ymbcCMto7KHNGYlp", &answer)),
        text(Outcome::AnswerDelivered, r#"{"Status":"success"}"#)
    );
    let expected = format!(
        r#"{{"answer":{}}}"#,
        snowflake_broker::protocol::json::go_string(&answer)
    );
    assert_eq!(
        sim.client_reply(c),
        Some(text(Outcome::Answered, &expected))
    );
    // The same answer again: the client is gone.
    assert_eq!(
        sim.answer(&answer_body("ymbcCMto7KHNGYlp", &answer)),
        text(Outcome::ClientGone, r#"{"Status":"client gone"}"#)
    );
}

#[test]
fn case_4_unrestricted_client_falls_back_to_an_open_proxy() {
    let mut sim = Sim::new(defaults());
    let p = sim.poll(&poll_body("p", "unrestricted", 0)).unwrap();
    sim.client(
        &client_body(&sdp_json("offer", "x"), Some("unrestricted")),
        None,
    )
    .unwrap();
    assert!(sim.proxy_reply(p).unwrap().body.contains("client match"));
}

#[test]
fn case_5_timeout_counted_from_the_match_or_the_request() {
    // Time the proxy waited before the client came does not count either way.
    for (from, waited_before_match) in [(TimeoutFrom::Match, 3_000), (TimeoutFrom::Request, 3_000)]
    {
        let config = Config {
            client_timeout_ms: 5_000,
            client_timeout_from: from,
            ..defaults()
        };
        let mut sim = Sim::new(config);
        let p = sim.poll(&poll_body("p", "unrestricted", 0)).unwrap();
        sim.advance(waited_before_match);
        let c = sim
            .client(&client_body(&sdp_json("offer", "x"), None), None)
            .unwrap();
        assert!(sim.proxy_reply(p).is_some());
        sim.advance(4_999);
        assert_eq!(sim.client_reply(c), None);
        sim.advance(1);
        assert_eq!(
            sim.client_reply(c),
            Some(text(
                Outcome::TimedOut,
                r#"{"error":"timed out waiting for answer!"}"#
            ))
        );
        let late = sim.answer(&answer_body("p", &sdp_json("answer", "a=candidate")));
        assert_eq!(
            late,
            text(Outcome::ClientGone, r#"{"Status":"client gone"}"#)
        );
    }
}

#[test]
fn request_mode_counts_time_spent_before_the_match() {
    let config = Config {
        client_timeout_ms: 5_000,
        client_timeout_from: TimeoutFrom::Request,
        ..defaults()
    };
    let mut sim = Sim::new(config.clone());
    let p = sim.poll(&poll_body("p", "unrestricted", 0)).unwrap();
    // The request started 2 s before it reached the matcher (e.g. a slow front).
    let started = sim.now - 2_000;
    let (ticket, deadline) = sim
        .client_started(&client_body(&sdp_json("offer", "x"), None), None, started)
        .unwrap();
    assert_eq!(deadline, sim.now + 3_000);
    assert!(sim.proxy_reply(p).is_some());
    sim.advance(3_000);
    assert!(sim.client_reply(ticket).is_some());
}

#[test]
fn cases_7_8_9_legacy_client() {
    let mut sim = Sim::new(defaults());
    let legacy = sdp_json("offer", "v=0 a=candidate");
    assert_eq!(
        sim.client(legacy.as_bytes(), Some("restricted")),
        Err(Reply::empty(503).outcome(Outcome::Denied))
    );
    let p = sim.poll(&poll_body("p", "unrestricted", 0)).unwrap();
    let c = sim.client(legacy.as_bytes(), Some("restricted")).unwrap();
    let matched = &sim.proxy_reply(p).unwrap().body;
    assert!(
        matched.contains(&snowflake_broker::protocol::json::go_string(&legacy)),
        "{matched}"
    );
    let answer = sdp_json("answer", "fake answer a=candidate");
    sim.answer(&answer_body("p", &answer));
    assert_eq!(sim.client_reply(c), Some(text(Outcome::Answered, &answer)));
    let p = sim.poll(&poll_body("q", "unrestricted", 0)).unwrap();
    let c = sim.client(legacy.as_bytes(), None).unwrap();
    assert!(sim.proxy_reply(p).is_some());
    sim.advance(5_000);
    assert_eq!(
        sim.client_reply(c),
        Some(Reply::empty(504).outcome(Outcome::TimedOut))
    );
    // R dropped the connection for a bad header; we answer 400.
    assert_eq!(
        sim.client(legacy.as_bytes(), Some("cone")),
        Err(Reply::bad_request())
    );
    assert_eq!(sim.client(b"{test}", None), Err(Reply::bad_request()));
}

#[test]
fn case_15_no_client_means_no_match_after_the_poll_timeout() {
    let mut sim = Sim::new(defaults());
    let p = sim.poll(&poll_body("p", "restricted", 0)).unwrap();
    sim.advance(9_999);
    assert_eq!(sim.proxy_reply(p), None);
    sim.advance(1);
    assert_eq!(sim.proxy_reply(p), Some(no_match()));
}

#[test]
fn cases_16_to_18_and_29_to_31_bad_answers() {
    let mut sim = Sim::new(defaults());
    let sdp = sdp_json("answer", "a=candidate");
    assert_eq!(
        sim.answer(&answer_body("invalid", &sdp)),
        text(Outcome::ClientGone, r#"{"Status":"client gone"}"#)
    );
    assert_eq!(sim.answer(b""), Reply::bad_request());
    assert_eq!(sim.answer(&vec![0u8; 100_001]), Reply::bad_request());
    assert_eq!(
        sim.answer(br#"{"Version":"1.0","Answer":"test a=candidate"}"#),
        Reply::bad_request()
    );
    assert_eq!(
        sim.answer(br#"{"Version":"1.0","Sid":"test","x":"a=candidate"}"#),
        Reply::bad_request()
    );
    assert_eq!(
        sim.answer(br#"{"type":"offer","sdp":"a=candidate"}"#),
        Reply::bad_request()
    );
    // No candidate anywhere in the body.
    assert_eq!(
        sim.answer(&answer_body("s", &sdp_json("answer", "v=0"))),
        Reply::bad_request()
    );
}

#[test]
fn answer_for_a_sid_still_polling_is_client_gone_at_once() {
    let mut sim = Sim::new(defaults());
    let p = sim.poll(&poll_body("p", "unrestricted", 0)).unwrap();
    let r = sim.answer(&answer_body("p", &sdp_json("answer", "a=candidate")));
    assert_eq!(r, text(Outcome::ClientGone, r#"{"Status":"client gone"}"#));
    // The poll is undisturbed and still matches a client.
    sim.client(&client_body(&sdp_json("offer", "x"), None), None)
        .unwrap();
    assert!(sim.proxy_reply(p).unwrap().body.contains("client match"));
}

#[test]
fn duplicate_sid_replaces_the_earlier_poll() {
    let mut sim = Sim::new(defaults());
    let first = sim.poll(&poll_body("same", "unrestricted", 0)).unwrap();
    sim.advance(5_000);
    let second = sim.poll(&poll_body("same", "unrestricted", 0)).unwrap();
    assert_eq!(sim.proxy_reply(first), Some(no_match()));
    // The first poll's old deadline must not end the second one.
    sim.advance(5_000);
    assert_eq!(sim.proxy_reply(second), None);
    let c = sim
        .client(&client_body(&sdp_json("offer", "x"), None), None)
        .unwrap();
    assert!(sim
        .proxy_reply(second)
        .unwrap()
        .body
        .contains("client match"));
    sim.answer(&answer_body("same", &sdp_json("answer", "a=candidate")));
    assert!(sim.client_reply(c).unwrap().body.contains("answer"));
    // A poll under a Sid whose client still waits would break that rendezvous.
    let mut sim = Sim::new(defaults());
    sim.poll(&poll_body("busy", "unrestricted", 0)).unwrap();
    let c = sim
        .client(&client_body(&sdp_json("offer", "x"), None), None)
        .unwrap();
    assert!(sim.poll(&poll_body("busy", "unrestricted", 0)).is_err());
    sim.answer(&answer_body("busy", &sdp_json("answer", "a=candidate")));
    assert!(sim.client_reply(c).unwrap().body.contains("answer"));
}

#[test]
fn case_38_39_relay_patterns() {
    let mut sim = Sim::new(defaults());
    let bad = sim.poll(
        br#"{"Sid":"a","Version":"1.3","AcceptedRelayPattern":"^snowflake.torproject.net$"}"#,
    );
    assert_eq!(
        bad,
        Err(text(
            Outcome::IncorrectRelayPattern,
            r#"{"Status":"incorrect relay pattern","Offer":"","NAT":"","NextPoll":3600000,"RelayURL":""}"#
        ))
    );
    // N: a proxy that sends no pattern is refused...
    assert!(sim.poll(br#"{"Sid":"a","Version":"1.3"}"#).is_err());
    // ...unless the operator presumes one for such proxies.
    let config = Config {
        default_relay_pattern: Some(
            snowflake_broker::protocol::relay_pattern::RelayPattern::parse(
                "snowflake.torproject.net$",
            ),
        ),
        ..defaults()
    };
    sim = Sim::new(config);
    assert!(sim.poll(br#"{"Sid":"a","Version":"1.3"}"#).is_ok());
}

#[test]
fn case_47_least_loaded_proxy_first() {
    let mut sim = Sim::new(defaults());
    let tickets: Vec<(i64, Ticket)> = [4, 5, 3, 1]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (
                n,
                sim.poll(&poll_body(&format!("p{i}"), "unrestricted", n))
                    .unwrap(),
            )
        })
        .collect();
    let mut order = Vec::new();
    for _ in 0..4 {
        sim.client(&client_body(&sdp_json("offer", "x"), Some("unknown")), None)
            .unwrap();
        for (n, t) in &tickets {
            if sim.proxy_reply(*t).is_some() && !order.contains(n) {
                order.push(*n);
            }
        }
    }
    assert_eq!(order, vec![1, 3, 4, 5]);
}

#[test]
fn n_pools_serve_clients_in_n_order() {
    let mut sim = Sim::new(defaults());
    let open = sim.poll(&poll_body("open", "open", 0)).unwrap();
    let moderate = sim.poll(&poll_body("moderate", "moderate", 0)).unwrap();
    let strict = sim.poll(&poll_body("strict", "restricted", 0)).unwrap();
    // A restricted client can only use the open proxy.
    sim.client(&client_body(&sdp_json("offer", "x"), Some("strict")), None)
        .unwrap();
    assert!(sim.proxy_reply(open).is_some());
    assert!(sim
        .client(
            &client_body(&sdp_json("offer", "x"), Some("restricted")),
            None
        )
        .is_err());
    // A moderate client takes the moderate proxy; an open one takes strict first.
    sim.client(
        &client_body(&sdp_json("offer", "x"), Some("moderate")),
        None,
    )
    .unwrap();
    assert!(sim.proxy_reply(moderate).is_some());
    sim.client(&client_body(&sdp_json("offer", "x"), Some("open")), None)
        .unwrap();
    assert!(sim.proxy_reply(strict).is_some());
}

#[test]
fn a_full_shard_answers_at_once_with_a_longer_next_poll() {
    let config = Config {
        max_parked_polls: 2,
        ..defaults()
    };
    let mut sim = Sim::new(config);
    sim.poll(&poll_body("a", "restricted", 0)).unwrap();
    sim.poll(&poll_body("b", "restricted", 0)).unwrap();
    let refused = sim.poll(&poll_body("c", "restricted", 0)).unwrap_err();
    assert_eq!(
        refused,
        text(
            Outcome::PollShed,
            r#"{"Status":"no match","Offer":"","NAT":"","NextPoll":60000,"RelayURL":""}"#
        )
    );
    // Re-polling under a parked Sid is not a new poll: it takes its own place.
    assert!(sim.poll(&poll_body("a", "restricted", 0)).is_ok());
}

/// Item 4 of issue 12: 6,000 polls from one source filled the matcher.
#[test]
fn one_address_holds_at_most_max_polls_per_address_and_honest_proxies_still_park() {
    let config = Config {
        max_polls_per_address: 3,
        ..defaults()
    };
    let refused = text(
        Outcome::AddressFull,
        r#"{"Status":"no match","Offer":"","NAT":"","NextPoll":60000,"RelayURL":""}"#,
    );
    let mut sim = Sim::new(config);
    let flood: Vec<Result<Ticket, Reply>> = (0..6_000)
        .map(|i| {
            sim.poll_from(
                &poll_body(&format!("flood-{i}"), "unrestricted", 0),
                Some("198.51.100.7"),
            )
        })
        .collect();
    assert_eq!(flood.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(flood
        .iter()
        .skip(3)
        .all(|r| r.as_ref().err() == Some(&refused)));
    // Every address of one IPv6 /64 is the same address; another /64 is not.
    for i in 0..3 {
        sim.poll_from(
            &poll_body(&format!("v6-{i}"), "unrestricted", 0),
            Some(&format!("2001:db8:1:2::{i:x}")),
        )
        .unwrap();
    }
    assert_eq!(
        sim.poll_from(
            &poll_body("v6-more", "unrestricted", 0),
            Some("2001:db8:1:2:ffff::1")
        ),
        Err(refused.clone())
    );
    sim.poll_from(
        &poll_body("v6-other", "unrestricted", 0),
        Some("2001:db8:1:3::1"),
    )
    .unwrap();
    // An honest proxy parks, and a re-poll under a parked Sid takes its own place.
    let honest = sim.poll_from(&poll_body("honest", "unrestricted", 0), Some("192.0.2.1"));
    assert!(honest.is_ok());
    assert!(sim
        .poll_from(
            &poll_body("flood-0", "unrestricted", 0),
            Some("198.51.100.7")
        )
        .is_ok());
    // A flood poll handed a client still counts until its client is done with it.
    let client = sim.client(
        &client_body(&sdp_json("offer", "x"), Some("unrestricted")),
        None,
    );
    assert!(client.is_ok());
    assert_eq!(
        sim.poll_from(
            &poll_body("flood-new", "unrestricted", 0),
            Some("198.51.100.7")
        ),
        Err(refused)
    );
}

#[test]
fn unknown_bridge_is_an_error_in_the_body() {
    let mut sim = Sim::new(defaults());
    let body = b"1.0\n{\"offer\":\"{\\\"type\\\":\\\"offer\\\",\\\"sdp\\\":\\\"x\\\"}\",\"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80B00\"}";
    assert_eq!(
        sim.client(body, None),
        Err(text(
            Outcome::BadOffer,
            r#"{"error":"bridge with requested fingerprint is unknown to the broker"}"#
        ))
    );
}

#[test]
fn case_52_bridge_list_sets_the_relay_url() {
    let mut list = String::new();
    for i in 0..10 {
        list.push_str(&format!(
            "{{\"displayName\":\"imaginary-{i}\",\"webSocketAddress\":\"wss://imaginary-{i}-snowflake.torproject.org\",\"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80B0{i}\"}}\n"
        ));
    }
    let config = Config::from_lookup(|k| (k == "BRIDGE_LIST").then(|| list.clone())).unwrap();
    let mut sim = Sim::new(config);
    let p = sim.poll(&poll_body("p", "unrestricted", 0)).unwrap();
    let body = format!(
        "1.0\n{{\"offer\":{},\"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80B07\"}}",
        snowflake_broker::protocol::json::go_string(&sdp_json("offer", "x"))
    );
    sim.client(body.as_bytes(), None).unwrap();
    assert!(sim
        .proxy_reply(p)
        .unwrap()
        .body
        .ends_with(r#""RelayURL":"wss://imaginary-7-snowflake.torproject.org"}"#));
    // The list replaced the default bridge: legacy clients cannot be served.
    assert_eq!(
        sim.client(sdp_json("offer", "x").as_bytes(), None),
        Err(Reply::empty(500).outcome(Outcome::Misconfigured))
    );
}

#[test]
fn oversized_bodies_are_refused_everywhere() {
    let mut sim = Sim::new(defaults());
    let mut big = poll_body("p", "unrestricted", 0);
    big.resize(100_001, b' ');
    assert_eq!(sim.poll(&big), Err(Reply::bad_request()));
    big.truncate(100_000);
    assert!(sim.poll(&big).is_ok());
    let mut big = client_body(&sdp_json("offer", "x"), None);
    big.resize(100_001, b' ');
    assert_eq!(sim.client(&big, None), Err(Reply::bad_request()));
}

#[test]
fn amp_outcomes_are_armored_pages() {
    let config = defaults();
    let bad = handlers::amp_client(&config, "bad", 0).unwrap_err();
    assert_eq!(bad.status, 200);
    assert_eq!(bad.content_type, Some("text/html"));
    assert_eq!(
        bad.headers,
        vec![("Cache-Control", "max-age=15".to_string())]
    );
    assert!(bad
        .body
        .contains("0eyJlcnJvciI6ImNhbm5vdCBkZWNvZGU\ngVVJMIHBhdGgifQ==\n"));
    assert_eq!(bad.outcome, Outcome::BadOffer);
    let denied = handlers::amp_reply(&OfferReply::Denied);
    assert_eq!(denied.body.len(), 1087);
    assert_eq!(denied.outcome, Outcome::Denied);
    assert_eq!(
        handlers::amp_reply(&OfferReply::TimedOut).outcome,
        Outcome::TimedOut
    );
    // case 37: empty data is an unsupported version.
    let empty = handlers::amp_client(&config, "0/", 0).unwrap_err();
    assert_eq!(
        empty.body,
        handlers::amp_page(
            r#"{"error":"unsupported message version"}"#,
            Outcome::BadOffer
        )
        .body
    );
}

#[test]
fn answers_reach_exactly_their_own_client() {
    let mut sim = Sim::new(defaults());
    let mut polls = Vec::new();
    for i in 0..20 {
        let sid = format!("p{i}");
        polls.push((
            sid.clone(),
            sim.poll(&poll_body(&sid, "unrestricted", i % 3)).unwrap(),
        ));
    }
    let clients: Vec<(usize, Ticket)> = (0..20)
        .map(|i| {
            (
                i,
                sim.client(
                    &client_body(&sdp_json("offer", &format!("offer {i}")), None),
                    None,
                )
                .unwrap(),
            )
        })
        .collect();
    // Each proxy answers by echoing the offer it received.
    for (sid, ticket) in &polls {
        let v: serde_json::Value =
            serde_json::from_str(&sim.proxy_reply(*ticket).unwrap().body).unwrap();
        let offer: serde_json::Value = serde_json::from_str(v["Offer"].as_str().unwrap()).unwrap();
        let echo = format!("echo of {} a=candidate", offer["sdp"].as_str().unwrap());
        assert_eq!(
            sim.answer(&answer_body(sid, &sdp_json("answer", &echo)))
                .body,
            r#"{"Status":"success"}"#
        );
    }
    for (i, c) in clients {
        let v: serde_json::Value =
            serde_json::from_str(&sim.client_reply(c).unwrap().body).unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(v["answer"].as_str().unwrap()).unwrap();
        assert_eq!(answer["sdp"], format!("echo of offer {i} a=candidate"));
    }
}

/// When the matcher fails, the operator's log says what failed and every
/// caller still gets its protocol's own reply: a proxy is told `no match`
/// and to come back later, a client that no proxy is available, a proxy's
/// answer that its client is gone, and a page `500` with the reason.
#[test]
fn matcher_failures_log_what_failed_and_answer_in_protocol_terms() {
    let config = defaults();
    // The object answered that its storage failed (as matcher_do replies).
    let storage = decode_reply::<ClosedPeriodsRequest>(500, b"storage: SQLITE_FULL").unwrap_err();
    // The platform threw: the object could not be reached.
    let unreachable = CallError::Unreachable("Network connection lost.".into());
    assert_eq!(
        storage.log_line("/closed-periods"),
        "snowflake-broker: /closed-periods: matcher failed: 500 storage: SQLITE_FULL"
    );
    assert_eq!(
        unreachable.log_line("/poll"),
        "snowflake-broker: /poll: matcher unreachable: Network connection lost."
    );
    assert_eq!(
        handlers::page_failed(&storage),
        Reply::text(
            500,
            "broker error: matcher failed: 500 storage: SQLITE_FULL\n"
        )
        .outcome(Outcome::BrokerError)
    );
    assert_eq!(
        handlers::proxy_poll_failed(&config),
        text(
            Outcome::BrokerError,
            r#"{"Status":"no match","Offer":"","NAT":"","NextPoll":60000,"RelayURL":""}"#
        )
    );
    assert_eq!(
        handlers::client_failed(ClientFormat::V1),
        text(
            Outcome::BrokerError,
            r#"{"error":"no snowflake proxies currently available"}"#
        )
    );
    assert_eq!(
        handlers::client_failed(ClientFormat::Legacy),
        Reply::empty(503).outcome(Outcome::BrokerError)
    );
    assert_eq!(
        handlers::answer_failed(),
        text(Outcome::BrokerError, r#"{"Status":"client gone"}"#)
    );
    assert_eq!(handlers::amp_failed().outcome, Outcome::BrokerError);
    assert_eq!(handlers::amp_failed().status, 200);
}

#[test]
fn bodies_are_read_by_their_declared_length() {
    use snowflake_broker::handlers::{body_plan, BodyPlan};
    assert_eq!(body_plan(None), BodyPlan::Capped);
    assert_eq!(body_plan(Some("nonsense")), BodyPlan::Capped);
    assert_eq!(body_plan(Some("0")), BodyPlan::Whole);
    assert_eq!(body_plan(Some("100000")), BodyPlan::Whole);
    assert_eq!(body_plan(Some("100001")), BodyPlan::Drain);
    assert_eq!(body_plan(Some("2097152")), BodyPlan::Drain);
    assert_eq!(body_plan(Some(" 2097153 ")), BodyPlan::Refuse);
    assert_eq!(body_plan(Some("18446744073709551615")), BodyPlan::Refuse);
}

#[test]
fn poll_interval_replies_are_ns_bytes_and_next_poll_covers_the_interval() {
    let config = Config::from_lookup(|k| {
        (k == "PROXY_POLL_INTERVAL_MS").then(|| "open=1000,strict=30000".to_string())
    })
    .unwrap();
    let too_soon = handlers::proxy_poll_reply(&config, &PollReply::TooSoon(1_234), 0);
    assert_eq!(
        (
            too_soon.status,
            too_soon.content_type,
            too_soon.body.as_str()
        ),
        (
            200,
            Some("text/plain; charset=utf-8"),
            r#"{"Status":"polled too soon","Offer":"","NAT":"","NextPoll":1234,"RelayURL":""}"#
        )
    );
    assert_eq!(too_soon.outcome.as_str(), "polled too soon");
    // An accepted poll is told the longer of NEXT_POLL_MS (20 s) and its interval's rest.
    assert_eq!(
        handlers::accepted_next_poll_ms(&config, Pool::Strict, 4_000),
        26_000
    );
    assert_eq!(
        handlers::accepted_next_poll_ms(&config, Pool::Strict, 40_000),
        20_000
    );
    assert_eq!(
        handlers::accepted_next_poll_ms(&config, Pool::Open, 0),
        20_000
    );
    assert_eq!(
        handlers::accepted_next_poll_ms(&config, Pool::Moderate, 0),
        20_000
    );
    let no_match = handlers::proxy_poll_reply(&config, &PollReply::NoMatch, 26_000);
    assert_eq!(
        no_match.body,
        r#"{"Status":"no match","Offer":"","NAT":"","NextPoll":26000,"RelayURL":""}"#
    );
}
