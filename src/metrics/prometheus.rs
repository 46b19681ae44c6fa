//! `/prometheus`: N's metrics (docs/protocol.md §5.3 as changed by §12.11) in the
//! Prometheus text exposition format, version 0.0.4, laid out as Go's
//! `client_golang` lays it out: families sorted by name, each with `# HELP`
//! and `# TYPE` before its samples, label pairs sorted by label name,
//! samples sorted by label values, families without samples left out.
//!
//! Counters here are lifetime totals: never reset, persisted across
//! restarts, summed across shards. The "rounded" ones are published as
//! `ceil(total / 8) * 8`; rounding happens only when rendering, so merging
//! shards' totals and then rounding is exact.

use super::labels::{bin_count, AnswerStatus, ClientStatus, Country, Rendezvous};
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The `Content-Type` of the exposition text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Samples of one metric family: label values (in the family's label-name
/// order, which is alphabetical) to value.
///
/// Serialized as a list of `[[label values…], value]` pairs, since JSON
/// object keys cannot be lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series<V>(BTreeMap<Vec<String>, V>);

impl<V> Default for Series<V> {
    fn default() -> Self {
        Series(BTreeMap::new())
    }
}

impl<V: Copy + Default + SaturatingAdd> Series<V> {
    fn add(&mut self, labels: &[&str], delta: V) {
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        let slot = self.0.entry(key).or_default();
        *slot = slot.saturating_add_(delta);
    }

    fn merge(&mut self, other: &Series<V>) {
        for (key, value) in &other.0 {
            let slot = self.0.entry(key.clone()).or_default();
            *slot = slot.saturating_add_(*value);
        }
    }

    /// The value of one sample, if it exists.
    pub fn get(&self, labels: &[&str]) -> Option<V> {
        self.0
            .iter()
            .find(|(k, _)| k.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|(_, v)| *v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Saturating addition for the two value types (counters never wrap).
pub trait SaturatingAdd {
    fn saturating_add_(self, other: Self) -> Self;
}

impl SaturatingAdd for u64 {
    fn saturating_add_(self, other: Self) -> Self {
        self.saturating_add(other)
    }
}

impl SaturatingAdd for i64 {
    fn saturating_add_(self, other: Self) -> Self {
        self.saturating_add(other)
    }
}

impl<V: Serialize> Serialize for Series<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, V> Deserialize<'de> for Series<V>
where
    V: Deserialize<'de> + Copy + Default + SaturatingAdd,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<(Vec<String>, V)>::deserialize(d)?;
        let mut series: Series<V> = Series::default();
        for (labels, value) in entries {
            let slot: &mut V = series.0.entry(labels).or_default();
            *slot = slot.saturating_add_(value);
        }
        Ok(series)
    }
}

/// The lifetime counters behind `/prometheus`. Each method names the event
/// it records; the broker calls them through `BrokerMetrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromCounters {
    /// `snowflake_proxy_total{cc,nat,type}` (exact).
    pub proxy_total: Series<u64>,
    /// `snowflake_rounded_client_poll_total{cc,nat,rendezvous_method,status}`.
    pub client_poll: Series<u64>,
    /// `snowflake_rounded_proxy_poll_total{nat,status,type}`.
    pub proxy_poll: Series<u64>,
    /// `snowflake_rounded_proxy_poll_with_relay_url_extension_total{nat,type}`.
    pub proxy_poll_with_relay_url: Series<u64>,
    /// `snowflake_rounded_proxy_poll_without_relay_url_extension_total{nat,type}`.
    pub proxy_poll_without_relay_url: Series<u64>,
    /// `snowflake_rounded_proxy_poll_rejected_relay_url_extension_total{nat,type}`.
    pub proxy_poll_rejected_relay_url: Series<u64>,
    /// `snowflake_rounded_proxy_answer_total{status,type}`.
    pub proxy_answer: Series<u64>,
    /// This broker's own `snowflake_proxy_polled_too_soon_total{nat,type}`
    /// (exact): polls answered `polled too soon`.
    pub proxy_too_soon: Series<u64>,
    /// This broker's own `snowflake_sqs_malformed_messages_total{reason}`
    /// (exact): SQS messages deleted unanswered.
    pub sqs_malformed: Series<u64>,
}

impl PromCounters {
    /// A decoded proxy poll, with or without `AcceptedRelayPattern`.
    pub fn proxy_poll(&mut self, nat: Nat, kind: ProxyType, with_relay_pattern: bool) {
        self.proxy_polls(nat, kind, with_relay_pattern, 1);
    }

    /// `n` such polls.
    pub fn proxy_polls(&mut self, nat: Nat, kind: ProxyType, with_relay_pattern: bool, n: u64) {
        let series = if with_relay_pattern {
            &mut self.proxy_poll_with_relay_url
        } else {
            &mut self.proxy_poll_without_relay_url
        };
        series.add(&[nat.as_str(), kind.as_str()], n);
    }

    /// A poll answered `incorrect relay pattern`.
    pub fn proxy_rejected_relay_pattern(&mut self, nat: Nat, kind: ProxyType) {
        self.proxy_poll_rejected_relay_url
            .add(&[nat.as_str(), kind.as_str()], 1);
    }

    /// A poll that passed the relay check (N increments this per poll,
    /// despite its HELP text).
    pub fn proxy_seen(&mut self, country: Country, nat: Nat, kind: ProxyType) {
        self.proxies_seen(country, nat, kind, 1);
    }

    /// `n` such polls.
    pub fn proxies_seen(&mut self, country: Country, nat: Nat, kind: ProxyType, n: u64) {
        self.proxy_total
            .add(&[country.as_str(), nat.as_str(), kind.as_str()], n);
    }

    /// An SQS message deleted unanswered.
    pub fn sqs_malformed(&mut self, reason: &str) {
        self.sqs_malformed.add(&[reason], 1);
    }

    /// A poll answered `polled too soon`.
    pub fn proxy_too_soon(&mut self, nat: Nat, kind: ProxyType, n: u64) {
        self.proxy_too_soon.add(&[nat.as_str(), kind.as_str()], n);
    }

    /// A poll that ended `no match` (`idle`) or received an offer
    /// (`matched`).
    pub fn proxy_poll_done(&mut self, nat: Nat, kind: ProxyType, matched: bool) {
        self.proxy_polls_done(nat, kind, matched, 1);
    }

    /// `n` such polls.
    pub fn proxy_polls_done(&mut self, nat: Nat, kind: ProxyType, matched: bool, n: u64) {
        let status = if matched { "matched" } else { "idle" };
        self.proxy_poll
            .add(&[nat.as_str(), status, kind.as_str()], n);
    }

    /// An `/answer`; `kind` is `None` when the Sid is unknown, which N
    /// labels `type=""`.
    pub fn proxy_answer(&mut self, status: AnswerStatus, kind: Option<ProxyType>) {
        let kind = kind.map_or("", ProxyType::as_str);
        self.proxy_answer.add(&[status.as_str(), kind], 1);
    }

    /// A client request that ended with `outcome`.
    pub fn client(
        &mut self,
        method: Rendezvous,
        nat: Nat,
        country: Country,
        outcome: ClientStatus,
    ) {
        self.client_poll.add(
            &[
                country.as_str(),
                nat.as_str(),
                method.as_str(),
                outcome.as_str(),
            ],
            1,
        );
    }

    /// Adds another shard's (or a restored snapshot's) totals.
    pub fn merge(&mut self, other: &PromCounters) {
        self.proxy_total.merge(&other.proxy_total);
        self.client_poll.merge(&other.client_poll);
        self.proxy_poll.merge(&other.proxy_poll);
        self.proxy_poll_with_relay_url
            .merge(&other.proxy_poll_with_relay_url);
        self.proxy_poll_without_relay_url
            .merge(&other.proxy_poll_without_relay_url);
        self.proxy_poll_rejected_relay_url
            .merge(&other.proxy_poll_rejected_relay_url);
        self.proxy_answer.merge(&other.proxy_answer);
        self.proxy_too_soon.merge(&other.proxy_too_soon);
        self.sqs_malformed.merge(&other.sqs_malformed);
    }
}

/// `snowflake_available_proxies{nat,type}`: proxy polls parked right now.
/// Not persisted (a restarted object holds no polls); summed across shards.
/// Like N's gauge, a sample that went back to 0 is still printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AvailableProxies {
    pub series: Series<i64>,
}

impl AvailableProxies {
    /// A poll started waiting for a client.
    pub fn inc(&mut self, nat: Nat, kind: ProxyType) {
        self.series.add(&[nat.as_str(), kind.as_str()], 1);
    }

    /// A waiting poll ended (matched, idle, replaced or dropped).
    pub fn dec(&mut self, nat: Nat, kind: ProxyType) {
        self.series.add(&[nat.as_str(), kind.as_str()], -1);
    }

    pub fn merge(&mut self, other: &AvailableProxies) {
        self.series.merge(&other.series);
    }
}

/// What one shard's object has served since it started, for `/prometheus`:
/// how evenly load spreads, and how many requests a client costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequests {
    pub poll: u64,
    pub offer: u64,
    pub answer: u64,
    /// Everything else: pages, counts, the period key.
    pub other: u64,
    /// Offers this shard decided (the client's final reply came from it).
    pub offers_ended: u64,
}

struct Family<'a, V> {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    series: &'a Series<V>,
    rounded: bool,
}

fn counter<'a>(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: &'a Series<u64>,
    rounded: bool,
) -> Family<'a, u64> {
    Family {
        name,
        help,
        kind: "counter",
        labels,
        series,
        rounded,
    }
}

/// Renders the exposition text for `counters` and `available`.
pub fn render(counters: &PromCounters, available: &AvailableProxies) -> String {
    render_deployment(counters, available, &[])
}

/// The same, with what each matcher shard (by index) has served since it
/// last started: how evenly load spreads, how near a shard is to the
/// platform's limit, and how many requests a client costs (offer requests
/// over offers ended). README, "Choosing `MATCHER_SHARDS`".
pub fn render_deployment(
    counters: &PromCounters,
    available: &AvailableProxies,
    shard_requests: &[ShardRequests],
) -> String {
    let mut per_call = Series::<u64>::default();
    let mut ended = Series::<u64>::default();
    for (i, r) in shard_requests.iter().enumerate() {
        let shard = i.to_string();
        for (call, n) in [
            ("answer", r.answer),
            ("offer", r.offer),
            ("other", r.other),
            ("poll", r.poll),
        ] {
            per_call.add(&[call, shard.as_str()], n);
        }
        ended.add(&[shard.as_str()], r.offers_ended);
    }
    let shard_families = [
        counter(
            "snowflake_matcher_shard_offers_ended_total",
            "The number of client offers each matcher shard decided (matched, denied or timed out)",
            &["shard"],
            &ended,
            false,
        ),
        counter(
            "snowflake_matcher_shard_requests_total",
            "The number of requests each matcher shard has served since it started, by call",
            &["call", "shard"],
            &per_call,
            false,
        ),
    ];
    let c = counters;
    let families = [
        counter(
            "snowflake_proxy_polled_too_soon_total",
            "The number of snowflake proxy polls answered polled too soon (PROXY_POLL_INTERVAL_MS)",
            &["nat", "type"],
            &c.proxy_too_soon,
            false,
        ),
        counter(
            "snowflake_proxy_total",
            "The number of unique snowflake IPs",
            &["cc", "nat", "type"],
            &c.proxy_total,
            false,
        ),
        counter(
            "snowflake_rounded_client_poll_total",
            "The number of snowflake client polls, rounded up to a multiple of 8",
            &["cc", "nat", "rendezvous_method", "status"],
            &c.client_poll,
            true,
        ),
        counter(
            "snowflake_rounded_proxy_answer_total",
            "The number of snowflake proxy answers, rounded up to a multiple of 8",
            &["status", "type"],
            &c.proxy_answer,
            true,
        ),
        counter(
            "snowflake_rounded_proxy_poll_rejected_relay_url_extension_total",
            "The number of snowflake proxy polls rejected by Relay URL Extension, rounded up to a multiple of 8",
            &["nat", "type"],
            &c.proxy_poll_rejected_relay_url,
            true,
        ),
        counter(
            "snowflake_rounded_proxy_poll_total",
            "The number of snowflake proxy polls, rounded up to a multiple of 8",
            &["nat", "status", "type"],
            &c.proxy_poll,
            true,
        ),
        counter(
            "snowflake_rounded_proxy_poll_with_relay_url_extension_total",
            "The number of snowflake proxy polls with Relay URL Extension, rounded up to a multiple of 8",
            &["nat", "type"],
            &c.proxy_poll_with_relay_url,
            true,
        ),
        counter(
            "snowflake_rounded_proxy_poll_without_relay_url_extension_total",
            "The number of snowflake proxy polls without Relay URL Extension, rounded up to a multiple of 8",
            &["nat", "type"],
            &c.proxy_poll_without_relay_url,
            true,
        ),
        counter(
            "snowflake_sqs_malformed_messages_total",
            "The number of SQS messages deleted unanswered, by reason",
            &["reason"],
            &c.sqs_malformed,
            false,
        ),
    ];
    let gauge = Family {
        name: "snowflake_available_proxies",
        help: "The number of currently available snowflake proxies",
        kind: "gauge",
        labels: &["nat", "type"],
        series: &available.series,
        rounded: false,
    };
    // Names are fixed; this order is the sorted order (checked by a test).
    let mut out = String::new();
    write_family(&mut out, &gauge, |v| format_value(i128::from(v)));
    for family in &shard_families {
        write_family(&mut out, family, |v| format_value(i128::from(v)));
    }
    for family in &families {
        let rounded = family.rounded;
        write_family(&mut out, family, |v| {
            format_value(i128::from(if rounded { bin_count(v) } else { v }))
        });
    }
    out
}

fn write_family<V: Copy>(out: &mut String, f: &Family<'_, V>, value: impl Fn(V) -> String) {
    let samples: Vec<_> = f
        .series
        .0
        .iter()
        .filter(|(labels, _)| labels.len() == f.labels.len())
        .collect();
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
    for (labels, v) in samples {
        out.push_str(f.name);
        out.push('{');
        for (i, (name, val)) in f.labels.iter().zip(labels.iter()).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{name}=\"{}\"", escape_label(val));
        }
        let _ = writeln!(out, "}} {}", value(*v));
    }
}

/// `\` → `\\`, newline → `\n` (HELP lines).
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `\` → `\\`, `"` → `\"`, newline → `\n` (label values).
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it:
/// plain digits below 10⁶, shortest exponent form (`1.234567e+06`) from
/// there on.
fn format_value(v: i128) -> String {
    if v.unsigned_abs() < 1_000_000 {
        return v.to_string();
    }
    // The value Go prints is the nearest f64.
    #[allow(clippy::cast_precision_loss)]
    let f = v as f64;
    let e = format!("{f:e}"); // shortest round-trip digits, e.g. "1.2e6"
    match e.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let pad = if digits.len() < 2 { "0" } else { "" };
            format!("{mantissa}e{sign}{pad}{digits}")
        }
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values_like_go() {
        assert_eq!(format_value(0), "0");
        assert_eq!(format_value(8), "8");
        assert_eq!(format_value(-3), "-3");
        assert_eq!(format_value(999_999), "999999");
        assert_eq!(format_value(1_000_000), "1e+06");
        assert_eq!(format_value(1_000_008), "1.000008e+06");
        assert_eq!(format_value(1_234_567), "1.234567e+06");
        assert_eq!(format_value(-16_000_000), "-1.6e+07");
        assert_eq!(format_value(i128::from(u64::MAX)), "1.8446744073709552e+19");
    }

    #[test]
    fn escapes_label_values_and_help() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\"c\nd"), "a\\\\b\"c\\nd");
    }

    #[test]
    fn family_names_are_in_sorted_order() {
        let mut c = PromCounters::default();
        let mut a = AvailableProxies::default();
        let cc = Country::new(Some("CA"));
        c.proxy_seen(cc, Nat::Open, ProxyType::Webext);
        c.client(Rendezvous::Http, Nat::Open, cc, ClientStatus::Matched);
        c.proxy_answer(AnswerStatus::Success, Some(ProxyType::Webext));
        c.proxy_rejected_relay_pattern(Nat::Open, ProxyType::Webext);
        c.proxy_poll_done(Nat::Open, ProxyType::Webext, true);
        c.proxy_poll(Nat::Open, ProxyType::Webext, true);
        c.proxy_poll(Nat::Open, ProxyType::Webext, false);
        a.inc(Nat::Open, ProxyType::Webext);
        let text = render(&c, &a);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names.len(), 8);
        assert_eq!(names, sorted);
    }

    #[test]
    fn series_round_trip_through_json() {
        let mut c = PromCounters::default();
        c.proxy_answer(AnswerStatus::Timeout, None);
        c.proxy_answer(AnswerStatus::Timeout, None);
        let json = serde_json::to_string(&c.proxy_answer).unwrap();
        assert_eq!(json, r#"[[["timeout",""],2]]"#);
        let back: Series<u64> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c.proxy_answer);
        assert_eq!(back.get(&["timeout", ""]), Some(2));
    }
}
