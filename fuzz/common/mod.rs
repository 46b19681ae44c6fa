//! Helpers shared by the fuzz targets (each target includes this file with
//! `#[path]`, so not every helper is used by every target).
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Text of an armored AMP page back to the payload, the simple way: the text
/// between each `<pre>` and its `</pre>`, ASCII whitespace removed, the
/// leading format byte `0` dropped, standard base64 decoded.
pub fn decode_armor(html: &str) -> Result<Vec<u8>, String> {
    let mut stream = String::new();
    let mut rest = html;
    while let Some(open) = rest.find("<pre>") {
        let after = &rest[open + "<pre>".len()..];
        let close = after.find("</pre>").ok_or("unclosed <pre>")?;
        stream.extend(after[..close].chars().filter(|c| !c.is_ascii_whitespace()));
        rest = &after[close + "</pre>".len()..];
    }
    let data = stream
        .strip_prefix('0')
        .ok_or_else(|| format!("no format byte `0` in {stream:?}"))?;
    STANDARD
        .decode(data)
        .map_err(|e| format!("bad base64: {e}"))
}

/// The JSON object an armored page carries.
pub fn armored_json(html: &str) -> serde_json::Map<String, serde_json::Value> {
    let payload = decode_armor(html).unwrap_or_else(|e| panic!("armor does not decode: {e}"));
    match serde_json::from_slice(&payload) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("armored payload is not a JSON object: {other:?}"),
    }
}

/// Parses `text` as a JSON object or fails the run.
pub fn json_object(text: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("not a JSON object: {text:?} ({other:?})"),
    }
}

/// Lossy text of fuzz bytes, as a Worker would hand a header or URL over.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
