//! The calls the Worker makes to a matcher Durable Object, each with its
//! own reply type, so a reply that does not fit its call cannot be written.
//!
//! Internal to one deployment, so plain serde JSON; the Worker has already
//! validated everything and the wire formats stay in `protocol`. Each call
//! is sent to the path [`Call::PATH`] of the object and answered with
//! [`Call::Reply`], or with an error status whose text says what failed
//! ([`CallError`]).

use super::routing::Pools;
use super::{Assignment, Census, Millis, Offer, Poll};
pub use crate::metrics::prometheus::ShardRequests;
use crate::metrics::recorder::RefusedPolls;
use crate::metrics::{AvailableProxies, IpKey, PeriodStats, PromCounters, Rendezvous};
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One kind of request to a matcher, and what it answers.
pub trait Call: Serialize + DeserializeOwned {
    /// The object's path for this call.
    const PATH: &'static str;
    type Reply: Serialize + DeserializeOwned;
}

/// What the Worker saw of a proxy poll, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProxySeen {
    pub with_relay_pattern: bool,
    /// Two-letter country of the proxy's address (Cloudflare's `request.cf`).
    pub country: Option<String>,
    /// The proxy's address, as the shard may keep it.
    pub address: Option<ProxyAddress>,
}

/// A proxy's address, for the unique-address metrics and
/// `MAX_POLLS_PER_ADDRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProxyAddress {
    /// Hashed by the Worker with the deployment's key for the period
    /// ([`PeriodKeyRequest`]), so every shard counts an address alike.
    Key(IpKey),
    /// The address itself, hashed by the shard with its own key and never
    /// stored: with one shard, or when the period key could not be had.
    Ip(IpAddr),
}

/// A proxy poll that passed validation and the relay-pattern check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    pub poll: Poll,
    pub seen: ProxySeen,
    /// When the poll reached the Worker. The poll interval is counted in
    /// these times, so the `NextPoll` the Worker computes from its own
    /// clock is exactly when the address may poll again, whatever the hop
    /// took. None from a Worker older than the interval: the shard's clock.
    #[serde(default)]
    pub at: Option<Millis>,
    /// Polls the Worker isolate refused itself since its last poll here,
    /// for this shard to count (src/refusals.rs).
    #[serde(default)]
    pub refused_meanwhile: Vec<RefusedPolls>,
    /// The addresses of the polls among those refused as full, for the
    /// period's address set (each once per isolate and send).
    #[serde(default)]
    pub refused_addresses: Vec<RefusedAddress>,
}

/// The address of a poll a Worker isolate refused as full (src/refusals.rs),
/// with what the shard records of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RefusedAddress {
    pub address: ProxyAddress,
    pub country: Option<String>,
    pub nat: Nat,
    pub proxy_type: ProxyType,
}

/// How a proxy poll ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PollReply {
    Matched(Assignment),
    NoMatch,
    /// Not parked: the shard is full or the Sid is busy answering. The
    /// proxy is told `no match` and to come back later than usual.
    Refused,
    /// Not parked: the poll's address already holds `MAX_POLLS_PER_ADDRESS`
    /// sessions. Told the same as `Refused`; the Worker also remembers the
    /// address for a moment, so a flood's re-polls cost no matcher request.
    AddressFull,
    /// Not parked: the address's last accepted poll for this pool was less
    /// than `PROXY_POLL_INTERVAL_MS` ago; it may poll again in this many
    /// milliseconds.
    TooSoon(Millis),
}

impl Call for PollRequest {
    const PATH: &'static str = "/poll";
    type Reply = PollReply;
}

/// A decoded poll refused for its relay pattern: counted, never parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedPoll {
    pub nat: Nat,
    pub proxy_type: ProxyType,
    pub with_relay_pattern: bool,
}

/// A call that has nothing to say beyond "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done;

impl Call for RejectedPoll {
    const PATH: &'static str = "/rejected";
    type Reply = Done;
}

/// An SQS message the consumer deleted unanswered (src/worker/sqs.rs),
/// for a shard to count; `reason` is [`crate::sqs::Malformed::as_str`] or
/// `refused` (a body the client logic refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsMalformed {
    pub reason: String,
}

impl Call for SqsMalformed {
    const PATH: &'static str = "/sqs-malformed";
    type Reply = Done;
}

/// A client offer for one bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRequest {
    pub offer: Offer,
    pub method: Rendezvous,
    /// The client's country, if its address could be located.
    pub country: Option<String>,
    /// The last shard this client tries: it denies (and counts the denial)
    /// if it holds no proxy the client may use; an earlier one answers
    /// [`OfferOutcome::Elsewhere`] instead, uncounted. A call from a Worker
    /// older than sharding (during a deploy) has none: it is the last.
    #[serde(default = "is_last")]
    pub last: bool,
}

fn is_last() -> bool {
    true
}

/// What a shard did with an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferOutcome {
    /// The client's final reply.
    Ended(OfferReply),
    /// Nothing here for this client (only when it was not the last shard).
    Elsewhere,
}

/// How a client offer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferReply {
    Answer(String),
    TimedOut,
    Denied,
}

impl Call for OfferRequest {
    const PATH: &'static str = "/offer";
    type Reply = OfferOutcome;
}

/// A proxy's answer for the client whose offer it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRequest {
    pub sid: String,
    pub answer: String,
    /// The last shard the Worker asks: it answers `client gone` (and counts
    /// it) for a Sid it does not know; an earlier one answers
    /// [`AnswerOutcome::Elsewhere`], uncounted. None from an older Worker:
    /// the last.
    #[serde(default = "is_last")]
    pub last: bool,
}

/// What a shard did with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerOutcome {
    Ended(AnswerReply),
    /// This shard does not know the Sid (only when it was not the last).
    Elsewhere,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerReply {
    Delivered,
    ClientGone,
}

impl Call for AnswerRequest {
    const PATH: &'static str = "/answer";
    type Reply = AnswerOutcome;
}

/// The sessions the matcher knows, for `/debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CensusRequest;

impl Call for CensusRequest {
    const PATH: &'static str = "/census";
    type Reply = Census;
}

/// The lifetime counters and the gauge of waiting proxies, as numbers: the
/// Worker merges every shard's and renders `/prometheus` once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMetricsRequest;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveMetrics {
    pub lifetime: PromCounters,
    pub available: AvailableProxies,
    /// Requests this shard's object has served since it started.
    #[serde(default)]
    pub requests: ShardRequests,
}

impl ShardRequests {
    /// One more request to `path`.
    pub fn count(&mut self, path: &str) {
        let slot = match path {
            PollRequest::PATH => &mut self.poll,
            OfferRequest::PATH => &mut self.offer,
            AnswerRequest::PATH => &mut self.answer,
            _ => &mut self.other,
        };
        *slot = slot.saturating_add(1);
    }
}

impl Call for LiveMetricsRequest {
    const PATH: &'static str = "/live-metrics";
    type Reply = LiveMetrics;
}

/// Every closed `snowflake-stats` period the shard keeps, as numbers and
/// address sets: the Worker merges the shards' periods and renders once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedPeriodsRequest;

/// One closed period of one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedPeriod {
    /// End of the period, Unix seconds.
    pub end: u64,
    /// Its length in seconds.
    pub seconds: u64,
    pub stats: PeriodStats,
}

impl ClosedPeriod {
    /// Start of the period, Unix seconds (its address rows are stored under it).
    pub fn start(&self) -> u64 {
        self.end.saturating_sub(self.seconds)
    }
}

impl Call for ClosedPeriodsRequest {
    const PATH: &'static str = "/closed-periods";
    type Reply = Vec<ClosedPeriod>;
}

/// The deployment's key for hashing proxy addresses in the current
/// metrics period. Shard 0 holds it (and draws a new one each period); the
/// Worker asks once per period and isolate, and hashes before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodKeyRequest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodKey {
    /// The period's end, Unix seconds: the key is not used past it.
    pub end: u64,
    /// Hex of the period's 16-byte hashing key (derived from shard 0's
    /// secret for this period alone).
    pub key: String,
}

impl Call for PeriodKeyRequest {
    const PATH: &'static str = "/period-key";
    type Reply = PeriodKey;
}

/// Every reply of a shard: the call's reply, and the shard's pools at the
/// moment it was sent, for the Worker's board (src/matcher/routing.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered<R> {
    pub reply: R,
    pub pools: Pools,
}

/// Why a call got no reply of its type. Each says what failed, so the
/// Worker can log it and answer in the protocol's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The object could not be reached (or threw): no reply at all.
    Unreachable(String),
    /// The platform refused the call because the object is overloaded.
    Overloaded(String),
    /// The object did not answer by the call's deadline (and a margin).
    NoReplyInTime,
    /// The object answered that it failed (for example, its storage).
    Failed(String),
    /// The object's reply could not be read as this call's reply type.
    BadReply(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "matcher unreachable: {e}"),
            CallError::Overloaded(e) => write!(f, "matcher overloaded: {e}"),
            CallError::NoReplyInTime => write!(f, "matcher did not reply in time"),
            CallError::Failed(e) => write!(f, "matcher failed: {e}"),
            CallError::BadReply(e) => write!(f, "matcher reply unreadable: {e}"),
        }
    }
}

impl CallError {
    /// The Worker's log line for a failed call to `path`: distinct for each
    /// kind of failure, and naming what failed (storage, platform text).
    pub fn log_line(&self, path: &str) -> String {
        format!("snowflake-broker: {path}: {self}")
    }
}

/// Reads a call's request body; None if it is not that call.
pub fn decode_call<C: Call>(body: &[u8]) -> Option<C> {
    serde_json::from_slice(body).ok()
}

/// The status a matcher answers a failed call with.
pub const FAILED_STATUS: u16 = 500;

/// Decodes an object's HTTP reply to call `C`: 200 carries the JSON reply
/// with the shard's pools, [`FAILED_STATUS`] the text of what failed.
pub fn decode_reply<C: Call>(status: u16, body: &[u8]) -> Result<Answered<C::Reply>, CallError> {
    if status != 200 {
        let text = String::from_utf8_lossy(body).into_owned();
        return Err(CallError::Failed(format!("{status} {text}")));
    }
    serde_json::from_slice(body).map_err(|e| CallError::BadReply(e.to_string()))
}

/// Whether a platform error thrown by a stub call means "overloaded" (the
/// platform's documented texts all start so; they must be shed, not retried).
pub fn is_overloaded(error_text: &str) -> bool {
    error_text.contains("Durable Object is overloaded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::routing::PoolHead;

    fn round_trip<C: Call + PartialEq + std::fmt::Debug>(call: C) {
        let text = serde_json::to_string(&call).unwrap();
        assert_eq!(serde_json::from_str::<C>(&text).unwrap(), call);
    }

    #[test]
    fn calls_round_trip_through_json() {
        round_trip(PollRequest {
            poll: Poll {
                sid: "s".into(),
                nat: Nat::Open,
                proxy_type: ProxyType::Webext,
                clients: 3,
            },
            seen: ProxySeen {
                with_relay_pattern: true,
                country: Some("CA".into()),
                address: "129.97.208.23".parse().ok().map(ProxyAddress::Ip),
            },
            at: Some(1_700_000_000_000),
            refused_meanwhile: vec![RefusedPolls {
                refusal: crate::metrics::recorder::Refusal::TooSoon,
                nat: Nat::Strict,
                proxy_type: ProxyType::Iptproxy,
                with_relay_pattern: true,
                country: Some("IR".into()),
                count: 12,
            }],
            refused_addresses: vec![RefusedAddress {
                address: ProxyAddress::Ip("2001:db8::1".parse().unwrap()),
                country: None,
                nat: Nat::Unrestricted,
                proxy_type: ProxyType::Webext,
            }],
        });
        round_trip(OfferRequest {
            offer: Offer {
                offer: "o\"".into(),
                nat: Nat::Unknown,
                relay_url: "wss://x/".into(),
                started_at: 5,
            },
            method: Rendezvous::Ampcache,
            country: None,
            last: false,
        });
        round_trip(RejectedPoll {
            nat: Nat::Unknown,
            proxy_type: ProxyType::Badge,
            with_relay_pattern: false,
        });
        round_trip(AnswerRequest {
            sid: "s".into(),
            answer: "a".into(),
            last: false,
        });
        round_trip(CensusRequest);
        round_trip(LiveMetricsRequest);
        round_trip(ClosedPeriodsRequest);
        round_trip(PeriodKeyRequest);
    }

    #[test]
    fn an_offer_without_last_is_the_last_shard_tried() {
        let call = OfferRequest {
            offer: Offer {
                offer: "o".into(),
                nat: Nat::Unknown,
                relay_url: "r".into(),
                started_at: 1,
            },
            method: Rendezvous::Http,
            country: None,
            last: false,
        };
        let mut value = serde_json::to_value(&call).unwrap();
        value.as_object_mut().unwrap().remove("last");
        let old: OfferRequest = decode_call(value.to_string().as_bytes()).unwrap();
        assert!(old.last);
        // So is an answer, and a poll from such a Worker has no time.
        let old: AnswerRequest = decode_call(br#"{"sid":"s","answer":"a"}"#).unwrap();
        assert!(old.last);
        let poll = r#"{"poll":{"sid":"s","nat":"Open","proxy_type":"Webext","clients":0},"seen":{"with_relay_pattern":true,"country":null,"address":null}}"#;
        let old: PollRequest = decode_call(poll.as_bytes()).unwrap();
        assert_eq!(old.at, None);
    }

    #[test]
    fn replies_decode_only_as_their_own_type() {
        let pools = [PoolHead::default(); 3];
        let body = serde_json::to_vec(&Answered {
            reply: PollReply::NoMatch,
            pools,
        })
        .unwrap();
        assert_eq!(
            decode_reply::<PollRequest>(200, &body),
            Ok(Answered {
                reply: PollReply::NoMatch,
                pools
            })
        );
        assert!(matches!(
            decode_reply::<OfferRequest>(200, &body),
            Err(CallError::BadReply(_))
        ));
        assert_eq!(
            decode_reply::<PollRequest>(500, b"storage: put failed"),
            Err(CallError::Failed("500 storage: put failed".into()))
        );
    }

    #[test]
    fn recognises_the_platforms_overload_errors() {
        assert!(is_overloaded(
            "Error: Durable Object is overloaded. Too many requests queued."
        ));
        assert!(!is_overloaded("Network connection lost."));
    }
}
