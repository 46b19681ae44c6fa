//! Settings: wrangler `[vars]` (all strings, all optional), validated once.
//!
//! A bad value never crashes the Worker: it becomes a [`ConfigError`] that the
//! shell logs once, shows on `/debug`, and answers matching requests with 500.

use crate::matcher::interval::PollInterval;
use crate::protocol::bridges::BridgeList;
use crate::protocol::relay_pattern::RelayPattern;
use crate::sqs::sigv4::Credentials;
use crate::sqs::Queue;
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
    pub max_polls_per_address: usize,
    pub metrics_period_seconds: u64,
    pub trusted_hops: u32,
    pub unsafe_logging: bool,
    pub poll_interval: PollInterval,
    pub sqs: SqsSetting,
}

/// The SQS channel: off, on, or configured wrongly. A wrong SQS setting
/// turns only SQS off: HTTP and AMP rendezvous keep working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqsSetting {
    Off,
    On(SqsConfig),
    Broken(ConfigError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsConfig {
    pub queue: Queue,
    pub credentials: Credentials,
}

fn sqs_setting<F: Fn(&str) -> Option<String>>(v: &Values<F>) -> SqsSetting {
    let Some(url) = v.given(&SQS_QUEUE_URL) else {
        return SqsSetting::Off;
    };
    let queue = match Queue::parse(&url, v.given(&SQS_ENDPOINT).as_deref()) {
        Ok(q) => q,
        Err(message) => return SqsSetting::Broken(invalid(&SQS_QUEUE_URL, message)),
    };
    let secret = |setting: &Setting| {
        v.given(setting).map(|s| s.trim().to_string()).ok_or_else(|| {
            invalid(
                setting,
                format!(
                    "it is not set, and SQS_QUEUE_URL needs it (a secret: npx wrangler secret put {})",
                    setting.name
                ),
            )
        })
    };
    match (secret(&AWS_ACCESS_KEY_ID), secret(&AWS_SECRET_ACCESS_KEY)) {
        (Ok(access_key_id), Ok(secret_access_key)) => SqsSetting::On(SqsConfig {
            queue,
            credentials: Credentials {
                access_key_id,
                secret_access_key,
            },
        }),
        (Err(e), _) | (_, Err(e)) => SqsSetting::Broken(e),
    }
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

/// A setting's default, as parsing uses it and the README shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This text, as if the operator had set it.
    Value(&'static str),
    /// Off, or presumed absent.
    Unset,
    /// Built in and too long to show (the README shows this description).
    BuiltIn(&'static str),
}

/// One setting: its name, default and, for numbers, the range allowed.
/// [`SETTINGS`] is the one table parsing, the README's settings table and
/// `wrangler.toml` are checked against (tests/settings_table.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub default: DefaultValue,
    /// Inclusive bounds of a whole-number setting.
    pub range: Option<(u64, u64)>,
    /// The README's one-line meaning.
    pub meaning: &'static str,
}

const fn number_setting(
    name: &'static str,
    default: &'static str,
    min: u64,
    max: u64,
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        default: DefaultValue::Value(default),
        range: Some((min, max)),
        meaning,
    }
}

const fn other_setting(
    name: &'static str,
    default: DefaultValue,
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        default,
        range: None,
        meaning,
    }
}

// Go proxies give up on a response after 30 s; CDN77 cuts clients near 5 s.
pub const PROXY_POLL_TIMEOUT_MS: Setting = number_setting(
    "PROXY_POLL_TIMEOUT_MS",
    "10000",
    1,
    25_000,
    "how long a proxy poll is held before `no match`; Go proxies give up after 30 s",
);
pub const CLIENT_TIMEOUT_MS: Setting = number_setting(
    "CLIENT_TIMEOUT_MS",
    "5000",
    1,
    60_000,
    "how long a client waits for its answer",
);
pub const CLIENT_TIMEOUT_FROM: Setting = other_setting(
    "CLIENT_TIMEOUT_FROM",
    DefaultValue::Value("request"),
    "`request`: counted from the client's request (fits CDN77's ~5 s); `match`: from the moment a proxy gets the offer (the Go broker before 2.11)",
);
pub const NEXT_POLL_MS: Setting = number_setting(
    "NEXT_POLL_MS",
    "20000",
    0,
    86_400_000,
    "the `NextPoll` value in proxy poll responses",
);
pub const ALLOWED_RELAY_PATTERN: Setting = other_setting(
    "ALLOWED_RELAY_PATTERN",
    DefaultValue::Value("snowflake.torproject.net$"),
    "relay pattern every proxy's `AcceptedRelayPattern` must cover (`^exact$` or `suffix$`; write `$` for the empty pattern)",
);
pub const DEFAULT_RELAY_PATTERN: Setting = other_setting(
    "DEFAULT_RELAY_PATTERN",
    DefaultValue::Unset,
    "pattern presumed for proxies that send none; unset: such proxies get `incorrect relay pattern`",
);
pub const BRIDGE_LIST: Setting = other_setting(
    "BRIDGE_LIST",
    DefaultValue::BuiltIn("the default bridge"),
    "NDJSON, one `{\"displayName\":…,\"webSocketAddress\":…,\"fingerprint\":…}` per line; replaces the default entirely; unknown keys and bad fingerprints are refused",
);
pub const MATCHER_SHARDS: Setting = number_setting(
    "MATCHER_SHARDS",
    "1",
    1,
    256,
    "number of matcher Durable Objects (shards); see \"Choosing `MATCHER_SHARDS`\" below for how many, and for changing it on a running broker",
);
pub const MAX_PARKED_POLLS: Setting = number_setting(
    "MAX_PARKED_POLLS",
    "5000",
    1,
    100_000,
    "proxy polls one matcher shard holds at once (the deployment: `MATCHER_SHARDS` × this); more are answered `no match` at once with a `NextPoll` of 3× `NEXT_POLL_MS` (at least 30 s)",
);
// One address (an IPv6 /64) may not fill a matcher: an honest host runs one
// proxy or a few; a flood from one source is held to this many.
pub const MAX_POLLS_PER_ADDRESS: Setting = number_setting(
    "MAX_POLLS_PER_ADDRESS",
    "10",
    1,
    100_000,
    "proxy sessions one address (IPv6: one /64) holds at once, parked polls and matched proxies whose client awaits their answer (every poll of an address goes to one shard, so this holds for the whole deployment); more polls are answered like those beyond `MAX_PARKED_POLLS`",
);
pub const METRICS_PERIOD_SECONDS: Setting = number_setting(
    "METRICS_PERIOD_SECONDS",
    "86400",
    1,
    31_622_400,
    "length of one `snowflake-stats` period on `/metrics`",
);
pub const TRUSTED_HOPS: Setting = number_setting(
    "TRUSTED_HOPS",
    "1",
    0,
    16,
    "how many `X-Forwarded-For` entries, counted from the right, were added by proxies we trust (the fronting CDN); a client's address is the leftmost public one among them",
);
pub const PROXY_POLL_INTERVAL_MS: Setting = other_setting(
    "PROXY_POLL_INTERVAL_MS",
    DefaultValue::Unset,
    "N's per-address poll interval: a poll from an address (IPv6: a /64) whose last accepted poll for the same pool was less than this long ago is answered `polled too soon` at once, with the time left as `NextPoll`. One number of milliseconds for every pool (N's is `20000`), or per pool as `open=…,moderate=…,strict=…` (a pool not named is not limited); unset: off (0–86400000 each)",
);
pub const SQS_QUEUE_URL: Setting = other_setting(
    "SQS_QUEUE_URL",
    DefaultValue::Unset,
    "N's SQS rendezvous: the URL of the queue clients post offers to, `https://sqs.<region>.amazonaws.com/<account>/<name>` (the region comes from it; the queue is created if missing); unset: off. A bad value or missing credentials turn SQS off with the reason on `/debug` and in the log; HTTP rendezvous is not affected",
);
pub const SQS_ENDPOINT: Setting = other_setting(
    "SQS_ENDPOINT",
    DefaultValue::Unset,
    "the SQS API endpoint calls go to instead of the queue URL's host (tests, SQS-compatible services)",
);
pub const AWS_ACCESS_KEY_ID: Setting = other_setting(
    "AWS_ACCESS_KEY_ID",
    DefaultValue::Unset,
    "the SQS credentials' key id: a wrangler secret (`npx wrangler secret put AWS_ACCESS_KEY_ID`; `.dev.vars` locally), never `[vars]`",
);
pub const AWS_SECRET_ACCESS_KEY: Setting = other_setting(
    "AWS_SECRET_ACCESS_KEY",
    DefaultValue::Unset,
    "the SQS credentials' secret key: a wrangler secret, like `AWS_ACCESS_KEY_ID`",
);
pub const UNSAFE_LOGGING: Setting = other_setting(
    "UNSAFE_LOGGING",
    DefaultValue::Value("false"),
    "log IP addresses unscrubbed (`true`/`false`)",
);

/// Every setting, in the README's order.
pub const SETTINGS: [Setting; 18] = [
    PROXY_POLL_TIMEOUT_MS,
    CLIENT_TIMEOUT_MS,
    CLIENT_TIMEOUT_FROM,
    NEXT_POLL_MS,
    ALLOWED_RELAY_PATTERN,
    DEFAULT_RELAY_PATTERN,
    BRIDGE_LIST,
    MAX_PARKED_POLLS,
    MAX_POLLS_PER_ADDRESS,
    METRICS_PERIOD_SECONDS,
    TRUSTED_HOPS,
    UNSAFE_LOGGING,
    MATCHER_SHARDS,
    PROXY_POLL_INTERVAL_MS,
    SQS_QUEUE_URL,
    SQS_ENDPOINT,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
];

/// Settings an older version read and this one does not, with what replaced
/// them: set, they are a configuration error, never silently ignored.
pub const RETIRED: [(&str, &str); 1] = [(
    "PROXY_POLL_RATE_LIMIT",
    "it was never in effect; N's per-address limit is now PROXY_POLL_INTERVAL_MS (milliseconds, e.g. 20000)",
)];

/// Whether `name` is one of [`SETTINGS`] or [`RETIRED`]: a name the
/// configuration reads.
pub fn is_setting(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.name == name) || RETIRED.iter().any(|(n, _)| *n == name)
}

fn invalid(setting: &Setting, message: String) -> ConfigError {
    ConfigError {
        setting: setting.name,
        message,
    }
}

/// The settings as given, with their defaults filled in.
struct Values<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Values<F> {
    /// The operator's value, or None when it is missing or empty ("unset").
    fn given(&self, setting: &Setting) -> Option<String> {
        (self.get)(setting.name).filter(|v| !v.trim().is_empty())
    }

    /// The operator's value, else the table's default (None if unset).
    fn text(&self, setting: &Setting) -> Option<String> {
        self.given(setting).or(match setting.default {
            DefaultValue::Value(v) => Some(v.to_string()),
            DefaultValue::Unset | DefaultValue::BuiltIn(_) => None,
        })
    }

    /// A whole number within the setting's range.
    fn number(&self, setting: &Setting) -> Result<u64, ConfigError> {
        let text = self.text(setting).unwrap_or_default();
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| invalid(setting, format!("{text:?} is not a whole number")))?;
        let (min, max) = setting.range.unwrap_or((0, u64::MAX));
        if n < min || n > max {
            return Err(invalid(setting, format!("{n} is outside {min}..={max}")));
        }
        Ok(n)
    }

    /// One of `choices`, returned as its index.
    fn choice(&self, setting: &Setting, choices: &[&str]) -> Result<usize, ConfigError> {
        let text = self.text(setting).unwrap_or_default();
        let text = text.trim();
        choices.iter().position(|c| *c == text).ok_or_else(|| {
            let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
            invalid(
                setting,
                format!("{text:?} is not one of {}", quoted.join(", ")),
            )
        })
    }
}

impl Config {
    /// Reads every setting through `get` (a missing or empty value means
    /// "use the default").
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let v = Values { get };
        for (name, why) in RETIRED {
            if (v.get)(name).is_some_and(|t| !t.trim().is_empty()) {
                return Err(ConfigError {
                    setting: name,
                    message: format!("this setting was removed: {why}"),
                });
            }
        }
        let client_timeout_from = match v.choice(&CLIENT_TIMEOUT_FROM, &["request", "match"])? {
            0 => TimeoutFrom::Request,
            _ => TimeoutFrom::Match,
        };
        // An empty value means "unset" like every other setting; the empty
        // pattern itself is written `$`.
        let allowed_relay_pattern =
            RelayPattern::parse(&v.text(&ALLOWED_RELAY_PATTERN).unwrap_or_default());
        let default_relay_pattern = v
            .text(&DEFAULT_RELAY_PATTERN)
            .map(|p| RelayPattern::parse(&p));
        let bridges = match v.given(&BRIDGE_LIST) {
            None => BridgeList::default(),
            Some(text) => {
                BridgeList::parse(&text).map_err(|message| invalid(&BRIDGE_LIST, message))?
            }
        };
        let matcher_shards = v.number(&MATCHER_SHARDS)?;
        let poll_interval = match v.given(&PROXY_POLL_INTERVAL_MS) {
            None => PollInterval::OFF,
            Some(text) => PollInterval::parse(&text)
                .map_err(|message| invalid(&PROXY_POLL_INTERVAL_MS, message))?,
        };
        Ok(Config {
            proxy_poll_timeout_ms: v.number(&PROXY_POLL_TIMEOUT_MS)?,
            client_timeout_ms: v.number(&CLIENT_TIMEOUT_MS)?,
            client_timeout_from,
            next_poll_ms: v.number(&NEXT_POLL_MS)?,
            allowed_relay_pattern,
            default_relay_pattern,
            bridges,
            matcher_shards: u32::try_from(matcher_shards).unwrap_or(u32::MAX),
            max_parked_polls: usize::try_from(v.number(&MAX_PARKED_POLLS)?).unwrap_or(usize::MAX),
            max_polls_per_address: usize::try_from(v.number(&MAX_POLLS_PER_ADDRESS)?)
                .unwrap_or(usize::MAX),
            metrics_period_seconds: v.number(&METRICS_PERIOD_SECONDS)?,
            trusted_hops: u32::try_from(v.number(&TRUSTED_HOPS)?).unwrap_or(u32::MAX),
            unsafe_logging: v.choice(&UNSAFE_LOGGING, &["false", "true", "0", "1"])? % 2 == 1,
            poll_interval,
            sqs: sqs_setting(&v),
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

/// The matching engine's part of the settings.
impl From<&Config> for crate::matcher::Settings {
    fn from(c: &Config) -> Self {
        crate::matcher::Settings {
            proxy_poll_timeout_ms: c.proxy_poll_timeout_ms,
            client_timeout_ms: c.client_timeout_ms,
            client_timeout_from: c.client_timeout_from,
            max_parked_polls: c.max_parked_polls,
            max_polls_per_address: c.max_polls_per_address,
            poll_interval: c.poll_interval,
        }
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
        assert_eq!(c.poll_interval, PollInterval::OFF);
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
    fn the_poll_interval_is_one_number_or_per_pool() {
        let c = config(&[("PROXY_POLL_INTERVAL_MS", "20000")]).unwrap();
        assert_eq!(c.poll_interval, PollInterval([20_000; 3]));
        let c = config(&[("PROXY_POLL_INTERVAL_MS", "open=1000,strict=3000")]).unwrap();
        assert_eq!(c.poll_interval, PollInterval([1_000, 0, 3_000]));
        let e = config(&[("PROXY_POLL_INTERVAL_MS", "often")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting PROXY_POLL_INTERVAL_MS is invalid: \"often\" is not a whole number of milliseconds"
        );
    }

    #[test]
    fn a_wrong_sqs_setting_turns_only_sqs_off() {
        let url = (
            "SQS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/snowflake",
        );
        let key = ("AWS_ACCESS_KEY_ID", "AKID");
        let secret = ("AWS_SECRET_ACCESS_KEY", "s3cr3t");
        assert_eq!(config(&[]).unwrap().sqs, SqsSetting::Off);
        let c = config(&[url, key, secret]).unwrap();
        let SqsSetting::On(sqs) = &c.sqs else {
            panic!("{:?}", c.sqs)
        };
        assert_eq!(sqs.queue.region, "eu-west-1");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "the secret is never printed"
        );
        let c = config(&[url, key]).unwrap();
        let SqsSetting::Broken(e) = &c.sqs else {
            panic!("{:?}", c.sqs)
        };
        assert_eq!(e.setting, "AWS_SECRET_ACCESS_KEY");
        let c = config(&[("SQS_QUEUE_URL", "snowflake"), key, secret]).unwrap();
        assert!(matches!(&c.sqs, SqsSetting::Broken(e) if e.setting == "SQS_QUEUE_URL"));
        // Credentials alone turn nothing on.
        assert_eq!(config(&[key, secret]).unwrap().sqs, SqsSetting::Off);
    }

    #[test]
    fn a_retired_setting_is_an_error_naming_its_successor() {
        let e = config(&[("PROXY_POLL_RATE_LIMIT", "10")]).unwrap_err();
        assert_eq!(e.setting, "PROXY_POLL_RATE_LIMIT");
        assert!(e.to_string().contains("PROXY_POLL_INTERVAL_MS"), "{e}");
        assert!(config(&[("PROXY_POLL_RATE_LIMIT", " ")]).is_ok());
    }
}
