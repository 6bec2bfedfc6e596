//! RFC 5321 paths (`<local@domain>`), with the details a relay policy must see.

use std::fmt;

/// Longest local part RFC 5321 §4.5.3.1.1 allows.
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain RFC 5321 §4.5.3.1.2 allows.
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest path RFC 5321 §4.5.3.1.3 allows (including the angle brackets).
pub const MAX_PATH_LEN: usize = 256;

/// A mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, unquoted (a quoted-string's content with escapes resolved).
    pub local: String,
    /// The domain as written (an address literal keeps its brackets).
    pub domain: String,
    /// The local part was written as a quoted string.
    pub quoted_local: bool,
}

impl Mailbox {
    /// The domain is an address literal such as `[192.0.2.1]`.
    pub fn is_domain_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    /// The domain in lower case, for lookups.
    pub fn domain_lower(&self) -> String {
        self.domain.to_ascii_lowercase()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quoting(&self.local) {
            write!(f, "\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    write!(f, "\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        } else if self.domain.is_empty() {
            // only `postmaster` has no domain
            write!(f, "{}", self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// A reverse- or forward-path as given in `MAIL FROM:` / `RCPT TO:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The mailbox; `None` for the null path `<>`.
    pub mailbox: Option<Mailbox>,
    /// A source route (`@a,@b:`) was present; RFC 5321 deprecates them.
    pub source_route: Option<String>,
}

impl Path {
    /// The null reverse-path `<>`.
    pub fn null() -> Self {
        Path { mailbox: None, source_route: None }
    }

    /// Whether this is `<>`.
    pub fn is_null(&self) -> bool {
        self.mailbox.is_none()
    }

    /// `<postmaster>` without a domain, which RFC 5321 §4.1.1.3 requires a server to accept
    /// as a recipient: a mailbox `postmaster` with an empty domain.
    pub fn bare_postmaster() -> Self {
        Path {
            mailbox: Some(Mailbox { local: "postmaster".into(), domain: String::new(), quoted_local: false }),
            source_route: None,
        }
    }

    /// Whether this is `<postmaster>` without a domain.
    pub fn is_bare_postmaster(&self) -> bool {
        self.mailbox.as_ref().is_some_and(|m| m.domain.is_empty() && m.local.eq_ignore_ascii_case("postmaster"))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mailbox {
            Some(m) => write!(f, "{m}"),
            None => Ok(()),
        }
    }
}

/// Why a path could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not enclosed in `<>`.
    #[error("address must be enclosed in <>")]
    NoBrackets,
    /// Longer than RFC 5321 allows.
    #[error("address is too long")]
    TooLong,
    /// Local part longer than 64 bytes.
    #[error("local part is too long")]
    LocalTooLong,
    /// Domain longer than 255 bytes.
    #[error("domain is too long")]
    DomainTooLong,
    /// No `@domain`.
    #[error("missing @domain")]
    NoDomain,
    /// Empty local part.
    #[error("empty local part")]
    EmptyLocal,
    /// Local part not a dot-string or quoted string.
    #[error("invalid local part")]
    BadLocal,
    /// Not a domain or address literal.
    #[error("invalid domain")]
    BadDomain,
    /// A malformed source route.
    #[error("invalid source route")]
    BadRoute,
}

/// Parses `<...>` (the text right after `FROM:`/`TO:`, before any parameters).
/// Returns the path and the rest of the text (the parameters).
pub fn parse_path(input: &str) -> Result<(Path, &str), AddressError> {
    let s = input.trim_start();
    if !s.starts_with('<') {
        return Err(AddressError::NoBrackets);
    }
    let end = find_closing(s).ok_or(AddressError::NoBrackets)?;
    let inner = &s[1..end];
    let rest = &s[end + 1..];
    if end + 1 > MAX_PATH_LEN {
        return Err(AddressError::TooLong);
    }
    if inner.is_empty() {
        return Ok((Path::null(), rest));
    }
    let (route, mailbox) = split_route(inner)?;
    let mailbox = parse_mailbox(mailbox)?;
    Ok((Path { mailbox: Some(mailbox), source_route: route.map(str::to_string) }, rest))
}

/// Finds the `>` that closes the path, skipping quoted strings.
fn find_closing(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut in_quote = false;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn split_route(inner: &str) -> Result<(Option<&str>, &str), AddressError> {
    if !inner.starts_with('@') {
        return Ok((None, inner));
    }
    let colon = inner.find(':').ok_or(AddressError::BadRoute)?;
    let route = &inner[..colon];
    for hop in route.split(',') {
        let hop = hop.strip_prefix('@').ok_or(AddressError::BadRoute)?;
        if !is_domain(hop) {
            return Err(AddressError::BadRoute);
        }
    }
    Ok((Some(route), &inner[colon + 1..]))
}

/// Parses `local@domain` (no brackets).
pub fn parse_mailbox(s: &str) -> Result<Mailbox, AddressError> {
    let (local, quoted, after) = if let Some(body) = s.strip_prefix('"') {
        let (local, used) = parse_quoted(body).ok_or(AddressError::BadLocal)?;
        (local, true, &body[used..])
    } else {
        let at = s.rfind('@').ok_or(AddressError::NoDomain)?;
        let local = &s[..at];
        if local.is_empty() {
            return Err(AddressError::EmptyLocal);
        }
        if !is_dot_string(local) {
            return Err(AddressError::BadLocal);
        }
        (local.to_string(), false, &s[at..])
    };
    let domain = after.strip_prefix('@').ok_or(AddressError::NoDomain)?;
    if local.len() > MAX_LOCAL_LEN {
        return Err(AddressError::LocalTooLong);
    }
    if local.is_empty() && !quoted {
        return Err(AddressError::EmptyLocal);
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    if !(is_domain(domain) || is_address_literal(domain)) {
        return Err(AddressError::BadDomain);
    }
    Ok(Mailbox { local, domain: domain.to_string(), quoted_local: quoted })
}

/// Parses a quoted string body (after the opening quote); returns content and bytes used
/// including the closing quote.
fn parse_quoted(body: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                if (e as u32) < 0x20 && e != '\t' {
                    return None;
                }
                out.push(e);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => return None,
            c => out.push(c),
        }
    }
    None
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (c as u32) >= 0x80
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn needs_quoting(local: &str) -> bool {
    !is_dot_string(local)
}

/// A domain name: labels of letters, digits and hyphens (or UTF-8 for SMTPUTF8), no empty
/// label, so no trailing dot.
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DOMAIN_LEN
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || (c as u32) >= 0x80)
        })
}

fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner.strip_prefix("IPv6:") {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Result<Path, AddressError> {
        parse_path(s).map(|(p, _)| p)
    }

    #[test]
    fn plain_and_null() {
        let p = mb("<Alice@Acme.Example>").unwrap();
        let m = p.mailbox.unwrap();
        assert_eq!((m.local.as_str(), m.domain.as_str()), ("Alice", "Acme.Example"));
        assert!(mb("<>").unwrap().is_null());
        let (p, rest) = parse_path("<a@b.c> SIZE=10").unwrap();
        assert_eq!(p.to_string(), "a@b.c");
        assert_eq!(rest, " SIZE=10");
    }

    #[test]
    fn tricks_are_visible() {
        let p = mb("<@relay.test:bob@remote.test>").unwrap();
        assert_eq!(p.source_route.as_deref(), Some("@relay.test"));
        assert_eq!(p.mailbox.unwrap().domain, "remote.test");
        let q = mb("<\"bob@remote.test\"@acme.example>").unwrap().mailbox.unwrap();
        assert!(q.quoted_local);
        assert_eq!(q.local, "bob@remote.test");
        assert_eq!(q.domain, "acme.example");
        assert_eq!(mb("<bob%remote.test@acme.example>").unwrap().mailbox.unwrap().local, "bob%remote.test");
        assert_eq!(mb("<a@b.example.>"), Err(AddressError::BadDomain));
        assert!(mb("<a@[127.0.0.1]>").unwrap().mailbox.unwrap().is_domain_literal());
        assert_eq!(mb("<remote.test!bob>"), Err(AddressError::NoDomain));
        assert!(mb("<@acme.example>").is_err());
        assert_eq!(mb("<\"\"@acme.example>").unwrap().mailbox.unwrap().local, "");
        assert_eq!(mb("a@b.c"), Err(AddressError::NoBrackets));
        let long = format!("<{}@acme.example>", "x".repeat(65));
        assert_eq!(mb(&long), Err(AddressError::LocalTooLong));
        let longer = format!("<a@{}.example>", "x".repeat(300));
        assert_eq!(mb(&longer), Err(AddressError::TooLong));
    }

    #[test]
    fn display_requotes() {
        let q = mb("<\"a b\"@x.example>").unwrap();
        assert_eq!(q.to_string(), "\"a b\"@x.example");
    }
}
