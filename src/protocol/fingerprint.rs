//! Bridge fingerprints: hex strings of 20 (RSA identity) or 32 bytes.

/// The bridge a client means when it names none (docs/protocol.md §2.3).
pub const DEFAULT_FINGERPRINT: &str = "2B280B23E1107BB62ABFC40DDCC8824814F80A72";

/// A decoded fingerprint; compared by bytes, so hex case does not matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(Vec<u8>);

impl Fingerprint {
    /// Decodes hex of either case that yields exactly 20 or 32 bytes.
    pub fn parse(hex: &str) -> Option<Fingerprint> {
        if hex.len() != 40 && hex.len() != 64 {
            return None;
        }
        crate::hex::decode(hex).map(Fingerprint)
    }

    pub fn default_bridge() -> Fingerprint {
        Fingerprint::parse(DEFAULT_FINGERPRINT).unwrap_or(Fingerprint(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_20_and_32_bytes_any_case() {
        assert_eq!(
            Fingerprint::parse(DEFAULT_FINGERPRINT),
            Fingerprint::parse(&DEFAULT_FINGERPRINT.to_lowercase())
        );
        assert!(Fingerprint::parse(&"ab".repeat(32)).is_some());
        assert!(Fingerprint::parse("123123").is_none());
        assert!(Fingerprint::parse(&"ab".repeat(21)).is_none());
        assert!(Fingerprint::parse(&"zz".repeat(20)).is_none());
        assert_eq!(Fingerprint::default_bridge().0.len(), 20);
    }
}
