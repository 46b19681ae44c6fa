//! The `/debug` page (docs/protocol.md §1.5), in R's layout.

use crate::config::{Config, SqsSetting};
use crate::matcher::Census;
use crate::protocol::nat::{Nat, Pool};
use crate::protocol::proxy::ProxyType;
use std::fmt::Write;

/// R's text: sessions by known proxy type (only those with some), unknown
/// types, then NAT counts. When some proxy said `strict`, `moderate` or
/// `open`, N's layout: those three lines come before `unknown`, so the page
/// shows what proxies said; otherwise R's exact three NAT lines.
/// Known types come in a fixed order (Go's map order is random).
pub fn render(census: &Census, problems: &[String]) -> String {
    let count_type = |t: ProxyType| {
        census
            .by_type
            .iter()
            .filter(|(k, _)| *k == t)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    let count_nat = |nat: Nat| {
        census
            .by_nat
            .iter()
            .filter(|(k, _)| *k == nat)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    let mut out = String::new();
    let _ = writeln!(out, "current snowflakes available: {}", census.sessions);
    for t in ProxyType::KNOWN {
        let n = count_type(t);
        if n > 0 {
            let _ = writeln!(out, "\t{} proxies: {}", t.as_str(), n);
        }
    }
    let _ = write!(
        out,
        "\tunknown proxies: {}\nNAT Types available:\n\trestricted: {}\n\tunrestricted: {}",
        count_type(ProxyType::Unknown),
        count_nat(Nat::Restricted),
        count_nat(Nat::Unrestricted),
    );
    let n_names = [Nat::Strict, Nat::Moderate, Nat::Open];
    if n_names.iter().any(|&nat| count_nat(nat) > 0) {
        for nat in n_names {
            let _ = write!(out, "\n\t{}: {}", nat.as_str(), count_nat(nat));
        }
    }
    let _ = write!(out, "\n\tunknown: {}", count_nat(Nat::Unknown));
    for problem in problems {
        let _ = write!(out, "\n{problem}");
    }
    out
}

/// What `/debug` says of the settings after the counts: only what differs
/// from R's behaviour, so a default deployment shows R's exact page.
pub fn settings_notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if let SqsSetting::Broken(e) = &config.sqs {
        notes.push(format!("SQS rendezvous is off: {e}"));
    }
    let interval = config.poll_interval;
    if !interval.is_on() {
        return notes;
    }
    let pools: Vec<String> = [
        ("open", Pool::Open),
        ("moderate", Pool::Moderate),
        ("strict", Pool::Strict),
    ]
    .iter()
    .map(|(name, pool)| match interval.of(*pool) {
        0 => format!("{name} unlimited"),
        ms => format!("{name} {ms} ms"),
    })
    .collect();
    notes.insert(
        0,
        format!(
            "proxy poll interval per address (PROXY_POLL_INTERVAL_MS): {}",
            pools.join(", ")
        ),
    );
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_broker_is_rs_exact_text() {
        assert_eq!(
            render(&Census::default(), &[]),
            "current snowflakes available: 0\n\tunknown proxies: 0\nNAT Types available:\n\trestricted: 0\n\tunrestricted: 0\n\tunknown: 0"
        );
    }

    #[test]
    fn counts_known_types_in_fixed_order() {
        let census = Census {
            sessions: 4,
            by_type: vec![
                (ProxyType::Webext, 2),
                (ProxyType::Standalone, 1),
                (ProxyType::Unknown, 1),
            ],
            by_nat: vec![(Nat::Unknown, 1), (Nat::Restricted, 2), (Nat::Open, 1)],
            parked_polls: 4,
            waiting_clients: 0,
        };
        assert_eq!(
            render(&census, &["warning: x".into()]),
            "current snowflakes available: 4\n\tstandalone proxies: 1\n\twebext proxies: 2\n\tunknown proxies: 1\nNAT Types available:\n\trestricted: 2\n\tunrestricted: 0\n\tstrict: 0\n\tmoderate: 0\n\topen: 1\n\tunknown: 1\nwarning: x"
        );
        // Only R's names present: R's exact lines.
        let census = Census {
            by_nat: vec![
                (Nat::Unknown, 1),
                (Nat::Restricted, 2),
                (Nat::Unrestricted, 1),
            ],
            ..census
        };
        assert_eq!(
            render(&census, &[]),
            "current snowflakes available: 4\n\tstandalone proxies: 1\n\twebext proxies: 2\n\tunknown proxies: 1\nNAT Types available:\n\trestricted: 2\n\tunrestricted: 1\n\tunknown: 1"
        );
    }
}
