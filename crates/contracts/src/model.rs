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
    /// What to do with content that cannot be read (damaged or unsupported archives).
    pub unreadable: EncryptedPolicy,
    /// Whether `sending_servers` may hold networks wider than [`SENDING_PREFIX_MIN`]
    /// (down to [`SENDING_PREFIX_FLOOR`]).
    pub wide_sending_networks: bool,
    /// The security functions in use (R16): at least one while the contract runs.
    pub functions: Functions,
    /// The price table it is billed by (`[billing]` names them); `None`: the default one.
    pub price_table: Option<String>,
}

/// The security functions a contract uses (R16). Stopping one of them is a change; stopping
/// every one is a cancellation, never a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Functions {
    /// Mail to the contract's domains is accepted, scanned and relayed to its servers.
    pub inbound: bool,
    /// Mail from the contract's sending servers is relayed, scanned, to anywhere.
    pub outbound: bool,
}

impl Default for Functions {
    fn default() -> Self {
        Functions { inbound: true, outbound: true }
    }
}

impl Functions {
    /// The names of the functions in use, as the contracts file lists them.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.inbound {
            out.push("inbound");
        }
        if self.outbound {
            out.push("outbound");
        }
        out
    }
}

/// The widest sending network a contract may list by default: IPv4 /16, IPv6 /48 (one site).
pub const SENDING_PREFIX_MIN: (u8, u8) = (16, 48);
/// The widest sending network any contract may list, even with `allow_wide_sending_networks`:
/// IPv4 /8, IPv6 /16. Nothing wider is ever accepted, so no contract line can cover the Internet.
pub const SENDING_PREFIX_FLOOR: (u8, u8) = (8, 16);

/// Checks one sending network against the relay bounds and returns it in canonical form
/// (IPv4-mapped IPv6 networks such as `::ffff:10.0.0.0/104` become IPv4 networks).
pub fn sending_network(net: IpNet, allow_wide: bool) -> Result<IpNet, String> {
    let net = canonical_net(net.trunc());
    let (v4, v6) = if allow_wide { SENDING_PREFIX_FLOOR } else { SENDING_PREFIX_MIN };
    let (min, family) = match net {
        IpNet::V4(_) => (v4, "IPv4"),
        IpNet::V6(_) => (v6, "IPv6"),
    };
    if net.prefix_len() >= min {
        return Ok(net);
    }
    let hint = if allow_wide {
        String::new()
    } else {
        format!(
            " (set allow_wide_sending_networks = true to allow down to /{} for IPv4, /{} for IPv6)",
            SENDING_PREFIX_FLOOR.0, SENDING_PREFIX_FLOOR.1
        )
    };
    Err(format!(
        "{net} is wider than /{min}, the widest {family} sending network allowed: it would let that whole range relay through the gateway{hint}"
    ))
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 is the IPv4 network `a.b.c.d/(n-96)`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n.trunc());
    }
    net
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
    /// Host name or IP address (lower case).
    pub host: String,
    /// TCP port (25 unless given).
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

/// A domain name as stored and looked up: lower case, internationalized labels as A-labels
/// (`例え.example` → `xn--r8jz45g.example`, UTS #46). `None` if it is not a valid name.
pub fn normalize_domain(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.');
    let ascii = if name.is_ascii() { name.to_ascii_lowercase() } else { idna::domain_to_ascii(name).ok()? };
    Some(ascii)
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
    fn sending_network_bounds() {
        let check = |s: &str, wide| sending_network(s.parse().unwrap(), wide).map(|n| n.to_string());
        for open in ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::ffff:0:0/96", "10.0.0.0/15", "2001:db8::/47"] {
            assert!(check(open, false).is_err(), "{open}");
        }
        for open in ["0.0.0.0/0", "::/0", "0.0.0.0/7", "::ffff:0:0/96", "::ffff:0:0/103", "2000::/15"] {
            assert!(check(open, true).is_err(), "{open} with the option");
        }
        assert_eq!(check("10.1.0.0/16", false).unwrap(), "10.1.0.0/16");
        assert_eq!(check("2001:db8:1::/48", false).unwrap(), "2001:db8:1::/48");
        assert_eq!(check("::ffff:192.0.2.0/120", false).unwrap(), "192.0.2.0/24");
        assert_eq!(check("10.0.0.0/8", true).unwrap(), "10.0.0.0/8");
        assert!(check("10.0.0.0/8", false).unwrap_err().contains("allow_wide_sending_networks"));
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
