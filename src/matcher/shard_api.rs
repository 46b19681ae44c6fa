//! What the Worker asks a matcher Durable Object, and what it answers.
//! Internal to one deployment, so plain serde JSON; the Worker has already
//! validated everything and the wire formats stay in `protocol`.

use super::{AnswerResult, Assignment, Census, Offer, Poll};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardRequest {
    Poll(Poll),
    Offer(Offer),
    Answer { sid: String, answer: String },
    Census,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::nat::Nat;
    use crate::protocol::proxy::ProxyType;

    #[test]
    fn round_trips_through_json() {
        let requests = [
            ShardRequest::Poll(Poll {
                sid: "s".into(),
                nat: Nat::Open,
                proxy_type: ProxyType::Webext,
                clients: 3,
            }),
            ShardRequest::Offer(Offer {
                offer: "o\"".into(),
                nat: Nat::Unknown,
                relay_url: "wss://x/".into(),
                started_at: 5,
            }),
            ShardRequest::Answer {
                sid: "s".into(),
                answer: "a".into(),
            },
            ShardRequest::Census,
        ];
        for r in requests {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<ShardRequest>(&text).unwrap(), r);
        }
    }
}
