//! Sans-IO parsing of one SMTP command line (without its CRLF).

use crate::address::{AddressError, Path, parse_path};

/// A parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name`.
    Ehlo(String),
    /// `HELO name`.
    Helo(String),
    /// `MAIL FROM:<path> params`.
    Mail {
        /// The reverse path.
        from: Path,
        /// Its parameters.
        params: Vec<Param>,
    },
    /// `RCPT TO:<path> params`.
    Rcpt {
        /// The forward path.
        to: Path,
        /// Its parameters.
        params: Vec<Param>,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY` and its argument.
    Vrfy(String),
    /// `EXPN` and its argument.
    Expn(String),
    /// `HELP`.
    Help,
    /// `STARTTLS`.
    StartTls,
    /// A verb we do not implement (e.g. `AUTH`, `TURN`).
    Unknown(String),
}

/// An ESMTP parameter `KEY[=VALUE]`; the key is upper-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its name (upper case).
    pub key: String,
    /// Its value, if given.
    pub value: Option<String>,
}

/// Why a command line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8.
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    /// Not a command we know, or malformed.
    #[error("syntax error in parameters")]
    Syntax,
    /// A required argument is missing.
    #[error("missing argument")]
    MissingArgument,
    /// A malformed address.
    #[error("{0}")]
    Address(#[from] AddressError),
}

impl Command {
    /// Parses one line (CRLF already removed).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        let arg_trim = arg.trim();
        Ok(match verb.as_str() {
            "EHLO" | "HELO" => {
                if arg_trim.is_empty() {
                    return Err(ParseError::MissingArgument);
                }
                let name = arg_trim.split_whitespace().next().unwrap_or_default().to_string();
                if verb == "EHLO" { Command::Ehlo(name) } else { Command::Helo(name) }
            }
            "MAIL" => {
                let rest = strip_keyword(arg, "FROM:").ok_or(ParseError::Syntax)?;
                let (from, params) = parse_path(rest)?;
                Command::Mail { from, params: parse_params(params)? }
            }
            "RCPT" => {
                let rest = strip_keyword(arg, "TO:").ok_or(ParseError::Syntax)?;
                let (to, params) = match bare_postmaster(rest) {
                    Some(params) => (crate::address::Path::bare_postmaster(), params),
                    None => parse_path(rest)?,
                };
                Command::Rcpt { to, params: parse_params(params)? }
            }
            "DATA" if arg_trim.is_empty() => Command::Data,
            "RSET" if arg_trim.is_empty() => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" if arg_trim.is_empty() => Command::Quit,
            "VRFY" => Command::Vrfy(arg_trim.to_string()),
            "EXPN" => Command::Expn(arg_trim.to_string()),
            "HELP" => Command::Help,
            "STARTTLS" if arg_trim.is_empty() => Command::StartTls,
            "DATA" | "RSET" | "QUIT" | "STARTTLS" => return Err(ParseError::Syntax),
            _ => Command::Unknown(verb),
        })
    }
}

/// Strips `FROM:` / `TO:` case-insensitively, tolerating spaces after the colon.
/// `<postmaster>` (any case) at the start of a RCPT argument; returns the rest.
fn bare_postmaster(rest: &str) -> Option<&str> {
    let s = rest.trim_start();
    let head = s.get(..12)?;
    head.eq_ignore_ascii_case("<postmaster>").then(|| &s[12..])
}

fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| arg[keyword.len()..].trim_start())
}

fn parse_params(s: &str) -> Result<Vec<Param>, ParseError> {
    let s = s.trim_end();
    if !s.is_empty() && !s.starts_with(' ') {
        return Err(ParseError::Syntax);
    }
    s.split_whitespace()
        .map(|p| {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (p, None),
            };
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(ParseError::Syntax);
            }
            Ok(Param { key: k.to_ascii_uppercase(), value: v })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(Command::parse(b"ehlo client.test").unwrap(), Command::Ehlo("client.test".into()));
        assert_eq!(Command::parse(b"DATA").unwrap(), Command::Data);
        assert_eq!(Command::parse(b"NOOP hi").unwrap(), Command::Noop);
        assert_eq!(Command::parse(b"AUTH PLAIN x").unwrap(), Command::Unknown("AUTH".into()));
        assert_eq!(Command::parse(b"EHLO"), Err(ParseError::MissingArgument));
        assert_eq!(Command::parse(b"QUIT now"), Err(ParseError::Syntax));
    }

    #[test]
    fn mail_with_params() {
        let c = Command::parse(b"MAIL FROM: <a@b.example> SIZE=1000 BODY=8BITMIME").unwrap();
        let Command::Mail { from, params } = c else { panic!() };
        assert_eq!(from.to_string(), "a@b.example");
        assert_eq!(params[0], Param { key: "SIZE".into(), value: Some("1000".into()) });
        assert_eq!(params[1].key, "BODY");
        assert!(Command::parse(b"MAIL FROM:<a@b.example>SIZE=1").is_err());
        assert!(Command::parse(b"MAIL TO:<a@b.example>").is_err());
        let Command::Rcpt { to, .. } = Command::parse(b"RCPT TO:<Postmaster>").unwrap() else { panic!() };
        assert!(to.is_bare_postmaster());
        assert_eq!(to.to_string(), "postmaster");
        assert!(Command::parse(b"MAIL FROM:<postmaster>").is_err());
        let Command::Rcpt { to, .. } = Command::parse(b"rcpt to:<>").unwrap() else { panic!() };
        assert!(to.is_null());
    }
}
