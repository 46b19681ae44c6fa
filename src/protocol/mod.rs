//! The broker's wire messages: decoding as Go decodes, encoding byte for byte.

pub mod bridges;
pub mod client;
pub mod fingerprint;
pub mod json;
pub mod nat;
pub mod proxy;
pub mod relay_pattern;
pub mod sdp;

/// Requests to `/proxy`, `/client` and `/answer` may carry at most this many bytes.
pub const READ_LIMIT: usize = 100_000;

/// The `/answer` body must mention a candidate (R's and N's SDP sanity check).
pub fn has_candidate(body: &[u8]) -> bool {
    body.windows(b"a=candidate".len())
        .any(|w| w == b"a=candidate")
}
