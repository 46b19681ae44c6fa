//! Messages between proxies and the broker (docs/protocol.md §2.1, §2.2, §12.2).

use super::json::{parse_object, push_go_string, Field, JsonError};
use super::nat::Nat;
use super::sdp;

/// Proxy implementations the broker counts by name; others are `unknown`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ProxyType {
    Standalone,
    Webext,
    Badge,
    Iptproxy,
    Bloco,
    Unknown,
}

impl ProxyType {
    pub const KNOWN: [ProxyType; 5] = [
        ProxyType::Standalone,
        ProxyType::Webext,
        ProxyType::Badge,
        ProxyType::Iptproxy,
        ProxyType::Bloco,
    ];

    pub fn parse(s: &str) -> ProxyType {
        match s {
            "standalone" => ProxyType::Standalone,
            "webext" => ProxyType::Webext,
            "badge" => ProxyType::Badge,
            "iptproxy" => ProxyType::Iptproxy,
            "bloco" => ProxyType::Bloco,
            _ => ProxyType::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Standalone => "standalone",
            ProxyType::Webext => "webext",
            ProxyType::Badge => "badge",
            ProxyType::Iptproxy => "iptproxy",
            ProxyType::Bloco => "bloco",
            ProxyType::Unknown => "unknown",
        }
    }
}

/// A decoded `/proxy` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPoll {
    pub sid: String,
    pub proxy_type: ProxyType,
    pub nat: Nat,
    /// Self-reported client load; N clamps negative values to 0.
    pub clients: i64,
    /// `None` when the key was absent or null: an extension-unaware proxy.
    pub accepted_relay_pattern: Option<String>,
}

/// The longest Sid accepted, in bytes. Deployed proxies send 22 base64
/// characters; Go accepts any length, but a Sid is kept while its poll is
/// parked, so an unbounded one lets a few polls take the matcher's memory.
pub const MAX_SID_BYTES: usize = 256;

/// Why a proxy message was refused; every one of them is a 400 with an
/// empty body on the wire, the text is for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    Json(JsonError),
    UnknownVersion,
    NoSid,
    SidTooLong,
    InvalidNat,
    NoSidOrAnswer,
    MalformedAnswer(String),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Json(e) => write!(f, "{e}"),
            ProxyError::UnknownVersion => f.write_str("using unknown version"),
            ProxyError::NoSid => f.write_str("no supplied session id"),
            ProxyError::SidTooLong => write!(f, "session id longer than {MAX_SID_BYTES} bytes"),
            ProxyError::InvalidNat => f.write_str("invalid NAT type"),
            ProxyError::NoSidOrAnswer => f.write_str("no supplied sid or answer"),
            ProxyError::MalformedAnswer(why) => write!(f, "malformed session description: {why}"),
        }
    }
}

/// Protocol 1.x: the part of `Version` before the first `.` must be `1`.
fn version_ok(version: Option<&str>) -> bool {
    version.unwrap_or_default().split('.').next() == Some("1")
}

impl ProxyPoll {
    pub fn decode(body: &[u8]) -> Result<ProxyPoll, ProxyError> {
        const T: &str = "messages.ProxyPollRequest";
        let o = parse_object(body, T).map_err(ProxyError::Json)?;
        let sid = o
            .string("Sid", "ProxyPollRequest.Sid")
            .map_err(ProxyError::Json)?;
        let version = o
            .string("Version", "ProxyPollRequest.Version")
            .map_err(ProxyError::Json)?;
        let kind = o
            .string("Type", "ProxyPollRequest.Type")
            .map_err(ProxyError::Json)?;
        let nat = o
            .string("NAT", "ProxyPollRequest.NAT")
            .map_err(ProxyError::Json)?;
        let clients = o
            .int("Clients", "ProxyPollRequest.Clients")
            .map_err(ProxyError::Json)?;
        let pattern = o
            .string_pointer(
                "AcceptedRelayPattern",
                "ProxyPollRequest.AcceptedRelayPattern",
            )
            .map_err(ProxyError::Json)?;

        if !version_ok(version.as_deref()) {
            return Err(ProxyError::UnknownVersion);
        }
        let sid = sid.unwrap_or_default();
        if sid.is_empty() {
            return Err(ProxyError::NoSid);
        }
        if sid.len() > MAX_SID_BYTES {
            return Err(ProxyError::SidTooLong);
        }
        let nat = Nat::parse(nat.as_deref().unwrap_or_default()).ok_or(ProxyError::InvalidNat)?;
        Ok(ProxyPoll {
            sid,
            proxy_type: ProxyType::parse(kind.as_deref().unwrap_or_default()),
            nat,
            clients: clients.unwrap_or(0).max(0),
            accepted_relay_pattern: match pattern {
                Field::Set(p) => Some(p),
                Field::Absent | Field::Null => None,
            },
        })
    }
}

/// A decoded `/answer` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAnswer {
    pub sid: String,
    pub answer: String,
}

impl ProxyAnswer {
    pub fn decode(body: &[u8]) -> Result<ProxyAnswer, ProxyError> {
        const T: &str = "messages.ProxyAnswerRequest";
        let o = parse_object(body, T).map_err(ProxyError::Json)?;
        let version = o
            .string("Version", "ProxyAnswerRequest.Version")
            .map_err(ProxyError::Json)?;
        let sid = o
            .string("Sid", "ProxyAnswerRequest.Sid")
            .map_err(ProxyError::Json)?;
        let answer = o
            .string("Answer", "ProxyAnswerRequest.Answer")
            .map_err(ProxyError::Json)?;
        if !version_ok(version.as_deref()) {
            return Err(ProxyError::UnknownVersion);
        }
        let (sid, answer) = (sid.unwrap_or_default(), answer.unwrap_or_default());
        if sid.is_empty() || answer.is_empty() {
            return Err(ProxyError::NoSidOrAnswer);
        }
        if sid.len() > MAX_SID_BYTES {
            return Err(ProxyError::SidTooLong);
        }
        sdp::validate(&answer).map_err(ProxyError::MalformedAnswer)?;
        Ok(ProxyAnswer { sid, answer })
    }
}

/// The `Status` strings of a proxy poll response.
pub const STATUS_MATCH: &str = "client match";
pub const STATUS_NO_MATCH: &str = "no match";
pub const STATUS_BAD_RELAY_PATTERN: &str = "incorrect relay pattern";
/// N's answer to a poll within the address's poll interval.
pub const STATUS_TOO_SOON: &str = "polled too soon";

/// N tells a proxy with a refused relay pattern to come back in an hour.
pub const NEXT_POLL_AFTER_BAD_PATTERN_MS: u64 = 3_600_000;

/// `{"Status":…,"Offer":…,"NAT":…,"NextPoll":…,"RelayURL":…}` in N's field order.
pub fn poll_response(
    status: &str,
    offer: &str,
    nat: &str,
    next_poll_ms: u64,
    relay_url: &str,
) -> String {
    let mut out = String::with_capacity(offer.len() + offer.len() / 8 + 96);
    out.push_str("{\"Status\":");
    push_go_string(&mut out, status);
    out.push_str(",\"Offer\":");
    push_go_string(&mut out, offer);
    out.push_str(",\"NAT\":");
    push_go_string(&mut out, nat);
    out.push_str(",\"NextPoll\":");
    out.push_str(&next_poll_ms.to_string());
    out.push_str(",\"RelayURL\":");
    push_go_string(&mut out, relay_url);
    out.push('}');
    out
}

pub const ANSWER_SUCCESS: &str = "{\"Status\":\"success\"}";
pub const ANSWER_CLIENT_GONE: &str = "{\"Status\":\"client gone\"}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_protocol_version_of_cases_20_to_23() {
        let p = ProxyPoll::decode(br#"{"Sid":"ymbcCMto7KHNGYlp","Version":"1.0"}"#).unwrap();
        assert_eq!(
            (p.proxy_type, p.nat, p.clients, p.accepted_relay_pattern),
            (ProxyType::Unknown, Nat::Unknown, 0, None)
        );
        let p = ProxyPoll::decode(br#"{"Sid":"a","Version":"1.1","Type":"standalone"}"#).unwrap();
        assert_eq!(p.proxy_type, ProxyType::Standalone);
        let p = ProxyPoll::decode(
            br#"{"Sid":"a","Version":"1.2","Type":"standalone","NAT":"restricted","Clients":24}"#,
        )
        .unwrap();
        assert_eq!((p.nat, p.clients), (Nat::Restricted, 24));
        let p = ProxyPoll::decode(
            br#"{"Sid":"a","Version":"1.3","AcceptedRelayPattern":"snowfalke.torproject.org"}"#,
        )
        .unwrap();
        assert_eq!(
            p.accepted_relay_pattern.as_deref(),
            Some("snowfalke.torproject.org")
        );
        let p = ProxyPoll::decode(
            br#"{"sid":"a","version":"1.","acceptedrelaypattern":null,"clients":-5,"nat":"open"}"#,
        )
        .unwrap();
        assert_eq!(
            (p.clients, p.nat, p.accepted_relay_pattern),
            (0, Nat::Open, None)
        );
    }

    #[test]
    fn caps_the_sid_length() {
        let poll = |sid: &str| format!(r#"{{"Sid":"{sid}","Version":"1.0"}}"#);
        let longest = "x".repeat(MAX_SID_BYTES);
        assert!(ProxyPoll::decode(poll(&longest).as_bytes()).is_ok());
        let over = "x".repeat(MAX_SID_BYTES + 1);
        assert_eq!(
            ProxyPoll::decode(poll(&over).as_bytes()),
            Err(ProxyError::SidTooLong)
        );
        let answer = format!(r#"{{"Sid":"{over}","Version":"1.0","Answer":"a"}}"#);
        assert_eq!(
            ProxyAnswer::decode(answer.as_bytes()),
            Err(ProxyError::SidTooLong)
        );
    }

    #[test]
    fn refuses_bad_polls_of_cases_24_to_28() {
        assert!(matches!(ProxyPoll::decode(b""), Err(ProxyError::Json(_))));
        assert_eq!(
            ProxyPoll::decode(br#"{"Sid":"ymbcCMto7KHNGYlp"}"#),
            Err(ProxyError::UnknownVersion)
        );
        assert_eq!(ProxyPoll::decode(b"{}"), Err(ProxyError::UnknownVersion));
        assert_eq!(
            ProxyPoll::decode(br#"{"Version":"1.0"}"#),
            Err(ProxyError::NoSid)
        );
        assert_eq!(
            ProxyPoll::decode(br#"{"Version":"2.0","Sid":"a"}"#),
            Err(ProxyError::UnknownVersion)
        );
        assert_eq!(
            ProxyPoll::decode(br#"{"Version":"0.9","Sid":"a"}"#),
            Err(ProxyError::UnknownVersion)
        );
        assert_eq!(
            ProxyPoll::decode(br#"{"Version":"1.0","Sid":"a","NAT":"Restricted"}"#),
            Err(ProxyError::InvalidNat)
        );
        assert!(matches!(
            ProxyPoll::decode(br#"{"Version":"1.0","Sid":"a","Clients":1.5}"#),
            Err(ProxyError::Json(_))
        ));
        assert!(matches!(
            ProxyPoll::decode(br#"{"Version":1,"Sid":"a"}"#),
            Err(ProxyError::Json(_))
        ));
        assert!(matches!(
            ProxyPoll::decode(b"\x00\xff garbage"),
            Err(ProxyError::Json(_))
        ));
    }

    #[test]
    fn answers_need_sid_answer_and_a_session_description() {
        let sdp = r#"{\"type\":\"answer\",\"sdp\":\"v=0\"}"#;
        let ok = format!(r#"{{"Version":"1.0","Sid":"s","Answer":"{sdp}"}}"#);
        assert_eq!(
            ProxyAnswer::decode(ok.as_bytes()).unwrap(),
            ProxyAnswer {
                sid: "s".into(),
                answer: r#"{"type":"answer","sdp":"v=0"}"#.into()
            }
        );
        assert_eq!(
            ProxyAnswer::decode(br#"{"Version":"1.0","Answer":"test a=candidate"}"#),
            Err(ProxyError::NoSidOrAnswer)
        );
        assert_eq!(
            ProxyAnswer::decode(br#"{"Version":"1.0","Sid":"test","x":"a=candidate"}"#),
            Err(ProxyError::NoSidOrAnswer)
        );
        assert_eq!(
            ProxyAnswer::decode(br#"{"type":"offer","sdp":"a=candidate"}"#),
            Err(ProxyError::UnknownVersion)
        );
        assert!(matches!(
            ProxyAnswer::decode(br#"{"Version":"1.3","Sid":"s","Answer":"test answer"}"#),
            Err(ProxyError::MalformedAnswer(_))
        ));
    }

    #[test]
    fn responses_are_byte_exact() {
        assert_eq!(
            poll_response(STATUS_NO_MATCH, "", "", 20000, ""),
            r#"{"Status":"no match","Offer":"","NAT":"","NextPoll":20000,"RelayURL":""}"#
        );
        assert_eq!(
            poll_response(
                STATUS_MATCH,
                "{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n<&>\"}",
                "unknown",
                20000,
                "wss://snowflake.torproject.net/"
            ),
            r#"{"Status":"client match","Offer":"{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n\u003c\u0026\u003e\"}","NAT":"unknown","NextPoll":20000,"RelayURL":"wss://snowflake.torproject.net/"}"#
        );
    }
}
