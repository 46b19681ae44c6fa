//! Decoding of the AMP request path (docs/protocol.md §7.1).
//!
//! The client packs its whole 1.0 message into the URL because an AMP cache
//! only forwards GETs: `0` + cache-busting junk + `/` + base64url(message).

use std::borrow::Cow;
use std::fmt;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// base64url without padding, as Go's `base64.RawURLEncoding`: a `=` is an
/// invalid character, and non-zero trailing bits are tolerated because Go's
/// non-strict decoder does not check them.
const RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Why an AMP path suffix could not be decoded. On the wire every variant
/// becomes `{"error":"cannot decode URL path"}`; the detail is for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The suffix is empty.
    MissingFormatIndicator,
    /// The first byte is not a known format version (only `0` is).
    UnknownFormatIndicator(u8),
    /// Format `0` needs a `/` before the data.
    MissingData,
    /// The data part is not valid unpadded base64url.
    Base64(base64::DecodeError),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFormatIndicator => f.write_str("missing format indicator"),
            // Same wording as the Go broker (`%q` of the byte).
            Self::UnknownFormatIndicator(b) => {
                write!(f, "unknown format indicator '{}'", b.escape_ascii())
            }
            Self::MissingData => f.write_str("missing data"),
            Self::Base64(e) => write!(f, "invalid base64url data: {e}"),
        }
    }
}

impl std::error::Error for PathError {}

/// Decodes `suffix`, the already percent-decoded part of the URL path after
/// `/amp/client/`, into the client's message bytes.
///
/// Empty data (`0/`, `0foobar/`) is `Ok(vec![])`: the caller then answers
/// "unsupported message version", not "cannot decode URL path".
///
/// # Errors
///
/// Any [`PathError`]; callers map them all to "cannot decode URL path".
pub fn decode_path(suffix: &str) -> Result<Vec<u8>, PathError> {
    let (&version, _) = suffix
        .as_bytes()
        .split_first()
        .ok_or(PathError::MissingFormatIndicator)?;
    let rest = suffix
        .strip_prefix('0')
        .ok_or(PathError::UnknownFormatIndicator(version))?;
    // Everything up to the last `/` is padding or cache-busting junk.
    let (_, data) = rest.rsplit_once('/').ok_or(PathError::MissingData)?;
    // Go's base64 decoder skips `\r` and `\n` anywhere in its input; a
    // percent-decoded path can contain them, so drop them the same way.
    let data: Cow<'_, str> = if data.contains(['\r', '\n']) {
        Cow::Owned(data.chars().filter(|c| !matches!(c, '\r' | '\n')).collect())
    } else {
        Cow::Borrowed(data)
    };
    RAW_URL.decode(data.as_bytes()).map_err(PathError::Base64)
}
