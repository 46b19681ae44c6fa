//! One broker to the outside: what every shard answered, merged as numbers
//! and sets, then rendered once. The text is the same whether the numbers
//! came from one shard or many, because rounding happens only here.

use super::api::{ClosedPeriod, LiveMetrics};
use super::Census;
use crate::metrics::{prometheus, PeriodStats};
use std::collections::{BTreeMap, HashMap};

/// The `/debug` counts of every shard together.
pub fn census(shards: impl IntoIterator<Item = Census>) -> Census {
    let mut by_type = HashMap::new();
    let mut by_nat = HashMap::new();
    let mut total = Census::default();
    for c in shards {
        total.sessions = total.sessions.saturating_add(c.sessions);
        total.parked_polls = total.parked_polls.saturating_add(c.parked_polls);
        total.waiting_clients = total.waiting_clients.saturating_add(c.waiting_clients);
        for (t, n) in c.by_type {
            *by_type.entry(t).or_insert(0usize) += n;
        }
        for (nat, n) in c.by_nat {
            *by_nat.entry(nat).or_insert(0usize) += n;
        }
    }
    total.by_type = by_type.into_iter().collect();
    total.by_type.sort();
    total.by_nat = by_nat.into_iter().collect();
    total.by_nat.sort();
    total
}

/// The `/prometheus` text of every shard's live metrics together (in shard
/// order: each shard's request count is labelled with its index).
pub fn prometheus_text(shards: impl IntoIterator<Item = LiveMetrics>) -> String {
    let mut total = LiveMetrics::default();
    let mut requests = Vec::new();
    for m in shards {
        total.lifetime.merge(&m.lifetime);
        total.available.merge(&m.available);
        requests.push(m.requests);
    }
    prometheus::render_deployment(&total.lifetime, &total.available, &requests)
}

/// The `/metrics` text: every closed period, oldest first, each the merge
/// of what every shard counted in it.
pub fn metrics_text(shards: impl IntoIterator<Item = Vec<ClosedPeriod>>) -> String {
    let mut periods: BTreeMap<(u64, u64), PeriodStats> = BTreeMap::new();
    for closed in shards {
        for p in closed {
            periods
                .entry((p.end, p.seconds))
                .or_default()
                .merge(&p.stats);
        }
    }
    periods
        .iter()
        .map(|((end, seconds), stats)| stats.descriptor(*end, *seconds))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shards_requests_are_labelled_with_its_index() {
        let shard = |poll, offers_ended| LiveMetrics {
            requests: super::super::api::ShardRequests {
                poll,
                offers_ended,
                ..Default::default()
            },
            ..LiveMetrics::default()
        };
        let text = prometheus_text([shard(3, 1), shard(5, 0)]);
        assert_eq!(
            text,
            "# HELP snowflake_matcher_shard_offers_ended_total The number of client offers each matcher shard decided (matched, denied or timed out)\n\
             # TYPE snowflake_matcher_shard_offers_ended_total counter\n\
             snowflake_matcher_shard_offers_ended_total{shard=\"0\"} 1\n\
             snowflake_matcher_shard_offers_ended_total{shard=\"1\"} 0\n\
             # HELP snowflake_matcher_shard_requests_total The number of requests each matcher shard has served since it started, by call\n\
             # TYPE snowflake_matcher_shard_requests_total counter\n\
             snowflake_matcher_shard_requests_total{call=\"answer\",shard=\"0\"} 0\n\
             snowflake_matcher_shard_requests_total{call=\"answer\",shard=\"1\"} 0\n\
             snowflake_matcher_shard_requests_total{call=\"offer\",shard=\"0\"} 0\n\
             snowflake_matcher_shard_requests_total{call=\"offer\",shard=\"1\"} 0\n\
             snowflake_matcher_shard_requests_total{call=\"other\",shard=\"0\"} 0\n\
             snowflake_matcher_shard_requests_total{call=\"other\",shard=\"1\"} 0\n\
             snowflake_matcher_shard_requests_total{call=\"poll\",shard=\"0\"} 3\n\
             snowflake_matcher_shard_requests_total{call=\"poll\",shard=\"1\"} 5\n"
        );
    }
}
