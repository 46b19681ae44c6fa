//! The bridge list (`BRIDGE_LIST`, docs/protocol.md §4.1): one JSON object per line
//! with `displayName`, `webSocketAddress` and `fingerprint`.

use super::fingerprint::{Fingerprint, DEFAULT_FINGERPRINT};
use super::json::parse_object;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub display_name: String,
    pub websocket_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeList {
    bridges: BTreeMap<Fingerprint, Bridge>,
}

impl Default for BridgeList {
    /// The broker's built-in list: the one default bridge.
    fn default() -> Self {
        let mut bridges = BTreeMap::new();
        bridges.insert(
            Fingerprint::default_bridge(),
            Bridge {
                display_name: "default".to_string(),
                websocket_address: "wss://snowflake.torproject.net/".to_string(),
            },
        );
        BridgeList { bridges }
    }
}

const KEYS: [&str; 3] = ["displayName", "webSocketAddress", "fingerprint"];

impl BridgeList {
    /// Parses NDJSON. Unknown keys and bad fingerprints are refused, as the Go
    /// broker refuses them. Unlike Go, blank lines are skipped (a TOML
    /// multi-line string usually ends with one) and trailing data after the
    /// object on a line is an error rather than silently dropped.
    pub fn parse(text: &str) -> Result<BridgeList, String> {
        let mut bridges = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            if line.trim().is_empty() {
                continue;
            }
            let object = parse_object(line.as_bytes(), "bridgeInfo")
                .map_err(|e| format!("line {number}: {e}"))?;
            if let Some(unknown) = object
                .keys()
                .find(|k| !KEYS.iter().any(|known| super::json::key_matches(k, known)))
            {
                return Err(format!("line {number}: unknown key {unknown:?}"));
            }
            let field = |name: &str| {
                object
                    .string(name, &format!("bridgeInfo.{name}"))
                    .map_err(|e| format!("line {number}: {e}"))
            };
            let display_name = field("displayName")?.unwrap_or_default();
            let websocket_address = field("webSocketAddress")?.unwrap_or_default();
            let fingerprint = field("fingerprint")?.unwrap_or_default();
            let fingerprint = Fingerprint::parse(&fingerprint).ok_or_else(|| {
                format!("line {number}: fingerprint {fingerprint:?} is not 40 or 64 hex digits")
            })?;
            bridges.insert(
                fingerprint,
                Bridge {
                    display_name,
                    websocket_address,
                },
            );
        }
        if bridges.is_empty() {
            return Err("the list has no bridges".to_string());
        }
        Ok(BridgeList { bridges })
    }

    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&Bridge> {
        self.bridges.get(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.bridges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bridges.is_empty()
    }

    /// Whether clients that name no bridge (and legacy clients) can be served.
    pub fn has_default(&self) -> bool {
        Fingerprint::parse(DEFAULT_FINGERPRINT).is_some_and(|fp| self.bridges.contains_key(&fp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imaginary() -> String {
        let mut s = String::from(
            "{\"displayName\":\"default\", \"webSocketAddress\":\"wss://snowflake.torproject.net\", \"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80A72\"}\n",
        );
        for i in 0..10 {
            s.push_str(&format!(
                "{{\"displayName\":\"imaginary-{i}\", \"webSocketAddress\":\"wss://imaginary-{i}-snowflake.torproject.org\", \"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80B0{i}\"}}\n"
            ));
        }
        s
    }

    #[test]
    fn loads_the_imaginary_list_of_case_52() {
        let list = BridgeList::parse(&imaginary()).unwrap();
        assert_eq!(list.len(), 11);
        let fp = Fingerprint::parse("2B280B23E1107BB62ABFC40DDCC8824814F80B07").unwrap();
        let bridge = list.get(&fp).unwrap();
        assert_eq!(bridge.display_name, "imaginary-7");
        assert_eq!(
            bridge.websocket_address,
            "wss://imaginary-7-snowflake.torproject.org"
        );
        let lower = Fingerprint::parse("2b280b23e1107bb62abfc40ddcc8824814f80b07").unwrap();
        assert_eq!(list.get(&lower), Some(bridge));
    }

    #[test]
    fn refuses_bad_lines_with_their_number() {
        let err = BridgeList::parse(
            "{\"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80A72\",\"extra\":1}",
        )
        .unwrap_err();
        assert!(err.starts_with("line 1: unknown key \"extra\""), "{err}");
        let err = BridgeList::parse("\n{\"fingerprint\":\"1234\"}").unwrap_err();
        assert!(err.starts_with("line 2: fingerprint"), "{err}");
        assert!(BridgeList::parse("not json").is_err());
        assert!(BridgeList::parse("").is_err());
        assert!(BridgeList::parse("{\"Fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80A72\",\"WEBSOCKETADDRESS\":\"wss://x/\"}").is_ok());
    }

    #[test]
    fn a_list_replaces_the_default() {
        let list = BridgeList::parse(
            "{\"webSocketAddress\":\"wss://x/\",\"fingerprint\":\"8838024498816A039FCBBAB14E6F40A0843051FA\"}",
        )
        .unwrap();
        assert!(!list.has_default());
        assert!(BridgeList::default().has_default());
    }
}
