//! AMP armor encoder (docs/protocol.md §7.2).
//!
//! An AMP cache only serves valid AMP HTML, so the response JSON travels as
//! base64 text inside `<pre>` elements of a minimal AMP page.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The fixed AMP page head: the standard AMP boilerplate from amp.dev.
/// Must stay byte-exact (983 bytes, SHA-256 `0c3206bf…9d8f`): the Go
/// client does not care, but the AMP cache validates the page.
pub const HEADER: &str = concat!(
    "<!doctype html>\n",
    "<html amp>\n",
    "<head>\n",
    "<meta charset=\"utf-8\">\n",
    "<script async src=\"https://cdn.ampproject.org/v0.js\"></script>\n",
    "<link rel=\"canonical\" href=\"#\">\n",
    "<meta name=\"viewport\" content=\"width=device-width\">\n",
    "<style amp-boilerplate>",
    "body{",
    "-webkit-animation:-amp-start 8s steps(1,end) 0s 1 normal both;",
    "-moz-animation:-amp-start 8s steps(1,end) 0s 1 normal both;",
    "-ms-animation:-amp-start 8s steps(1,end) 0s 1 normal both;",
    "animation:-amp-start 8s steps(1,end) 0s 1 normal both}",
    "@-webkit-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}",
    "@-moz-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}",
    "@-ms-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}",
    "@-o-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}",
    "@keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}",
    "</style>",
    "<noscript><style amp-boilerplate>",
    "body{-webkit-animation:none;-moz-animation:none;-ms-animation:none;animation:none}",
    "</style></noscript>\n",
    "</head>\n",
    "<body>\n",
);

/// Closes the page; no final newline, as in the Go broker.
pub const TRAILER: &str = "</body>\n</html>";

/// Characters per line of the payload stream.
pub const CHUNK_LEN: usize = 32;

/// Lines per `<pre>`: (32·1024 − 1) / 33, keeping each element's text under
/// 32 KiB.
pub const CHUNKS_PER_PRE: usize = 992;

const PRE_OPEN: &str = "<pre>\n";
const PRE_CLOSE: &str = "</pre>\n";

/// Wraps `payload` (the response JSON) in AMP armor, byte for byte as the Go
/// broker does.
#[must_use]
pub fn encode(payload: &[u8]) -> String {
    // The stream is `0` (format version) followed by padded standard base64.
    let b64_len = base64::encoded_len(payload.len(), true).unwrap_or(0);
    let mut stream = String::with_capacity(b64_len.saturating_add(1));
    stream.push('0');
    STANDARD.encode_string(payload, &mut stream);

    let mut out = String::with_capacity(armored_len(stream.len()));
    out.push_str(HEADER);
    push_stream(&mut out, &stream);
    out.push_str(TRAILER);
    out
}

/// Exact length of the armor for a stream of `stream_len` characters, so the
/// output is allocated once.
fn armored_len(stream_len: usize) -> usize {
    let chunks = stream_len.div_ceil(CHUNK_LEN);
    let pres = chunks.div_ceil(CHUNKS_PER_PRE);
    // One `\n` per chunk (a partial last chunk gets it from `\n</pre>\n`).
    let pre_tags = pres.saturating_mul(PRE_OPEN.len() + PRE_CLOSE.len());
    HEADER
        .len()
        .saturating_add(stream_len)
        .saturating_add(chunks)
        .saturating_add(pre_tags)
        .saturating_add(TRAILER.len())
}

/// Writes `stream` as 32-character lines grouped into `<pre>` elements of at
/// most 992 lines, with the exact opening and closing rules of §7.2.
fn push_stream(out: &mut String, stream: &str) {
    // Lines written in the currently open `<pre>`; 0 means none is open.
    let mut lines = 0usize;
    let mut rest = stream;
    while !rest.is_empty() {
        // The stream is ASCII, so a split at 32 never falls inside a char;
        // a shorter remainder is the partial last chunk.
        let (chunk, tail) = rest.split_at_checked(CHUNK_LEN).unwrap_or((rest, ""));
        rest = tail;
        if lines == 0 {
            out.push_str(PRE_OPEN);
        }
        out.push_str(chunk);
        if chunk.len() == CHUNK_LEN {
            out.push('\n');
            lines = lines.saturating_add(1);
            if lines == CHUNKS_PER_PRE {
                out.push_str(PRE_CLOSE);
                lines = 0;
            }
        } else {
            out.push('\n');
            out.push_str(PRE_CLOSE);
            lines = 0;
        }
    }
    if lines > 0 {
        out.push_str(PRE_CLOSE);
    }
}

#[cfg(test)]
mod tests {
    //! `encode` always yields an odd stream length (1 + 4k), so the
    //! "last chunk exactly full" endings of §7.2 are only reachable here.
    use super::*;

    fn armor_stream(stream: &str) -> String {
        let mut out = String::new();
        push_stream(&mut out, stream);
        assert_eq!(
            HEADER.len() + out.len() + TRAILER.len(),
            armored_len(stream.len())
        );
        out
    }

    #[test]
    fn full_last_chunk_closes_open_pre() {
        let line = "a".repeat(CHUNK_LEN);
        assert_eq!(armor_stream(&line), format!("<pre>\n{line}\n</pre>\n"));
        assert_eq!(
            armor_stream(&line.repeat(2)),
            format!("<pre>\n{line}\n{line}\n</pre>\n")
        );
    }

    #[test]
    fn full_pre_at_end_is_not_closed_twice() {
        let line = "b".repeat(CHUNK_LEN);
        let body = format!("{line}\n").repeat(CHUNKS_PER_PRE);
        let stream = line.repeat(CHUNKS_PER_PRE);
        assert_eq!(armor_stream(&stream), format!("<pre>\n{body}</pre>\n"));
        let two = line.repeat(2 * CHUNKS_PER_PRE);
        assert_eq!(
            armor_stream(&two),
            format!("<pre>\n{body}</pre>\n<pre>\n{body}</pre>\n")
        );
    }

    #[test]
    fn partial_chunk_after_full_pre_opens_new_pre() {
        let line = "c".repeat(CHUNK_LEN);
        let body = format!("{line}\n").repeat(CHUNKS_PER_PRE);
        let stream = format!("{}x", line.repeat(CHUNKS_PER_PRE));
        assert_eq!(
            armor_stream(&stream),
            format!("<pre>\n{body}</pre>\n<pre>\nx\n</pre>\n")
        );
    }

    #[test]
    fn empty_stream_writes_nothing() {
        assert_eq!(armor_stream(""), "");
    }
}
