//! A test-only AMP armor decoder, written from docs/protocol.md §7.2 "Decoder"
//! (the Go client's behaviour), to check the broker's encoder end to end.
//!
//! It is a small HTML tokenizer: enough for comments, doctype, tags with
//! quoted attributes and text, which is all an armored page can contain.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Decodes an armored page back to the payload bytes.
pub fn decode(html: &[u8]) -> Result<Vec<u8>, String> {
    let text = pre_text(html)?;
    // Step 2: drop ASCII whitespace (Go's HTML definition: \t \n \f \r space).
    let stream: Vec<u8> = text
        .into_iter()
        .filter(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .collect();
    // Step 3: format byte, then standard base64.
    match stream.split_first() {
        None => Err("missing armor version indicator".to_string()),
        Some((b'0', rest)) => STANDARD
            .decode(rest)
            .map_err(|e| format!("bad base64: {e}")),
        Some((v, _)) => Err(format!(
            "unknown armor version indicator '{}'",
            v.escape_ascii()
        )),
    }
}

/// Step 1 and 4: the concatenated text of all `<pre>` elements.
fn pre_text(html: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut in_pre = false;
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with(b"<!--") {
            // Comment: its text never counts, even inside <pre>.
            i = match find(&html[i + 4..], b"-->") {
                Some(end) => i + 4 + end + 3,
                None => html.len(),
            };
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            // Doctype or bogus comment.
            i = match find(rest, b">") {
                Some(end) => i + end + 1,
                None => html.len(),
            };
        } else if let Some((name, is_end, len)) = tag(rest) {
            i += len;
            if name.eq_ignore_ascii_case(b"pre") {
                match (is_end, in_pre) {
                    (false, true) => return Err("nested <pre>".to_string()),
                    (false, false) => in_pre = true,
                    (true, _) => in_pre = false,
                }
            }
            // Any other tag inside <pre> is ignored, its text still counts.
        } else {
            if in_pre {
                out.push(html[i]);
            }
            i += 1;
        }
    }
    if in_pre {
        return Err("missing </pre>".to_string());
    }
    Ok(out)
}

/// If `s` starts with a start or end tag, returns `(name, is_end_tag, length
/// in bytes including '>')`. An unterminated tag runs to the end of input.
fn tag(s: &[u8]) -> Option<(&[u8], bool, usize)> {
    let (is_end, name_start) = match s {
        [b'<', b'/', c, ..] if c.is_ascii_alphabetic() => (true, 2),
        [b'<', c, ..] if c.is_ascii_alphabetic() => (false, 1),
        _ => return None,
    };
    let name_len = s[name_start..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
        .unwrap_or(s.len() - name_start);
    let name = &s[name_start..name_start + name_len];
    // Skip attributes up to the closing `>`, honouring quoted values.
    let mut quote = None;
    let mut j = name_start + name_len;
    while j < s.len() {
        match (quote, s[j]) {
            (None, b'>') => return Some((name, is_end, j + 1)),
            (None, q @ (b'"' | b'\'')) => quote = Some(q),
            (Some(q), b) if b == q => quote = None,
            _ => {}
        }
        j += 1;
    }
    Some((name, is_end, s.len()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
