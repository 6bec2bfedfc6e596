//! SMTP replies: a code, an optional enhanced status code (RFC 3463) and text lines.

use std::fmt;

/// An enhanced status code (RFC 3463) `class.subject.detail`, such as `4.7.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// 2 success, 4 persistent transient failure, 5 permanent failure.
    pub class: u8,
    /// The subject (`7`: security or policy status).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl Status {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Status {
        Status { class, subject, detail }
    }

    /// Class 4: the same message may succeed later.
    pub fn is_temporary(&self) -> bool {
        self.class == 4
    }

    /// Class 5: it will not succeed as it is.
    pub fn is_permanent(&self) -> bool {
        self.class == 5
    }

    /// Class 2.
    pub fn is_success(&self) -> bool {
        self.class == 2
    }

    /// The status a reply without one implies: `X.0.0` from the reply code's first digit.
    pub fn of_code(code: u16) -> Status {
        Status::new((code / 100) as u8, 0, 0)
    }

    /// Parses `class.subject.detail` (class 2, 4 or 5, as RFC 3463 allows).
    pub fn parse(text: &str) -> Option<Status> {
        let mut it = text.split('.');
        let class: u8 = it.next()?.parse().ok()?;
        let subject: u16 = it.next()?.parse().ok()?;
        let detail: u16 = it.next()?.parse().ok()?;
        if it.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(Status { class, subject, detail })
    }
}

impl From<(u8, u16, u16)> for Status {
    fn from((class, subject, detail): (u8, u16, u16)) -> Status {
        Status { class, subject, detail }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A reply such as `250 2.0.0 Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit basic code.
    pub code: u16,
    /// Enhanced status code, written after the basic code.
    pub enhanced: Option<Status>,
    /// One entry per line (at least one).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: impl Into<Status>, text: impl Into<String>) -> Self {
        Reply { code, enhanced: Some(enhanced.into()), lines: vec![text.into()] }
    }

    /// A one-line reply without an enhanced code (greeting, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Reply { code, enhanced: None, lines: vec![text.into()] }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (with CRLFs) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(format!("{e} ").as_bytes());
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Parses a complete reply from its lines (each without CRLF), as a client reads them.
    /// The enhanced code is recognised when the server put one on the first line.
    pub fn parse_lines(lines: &[String]) -> Option<Reply> {
        let first = lines.first()?;
        let code: u16 = first.get(..3)?.parse().ok()?;
        if !(200..600).contains(&code) {
            return None;
        }
        let mut enhanced = None;
        let mut texts = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let text = l.get(4..).unwrap_or("");
            let text = if i == 0 || enhanced.is_some() {
                match split_enhanced(text) {
                    Some((e, rest)) if i == 0 || Some(e) == enhanced => {
                        enhanced = Some(e);
                        rest
                    }
                    _ => text,
                }
            } else {
                text
            };
            texts.push(text.to_string());
        }
        Some(Reply { code, enhanced, lines: texts })
    }

    /// The enhanced status, or the one the code implies (`X.0.0`).
    pub fn status(&self) -> Status {
        self.enhanced.unwrap_or_else(|| Status::of_code(self.code))
    }

    /// The reply on one line, for logs and DSNs.
    pub fn one_line(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = self.enhanced {
            s.push_str(&format!(" {e}"));
        }
        for l in &self.lines {
            s.push(' ');
            s.push_str(l);
        }
        s
    }
}

fn split_enhanced(text: &str) -> Option<(Status, &str)> {
    let (head, rest) = text.split_once(' ').unwrap_or((text, ""));
    Some((Status::parse(head)?, rest))
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_roundtrip() {
        let r = Reply { code: 250, enhanced: Some(Status::new(2, 0, 0)), lines: vec!["a".into(), "b".into()] };
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(out, b"250-2.0.0 a\r\n250 2.0.0 b\r\n");
        let lines: Vec<String> = String::from_utf8(out).unwrap().lines().map(String::from).collect();
        assert_eq!(Reply::parse_lines(&lines).unwrap(), r);
        let g = Reply::parse_lines(&["220 mx.test ESMTP".to_string()]).unwrap();
        assert_eq!(g.enhanced, None);
        assert_eq!(g.lines, vec!["mx.test ESMTP"]);
    }
}
