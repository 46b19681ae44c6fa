//! N's structural check of offers and answers (docs/protocol.md §12.6): the string
//! must be a JSON object `{"type": <offer|pranswer|answer|rollback>, "sdp": <string>}`.

use super::json::parse_object;

/// Why a session description was refused; shown to clients after
/// `malformed session description: `.
pub fn validate(description: &str) -> Result<(), String> {
    let object =
        parse_object(description.as_bytes(), "webrtc.SessionDescription").map_err(|e| e.0)?;
    let kind = object
        .string("type", "SessionDescription.type")
        .map_err(|e| e.0)?;
    match kind.as_deref() {
        Some("offer" | "pranswer" | "answer" | "rollback") => {}
        Some(other) => return Err(format!("unknown SDP type {:?}", other)),
        None => return Err("missing type".to_string()),
    }
    match object
        .string("sdp", "SessionDescription.sdp")
        .map_err(|e| e.0)?
    {
        Some(_) => Ok(()),
        None => Err("missing sdp".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_webrtc_descriptions_only() {
        assert!(validate(r#"{"type":"offer","sdp":"v=0\r\n"}"#).is_ok());
        assert!(validate(r#"{"Type":"answer","SDP":""}"#).is_ok());
        assert!(validate("fake").is_err());
        assert!(validate(r#"{"type":"offer"}"#).is_err());
        assert!(validate(r#"{"type":"bogus","sdp":"x"}"#).is_err());
        assert!(validate(r#"{"type":"offer","sdp":1}"#).is_err());
        assert!(validate("[]").is_err());
        assert!(validate("null").is_err());
    }
}
