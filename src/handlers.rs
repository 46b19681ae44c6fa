//! What each endpoint does, apart from talking to the matcher: validating a
//! request into a matcher call, and turning the matcher's reply into the
//! exact status, headers and bytes of the Go broker (docs/protocol.md §1).
//! Each reply carries the [`Outcome`] decided here, for the request log.
//! The Worker shell only moves bytes between these functions and the
//! platform, so all of this is tested natively.

use crate::config::Config;
use crate::matcher::api::CallError;
use crate::matcher::{AnswerReply, Offer, OfferReply, Poll, PollReply};
use crate::protocol::client::{self, ClientOffer};
use crate::protocol::nat::{Nat, Pool};
use crate::protocol::proxy::{self, ProxyAnswer, ProxyPoll, ProxyType};
use crate::protocol::{has_candidate, READ_LIMIT};

pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// How a request ended, as the request log names it. Decided by the
/// handler that decides the reply, never read back from the reply's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served as asked (robots, debug, metrics, a CORS preflight).
    Served,
    ClientMatch,
    NoMatch,
    /// A poll answered `no match` at once, to shed load: the matcher was
    /// full, overloaded or unreachable, or the Sid busy answering.
    PollShed,
    /// A poll answered `no match` at once because its address already holds
    /// `MAX_POLLS_PER_ADDRESS` sessions (a flood, or a crowded host).
    AddressFull,
    /// A poll answered `polled too soon` (`PROXY_POLL_INTERVAL_MS`).
    TooSoon,
    IncorrectRelayPattern,
    AnswerDelivered,
    ClientGone,
    /// A client received its proxy's answer.
    Answered,
    Denied,
    TimedOut,
    /// A client's request was refused for what it sent (`{"error":…}`).
    BadOffer,
    BadRequest,
    NotFound,
    Redirect,
    Misconfigured,
    /// The broker itself failed (its matcher or storage).
    BrokerError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "ok",
            Outcome::ClientMatch => "client match",
            Outcome::NoMatch => "no match",
            Outcome::PollShed => "no match (shed)",
            Outcome::AddressFull => "no match (address full)",
            Outcome::TooSoon => "polled too soon",
            Outcome::IncorrectRelayPattern => "incorrect relay pattern",
            Outcome::AnswerDelivered => "answer delivered",
            Outcome::ClientGone => "client gone",
            Outcome::Answered => "answered",
            Outcome::Denied => "denied",
            Outcome::TimedOut => "timed out",
            Outcome::BadOffer => "refused",
            Outcome::BadRequest => "bad request",
            Outcome::NotFound => "not found",
            Outcome::Redirect => "redirect",
            Outcome::Misconfigured => "misconfigured",
            Outcome::BrokerError => "error",
        }
    }
}

/// An HTTP response in platform-neutral form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub outcome: Outcome,
}

impl Reply {
    /// A body Go would sniff as `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: Some(TEXT_PLAIN),
            headers: Vec::new(),
            body: body.into(),
            outcome: Outcome::Served,
        }
    }

    /// A status with no body: no Content-Type, as Go's `WriteHeader` alone.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: None,
            headers: Vec::new(),
            body: String::new(),
            outcome: Outcome::Served,
        }
    }

    /// The same reply, logged as `outcome`.
    pub fn outcome(mut self, outcome: Outcome) -> Reply {
        self.outcome = outcome;
        self
    }

    /// 400 with no body: what Go answers a body it cannot read or decode.
    pub fn bad_request() -> Reply {
        Reply::empty(400).outcome(Outcome::BadRequest)
    }

    /// Go's `http.NotFound`.
    pub fn not_found() -> Reply {
        let mut r = Reply::text(404, "404 page not found\n").outcome(Outcome::NotFound);
        r.headers.push(("X-Content-Type-Options", "nosniff".into()));
        r
    }

    /// Go's `http.Redirect` with 301 (a small HTML body for GET and HEAD).
    pub fn moved(location: &str, method_is_get_or_head: bool) -> Reply {
        let mut r = if method_is_get_or_head {
            Reply {
                status: 301,
                content_type: Some("text/html; charset=utf-8"),
                headers: Vec::new(),
                body: format!(
                    "<a href=\"{}\">Moved Permanently</a>.\n\n",
                    html_escape(location)
                ),
                outcome: Outcome::Redirect,
            }
        } else {
            Reply::empty(301).outcome(Outcome::Redirect)
        };
        r.headers.push(("Location", location.to_string()));
        r
    }

    /// A setting is invalid: refuse to guess, say so.
    pub fn misconfigured(problem: &str) -> Reply {
        Reply::text(500, format!("broker misconfigured: {problem}\n"))
            .outcome(Outcome::Misconfigured)
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `/robots.txt`.
pub fn robots() -> Reply {
    Reply::text(200, "User-agent: *\nDisallow: /\n")
}

/// An over-limit body is read and thrown away up to this many bytes before
/// the 400, so the sender sees the reply rather than a reset connection
/// (Go's server likewise discards what it can). One declared longer is
/// refused unread.
pub const DRAIN_LIMIT: u64 = 2 * 1024 * 1024;

/// How to read a request body, from its `Content-Length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Within the limit: read it in one call (the platform frames it).
    Whole,
    /// No length (chunked): read with a running cap; once past the limit,
    /// nothing more is kept and the rest is drained (bounded) before 400.
    Capped,
    /// Over the limit but small: read and discard it, then 400.
    Drain,
    /// Far over the limit: 400 without reading it.
    Refuse,
}

pub fn body_plan(content_length: Option<&str>) -> BodyPlan {
    match content_length.map(|v| v.trim().parse::<u64>()) {
        None => BodyPlan::Capped,
        // A length that does not parse: the platform frames the body, and
        // the cap still holds.
        Some(Err(_)) => BodyPlan::Capped,
        Some(Ok(n)) if n <= READ_LIMIT as u64 => BodyPlan::Whole,
        Some(Ok(n)) if n <= DRAIN_LIMIT => BodyPlan::Drain,
        Some(Ok(_)) => BodyPlan::Refuse,
    }
}

/// Bodies over the limit are refused as Go's `MaxBytesReader` refuses them.
pub fn within_limit(body: &[u8]) -> Result<&[u8], Reply> {
    if body.len() > READ_LIMIT {
        Err(Reply::bad_request())
    } else {
        Ok(body)
    }
}

/// A decoded proxy poll: accepted for matching, or refused for its relay
/// pattern (still counted by the matcher's metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollCheck {
    Accepted {
        poll: Poll,
        with_relay_pattern: bool,
    },
    Rejected {
        reply: Reply,
        nat: Nat,
        proxy_type: ProxyType,
        with_relay_pattern: bool,
    },
}

/// Decodes a `/proxy` body; `Err` is the 400 for an undecodable one.
pub fn proxy_poll(config: &Config, body: &[u8]) -> Result<PollCheck, Reply> {
    let poll = ProxyPoll::decode(within_limit(body)?).map_err(|_| Reply::bad_request())?;
    let with_relay_pattern = poll.accepted_relay_pattern.is_some();
    if !config.relay_pattern_accepted(poll.accepted_relay_pattern.as_deref()) {
        return Ok(PollCheck::Rejected {
            reply: Reply::text(
                200,
                proxy::poll_response(
                    proxy::STATUS_BAD_RELAY_PATTERN,
                    "",
                    "",
                    proxy::NEXT_POLL_AFTER_BAD_PATTERN_MS,
                    "",
                ),
            )
            .outcome(Outcome::IncorrectRelayPattern),
            nat: poll.nat,
            proxy_type: poll.proxy_type,
            with_relay_pattern,
        });
    }
    Ok(PollCheck::Accepted {
        poll: Poll {
            sid: poll.sid,
            nat: poll.nat,
            proxy_type: poll.proxy_type,
            clients: poll.clients,
        },
        with_relay_pattern,
    })
}

/// A refused poll (shard full) is told to come back later than usual, which
/// sheds load instead of falling over.
pub fn refused_next_poll_ms(config: &Config) -> u64 {
    config.next_poll_ms.saturating_mul(3).max(30_000)
}

/// The `NextPoll` of an accepted poll (matched or not) in `pool` that
/// reached the Worker `waited_ms` ago: `NEXT_POLL_MS`, or, if longer, the
/// time left of the pool's `PROXY_POLL_INTERVAL_MS`, so that a proxy that
/// obeys `NextPoll` is never told `polled too soon`.
pub fn accepted_next_poll_ms(config: &Config, pool: Pool, waited_ms: u64) -> u64 {
    let left = config.poll_interval.of(pool).saturating_sub(waited_ms);
    config.next_poll_ms.max(left)
}

/// The reply to a poll; `next_poll_ms` is what an accepted one is told
/// ([`accepted_next_poll_ms`]); the others say their own.
pub fn proxy_poll_reply(config: &Config, reply: &PollReply, next_poll_ms: u64) -> Reply {
    let (body, outcome) = match reply {
        PollReply::Matched(a) => (
            proxy::poll_response(
                proxy::STATUS_MATCH,
                &a.offer,
                a.client_nat.as_str(),
                next_poll_ms,
                &a.relay_url,
            ),
            Outcome::ClientMatch,
        ),
        PollReply::NoMatch => (
            proxy::poll_response(proxy::STATUS_NO_MATCH, "", "", next_poll_ms, ""),
            Outcome::NoMatch,
        ),
        PollReply::TooSoon(left) => (
            proxy::poll_response(proxy::STATUS_TOO_SOON, "", "", *left, ""),
            Outcome::TooSoon,
        ),
        PollReply::Refused | PollReply::AddressFull => (
            proxy::poll_response(
                proxy::STATUS_NO_MATCH,
                "",
                "",
                refused_next_poll_ms(config),
                "",
            ),
            if matches!(reply, PollReply::AddressFull) {
                Outcome::AddressFull
            } else {
                Outcome::PollShed
            },
        ),
    };
    Reply::text(200, body).outcome(outcome)
}

/// A poll the matcher could not take (unreachable, overloaded, no reply in
/// time): the proxy is told `no match` and to come back later, as when the
/// matcher is full. It is the broker's trouble, not the proxy's.
pub fn proxy_poll_failed(config: &Config) -> Reply {
    proxy_poll_reply(config, &PollReply::Refused, config.next_poll_ms).outcome(Outcome::BrokerError)
}

/// Which client format a request used: they answer differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// `1.0\n{json}` over HTTP: every outcome is 200 with JSON.
    V1,
    /// Raw SDP JSON with `Snowflake-NAT-Type`: bare answer, 503, 504.
    Legacy,
}

/// Validates a `/client` request into an offer for the matcher.
pub fn client(
    config: &Config,
    body: &[u8],
    nat_header: Option<&str>,
    started_at: u64,
) -> Result<(Offer, ClientFormat), Reply> {
    let body = within_limit(body)?;
    if client::is_legacy(body) {
        // R dropped the connection here (a panic); a clear 400 is the fix.
        let offer =
            ClientOffer::decode_legacy(body, nat_header).map_err(|_| Reply::bad_request())?;
        let relay_url = match config.bridges.get(&offer.fingerprint) {
            Some(bridge) => bridge.websocket_address.clone(),
            // The default bridge is not served: the operator's list, not the client, is at fault.
            None => return Err(Reply::empty(500).outcome(Outcome::Misconfigured)),
        };
        return Ok((
            Offer {
                offer: offer.offer,
                nat: offer.nat,
                relay_url,
                started_at,
            },
            ClientFormat::Legacy,
        ));
    }
    client_v1(config, body, started_at)
        .map(|offer| (offer, ClientFormat::V1))
        .map_err(|error| {
            Reply::text(200, client::error_response(&error)).outcome(Outcome::BadOffer)
        })
}

/// Validates a 1.0 client message (from `/client` or an AMP path); the error
/// is the text for `{"error":…}`.
pub fn client_v1(config: &Config, body: &[u8], started_at: u64) -> Result<Offer, String> {
    let offer = ClientOffer::decode(body)?;
    let bridge = config
        .bridges
        .get(&offer.fingerprint)
        .ok_or_else(|| client::ERR_UNKNOWN_BRIDGE.to_string())?;
    Ok(Offer {
        offer: offer.offer,
        nat: offer.nat,
        relay_url: bridge.websocket_address.clone(),
        started_at,
    })
}

/// The JSON a 1.0 client receives for a matcher outcome.
pub fn client_v1_json(reply: &OfferReply) -> String {
    match reply {
        OfferReply::Answer(answer) => client::answer_response(answer),
        OfferReply::TimedOut => client::error_response(client::ERR_TIMED_OUT),
        OfferReply::Denied => client::error_response(client::ERR_NO_PROXIES),
    }
}

/// How a client's request ended, by the matcher's reply.
fn client_outcome(reply: &OfferReply) -> Outcome {
    match reply {
        OfferReply::Answer(_) => Outcome::Answered,
        OfferReply::TimedOut => Outcome::TimedOut,
        OfferReply::Denied => Outcome::Denied,
    }
}

pub fn client_reply(format: ClientFormat, reply: &OfferReply) -> Reply {
    let r = match (format, reply) {
        (ClientFormat::V1, r) => Reply::text(200, client_v1_json(r)),
        (ClientFormat::Legacy, OfferReply::Answer(answer)) => Reply::text(200, answer.clone()),
        (ClientFormat::Legacy, OfferReply::Denied) => Reply::empty(503),
        (ClientFormat::Legacy, OfferReply::TimedOut) => Reply::empty(504),
    };
    r.outcome(client_outcome(reply))
}

/// The reply a client gets when the matcher could not take its offer: no
/// proxy could be given it, which is what a denial tells the client (it
/// tries again, as after any denial). Logged as the broker's error.
pub fn client_failed(format: ClientFormat) -> Reply {
    client_reply(format, &OfferReply::Denied).outcome(Outcome::BrokerError)
}

/// Validates an `/answer` request.
pub fn answer(body: &[u8]) -> Result<ProxyAnswer, Reply> {
    let body = within_limit(body)?;
    if !has_candidate(body) {
        return Err(Reply::bad_request());
    }
    ProxyAnswer::decode(body).map_err(|_| Reply::bad_request())
}

pub fn answer_reply(result: AnswerReply) -> Reply {
    match result {
        AnswerReply::Delivered => {
            Reply::text(200, proxy::ANSWER_SUCCESS).outcome(Outcome::AnswerDelivered)
        }
        AnswerReply::ClientGone => {
            Reply::text(200, proxy::ANSWER_CLIENT_GONE).outcome(Outcome::ClientGone)
        }
    }
}

/// An answer the matcher could not take: its client cannot receive it, so
/// the proxy is told `client gone`, as for any answer with nobody waiting.
pub fn answer_failed() -> Reply {
    answer_reply(AnswerReply::ClientGone).outcome(Outcome::BrokerError)
}

/// A page the matcher could not serve (`/metrics`, `/prometheus`): 500
/// with what failed, as Go's handlers answer an internal error.
pub fn page_failed(error: &CallError) -> Reply {
    Reply::text(500, format!("broker error: {error}\n")).outcome(Outcome::BrokerError)
}

/// `/prometheus`: the exposition text, no CORS.
pub fn prometheus(text: String) -> Reply {
    Reply {
        status: 200,
        content_type: Some(crate::metrics::PROMETHEUS_CONTENT_TYPE),
        headers: Vec::new(),
        body: text,
        outcome: Outcome::Served,
    }
}

/// The country of an address, from the embedded geoip table.
fn locate(ip: std::net::IpAddr) -> Option<String> {
    crate::geoip::country(ip).map(str::to_string)
}

/// A client's country from the fronting CDN's `X-Forwarded-For`, believing
/// only the last `TRUSTED_HOPS` entries. A `Forwarded` header is not read:
/// the fronting CDNs append only `X-Forwarded-For`, so any `Forwarded` that
/// arrives was written by the client and would let it choose its country.
pub fn client_country(config: &Config, xff: Option<&str>) -> Option<String> {
    let hops = usize::try_from(config.trusted_hops).unwrap_or(usize::MAX);
    crate::client_ip::client_ip(None, xff, hops).and_then(locate)
}

/// An AMP client's country from the best candidate of its offer (N).
pub fn offer_country(offer: &str) -> Option<String> {
    let sdp = crate::client_ip::offer_sdp(offer)?;
    crate::client_ip::best_candidate_addr(&sdp).and_then(locate)
}

/// Every AMP outcome is a 200 AMP page carrying the client JSON in armor
/// (docs/protocol.md §1.8); the cache may keep it for 15 s.
pub fn amp_page(json: &str, outcome: Outcome) -> Reply {
    Reply {
        status: 200,
        content_type: Some("text/html"),
        headers: vec![("Cache-Control", "max-age=15".to_string())],
        body: crate::amp::encode_armor(json.as_bytes()),
        outcome,
    }
}

/// Validates an AMP rendezvous: `suffix` is the decoded path after
/// `/amp/client/`. There is no legacy format and no candidate check here.
pub fn amp_client(config: &Config, suffix: &str, started_at: u64) -> Result<Offer, Reply> {
    let message = crate::amp::decode_path(suffix).map_err(|_| {
        amp_page(
            &client::error_response(client::ERR_AMP_PATH),
            Outcome::BadOffer,
        )
    })?;
    client_v1(config, &message, started_at)
        .map_err(|e| amp_page(&client::error_response(&e), Outcome::BadOffer))
}

pub fn amp_reply(reply: &OfferReply) -> Reply {
    amp_page(&client_v1_json(reply), client_outcome(reply))
}

/// The AMP page a client gets when the matcher could not take its offer
/// (see [`client_failed`]).
pub fn amp_failed() -> Reply {
    amp_reply(&OfferReply::Denied).outcome(Outcome::BrokerError)
}
