//! Metrics: snowflake-stats descriptors, Prometheus text, IP scrubbing.
//!
//! Everything here is pure: no clocks, no I/O, no platform types. The
//! Durable Object shell owns the timing (period alarms), the storage and the
//! request metadata; it feeds events to a [`BrokerMetrics`] and asks it for
//! text.
//!
//! * [`recorder`]: [`BrokerMetrics`], one method per broker event, each
//!   documented with the lines and metrics it feeds.
//! * [`stats`]: the per-period accumulator [`PeriodStats`] and the
//!   `snowflake-stats` descriptor (`/metrics`), N's lines in N's order.
//! * [`proxy_set`]: the period's unique proxy addresses, kept as keyed
//!   hashes only; [`ip_key`] computes those hashes (SipHash-2-4).
//! * [`prometheus`]: lifetime counters and the `/prometheus` text.
//! * [`labels`]: countries, rendezvous methods, outcomes, binning.
//! * [`client_ip`]: client and proxy addresses from forwarding headers and
//!   ICE candidates, for geolocation.
//! * [`scrub`]: IPv4/IPv6 scrubbing of log lines.
//! * [`utc`]: Unix seconds to the descriptor's UTC timestamp.
//!
//! # Shards
//!
//! Every part is mergeable: counters add, address sets unite, and rounding
//! happens only when text is produced. Each shard keeps a `BrokerMetrics`;
//! merging all of them (in any grouping or order) and rendering gives the
//! text a single `BrokerMetrics` fed every event would give, provided all
//! shards hash addresses with the same key for the same period
//! ([`IpHasher::for_period`]).
//!
//! # Persistence
//!
//! `BrokerMetrics`, `PeriodStats` and `PromCounters` are serde types meant
//! for JSON in Durable Object storage. The address set costs 16 bytes of
//! JSON per unique proxy address (about 1.6 MB for 100,000), close to the
//! 2 MB limit of one storage value at upstream's scale (the snapshot is one
//! value today; past that size its save fails and is logged).

pub mod ip_key;
pub mod labels;
pub mod prometheus;
pub mod proxy_set;
pub mod recorder;
pub mod stats;
pub mod utc;

pub use ip_key::{counted_prefix, IpHasher, IpKey};
pub use labels::{bin_count, AnswerStatus, ClientStatus, Country, Rendezvous};
pub use prometheus::{AvailableProxies, PromCounters, CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE};
pub use proxy_set::{ProxyRecord, ProxySet};
pub use recorder::BrokerMetrics;
pub use stats::{format_country_counts, PeriodCounters, PeriodStats};
pub use utc::format_utc;
