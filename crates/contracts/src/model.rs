//! The validated contract model.

use chrono::NaiveDate;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// A customer contract (R16): domains, servers, accounts limit and term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// Operator's identifier, unique.
    pub id: String,
    /// Customer name.
    pub customer: String,
    /// Contracted number of accounts (R5).
    pub accounts_limit: u32,
    /// First day of service.
    pub starts: NaiveDate,
    /// Day the contract ends (cancelled), if any; service stops at the start of that day.
    pub ends: Option<NaiveDate>,
    /// Addresses allowed to relay outbound (R2).
    pub sending_servers: Vec<IpNet>,
    /// Registered domains (R4).
    pub domains: Vec<Domain>,
    /// What to do with password-protected content that cannot be scanned (R11).
    pub encrypted: EncryptedPolicy,
}

/// What to do with encrypted (unscannable) attachments, per contract (R11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptedPolicy {
    /// Deliver them, marked unscanned (the default).
    #[default]
    Pass,
    /// Refuse the message at SMTP time.
    Refuse,
}

impl EncryptedPolicy {
    /// `pass` or `refuse`, as in the contracts file and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptedPolicy::Pass => "pass",
            EncryptedPolicy::Refuse => "refuse",
        }
    }

    /// Parses `pass` or `refuse`.
    pub fn parse(s: &str) -> Option<EncryptedPolicy> {
        match s {
            "pass" => Some(EncryptedPolicy::Pass),
            "refuse" => Some(EncryptedPolicy::Refuse),
            _ => None,
        }
    }
}

/// A registered domain and where its mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Lower-case domain name.
    pub name: String,
    /// Customer servers, tried in order (R1, R4).
    pub receiving_servers: Vec<NextHop>,
    /// Registered local parts, lower case (R5).
    pub accounts: Vec<String>,
}

/// A next hop `host[:port]` (port 25 when omitted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
}

impl NextHop {
    /// Parses `host`, `host:port`, `ip`, `ip:port`, `[v6]` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<NextHop, String> {
        let s = s.trim();
        let bad = || format!("invalid server {s:?} (expected host, host:port or [ipv6]:port)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => 25,
                p => p.strip_prefix(':').and_then(|p| p.parse().ok()).ok_or_else(bad)?,
            };
            (h.to_string(), port)
        } else if s.parse::<IpAddr>().is_ok() {
            (s.to_string(), 25)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad())?),
                None => (s.to_string(), 25),
            }
        };
        let host_ok = host.parse::<IpAddr>().is_ok() || is_hostname(&host);
        if !host_ok || port == 0 {
            return Err(bad());
        }
        Ok(NextHop { host: host.to_ascii_lowercase(), port })
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A DNS host name: dot-separated labels of letters, digits and hyphens.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A local part that may be registered: a dot-atom without the relay-trick characters
/// `%`, `!`, `@` and without quoting.
pub fn is_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|atom| {
            !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_alphanumeric() || b"#$&'*+-/=?^_`{|}~".contains(&b))
        })
}

impl Contract {
    /// Whether the contract is in force on `day`.
    pub fn is_active(&self, day: NaiveDate) -> bool {
        self.starts <= day && self.ends.is_none_or(|e| day < e)
    }

    /// Number of registered accounts over all domains.
    pub fn accounts_used(&self) -> usize {
        self.domains.iter().map(|d| d.accounts.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops() {
        assert_eq!(NextHop::parse("127.0.0.1:2600").unwrap(), NextHop { host: "127.0.0.1".into(), port: 2600 });
        assert_eq!(NextHop::parse("mail.acme.example").unwrap().port, 25);
        assert_eq!(NextHop::parse("[::1]:2525").unwrap().to_string(), "[::1]:2525");
        assert_eq!(NextHop::parse("::1").unwrap().host, "::1");
        for bad in ["", "host:", "host:99999", "bad host", "[::1", "[nope]:25", "h:0"] {
            assert!(NextHop::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_names() {
        assert!(is_account_name("alice"));
        assert!(is_account_name("first.last+tag"));
        for bad in ["", "a%b", "a!b", "a@b", ".a", "a..b", "a b", "\"q\""] {
            assert!(!is_account_name(bad), "{bad}");
        }
    }
}
