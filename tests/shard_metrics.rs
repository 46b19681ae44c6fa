//! docs/protocol.md §9's metrics cases (#40-#46, adapted to N's line set and to
//! countries given by the platform), played through a matcher shard: every
//! engine outcome is counted once, periods close into exact descriptors, and
//! a snapshot restores the counts after a restart.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use snowflake_broker::config::TimeoutFrom;
use snowflake_broker::matcher::api::{
    AnswerOutcome, AnswerReply, AnswerRequest, OfferRequest, PollReply, PollRequest, ProxyAddress,
    ProxySeen,
};
use snowflake_broker::matcher::shard::Shard;
use snowflake_broker::matcher::shard::Started;
use snowflake_broker::matcher::{merge, Offer, Poll, Settings};
use snowflake_broker::metrics::Rendezvous;
use snowflake_broker::protocol::nat::Nat;
use snowflake_broker::protocol::proxy::ProxyType;

// Periods are aligned to the epoch: this one is 2023-11-14 00:00:00 UTC.
const START: u64 = 1_699_920_000;
const PERIOD: u64 = 86_400;

fn shard() -> Shard {
    let settings = Settings {
        proxy_poll_timeout_ms: 10_000,
        client_timeout_ms: 5_000,
        client_timeout_from: TimeoutFrom::Request,
        max_parked_polls: 100,
        max_polls_per_address: 100,
        poll_interval: snowflake_broker::matcher::interval::PollInterval::OFF,
    };
    Shard::new(settings, PERIOD, START, [7; 16])
}

fn poll(sid: &str, nat: Nat, kind: ProxyType, ip: &str, cc: &str) -> PollRequest {
    PollRequest {
        poll: Poll {
            sid: sid.into(),
            nat,
            proxy_type: kind,
            clients: 0,
        },
        seen: ProxySeen {
            with_relay_pattern: false,
            country: Some(cc.into()),
            address: ip.parse().ok().map(ProxyAddress::Ip),
        },
        at: None,
        refused_meanwhile: Vec::new(),
        refused_addresses: Vec::new(),
    }
}

fn offer(nat: Nat, cc: Option<&str>, method: Rendezvous, now_ms: u64) -> OfferRequest {
    OfferRequest {
        offer: Offer {
            offer: "{}".into(),
            nat,
            relay_url: "wss://r/".into(),
            started_at: now_ms,
        },
        method,
        country: cc.map(str::to_string),
        last: true,
    }
}

fn answer(sid: &str) -> AnswerRequest {
    AnswerRequest {
        sid: sid.into(),
        answer: "answer".into(),
        last: true,
    }
}

/// Closes the period and returns its block.
fn flush(shard: &mut Shard) -> String {
    let blocks = shard.close_periods(shard.period_end(), || Some([9; 16]));
    assert_eq!(blocks.len(), 1);
    merge::metrics_text([blocks])
}

/// The value of the descriptor line `name` (what follows `name `).
fn field<'a>(block: &'a str, name: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{block}"))
}

#[test]
fn case_40_proxy_ips_by_type_and_idle_polls() {
    let mut s = shard();
    let now = START * 1000;
    for (i, kind) in [
        ProxyType::Unknown,
        ProxyType::Standalone,
        ProxyType::Badge,
        ProxyType::Webext,
    ]
    .iter()
    .enumerate()
    {
        assert!(matches!(
            s.poll(
                now,
                poll(&format!("s{i}"), Nat::Unknown, *kind, "129.97.208.23", "CA")
            )
            .start,
            Started::Parked { .. }
        ));
    }
    s.expire(now + 10_000);
    let block = flush(&mut s);
    assert!(
        block
            .starts_with("snowflake-stats-end 2023-11-15 00:00:00 (86400 s)\nsnowflake-ips CA=1\n"),
        "{block}"
    );
    // N counts one seen-set per period: one IP, whatever types it polled as.
    assert_eq!(field(&block, "snowflake-ips-standalone"), "1");
    assert_eq!(field(&block, "snowflake-ips-badge"), "1");
    assert_eq!(field(&block, "snowflake-ips-webext"), "1");
    assert_eq!(field(&block, "snowflake-ips-total"), "1");
    assert_eq!(field(&block, "snowflake-idle-count"), "8");
    assert_eq!(
        field(&block, "snowflake-proxy-poll-without-relay-url-count"),
        "8"
    );
    assert_eq!(
        field(&block, "snowflake-proxy-poll-with-relay-url-count"),
        "0"
    );
    assert_eq!(field(&block, "snowflake-ips-nat-unknown"), "1");
}

#[test]
fn cases_41_42_denials_binning_and_reset() {
    let mut s = shard();
    let now = START * 1000;
    let _ = s.offer(now, offer(Nat::Unknown, None, Rendezvous::Http, now));
    let block = flush(&mut s);
    assert_eq!(field(&block, "client-denied-count"), "8");
    assert_eq!(field(&block, "client-nat-unknown-denied-count"), "8");
    assert_eq!(field(&block, "client-snowflake-match-count"), "0");
    assert_eq!(field(&block, "client-http-ips"), "??=8");
    let next = flush(&mut s);
    assert_eq!(field(&next, "snowflake-ips"), "");
    assert_eq!(field(&next, "client-denied-count"), "0");
    for _ in 0..9 {
        let _ = s.offer(
            now,
            offer(Nat::Restricted, Some("IR"), Rendezvous::Http, now),
        );
    }
    let block = flush(&mut s);
    assert_eq!(field(&block, "client-denied-count"), "16");
    assert_eq!(field(&block, "client-restricted-denied-count"), "16");
    assert_eq!(field(&block, "client-http-ips"), "IR=16");
}

#[test]
fn cases_43_44_unique_ips_and_nat_per_ip() {
    let mut s = shard();
    let now = START * 1000;
    let _ = s.poll(
        now,
        poll("a", Nat::Unknown, ProxyType::Unknown, "129.97.208.23", "CA"),
    );
    let _ = s.poll(
        now,
        poll("b", Nat::Unknown, ProxyType::Unknown, "129.97.208.23", "CA"),
    );
    let block = flush(&mut s);
    assert_eq!(field(&block, "snowflake-ips"), "CA=1");
    assert_eq!(field(&block, "snowflake-ips-total"), "1");
    let mut s = shard();
    let _ = s.poll(
        now,
        poll(
            "a",
            Nat::Restricted,
            ProxyType::Standalone,
            "129.97.208.23",
            "CA",
        ),
    );
    let _ = s.poll(
        now,
        poll(
            "b",
            Nat::Unrestricted,
            ProxyType::Standalone,
            "129.97.208.24",
            "CA",
        ),
    );
    let block = flush(&mut s);
    assert!(block.contains("snowflake-ips-nat-restricted 1\nsnowflake-ips-nat-unrestricted 1\nsnowflake-ips-nat-unknown 0\n"), "{block}");
}

#[test]
fn case_45_client_nat_categories() {
    for (nat, restricted, unrestricted) in [(Nat::Restricted, 8, 0), (Nat::Unrestricted, 0, 8)] {
        let mut s = shard();
        let now = START * 1000;
        let _ = s.offer(now, offer(nat, None, Rendezvous::Http, now));
        let block = flush(&mut s);
        assert_eq!(
            field(&block, "client-restricted-denied-count"),
            restricted.to_string()
        );
        assert_eq!(
            field(&block, "client-unrestricted-denied-count"),
            unrestricted.to_string()
        );
    }
}

#[test]
fn matches_timeouts_answers_and_amp_are_counted_once() {
    let mut s = shard();
    let now = START * 1000;
    let _ = s.poll(
        now,
        poll(
            "p1",
            Nat::Unrestricted,
            ProxyType::Webext,
            "129.97.208.23",
            "CA",
        ),
    );
    let _ = s.poll(
        now,
        poll(
            "p2",
            Nat::Unrestricted,
            ProxyType::Webext,
            "129.97.208.24",
            "CA",
        ),
    );
    let _ = s.offer(now, offer(Nat::Unknown, Some("RU"), Rendezvous::Http, now));
    let _ = s.offer(
        now,
        offer(Nat::Unknown, Some("IR"), Rendezvous::Ampcache, now),
    );
    let (reply, wakes) = s.answer(answer("p1"));
    assert_eq!(
        (reply, wakes.len()),
        (AnswerOutcome::Ended(AnswerReply::Delivered), 1)
    );
    let (reply, wakes) = s.answer(answer("nobody"));
    assert_eq!(
        (reply, wakes.len()),
        (AnswerOutcome::Ended(AnswerReply::ClientGone), 0)
    );
    s.expire(now + 60_000);
    let block = flush(&mut s);
    assert_eq!(field(&block, "client-snowflake-match-count"), "8");
    assert_eq!(field(&block, "client-snowflake-timeout-count"), "8");
    assert_eq!(field(&block, "client-http-count"), "8");
    assert_eq!(field(&block, "client-ampcache-count"), "8");
    assert_eq!(field(&block, "client-ampcache-ips"), "IR=8");
    assert_eq!(field(&block, "snowflake-idle-count"), "0");
    let prom = s.metrics().prometheus();
    assert!(prom.contains("snowflake_rounded_proxy_poll_total{nat=\"unrestricted\",status=\"matched\",type=\"webext\"} 8"), "{prom}");
    assert!(
        prom.contains("snowflake_rounded_proxy_answer_total{status=\"success\",type=\"webext\"} 8"),
        "{prom}"
    );
    assert!(prom.contains("snowflake_rounded_client_poll_total{cc=\"IR\",nat=\"unknown\",rendezvous_method=\"ampcache\",status=\"timeout\"} 8"), "{prom}");
    // Nothing is waiting any more.
    assert!(
        prom.contains("snowflake_available_proxies{nat=\"unrestricted\",type=\"webext\"} 0"),
        "{prom}"
    );
}

#[test]
fn a_restart_mid_period_continues_the_counts() {
    let mut s = shard();
    let now = START * 1000;
    let _ = s.poll(
        now,
        poll(
            "a",
            Nat::Restricted,
            ProxyType::Standalone,
            "129.97.208.23",
            "CA",
        ),
    );
    let _ = s.offer(
        now,
        offer(Nat::Restricted, Some("IR"), Rendezvous::Http, now),
    );
    s.expire(now + 10_000);
    let saved = s.snapshot_text().unwrap();
    let rows = s.unsaved_addresses();
    assert_eq!(rows.len(), 1, "one row per new address");
    assert!(s.unsaved_addresses().is_empty(), "a row is written once");
    // A new object: different random secret, later clock, restored state.
    let mut restarted = Shard::new(shard().engine().settings(), PERIOD, START + 3_600, [1; 16]);
    restarted.restore(&serde_json::from_str(&saved).unwrap());
    restarted.restore_addresses(s.period_start(), rows);
    assert!(
        restarted.unsaved_addresses().is_empty(),
        "restored rows are saved already"
    );
    // The same proxy polls again: still one unique IP, because the key is restored.
    let _ = restarted.poll(
        now + 3_600_000,
        poll(
            "a",
            Nat::Restricted,
            ProxyType::Standalone,
            "129.97.208.23",
            "CA",
        ),
    );
    let _ = restarted.offer(
        now,
        offer(Nat::Restricted, Some("IR"), Rendezvous::Http, now),
    );
    assert_eq!(restarted.period_end(), START + PERIOD);
    let block = flush(&mut restarted);
    assert_eq!(field(&block, "snowflake-ips-total"), "1");
    assert_eq!(field(&block, "client-denied-count"), "8");
    assert_eq!(field(&block, "client-http-ips"), "IR=8");
    assert!(
        !saved.contains("129.97"),
        "the snapshot must not hold addresses"
    );
}

/// Past ~131k addresses a whole-set value exceeded the 2 MiB storage value
/// limit; now the snapshot stays small and each address is one row.
#[test]
fn the_snapshot_stays_small_however_many_addresses_and_each_is_saved_once() {
    let mut s = shard();
    let now = START * 1000;
    let mut rows = 0;
    for i in 0..200_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        let ip = format!("10.{b}.{c}.{d}");
        let _ = s.poll(
            now,
            poll(
                &format!("s{i}"),
                Nat::Unknown,
                ProxyType::Standalone,
                &ip,
                "CA",
            ),
        );
        s.expire(now + 10_000);
        if i % 50_000 == 49_999 {
            rows += s.unsaved_addresses().len();
        }
    }
    assert_eq!(rows, 200_000);
    let text = s.snapshot_text().unwrap();
    assert!(text.len() < 8_192, "snapshot of {} bytes", text.len());
    // An idle shard with nothing new has nothing to write.
    assert!(s.unsaved_addresses().is_empty());
    assert!(s.is_idle());
}

/// A snapshot written by an earlier version held the whole set: it is read,
/// and its addresses are then written as rows.
#[test]
fn a_snapshot_holding_the_whole_set_is_still_read() {
    let mut old = shard();
    let now = START * 1000;
    let _ = old.poll(
        now,
        poll("a", Nat::Open, ProxyType::Webext, "129.97.208.23", "CA"),
    );
    old.expire(now + 10_000);
    let mut whole: serde_json::Value = serde_json::from_str(&old.snapshot_text().unwrap()).unwrap();
    let set = serde_json::to_value(&old.metrics().period.proxies).unwrap();
    whole["metrics"]["period"]["proxies"] = set;
    let mut restarted = shard();
    restarted.restore(&serde_json::from_value(whole).unwrap());
    assert_eq!(restarted.unsaved_addresses().len(), 1);
    let block = flush(&mut restarted);
    assert_eq!(field(&block, "snowflake-ips-total"), "1");
}

#[test]
fn periods_missed_while_down_are_published_empty() {
    let mut s = shard();
    let blocks = s.close_periods(START + 3 * PERIOD + 5, || Some([3; 16]));
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[2].end, START + 3 * PERIOD);
    assert_eq!(s.period_end(), START + 4 * PERIOD);
}

#[test]
fn a_poll_too_soon_is_answered_at_once_and_counted_as_n_counts_it() {
    let settings = Settings {
        poll_interval: snowflake_broker::matcher::interval::PollInterval([2_000; 3]),
        ..shard().engine().settings()
    };
    let mut s = Shard::new(settings, PERIOD, START, [7; 16]);
    let now = START * 1000;
    let at = |mut p: PollRequest, t: u64| {
        p.at = Some(t);
        p
    };
    let first = poll(
        "a1",
        Nat::Restricted,
        ProxyType::Webext,
        "129.97.208.23",
        "CA",
    );
    assert!(matches!(
        s.poll(now, at(first, now)).start,
        Started::Parked { .. }
    ));
    // Another Sid from the same address, 600 ms later: 1,400 ms left.
    let again = poll(
        "a2",
        Nat::Restricted,
        ProxyType::Webext,
        "129.97.208.23",
        "CA",
    );
    assert_eq!(
        s.poll(now + 600, at(again, now + 600)).start,
        Started::Now(PollReply::TooSoon(1_400))
    );
    // Another address, or another pool, is not held back.
    let other = poll(
        "b1",
        Nat::Restricted,
        ProxyType::Webext,
        "129.97.208.24",
        "CA",
    );
    assert!(matches!(
        s.poll(now + 600, at(other, now + 600)).start,
        Started::Parked { .. }
    ));
    let open = poll(
        "a3",
        Nat::Unrestricted,
        ProxyType::Webext,
        "129.97.208.23",
        "CA",
    );
    assert!(matches!(
        s.poll(now + 600, at(open, now + 600)).start,
        Started::Parked { .. }
    ));
    // Once the interval has passed, the address parks again.
    s.expire(now + 2_000);
    let later = poll(
        "a4",
        Nat::Restricted,
        ProxyType::Webext,
        "129.97.208.23",
        "CA",
    );
    assert!(matches!(
        s.poll(now + 2_000, at(later, now + 2_000)).start,
        Started::Parked { .. }
    ));
    s.expire(now + 60_000);
    let block = flush(&mut s);
    // Five polls arrived; the one too soon was not idle, and its address
    // was already counted.
    assert_eq!(field(&block, "snowflake-ips-total"), "2");
    let lifetime = &s.metrics().lifetime;
    let idle = |nat| lifetime.proxy_poll.get(&[nat, "idle", "webext"]);
    assert_eq!(
        (idle("restricted"), idle("unrestricted")),
        (Some(3), Some(1))
    );
    assert_eq!(
        lifetime
            .proxy_poll_without_relay_url
            .get(&["restricted", "webext"]),
        Some(4)
    );
    let prom = s.metrics().prometheus();
    assert!(
        prom.contains(
            "snowflake_proxy_polled_too_soon_total{nat=\"restricted\",type=\"webext\"} 1\n"
        ),
        "{prom}"
    );
    assert!(
        prom.contains("snowflake_rounded_proxy_poll_without_relay_url_extension_total{nat=\"restricted\",type=\"webext\"} 8"),
        "{prom}"
    );
}

#[test]
fn a_poll_deadline_counts_from_when_the_worker_took_it() {
    let now = START * 1000;
    let mut s = shard();
    // Taken by the Worker 300 ms before it reached the shard: the shard
    // ends it when the Worker's own wait (from the same moment) expects.
    let late = PollRequest {
        at: Some(now - 300),
        ..poll(
            "late",
            Nat::Unrestricted,
            ProxyType::Standalone,
            "192.0.2.1",
            "DE",
        )
    };
    let Started::Parked { deadline, .. } = s.poll(now, late).start else {
        panic!("the poll should park");
    };
    assert_eq!(deadline, now - 300 + 10_000);
    // A Worker clock ahead of the shard's never makes a poll outlive the
    // shard's own deadline.
    let ahead = PollRequest {
        at: Some(now + 5_000),
        ..poll(
            "ahead",
            Nat::Unrestricted,
            ProxyType::Standalone,
            "192.0.2.2",
            "DE",
        )
    };
    let Started::Parked { deadline, .. } = s.poll(now, ahead).start else {
        panic!("the poll should park");
    };
    assert_eq!(deadline, now + 10_000);
}

/// A poll the Worker refused itself because the shard was full (src/refusals.rs) is
/// counted, once sent along with a later poll, exactly as the shard counts a poll it
/// refuses as full: the poll, its idle end, its country, and its address in the set.
#[test]
fn polls_refused_as_full_by_the_worker_count_as_the_shard_counts_them() {
    use snowflake_broker::matcher::api::RefusedAddress;
    use snowflake_broker::metrics::recorder::{Refusal, RefusedPolls};
    let full_shard = || {
        let mut s = Shard::new(
            Settings {
                max_parked_polls: 1,
                ..shard().engine().settings()
            },
            PERIOD,
            START,
            [7; 16],
        );
        let now = START * 1000;
        let first = s.poll(
            now,
            poll("a", Nat::Unrestricted, ProxyType::Badge, "192.0.2.1", "CA"),
        );
        assert!(matches!(first.start, Started::Parked { .. }));
        s
    };
    let now = START * 1000 + 1;
    let mut by_shard = full_shard();
    let refused = by_shard.poll(
        now,
        poll("b", Nat::Restricted, ProxyType::Webext, "192.0.2.2", "IR"),
    );
    assert!(matches!(refused.start, Started::Now(PollReply::Refused)));

    let mut by_worker = full_shard();
    by_worker.expire(now); // nothing due: the first poll stays
    let mut carrier = poll("a", Nat::Unrestricted, ProxyType::Badge, "192.0.2.1", "CA");
    carrier.refused_meanwhile = vec![RefusedPolls {
        refusal: Refusal::Full,
        nat: Nat::Restricted,
        proxy_type: ProxyType::Webext,
        with_relay_pattern: false,
        country: Some("IR".into()),
        count: 1,
    }];
    carrier.refused_addresses = vec![RefusedAddress {
        address: ProxyAddress::Ip("192.0.2.2".parse().unwrap()),
        country: Some("IR".into()),
        nat: Nat::Restricted,
        proxy_type: ProxyType::Webext,
    }];
    // The carrier replaces the first poll (same Sid): one more poll for both shards.
    let _ = by_worker.poll(now, carrier);
    let _ = by_shard.poll(
        now,
        poll("a", Nat::Unrestricted, ProxyType::Badge, "192.0.2.1", "CA"),
    );

    let live = |s: &Shard| merge::prometheus_text([s.live_metrics()]);
    assert_eq!(live(&by_worker), live(&by_shard));
    let block = flush(&mut by_shard);
    assert_eq!(flush(&mut by_worker), block);
    assert_eq!(field(&block, "snowflake-ips-total"), "2", "{block}");
}
