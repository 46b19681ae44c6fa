//! What the Worker asks a matcher Durable Object, and what it answers.
//! Internal to one deployment, so plain serde JSON; the Worker has already
//! validated everything and the wire formats stay in `protocol`.

use super::{AnswerResult, Assignment, Census, Offer, Poll};
use crate::metrics::Rendezvous;
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What the Worker saw of a proxy poll, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProxySeen {
    pub with_relay_pattern: bool,
    /// Two-letter country of the proxy's address (Cloudflare's `request.cf`).
    pub country: Option<String>,
    /// The proxy's address; hashed by the shard, never stored.
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    pub poll: Poll,
    pub seen: ProxySeen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRequest {
    pub offer: Offer,
    pub method: Rendezvous,
    /// The client's country, if its address could be located.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardRequest {
    Poll(PollRequest),
    /// A decoded poll refused for its relay pattern: counted, never parked.
    RejectedPoll {
        nat: Nat,
        proxy_type: ProxyType,
        with_relay_pattern: bool,
    },
    Offer(OfferRequest),
    Answer {
        sid: String,
        answer: String,
    },
    Census,
    /// Every closed `snowflake-stats` block, oldest first.
    MetricsLog,
    Prometheus,
}

/// How a proxy poll ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PollReply {
    Matched(Assignment),
    NoMatch,
    /// Not parked: the shard is full or the Sid is busy answering.
    Refused,
}

/// How a client offer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferReply {
    Answer(String),
    TimedOut,
    Denied,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardReply {
    Poll(PollReply),
    Offer(OfferReply),
    Answer(AnswerResult),
    Census(Census),
    Text(String),
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let requests = [
            ShardRequest::Poll(PollRequest {
                poll: Poll {
                    sid: "s".into(),
                    nat: Nat::Open,
                    proxy_type: ProxyType::Webext,
                    clients: 3,
                },
                seen: ProxySeen {
                    with_relay_pattern: true,
                    country: Some("CA".into()),
                    ip: "129.97.208.23".parse().ok(),
                },
            }),
            ShardRequest::Offer(OfferRequest {
                offer: Offer {
                    offer: "o\"".into(),
                    nat: Nat::Unknown,
                    relay_url: "wss://x/".into(),
                    started_at: 5,
                },
                method: Rendezvous::Ampcache,
                country: None,
            }),
            ShardRequest::RejectedPoll {
                nat: Nat::Unknown,
                proxy_type: ProxyType::Badge,
                with_relay_pattern: false,
            },
            ShardRequest::Answer {
                sid: "s".into(),
                answer: "a".into(),
            },
            ShardRequest::Census,
            ShardRequest::MetricsLog,
            ShardRequest::Prometheus,
        ];
        for r in requests {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<ShardRequest>(&text).unwrap(), r);
        }
    }
}
