//! Acceptance tests for the AMP cache rendezvous (docs/protocol.md §7.1, §7.2,
//! §9 #10–#13, #32, #37, #54). Byte-exact on purpose: the AMP cache and the
//! Go client both see these bytes.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/amp_decoder.rs"]
mod amp_decoder;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use snowflake_broker::amp::armor::{HEADER, TRAILER};
use snowflake_broker::amp::{decode_path, encode_armor, PathError};

const HEADER_SHA256: &str = "0c3206bf651283bf33b5fd9fa9ea77f83ea2f8b6f811fecc195a1a3ac87c9d8f";
const HEADER_LEN: usize = 983;
// Spelled out, not imported, so a wrong constant in the crate fails here.
const CHUNK_LEN: usize = 32;
const CHUNKS_PER_PRE: usize = 992;

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

// ---------------------------------------------------------------- §7.1 path

#[test]
fn path_table_vectors() {
    // (suffix, expected) for every row of the §7.1 table.
    let ok: &[(&str, &[u8])] = &[
        ("0/", b""),
        ("0foobar/", b""),
        ("0/YWJj", b"abc"),
        ("0///YWJj", b"abc"),
        ("0foobar/YWJj", b"abc"),
        ("0/foobar/YWJj", b"abc"),
    ];
    for (suffix, want) in ok {
        assert_eq!(
            decode_path(suffix).as_deref(),
            Ok(*want),
            "suffix {suffix:?}"
        );
    }
    assert_eq!(decode_path(""), Err(PathError::MissingFormatIndicator));
    assert_eq!(decode_path("0"), Err(PathError::MissingData));
    assert_eq!(decode_path("0foobar"), Err(PathError::MissingData));
    assert_eq!(
        decode_path("/0/YWJj"),
        Err(PathError::UnknownFormatIndicator(b'/'))
    );
}

#[test]
fn path_case_37_empty_data() {
    // #37: both give empty data, which the caller answers with
    // "unsupported message version", not "cannot decode URL path".
    assert_eq!(decode_path("0/"), Ok(vec![]));
    assert_eq!(decode_path("0foobar/"), Ok(vec![]));
}

#[test]
fn path_case_10_bad() {
    assert_eq!(
        decode_path("bad"),
        Err(PathError::UnknownFormatIndicator(b'b'))
    );
}

#[test]
fn path_case_11_client_message() {
    let got = decode_path("0AAAAAAAAAAAA/MS4wCnsib2ZmZXIiOiAiZmFrZSIsICJuYXQiOiAidW5rbm93biJ9");
    assert_eq!(
        got.as_deref(),
        Ok(&b"1.0\n{\"offer\": \"fake\", \"nat\": \"unknown\"}"[..])
    );
}

#[test]
fn path_base64_errors() {
    // A `=` is never valid (no padding), even where padding would be.
    for suffix in ["0/YWJj=", "0/YWI=", "0/YQ==", "0/=", "0/YW=j"] {
        assert!(
            matches!(decode_path(suffix), Err(PathError::Base64(_))),
            "suffix {suffix:?}"
        );
    }
    // Impossible length: 4k+1 characters.
    for suffix in ["0/Y", "0/YWJjZ", "0x/YWJjZGVmZ"] {
        assert!(
            matches!(decode_path(suffix), Err(PathError::Base64(_))),
            "suffix {suffix:?}"
        );
    }
    // The standard alphabet's `+` is not base64url.
    assert!(matches!(decode_path("0/+_8"), Err(PathError::Base64(_))));
    // Non-ASCII and other junk in the data part.
    assert!(matches!(decode_path("0/YW€j"), Err(PathError::Base64(_))));
    assert!(matches!(decode_path("0/YW Jj"), Err(PathError::Base64(_))));
}

#[test]
fn path_url_safe_alphabet_and_lengths() {
    assert_eq!(decode_path("0/-_8").as_deref(), Ok(&[0xfb, 0xff][..]));
    assert_eq!(decode_path("0/YQ").as_deref(), Ok(&b"a"[..]));
    assert_eq!(decode_path("0/YWI").as_deref(), Ok(&b"ab"[..]));
    // The junk before the last `/` may hold anything, including `=`.
    assert_eq!(decode_path("0a=b/c?d/YWJj").as_deref(), Ok(&b"abc"[..]));
}

#[test]
fn path_go_compat_leniency() {
    // Go's RawURLEncoding (non-strict) ignores non-zero trailing bits...
    assert_eq!(decode_path("0/YR").as_deref(), Ok(&b"a"[..]));
    // ...and skips `\r` / `\n` anywhere in the data.
    assert_eq!(decode_path("0/YW\nJj").as_deref(), Ok(&b"abc"[..]));
    assert_eq!(decode_path("0/\r\nYWJj\n").as_deref(), Ok(&b"abc"[..]));
    assert_eq!(decode_path("0/\n").as_deref(), Ok(&b""[..]));
}

#[test]
fn path_errors_display() {
    assert_eq!(
        PathError::MissingFormatIndicator.to_string(),
        "missing format indicator"
    );
    assert_eq!(
        PathError::UnknownFormatIndicator(b'/').to_string(),
        "unknown format indicator '/'"
    );
    assert_eq!(PathError::MissingData.to_string(), "missing data");
    assert!(decode_path("0/Y")
        .unwrap_err()
        .to_string()
        .contains("base64"));
}

// ---------------------------------------------------------------- §7.2 armor

#[test]
fn public_constants() {
    use snowflake_broker::amp::armor;
    assert_eq!(armor::CHUNK_LEN, CHUNK_LEN);
    assert_eq!(armor::CHUNKS_PER_PRE, CHUNKS_PER_PRE);
    assert_eq!(TRAILER, "</body>\n</html>");
}

#[test]
fn header_is_standard_amp_boilerplate() {
    assert_eq!(HEADER.len(), HEADER_LEN);
    assert_eq!(sha256_hex(HEADER.as_bytes()), HEADER_SHA256);
    assert!(HEADER.starts_with("<!doctype html>\n<html amp>\n<head>\n"));
    assert!(HEADER.ends_with("</style></noscript>\n</head>\n<body>\n"));
    let armored = encode_armor(b"");
    assert_eq!(sha256_hex(&armored.as_bytes()[..HEADER_LEN]), HEADER_SHA256);
}

#[test]
fn exact_example_no_proxies() {
    let json = br#"{"error":"no snowflake proxies currently available"}"#;
    let armored = encode_armor(json);
    let want = format!(
        "{HEADER}<pre>\n\
         0eyJlcnJvciI6Im5vIHNub3dmbGFrZSB\n\
         wcm94aWVzIGN1cnJlbnRseSBhdmFpbGF\n\
         ibGUifQ==\n\
         </pre>\n\
         </body>\n\
         </html>"
    );
    assert_eq!(armored, want);
    assert_eq!(armored.len(), 1087);
    assert_eq!(
        sha256_hex(armored.as_bytes()),
        "8bae1c2fb4bf8691e6dff7b726cecd7f3db840fed57985e5e62cc685bca65e75"
    );
}

/// The text between the header's `<pre>\n` and `</pre>`, for single-element
/// armors; also checks everything around it byte for byte.
fn payload_section(armored: &str) -> &str {
    let body = armored
        .strip_prefix(HEADER)
        .and_then(|s| s.strip_suffix("</pre>\n</body>\n</html>"))
        .and_then(|s| s.strip_prefix("<pre>\n"))
        .expect("single <pre> armor framing");
    assert!(!body.contains('<'), "more than one <pre>: {body:?}");
    body
}

#[test]
fn payload_line_vectors() {
    let vectors: &[(&[u8], &str)] = &[
        (
            br#"{"error":"no snowflake proxies currently available"}"#,
            "0eyJlcnJvciI6Im5vIHNub3dmbGFrZSB\nwcm94aWVzIGN1cnJlbnRseSBhdmFpbGF\nibGUifQ==\n",
        ),
        (
            br#"{"error":"cannot decode URL path"}"#,
            "0eyJlcnJvciI6ImNhbm5vdCBkZWNvZGU\ngVVJMIHBhdGgifQ==\n",
        ),
        (
            br#"{"error":"timed out waiting for answer!"}"#,
            "0eyJlcnJvciI6InRpbWVkIG91dCB3YWl\n0aW5nIGZvciBhbnN3ZXIhIn0=\n",
        ),
        (
            br#"{"answer":"fake answer"}"#,
            "0eyJhbnN3ZXIiOiJmYWtlIGFuc3dlciJ\n9\n",
        ),
        (
            b"This was encoded with AMP armor.",
            "0VGhpcyB3YXMgZW5jb2RlZCB3aXRoIEF\nNUCBhcm1vci4=\n",
        ),
    ];
    for (json, lines) in vectors {
        let armored = encode_armor(json);
        assert_eq!(payload_section(&armored), *lines, "payload {json:?}");
        assert_eq!(
            amp_decoder::decode(armored.as_bytes()).as_deref(),
            Ok(*json)
        );
    }
}

#[test]
fn empty_payload() {
    assert_eq!(
        encode_armor(b""),
        format!("{HEADER}<pre>\n0\n</pre>\n</body>\n</html>")
    );
    assert_eq!(
        amp_decoder::decode(encode_armor(b"").as_bytes()),
        Ok(vec![])
    );
}

#[test]
fn section_9_answers_round_trip() {
    // The JSON bodies of #10–#13, #32 and #37 as the AMP client sees them.
    for json in [
        &br#"{"error":"cannot decode URL path"}"#[..],
        br#"{"error":"no snowflake proxies currently available"}"#,
        br#"{"answer":"fake answer"}"#,
        br#"{"error":"timed out waiting for answer!"}"#,
        br#"{"error":"unsupported message version"}"#,
    ] {
        let armored = encode_armor(json);
        assert!(armored.ends_with("</pre>\n</body>\n</html>"));
        assert_eq!(amp_decoder::decode(armored.as_bytes()).as_deref(), Ok(json));
    }
}

// ---------------------------------------------------------------- #54 decoder

#[test]
fn decoder_case_54() {
    use amp_decoder::decode;
    assert_eq!(
        decode(b"<pre>\n0aGVsbG8gd29ybGQK\n</pre>").as_deref(),
        Ok(&b"hello world\n"[..])
    );
    // Unknown version byte.
    assert!(decode(b"<pre>\n1aGVsbG8gd29ybGQK\n</pre>").is_err());
    // Text outside <pre> is ignored.
    assert_eq!(
        decode(b"junk 1xyz <p>more</p><pre>\n0aGVsbG8gd29ybGQK\n</pre>trailing junk").as_deref(),
        Ok(&b"hello world\n"[..])
    );
    // A <p> inside <pre> is ignored; its text still counts.
    assert_eq!(
        decode(b"<pre>\n0aGVsbG8g<p>d29y</p>bGQK\n</pre>").as_deref(),
        Ok(&b"hello world\n"[..])
    );
    // A comment hides its content: no <pre> at all, so no version byte.
    assert!(decode(b"<!-- <pre>\n0aGVsbG8gd29ybGQK\n</pre> -->").is_err());
    // Comment text inside <pre> does not count.
    assert_eq!(
        decode(b"<pre>\n0aGVsbG8g<!-- 1junk -->d29ybGQK\n</pre>").as_deref(),
        Ok(&b"hello world\n"[..])
    );
    // Nested <pre>.
    assert!(decode(b"<pre>\n0aGVsbG8g<pre>d29ybGQK</pre>\n</pre>").is_err());
    // Missing </pre>.
    assert!(decode(b"<pre>\n0aGVsbG8gd29ybGQK\n").is_err());
    // Text spread over several <pre> and whitespace of every kind.
    assert_eq!(
        decode(b"<PRE>0aGVs\tbG8g</pre>x<pre class=\"a>b\">d2\r9y\x0cbGQK </pre>").as_deref(),
        Ok(&b"hello world\n"[..])
    );
    // Empty input.
    assert!(decode(b"").is_err());
}

// ---------------------------------------------------------------- structure

/// Checks every structural rule of §7.2 on `armored` for `payload`, and that
/// the test decoder gets `payload` back.
fn check_armor(payload: &[u8], armored: &str) {
    let stream = format!("0{}", STANDARD.encode(payload));
    let body = armored
        .strip_prefix(HEADER)
        .expect("header")
        .strip_suffix(TRAILER)
        .expect("trailer");
    assert!(armored.ends_with("</html>"), "final newline after trailer");

    // body = ("<pre>\n" (line "\n")+ "</pre>\n")+
    let mut lines_seen = Vec::new();
    let mut pres = 0;
    let mut rest = body;
    while !rest.is_empty() {
        rest = rest
            .strip_prefix("<pre>\n")
            .expect("<pre>\\n opens element");
        let (inner, after) = rest.split_once("</pre>\n").expect("element closed");
        rest = after;
        pres += 1;
        let inner = inner.strip_suffix('\n').expect("last line ends in \\n");
        let lines: Vec<&str> = inner.split('\n').collect();
        assert!(
            lines.len() <= CHUNKS_PER_PRE,
            "<pre> holds {} lines",
            lines.len()
        );
        lines_seen.push(lines);
    }
    assert!(pres >= 1);
    let all: Vec<&str> = lines_seen.iter().flatten().copied().collect();
    let (last, full) = all.split_last().expect("at least one line");
    for line in full {
        assert_eq!(line.len(), CHUNK_LEN, "inner line {line:?}");
    }
    assert!((1..=CHUNK_LEN).contains(&last.len()));
    // Only the last element may hold fewer than 992 lines.
    for lines in &lines_seen[..lines_seen.len() - 1] {
        assert_eq!(lines.len(), CHUNKS_PER_PRE);
    }
    assert_eq!(all.concat(), stream);

    // Exact size: header + stream + one \n per line + 13 per element + trailer.
    assert_eq!(
        armored.len(),
        HEADER_LEN + stream.len() + all.len() + 13 * pres + TRAILER.len()
    );
    assert_eq!(
        pres,
        stream.len().div_ceil(CHUNK_LEN).div_ceil(CHUNKS_PER_PRE)
    );

    assert_eq!(
        amp_decoder::decode(armored.as_bytes()).as_deref(),
        Ok(payload),
        "round trip of {} bytes",
        payload.len()
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), cheap for 100 kB.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Payload sizes around every interesting boundary. The stream is
/// `1 + 4·ceil(n/3)` characters: always odd, so never an exact multiple of
/// 32 (or of 992·32). The nearest sizes are 32j−3 (last line 29 chars) and
/// 32j+1 (one lone character on a new line, or in a new `<pre>` when
/// j = 992·k): n = 24j−5 ..= 24j covers both.
fn boundary_sizes() -> Vec<usize> {
    let mut sizes = vec![0, 1, 2, 3, 4, 5, 6];
    for j in [1, 2, 3, 991, 992, 993, 1984, 1985, 2976, 4000, 4166] {
        sizes.extend((24 * j - 5)..=(24 * j));
    }
    sizes.extend([99_998, 99_999, 100_000]);
    sizes
}

#[test]
fn stream_length_is_never_a_multiple_of_32() {
    for n in 0..=200 {
        let stream_len = 1 + STANDARD.encode(vec![0u8; n]).len();
        assert_eq!(stream_len % 4, 1);
    }
}

#[test]
fn boundary_sizes_structure() {
    for (i, n) in boundary_sizes().into_iter().enumerate() {
        let payload = bytes(n, i as u64 + 7);
        check_armor(&payload, &encode_armor(&payload));
    }
}

#[test]
fn one_char_spills_into_a_new_pre() {
    // n = 23807 (≡ 2 mod 3, one `=`): stream = 992·32 + 1, so the second
    // <pre> holds just the padding character.
    let payload = bytes(24 * 992 - 1, 1);
    let armored = encode_armor(&payload);
    assert!(armored.ends_with("\n</pre>\n<pre>\n=\n</pre>\n</body>\n</html>"));
    assert_eq!(armored.matches("<pre>\n").count(), 2);
    check_armor(&payload, &armored);
    // n = 23803: stream = 992·32 − 3, a single <pre> of 992 lines.
    let payload = bytes(24 * 992 - 5, 2);
    let armored = encode_armor(&payload);
    assert_eq!(armored.matches("<pre>\n").count(), 1);
    check_armor(&payload, &armored);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(
        n in prop_oneof![
            prop::sample::select(boundary_sizes()),
            0usize..=100_000,
        ],
        seed in any::<u64>(),
    ) {
        let payload = bytes(n, seed);
        check_armor(&payload, &encode_armor(&payload));
    }

    #[test]
    fn round_trip_small_arbitrary(payload in prop::collection::vec(any::<u8>(), 0..200)) {
        check_armor(&payload, &encode_armor(&payload));
    }

    #[test]
    fn path_round_trip(
        junk in "[A-Za-z0-9_/-]{0,20}",
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let suffix = format!("0{junk}/{}", URL_SAFE_NO_PAD.encode(&payload));
        prop_assert_eq!(decode_path(&suffix), Ok(payload));
    }
}
