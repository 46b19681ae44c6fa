//! Properties of the matching engine under random sequences of events:
//! its indexes stay consistent, every parked request gets exactly one
//! outcome, answers go only to the client that was matched with that Sid,
//! and nothing outlives its deadline.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use snowflake_broker::config::TimeoutFrom;
use snowflake_broker::matcher::{
    AnswerReply, Engine, Offer, OfferReply, OfferStart, Poll, PollReply, PollStart, Settings,
    Ticket, Wake,
};
use snowflake_broker::metrics::IpKey;
use snowflake_broker::protocol::nat::Nat;
use snowflake_broker::protocol::proxy::ProxyType;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Event {
    /// `owner` 0–2 is one of three addresses; 3 is a poll whose address is unknown.
    Poll {
        sid: u8,
        nat: u8,
        clients: i64,
        owner: u8,
    },
    Offer {
        nat: u8,
    },
    Answer {
        sid: u8,
    },
    Advance(u64),
    Cancel(usize),
}

fn nat(n: u8) -> Nat {
    Nat::ALL[n as usize % Nat::ALL.len()]
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        (0u8..6, 0u8..6, -2i64..5, 0u8..4).prop_map(|(sid, nat, clients, owner)| Event::Poll {
            sid,
            nat,
            clients,
            owner,
        }),
        (0u8..6).prop_map(|nat| Event::Offer { nat }),
        (0u8..8).prop_map(|sid| Event::Answer { sid }),
        // Steps around the 500 ms grid of the timeouts land on, just before
        // and just after deadlines.
        prop::sample::select(vec![
            0u64, 1, 499, 500, 501, 999, 1_000, 2_500, 4_999, 5_000, 5_001
        ])
        .prop_map(Event::Advance),
        (0usize..64).prop_map(Event::Cancel),
    ];
    proptest::collection::vec(event, 0..120)
}

#[derive(Default)]
struct Ledger {
    /// Every parked ticket, with its outcome once it has one.
    proxies: HashMap<Ticket, Option<PollReply>>,
    clients: HashMap<Ticket, Option<OfferReply>>,
    deadlines: HashMap<Ticket, u64>,
    /// The Sid each parked poll was made under.
    sid_of: HashMap<Ticket, String>,
    /// Which client each matched proxy Sid is serving now.
    serving: HashMap<String, Ticket>,
    cancelled: Vec<Ticket>,
    offers: u64,
}

impl Ledger {
    /// Records an outcome; `expired_at` is set for outcomes of `expire`,
    /// which must never end a request before its deadline.
    fn record(&mut self, wake: Wake, expired_at: Option<u64>) -> Result<(), TestCaseError> {
        let ticket = wake.ticket();
        if let Some(now) = expired_at {
            prop_assert!(
                self.deadlines[&ticket] <= now,
                "request {} ended before its deadline",
                ticket
            );
        }
        match wake {
            Wake::Poll(t, o) => {
                let slot = self
                    .proxies
                    .get_mut(&t)
                    .ok_or_else(|| TestCaseError::fail("unknown proxy"))?;
                prop_assert!(slot.is_none(), "proxy {} woken twice", t);
                *slot = Some(o);
            }
            Wake::Offer(t, o) => {
                let slot = self
                    .clients
                    .get_mut(&t)
                    .ok_or_else(|| TestCaseError::fail("unknown client"))?;
                prop_assert!(slot.is_none(), "client {} woken twice", t);
                *slot = Some(o);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn engine_keeps_its_promises(events in events(), from_match in any::<bool>()) {
        let settings = Settings {
            proxy_poll_timeout_ms: 10_000,
            client_timeout_ms: 5_000,
            client_timeout_from: if from_match { TimeoutFrom::Match } else { TimeoutFrom::Request },
            max_parked_polls: 4,
            max_polls_per_address: 2,
            poll_interval: snowflake_broker::matcher::interval::PollInterval::OFF,
        };
        let mut engine = Engine::new(settings);
        let mut ledger = Ledger::default();
        let mut now = 0u64;
        for event in events {
            let last = Some(event.clone());
            match event {
                Event::Poll { sid, nat: n, clients, owner } => {
                    let poll = Poll { sid: format!("s{sid}"), nat: nat(n), proxy_type: ProxyType::Standalone, clients };
                    let owner = (owner < 3).then_some(IpKey(u64::from(owner)));
                    // Invariants check that no address ever holds more than 2 sessions.
                    match engine.poll(now, poll, owner) {
                        PollStart::Parked { ticket, deadline, replaced } => {
                            prop_assert_eq!(deadline, now + 10_000);
                            ledger.proxies.insert(ticket, None);
                            ledger.deadlines.insert(ticket, deadline);
                            ledger.sid_of.insert(ticket, format!("s{sid}"));
                            if let Some(w) = replaced { ledger.record(w, None)?; }
                        }
                        PollStart::AddressFull => prop_assert!(owner.is_some()),
                        PollStart::Full | PollStart::SidBusy => {}
                    }
                }
                Event::Offer { nat: n } => {
                    ledger.offers += 1;
                    let sizes = engine.pool_sizes();
                    let could = nat(n).client_pools().iter().any(|p| sizes[p.index()] > 0);
                    let offer = Offer { offer: format!("offer-{}", ledger.offers), nat: nat(n), relay_url: "wss://r/".into(), started_at: now };
                    match engine.offer(now, offer) {
                        OfferStart::Parked { ticket, deadline, wake, .. } => {
                            prop_assert!(could);
                            ledger.clients.insert(ticket, None);
                            ledger.deadlines.insert(ticket, deadline);
                            let Wake::Poll(proxy, PollReply::Matched(a)) = &wake else {
                                return Err(TestCaseError::fail("offer woke something other than a proxy match"));
                            };
                            prop_assert_eq!(&a.offer, &format!("offer-{}", ledger.offers));
                            ledger.serving.insert(ledger.sid_of[proxy].clone(), ticket);
                            ledger.record(wake.clone(), None)?;
                        }
                        OfferStart::Denied => prop_assert!(!could),
                        OfferStart::Expired => {}
                    }
                }
                Event::Answer { sid } => {
                    let (result, wake) = engine.answer(&format!("s{sid}"), format!("answer-{sid}"));
                    match (result, wake) {
                        (AnswerReply::Delivered, Some(w)) => {
                            let Wake::Offer(c, OfferReply::Answer(ref a)) = w else {
                                return Err(TestCaseError::fail("answer woke something other than a client"));
                            };
                            prop_assert_eq!(a, &format!("answer-{sid}"));
                            prop_assert_eq!(ledger.serving.get(&format!("s{sid}")), Some(&c), "answer went to another client");
                            ledger.record(w, None)?;
                        }
                        (AnswerReply::ClientGone, None) => {}
                        other => return Err(TestCaseError::fail(format!("inconsistent answer {other:?}"))),
                    }
                }
                Event::Advance(ms) => {
                    now += ms;
                    for w in engine.expire(now) {
                        ledger.record(w, Some(now))?;
                    }
                }
                Event::Cancel(i) => {
                    let open: Vec<Ticket> = ledger.proxies.iter().filter(|(_, o)| o.is_none()).map(|(t, _)| *t)
                        .chain(ledger.clients.iter().filter(|(_, o)| o.is_none()).map(|(t, _)| *t))
                        .collect();
                    if let Some(&t) = open.get(i % open.len().max(1)) {
                        engine.cancel(t);
                        ledger.cancelled.push(t);
                        // A cancelled request is done; mark it so it is not expected again.
                        if let Some(slot) = ledger.proxies.get_mut(&t) { *slot = Some(PollReply::NoMatch); }
                        if let Some(slot) = ledger.clients.get_mut(&t) { *slot = Some(OfferReply::TimedOut); }
                    }
                }
            }
            engine.check_invariants().map_err(TestCaseError::fail)?;
            // Once time has been processed, nothing open is past its deadline.
            for (t, d) in &ledger.deadlines {
                let open = ledger.proxies.get(t).is_some_and(Option::is_none)
                    || ledger.clients.get(t).is_some_and(Option::is_none);
                prop_assert!(!open || *d > now || !matches!(last, Some(Event::Advance(_))), "request {} outlived its deadline", t);
            }
        }
        // Let every deadline pass: everything parked ends exactly once.
        now += 60_000;
        for w in engine.expire(now) {
            ledger.record(w, Some(now))?;
        }
        prop_assert!(ledger.proxies.values().all(Option::is_some), "a proxy poll never ended");
        prop_assert!(ledger.clients.values().all(Option::is_some), "a client never ended");
        prop_assert_eq!(engine.census().sessions, 0);
        engine.check_invariants().map_err(TestCaseError::fail)?;
    }
}
