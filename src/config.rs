//! Settings: wrangler `[vars]` (all strings, all optional), validated once.
//!
//! A bad value never crashes the Worker: it becomes a [`ConfigError`] that the
//! shell logs once, shows on `/debug`, and answers matching requests with 500.

use crate::protocol::bridges::BridgeList;
use crate::protocol::relay_pattern::RelayPattern;
use std::fmt;

/// When a client's wait for its answer starts counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeoutFrom {
    /// From the start of the client's request (N; fits CDN77's ~5 s limit).
    Request,
    /// From the moment its offer is handed to a proxy (R).
    Match,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub proxy_poll_timeout_ms: u64,
    pub client_timeout_ms: u64,
    pub client_timeout_from: TimeoutFrom,
    pub next_poll_ms: u64,
    pub allowed_relay_pattern: RelayPattern,
    pub default_relay_pattern: Option<RelayPattern>,
    pub bridges: BridgeList,
    pub matcher_shards: u32,
    pub max_parked_polls: usize,
    pub metrics_period_seconds: u64,
    pub trusted_hops: u32,
    pub unsafe_logging: bool,
    /// Settings that were understood but are not in effect; shown on `/debug`.
    pub warnings: Vec<String>,
}

/// The first setting found invalid, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {} is invalid: {}", self.setting, self.message)
    }
}

/// Every setting's name, for documentation and for reading them from the platform.
pub const SETTINGS: [&str; 13] = [
    "PROXY_POLL_TIMEOUT_MS",
    "CLIENT_TIMEOUT_MS",
    "CLIENT_TIMEOUT_FROM",
    "NEXT_POLL_MS",
    "ALLOWED_RELAY_PATTERN",
    "DEFAULT_RELAY_PATTERN",
    "BRIDGE_LIST",
    "MATCHER_SHARDS",
    "MAX_PARKED_POLLS",
    "METRICS_PERIOD_SECONDS",
    "TRUSTED_HOPS",
    "PROXY_POLL_RATE_LIMIT",
    "UNSAFE_LOGGING",
];

fn number(
    setting: &'static str,
    value: Option<&str>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let err = |message: String| ConfigError { setting, message };
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| err(format!("{text:?} is not a whole number")))?;
    if n < min || n > max {
        return Err(err(format!("{n} is outside {min}..={max}")));
    }
    Ok(n)
}

impl Config {
    /// Reads every setting through `get` (a missing or empty value means
    /// "use the default").
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let value = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut warnings = Vec::new();

        // Go proxies give up on a response after 30 s; CDN77 cuts clients near 5 s.
        let proxy_poll_timeout_ms = number(
            "PROXY_POLL_TIMEOUT_MS",
            value("PROXY_POLL_TIMEOUT_MS").as_deref(),
            10_000,
            1,
            25_000,
        )?;
        let client_timeout_ms = number(
            "CLIENT_TIMEOUT_MS",
            value("CLIENT_TIMEOUT_MS").as_deref(),
            5_000,
            1,
            60_000,
        )?;
        let client_timeout_from = match value("CLIENT_TIMEOUT_FROM").as_deref().map(str::trim) {
            None | Some("request") => TimeoutFrom::Request,
            Some("match") => TimeoutFrom::Match,
            Some(other) => {
                return Err(ConfigError {
                    setting: "CLIENT_TIMEOUT_FROM",
                    message: format!("{other:?} is neither \"request\" nor \"match\""),
                })
            }
        };
        let next_poll_ms = number(
            "NEXT_POLL_MS",
            value("NEXT_POLL_MS").as_deref(),
            20_000,
            0,
            86_400_000,
        )?;
        // An empty value means "unset" like every other setting; the empty
        // pattern itself is written `$`.
        let allowed_relay_pattern = RelayPattern::parse(
            value("ALLOWED_RELAY_PATTERN")
                .as_deref()
                .unwrap_or("snowflake.torproject.net$"),
        );
        let default_relay_pattern = value("DEFAULT_RELAY_PATTERN").map(|p| RelayPattern::parse(&p));
        let bridges = match value("BRIDGE_LIST") {
            None => BridgeList::default(),
            Some(text) => BridgeList::parse(&text).map_err(|message| ConfigError {
                setting: "BRIDGE_LIST",
                message,
            })?,
        };
        let matcher_shards = number(
            "MATCHER_SHARDS",
            value("MATCHER_SHARDS").as_deref(),
            1,
            1,
            256,
        )?;
        if matcher_shards > 1 {
            warnings.push(format!(
                "MATCHER_SHARDS={matcher_shards}: sharding is not implemented yet; one matcher is used"
            ));
        }
        let max_parked_polls = number(
            "MAX_PARKED_POLLS",
            value("MAX_PARKED_POLLS").as_deref(),
            5_000,
            1,
            100_000,
        )?;
        let metrics_period_seconds = number(
            "METRICS_PERIOD_SECONDS",
            value("METRICS_PERIOD_SECONDS").as_deref(),
            86_400,
            1,
            31_622_400,
        )?;
        let trusted_hops = number("TRUSTED_HOPS", value("TRUSTED_HOPS").as_deref(), 1, 0, 16)?;
        if value("PROXY_POLL_RATE_LIMIT").is_some() {
            warnings.push(
                "PROXY_POLL_RATE_LIMIT is set but per-IP rate limiting is not implemented yet; polls are not limited"
                    .to_string(),
            );
        }
        let unsafe_logging = match value("UNSAFE_LOGGING").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError {
                    setting: "UNSAFE_LOGGING",
                    message: format!("{other:?} is neither \"true\" nor \"false\""),
                })
            }
        };

        Ok(Config {
            proxy_poll_timeout_ms,
            client_timeout_ms,
            client_timeout_from,
            next_poll_ms,
            allowed_relay_pattern,
            default_relay_pattern,
            bridges,
            matcher_shards: u32::try_from(matcher_shards).unwrap_or(1),
            max_parked_polls: usize::try_from(max_parked_polls).unwrap_or(5_000),
            metrics_period_seconds,
            trusted_hops: u32::try_from(trusted_hops).unwrap_or(1),
            unsafe_logging,
            warnings,
        })
    }

    /// Whether a proxy announcing `pattern` (None: it sent no pattern) may
    /// poll: its pattern must admit every relay this broker may hand out.
    pub fn relay_pattern_accepted(&self, pattern: Option<&str>) -> bool {
        let presumed = match pattern {
            Some(p) => RelayPattern::parse(p),
            None => match &self.default_relay_pattern {
                Some(p) => p.clone(),
                // N refuses proxies that do not say which relays they accept.
                None => return false,
            },
        };
        presumed.is_superset_of(&self.allowed_relay_pattern)
    }
}

impl Default for Config {
    fn default() -> Self {
        // With no settings every value is a valid default, so this cannot fail;
        // the fallback only keeps the type total.
        Config::from_lookup(|_| None).unwrap_or_else(|_| Config {
            proxy_poll_timeout_ms: 10_000,
            client_timeout_ms: 5_000,
            client_timeout_from: TimeoutFrom::Request,
            next_poll_ms: 20_000,
            allowed_relay_pattern: RelayPattern::parse("snowflake.torproject.net$"),
            default_relay_pattern: None,
            bridges: BridgeList::default(),
            matcher_shards: 1,
            max_parked_polls: 5_000,
            metrics_period_seconds: 86_400,
            trusted_hops: 1,
            unsafe_logging: false,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_design() {
        let c = config(&[]).unwrap();
        assert_eq!(c.proxy_poll_timeout_ms, 10_000);
        assert_eq!(c.client_timeout_ms, 5_000);
        assert_eq!(c.client_timeout_from, TimeoutFrom::Request);
        assert_eq!(c.next_poll_ms, 20_000);
        assert_eq!(c.max_parked_polls, 5_000);
        assert!(c.bridges.has_default());
        assert!(c.relay_pattern_accepted(Some("snowflake.torproject.net$")));
        assert!(c.relay_pattern_accepted(Some("")));
        assert!(!c.relay_pattern_accepted(Some("^snowflake.torproject.net$")));
        assert!(!c.relay_pattern_accepted(None));
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = config(&[("PROXY_POLL_TIMEOUT_MS", "ten")]).unwrap_err();
        assert_eq!(e.setting, "PROXY_POLL_TIMEOUT_MS");
        assert_eq!(
            e.to_string(),
            "setting PROXY_POLL_TIMEOUT_MS is invalid: \"ten\" is not a whole number"
        );
        assert_eq!(
            config(&[("CLIENT_TIMEOUT_FROM", "now")])
                .unwrap_err()
                .setting,
            "CLIENT_TIMEOUT_FROM"
        );
        assert_eq!(
            config(&[("BRIDGE_LIST", "{")]).unwrap_err().setting,
            "BRIDGE_LIST"
        );
        assert_eq!(
            config(&[("MAX_PARKED_POLLS", "0")]).unwrap_err().setting,
            "MAX_PARKED_POLLS"
        );
        assert_eq!(
            config(&[("UNSAFE_LOGGING", "yes")]).unwrap_err().setting,
            "UNSAFE_LOGGING"
        );
        assert_eq!(
            config(&[("CLIENT_TIMEOUT_MS", "-1")]).unwrap_err().setting,
            "CLIENT_TIMEOUT_MS"
        );
    }

    #[test]
    fn default_relay_pattern_admits_legacy_proxies() {
        let c = config(&[("DEFAULT_RELAY_PATTERN", "snowflake.torproject.net$")]).unwrap();
        assert!(c.relay_pattern_accepted(None));
        let c = config(&[("DEFAULT_RELAY_PATTERN", "^other.example$")]).unwrap();
        assert!(!c.relay_pattern_accepted(None));
    }

    #[test]
    fn unimplemented_settings_warn_instead_of_pretending() {
        let c = config(&[("MATCHER_SHARDS", "4"), ("PROXY_POLL_RATE_LIMIT", "x")]).unwrap();
        assert_eq!(c.warnings.len(), 2);
    }
}
