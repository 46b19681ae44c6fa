//! Relay hostname patterns ("namematcher", docs/protocol.md §4.3): `suffix$` or
//! `^exact$`, characters literal, no label boundaries.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPattern {
    text: String,
    exact: bool,
}

impl RelayPattern {
    pub fn parse(pattern: &str) -> RelayPattern {
        let body = pattern.strip_suffix('$').unwrap_or(pattern);
        match body.strip_prefix('^') {
            Some(exact) => RelayPattern {
                text: exact.to_string(),
                exact: true,
            },
            None => RelayPattern {
                text: body.to_string(),
                exact: false,
            },
        }
    }

    /// Whether `hostname` is a member, as proxies check a RelayURL.
    pub fn matches(&self, hostname: &str) -> bool {
        if self.exact {
            hostname == self.text
        } else {
            hostname.ends_with(&self.text)
        }
    }

    /// Whether every hostname `other` admits is admitted by `self`.
    pub fn is_superset_of(&self, other: &RelayPattern) -> bool {
        if self.exact {
            other.exact && other.text == self.text
        } else {
            other.text.ends_with(&self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(proxy: &str, broker: &str) -> bool {
        RelayPattern::parse(proxy).is_superset_of(&RelayPattern::parse(broker))
    }

    #[test]
    fn worked_results_of_protocol_4_3() {
        assert!(accepted("", ""));
        assert!(!accepted("snowflake.torproject.net$", ""));
        assert!(accepted(
            "snowflake.torproject.net$",
            "snowflake.torproject.net$"
        ));
        assert!(accepted(
            "snowflake.torproject.net$",
            "^snowflake.torproject.net$"
        ));
        assert!(accepted(
            "snowflake.torproject.net$",
            "testing-snowflake.torproject.net$"
        ));
        assert!(accepted(
            "snowflake.torproject.net$",
            "^testing-snowflake.torproject.net$"
        ));
        assert!(accepted(
            "^snowflake.torproject.net$",
            "^snowflake.torproject.net$"
        ));
        assert!(!accepted(
            "^snowflake.torproject.net$",
            "snowflake.torproject.net$"
        ));
        assert!(accepted("", "^anything$"));
        assert!(accepted(
            "snowflake.torproject.net",
            "snowflake.torproject.net"
        ));
    }

    #[test]
    fn membership_of_protocol_9_case_53() {
        let exact = RelayPattern::parse("^snowflake.torproject.net$");
        assert!(exact.matches("snowflake.torproject.net"));
        assert!(!exact.matches("faketorproject.net"));
        let suffix = RelayPattern::parse("snowflake.torproject.net$");
        assert!(suffix.matches("imaginary-01-snowflake.torproject.net"));
        assert!(!suffix.matches("imaginary-aaa-snowflake.faketorproject.net"));
        assert!(RelayPattern::parse("").matches(""));
    }
}
