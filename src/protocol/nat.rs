//! NAT types as proxies and clients report them, and N's three proxy pools.

/// A NAT type string the broker accepts, normalised (`""` → `unknown`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Nat {
    Unknown,
    Restricted,
    Unrestricted,
    // N's three-way names (docs/design.md §2.2).
    Open,
    Moderate,
    Strict,
}

/// The three proxy pools of N (docs/protocol.md §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    Open,
    Moderate,
    Strict,
}

impl Pool {
    pub fn index(self) -> usize {
        match self {
            Pool::Open => 0,
            Pool::Moderate => 1,
            Pool::Strict => 2,
        }
    }
}

impl Nat {
    /// Every NAT type the broker accepts.
    pub const ALL: [Nat; 6] = [
        Nat::Unknown,
        Nat::Restricted,
        Nat::Unrestricted,
        Nat::Open,
        Nat::Moderate,
        Nat::Strict,
    ];

    /// Parses a reported NAT type; `""` means unknown, anything else
    /// unrecognised (including other letter cases) is invalid.
    pub fn parse(s: &str) -> Option<Nat> {
        Some(match s {
            "" | "unknown" => Nat::Unknown,
            "restricted" => Nat::Restricted,
            "unrestricted" => Nat::Unrestricted,
            "open" => Nat::Open,
            "moderate" => Nat::Moderate,
            "strict" => Nat::Strict,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Nat::Unknown => "unknown",
            Nat::Restricted => "restricted",
            Nat::Unrestricted => "unrestricted",
            Nat::Open => "open",
            Nat::Moderate => "moderate",
            Nat::Strict => "strict",
        }
    }

    /// The pool a proxy with this NAT waits in.
    pub fn proxy_pool(self) -> Pool {
        match self {
            Nat::Unrestricted | Nat::Open => Pool::Open,
            Nat::Moderate => Pool::Moderate,
            Nat::Restricted | Nat::Strict | Nat::Unknown => Pool::Strict,
        }
    }

    /// The pools a client with this NAT may take a proxy from, in order:
    /// easy clients use the plentiful strict proxies first and keep the scarce
    /// open ones for clients that cannot work with anything else.
    pub fn client_pools(self) -> &'static [Pool] {
        match self {
            Nat::Unrestricted | Nat::Open => &[Pool::Strict, Pool::Moderate, Pool::Open],
            Nat::Moderate => &[Pool::Moderate, Pool::Open],
            Nat::Restricted | Nat::Strict | Nat::Unknown => &[Pool::Open],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_exact_names() {
        assert_eq!(Nat::parse(""), Some(Nat::Unknown));
        assert_eq!(Nat::parse("open"), Some(Nat::Open));
        assert_eq!(Nat::parse("Restricted"), None);
        assert_eq!(Nat::parse("cone"), None);
    }

    #[test]
    fn restricted_clients_only_get_open_proxies() {
        for nat in [Nat::Unknown, Nat::Restricted, Nat::Strict] {
            assert_eq!(nat.client_pools(), &[Pool::Open]);
        }
        assert_eq!(Nat::Unknown.proxy_pool(), Pool::Strict);
    }
}
