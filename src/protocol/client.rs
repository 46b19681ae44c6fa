//! Messages between clients and the broker (docs/protocol.md §2.3-§2.5).

use super::fingerprint::{Fingerprint, DEFAULT_FINGERPRINT};
use super::json::{parse_object, push_go_string};
use super::nat::Nat;
use super::sdp;

/// A decoded client offer, from either wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOffer {
    /// The offer string exactly as the client sent it; proxies receive it verbatim.
    pub offer: String,
    pub nat: Nat,
    pub fingerprint: Fingerprint,
}

pub const ERR_VERSION: &str = "unsupported message version";
pub const ERR_NO_OFFER: &str = "no supplied offer";
pub const ERR_FINGERPRINT: &str = "cannot decode fingerprint";
pub const ERR_NAT: &str = "invalid NAT type";
pub const ERR_NO_PROXIES: &str = "no snowflake proxies currently available";
pub const ERR_TIMED_OUT: &str = "timed out waiting for answer!";
pub const ERR_UNKNOWN_BRIDGE: &str = "bridge with requested fingerprint is unknown to the broker";
pub const ERR_AMP_PATH: &str = "cannot decode URL path";

/// Which wire format a `/client` body uses.
pub fn is_legacy(body: &[u8]) -> bool {
    body.first() == Some(&b'{')
}

impl ClientOffer {
    /// Decodes the `1.0\n{json}` format; the error text goes to the client
    /// inside `{"error":…}`.
    pub fn decode(body: &[u8]) -> Result<ClientOffer, String> {
        let split = body.iter().position(|&b| b == b'\n');
        let (version, json) = match split {
            Some(at) => {
                let (version, rest) = body.split_at(at);
                (version, rest.get(1..).unwrap_or_default())
            }
            None => return Err(ERR_VERSION.to_string()),
        };
        if version != b"1.0" {
            return Err(ERR_VERSION.to_string());
        }
        let o = parse_object(json, "messages.ClientPollRequest").map_err(|e| e.0)?;
        let offer = o
            .string("offer", "ClientPollRequest.offer")
            .map_err(|e| e.0)?
            .unwrap_or_default();
        let nat = o.string("nat", "ClientPollRequest.nat").map_err(|e| e.0)?;
        let fingerprint = o
            .string("fingerprint", "ClientPollRequest.fingerprint")
            .map_err(|e| e.0)?
            .filter(|f| !f.is_empty());
        if offer.is_empty() {
            return Err(ERR_NO_OFFER.to_string());
        }
        let fingerprint = Fingerprint::parse(fingerprint.as_deref().unwrap_or(DEFAULT_FINGERPRINT))
            .ok_or_else(|| ERR_FINGERPRINT.to_string())?;
        let nat =
            Nat::parse(nat.as_deref().unwrap_or_default()).ok_or_else(|| ERR_NAT.to_string())?;
        // N's check comes last so that R's error texts keep their precedence.
        sdp::validate(&offer).map_err(|why| format!("malformed session description: {why}"))?;
        Ok(ClientOffer {
            offer,
            nat,
            fingerprint,
        })
    }

    /// Decodes a legacy body: the whole body is the offer, the NAT type comes
    /// from the `Snowflake-NAT-Type` header and the bridge is the default.
    pub fn decode_legacy(body: &[u8], nat_header: Option<&str>) -> Result<ClientOffer, String> {
        // Go's header parser trims spaces and tabs around a value.
        let header = nat_header.unwrap_or_default().trim_matches([' ', '\t']);
        let nat = Nat::parse(header).ok_or_else(|| ERR_NAT.to_string())?;
        let offer = super::json::go_lossy_utf8(body).into_owned();
        sdp::validate(&offer).map_err(|why| format!("malformed session description: {why}"))?;
        Ok(ClientOffer {
            offer,
            nat,
            fingerprint: Fingerprint::default_bridge(),
        })
    }
}

/// `{"answer":…}`
pub fn answer_response(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len() + answer.len() / 8 + 16);
    out.push_str("{\"answer\":");
    push_go_string(&mut out, answer);
    out.push('}');
    out
}

/// `{"error":…}`
pub fn error_response(error: &str) -> String {
    let mut out = String::with_capacity(error.len() + 16);
    out.push_str("{\"error\":");
    push_go_string(&mut out, error);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = r#"{\"type\":\"offer\",\"sdp\":\"v=0\"}"#;

    fn body(json: &str) -> Vec<u8> {
        format!("1.0\n{json}").into_bytes()
    }

    #[test]
    fn decodes_the_go_client_message() {
        let b = body(&format!(
            r#"{{"offer":"{OFFER}","nat":"unrestricted","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}}"#
        ));
        let c = ClientOffer::decode(&b).unwrap();
        assert_eq!(c.offer, r#"{"type":"offer","sdp":"v=0"}"#);
        assert_eq!(c.nat, Nat::Unrestricted);
        assert_eq!(c.fingerprint, Fingerprint::default_bridge());
        let c = ClientOffer::decode(&body(&format!(r#"{{"OFFER":"{OFFER}"}}"#))).unwrap();
        assert_eq!(
            (c.nat, c.fingerprint),
            (Nat::Unknown, Fingerprint::default_bridge())
        );
    }

    #[test]
    fn error_texts_of_cases_32_to_35() {
        let e = |b: &[u8]| ClientOffer::decode(b).unwrap_err();
        assert_eq!(e(br#"{"version":"2.0"}"#), ERR_VERSION);
        assert_eq!(e(b""), ERR_VERSION);
        assert_eq!(e(b"1.0\r\n{}"), ERR_VERSION);
        assert_eq!(e(b"2.0\n{}"), ERR_VERSION);
        assert_eq!(e(&body(r#"{"nat":"unknown"}"#)), ERR_NO_OFFER);
        assert_eq!(
            e(&body(
                r#"{"offer":"fake","nat":"unknown","fingerprint":"123123"}"#
            )),
            ERR_FINGERPRINT
        );
        assert_eq!(e(&body(r#"{"offer":"fake","nat":"cone"}"#)), ERR_NAT);
        assert_eq!(e(b"1.0\n"), "unexpected end of JSON input");
        assert_eq!(
            e(b"1.0\nx"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            e(&body(r#"{"offer":1}"#)),
            "json: cannot unmarshal number into Go struct field ClientPollRequest.offer of type string"
        );
        assert!(e(&body(r#"{"offer":"fake"}"#)).starts_with("malformed session description: "));
    }

    #[test]
    fn legacy_bodies_take_nat_from_the_header() {
        let offer = br#"{"type":"offer","sdp":"v=0"}"#;
        assert!(is_legacy(offer));
        let c = ClientOffer::decode_legacy(offer, Some("restricted")).unwrap();
        assert_eq!((c.nat, c.offer.as_bytes()), (Nat::Restricted, &offer[..]));
        assert_eq!(
            ClientOffer::decode_legacy(offer, Some("cone")).unwrap_err(),
            ERR_NAT
        );
        assert_eq!(
            ClientOffer::decode_legacy(offer, None).unwrap().nat,
            Nat::Unknown
        );
        assert!(ClientOffer::decode_legacy(b"{test}", None).is_err());
        // Spaces and tabs around the value are trimmed, as Go's header parser does.
        assert_eq!(
            ClientOffer::decode_legacy(offer, Some(" unknown \t"))
                .unwrap()
                .nat,
            Nat::Unknown
        );
        assert_eq!(
            ClientOffer::decode_legacy(offer, Some("\trestricted "))
                .unwrap()
                .nat,
            Nat::Restricted
        );
    }

    #[test]
    fn responses_are_byte_exact() {
        assert_eq!(answer_response("v=0\r\n"), r#"{"answer":"v=0\r\n"}"#);
        assert_eq!(
            error_response(ERR_NO_PROXIES),
            r#"{"error":"no snowflake proxies currently available"}"#
        );
    }
}
