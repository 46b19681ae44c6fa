//! The `/debug` page (docs/protocol.md §1.5), in R's layout.

use crate::matcher::Census;
use crate::protocol::nat::Nat;
use crate::protocol::proxy::ProxyType;
use std::fmt::Write;

/// R's text: sessions by known proxy type (only those with some), unknown
/// types, then NAT counts. R counts any NAT other than `restricted` and
/// `unrestricted` as unknown; we keep that layout and add the N names to the
/// R class they behave like, so the page stays parseable by existing tools.
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
    let count_nat = |nats: &[Nat]| {
        census
            .by_nat
            .iter()
            .filter(|(k, _)| nats.contains(k))
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
        "\tunknown proxies: {}\nNAT Types available:\n\trestricted: {}\n\tunrestricted: {}\n\tunknown: {}",
        count_type(ProxyType::Unknown),
        count_nat(&[Nat::Restricted, Nat::Strict]),
        count_nat(&[Nat::Unrestricted, Nat::Open]),
        count_nat(&[Nat::Unknown, Nat::Moderate]),
    );
    for problem in problems {
        let _ = write!(out, "\n{problem}");
    }
    out
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
            "current snowflakes available: 4\n\tstandalone proxies: 1\n\twebext proxies: 2\n\tunknown proxies: 1\nNAT Types available:\n\trestricted: 2\n\tunrestricted: 1\n\tunknown: 1\nwarning: x"
        );
    }
}
