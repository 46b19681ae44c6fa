//! IP address scrubbing for log lines (docs/protocol.md §5.4, upstream `safelog`).
//!
//! Upstream uses one large regular expression; a regex engine would bloat the
//! wasm, so this is a single left-to-right scanner instead. It works on
//! *tokens*: maximal runs of the characters an address can be written with
//! (hex digits, `.`, `:`, and `%3a`/`%3A` for an URL-encoded colon), plus the
//! bracketed form `[v6]` / `[v6]:port`. A token is replaced by `[scrubbed]`
//! when all of these hold:
//! * the character before it is neither a word character (`[A-Za-z0-9_]`)
//!   nor a colon, or the token starts the input; or it is a label's colon
//!   after a word (`ip:1.2.3.4`, `host:[::1]`);
//! * the character after it is not a word character (a colon only when a
//!   space follows, as in `from 1.2.3.4:80: `), or the token ends the input;
//! * the token, minus dots that end a sentence, is exactly one of
//!   `IPv4`, `IPv4:port`, `IPv6`, `IPv6:port`, `[IPv6]`, `[IPv6]:port`, where
//!   IPv6 may be compressed or end in an embedded IPv4 and a port is 1 to 5
//!   digits.
//!
//! Differences from the upstream regex, all on the side of fewer false
//! positives: addresses are validated (octets ≤ 255, a well-formed IPv6 with
//! 8 groups or one `::`), so MAC addresses, `999.1.1.1` and version strings
//! such as `1.2.3.4.5` are left alone, where upstream would scrub a prefix.

/// Replaces every IPv4 and IPv6 address in `line` by `[scrubbed]`.
///
/// Works on any text, including several lines at once (a newline is an
/// ordinary separator). Runs in one pass over the input.
pub fn scrub(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let prev = i.checked_sub(1).and_then(|p| bytes.get(p).copied());
        let may_start = prev.is_none_or(|p| !is_word(p) && p != b':');
        if c == b'[' {
            // `host:[::1]`: a colon before a bracket is a label's.
            let may_open = prev.is_none_or(|p| !is_word(p));
            if let Some(end) = may_open.then(|| bracketed_end(bytes, i)).flatten() {
                out.extend_from_slice(SCRUBBED);
                i = end;
            } else {
                out.push(c);
                i += 1;
            }
            continue;
        }
        let run_end = run_end(bytes, i);
        if run_end == i {
            out.push(c);
            i += 1;
            continue;
        }
        let run = bytes.get(i..run_end).unwrap_or_default();
        let next = bytes.get(run_end).copied();
        let found = if may_start {
            address_in_run(run, next)
        } else {
            after_label(run, next)
        };
        match found {
            Some((skip, len)) => {
                out.extend_from_slice(run.get(..skip).unwrap_or_default());
                out.extend_from_slice(SCRUBBED);
                out.extend_from_slice(run.get(skip + len..).unwrap_or_default());
            }
            None => out.extend_from_slice(run),
        }
        i = run_end;
    }
    // Only ASCII ranges were replaced and runs never split a UTF-8 sequence,
    // so this conversion cannot fail; the lossy path is a belt-and-braces.
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

const SCRUBBED: &[u8] = b"[scrubbed]";

/// `[A-Za-z0-9_]`, Go's `\w`.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The length of an encoded colon (`%3a`, `%3A`) or a plain address
/// character at `i`, or 0 if there is none.
fn address_char_len(bytes: &[u8], i: usize) -> usize {
    match bytes.get(i) {
        Some(c) if c.is_ascii_hexdigit() || *c == b'.' || *c == b':' => 1,
        Some(b'%')
            if bytes.get(i + 1) == Some(&b'3') && matches!(bytes.get(i + 2), Some(b'a' | b'A')) =>
        {
            3
        }
        _ => 0,
    }
}

/// The end of the maximal run of address characters starting at `start`.
fn run_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    loop {
        let n = address_char_len(bytes, i);
        if n == 0 {
            return i;
        }
        i += n;
    }
}

/// The run with `%3a`/`%3A` turned into `:`, so validators see plain text.
fn decode_colons(run: &[u8]) -> String {
    let mut s = String::with_capacity(run.len());
    let mut i = 0;
    while let Some(&c) = run.get(i) {
        if c == b'%' {
            s.push(':');
            i += 3;
        } else {
            s.push(char::from(c));
            i += 1;
        }
    }
    s
}

/// Whether what follows a token lets it be an address: not a word character.
/// (A colon cannot follow a run, since runs swallow colons.)
fn ends_token(next: Option<u8>) -> bool {
    next.is_none_or(|c| !is_word(c))
}

/// If `run` (followed by `next`) holds an address, returns where it starts
/// in the run and its length: leading and trailing dots are punctuation, and
/// one trailing colon is allowed when whitespace or the end follows.
fn address_in_run(run: &[u8], next: Option<u8>) -> Option<(usize, usize)> {
    if !ends_token(next) {
        return None;
    }
    let skip = run.iter().take_while(|&&c| c == b'.').count();
    let body = run.get(skip..)?;
    let dots = body.iter().rev().take_while(|&&c| c == b'.').count();
    let body = body.get(..body.len().checked_sub(dots)?)?;
    if body.is_empty() {
        return None;
    }
    if is_address(&decode_colons(body)) {
        return Some((skip, body.len()));
    }
    // `from 1.2.3.4:80: ` — the colon is the log's, not the address's.
    let colon_then_space = dots == 0 && next.is_none_or(|c| c.is_ascii_whitespace());
    if colon_then_space {
        let trimmed = strip_trailing_colon(body)?;
        if is_address(&decode_colons(trimmed)) {
            return Some((skip, trimmed.len()));
        }
    }
    None
}

/// `ip:1.2.3.4`, `host:2a00:1::1`: a word, one colon, then an address. The
/// colon is the label's, so the address after it is scrubbed (a run that
/// starts `::` is an address on its own and is left to the main rule).
fn after_label(run: &[u8], next: Option<u8>) -> Option<(usize, usize)> {
    if run.first() != Some(&b':') || run.get(1) == Some(&b':') {
        return None;
    }
    let (skip, len) = address_in_run(run.get(1..)?, next)?;
    Some((skip + 1, len))
}

/// `body` without one final `:` or `%3a`.
fn strip_trailing_colon(body: &[u8]) -> Option<&[u8]> {
    if body.ends_with(b":") {
        body.get(..body.len() - 1)
    } else if body.ends_with(b"%3a") || body.ends_with(b"%3A") {
        body.get(..body.len() - 3)
    } else {
        None
    }
}

/// If a bracketed IPv6 address (with an optional port) starts at `open`,
/// returns the index just past it.
fn bracketed_end(bytes: &[u8], open: usize) -> Option<usize> {
    let inner_start = open + 1;
    let inner_end = run_end(bytes, inner_start);
    if bytes.get(inner_end) != Some(&b']') {
        return None;
    }
    let inner = decode_colons(bytes.get(inner_start..inner_end)?);
    if !is_ipv6(&inner) {
        return None;
    }
    let mut end = inner_end + 1;
    if bytes.get(end) == Some(&b':') {
        let digits = bytes
            .get(end + 1..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if (1..=5).contains(&digits) {
            end += 1 + digits;
        }
    }
    match bytes.get(end) {
        // `[::1]: message`: the colon belongs to the log line.
        Some(b':') => bytes
            .get(end + 1)
            .is_none_or(|c| c.is_ascii_whitespace())
            .then_some(end),
        next => ends_token(next.copied()).then_some(end),
    }
}

/// `IPv4`, `IPv4:port`, `IPv6` or `IPv6:port` (decoded colons).
fn is_address(s: &str) -> bool {
    if is_ipv4(s) || is_ipv6(s) {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => is_port(port) && (is_ipv4(host) || is_ipv6(host)),
        None => false,
    }
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit())
}

/// Dotted quad, each part 1–3 digits and at most 255 (leading zeros allowed:
/// they still identify someone).
fn is_ipv4(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        let ok = (1..=3).contains(&part.len())
            && part.bytes().all(|c| c.is_ascii_digit())
            && part.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok || parts > 4 {
            return false;
        }
    }
    parts == 4
}

/// A textual IPv6 address: 8 groups of 1–4 hex digits, or fewer with exactly
/// one `::`; the last two groups may be written as an IPv4 address.
fn is_ipv6(s: &str) -> bool {
    let (head, tail, compressed) = match s.split_once("::") {
        Some((h, t)) => (h, t, true),
        None => (s, "", false),
    };
    if tail.contains("::") {
        return false;
    }
    let Some(head_groups) = count_groups(head, !compressed) else {
        return false;
    };
    let Some(tail_groups) = count_groups(tail, true) else {
        return false;
    };
    let total = head_groups + tail_groups;
    if compressed {
        total <= 7
    } else {
        total == 8
    }
}

/// Counts the 16-bit groups of one side of a possible `::`. An empty side has
/// none; an IPv4 group counts as two and must come last (`v4_allowed`).
fn count_groups(side: &str, v4_allowed: bool) -> Option<usize> {
    if side.is_empty() {
        return Some(0);
    }
    let mut count = 0usize;
    let mut parts = side.split(':').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if part.contains('.') {
            if !(last && v4_allowed && is_ipv4(part)) {
                return None;
            }
            count += 2;
        } else if (1..=4).contains(&part.len()) && part.bytes().all(|c| c.is_ascii_hexdigit()) {
            count += 1;
        } else {
            return None;
        }
        if count > 8 {
            return None;
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ipv6_forms() {
        for good in [
            "1:2:3:4:c:d:e:f",
            "::",
            "::1",
            "1::",
            "1:2:3::d:e:f",
            "::ffff:1.2.3.4",
            "2001:db8:3:4::192.0.2.33",
            "1:2:3:4:5:6:1.2.3.4",
        ] {
            assert!(is_ipv6(good), "{good}");
        }
        for bad in [
            "1:2:3",
            ":::",
            "1::2::3",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::8",
            "12345::",
            "1.2.3.4::",
            "::1.2.3.4:5",
            "g::",
            "1:2:3:4:5:6:7:1.2.3.4",
            ":1:2:3:4:5:6:7",
        ] {
            assert!(!is_ipv6(bad), "{bad}");
        }
    }

    #[test]
    fn validates_ipv4_forms() {
        assert!(is_ipv4("0.0.0.0"));
        assert!(is_ipv4("255.255.255.255"));
        assert!(is_ipv4("010.001.002.003"));
        assert!(!is_ipv4("256.1.1.1"));
        assert!(!is_ipv4("1.2.3"));
        assert!(!is_ipv4("1.2.3.4.5"));
        assert!(!is_ipv4("1..3.4"));
        assert!(!is_ipv4("1111.2.3.4"));
    }
}
