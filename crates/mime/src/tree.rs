//! The tree of parts of a message, each with byte ranges into the raw message.

use std::ops::Range;

use crate::header::{self, Header, line_end, trim_eol};
use crate::params::{self, Params};
use crate::{decode, encoded_word};

/// Deepest nesting of multiparts and messages parsed; deeper content stays a leaf.
pub const MAX_DEPTH: usize = 64;
/// Most parts in one message; beyond it the rest of a multipart is one leaf.
pub const MAX_PARTS: usize = 10_000;

/// How the body of a part is transfer-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEncoding {
    /// 7bit, 8bit, binary or absent.
    Identity,
    /// `base64`.
    Base64,
    /// `quoted-printable`.
    QuotedPrintable,
    /// `x-uuencode` and friends.
    Uuencode,
    /// Something else (decoded as identity).
    Other(String),
}

impl TransferEncoding {
    /// The encoding its body is decoded with (`Other` reads as identity).
    pub fn decodes_as(&self) -> TransferEncoding {
        match self {
            TransferEncoding::Other(_) => TransferEncoding::Identity,
            e => e.clone(),
        }
    }

    /// Its name in lower case.
    pub fn name(&self) -> &str {
        match self {
            TransferEncoding::Identity => "7bit",
            TransferEncoding::Base64 => "base64",
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Uuencode => "x-uuencode",
            TransferEncoding::Other(o) => o,
        }
    }
}

/// What a part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// A body: text, HTML, an attachment.
    Leaf,
    /// `multipart/*`: `children` are its parts.
    Multipart,
    /// `message/rfc822` (or `message/global`) in identity encoding: `children[0]` is the
    /// embedded message.
    Message,
}

/// One part of the tree.
#[derive(Debug, Clone)]
pub struct Part {
    /// The header section in the raw message.
    pub header: Range<usize>,
    /// The body (still transfer-encoded) in the raw message.
    pub body: Range<usize>,
    /// For a part of a multipart: from the line break before its delimiter line to the end of
    /// its body — what to cut to remove it. Equal to `header.start..body.end` otherwise.
    pub outer: Range<usize>,
    /// Its header fields, in order.
    pub headers: Vec<Header>,
    /// `type/subtype` in lower case (`text/plain` when absent).
    pub content_type: String,
    /// The `Content-Type` parameters (decoded).
    pub content_params: Params,
    /// `inline` / `attachment` in lower case, if given.
    pub disposition: Option<String>,
    /// The `Content-Disposition` parameters (decoded).
    pub disposition_params: Params,
    /// Its transfer encoding (the first `Content-Transfer-Encoding` field).
    pub encoding: TransferEncoding,
    /// What it holds.
    pub kind: PartKind,
    /// The parts of a multipart, or the message of a `message/rfc822` part.
    pub children: Vec<Part>,
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The top-level part (the message itself).
    pub root: Part,
    /// Limits cut the tree short somewhere (depth or part count).
    pub truncated: bool,
}

struct Ctx {
    parts: usize,
    truncated: bool,
}

/// Parses a message. Never fails: broken MIME yields the best tree it can.
pub fn parse(raw: &[u8]) -> Message {
    let mut ctx = Ctx { parts: 0, truncated: false };
    let root = parse_part(raw, 0..raw.len(), 0, "text/plain", &mut ctx);
    Message { root, truncated: ctx.truncated }
}

fn parse_part(raw: &[u8], range: Range<usize>, depth: usize, default_type: &str, ctx: &mut Ctx) -> Part {
    ctx.parts += 1;
    let (headers, body_start) = header::parse(raw, range.start, range.end);
    // The first field wins when a header is repeated (as most mail readers do); scanners that
    // must also see other readings use `loose_parts`.
    let field = |name: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
    let (mut content_type, content_params) = match field("content-type") {
        Some(h) => params::parse(&h.unfolded(raw)),
        None => (default_type.to_string(), Params::default()),
    };
    if !content_type.contains('/') {
        content_type = default_type.to_string();
    }
    let (disposition, disposition_params) = match field("content-disposition") {
        Some(h) => {
            let (d, p) = params::parse(&h.unfolded(raw));
            (Some(d), p)
        }
        None => (None, Params::default()),
    };
    let encoding = match field("content-transfer-encoding") {
        Some(h) => transfer_encoding(&h.unfolded(raw)),
        None => TransferEncoding::Identity,
    };
    let mut part = Part {
        header: range.start..body_start,
        body: body_start..range.end,
        outer: range.start..range.end,
        headers,
        content_type,
        content_params,
        disposition,
        disposition_params,
        encoding,
        kind: PartKind::Leaf,
        children: Vec::new(),
    };
    if depth >= MAX_DEPTH || ctx.parts >= MAX_PARTS {
        if part.content_type.starts_with("multipart/") || part.content_type.starts_with("message/") {
            ctx.truncated = true;
        }
        return part;
    }
    if part.content_type.starts_with("multipart/") {
        if let Some(boundary) = part.content_params.get("boundary").filter(|b| !b.is_empty()).map(str::to_string) {
            let child_default = if part.content_type == "multipart/digest" { "message/rfc822" } else { "text/plain" };
            let children = split_multipart(raw, part.body.clone(), boundary.as_bytes());
            if !children.is_empty() {
                part.kind = PartKind::Multipart;
                for (outer_start, r) in children {
                    if ctx.parts >= MAX_PARTS {
                        ctx.truncated = true;
                        break;
                    }
                    let mut child = parse_part(raw, r.clone(), depth + 1, child_default, ctx);
                    child.outer = outer_start..r.end;
                    part.children.push(child);
                }
            }
        }
    } else if is_embedded_message(&part.content_type) && part.encoding == TransferEncoding::Identity {
        part.kind = PartKind::Message;
        let child = parse_part(raw, part.body.clone(), depth + 1, "text/plain", ctx);
        part.children.push(child);
    }
    part
}

fn is_embedded_message(t: &str) -> bool {
    matches!(t, "message/rfc822" | "message/global" | "message/news")
}

/// The mechanism of a `Content-Transfer-Encoding` value: RFC 822 comments removed (`base64
/// (comment)`, `(c) base64`), the first word before any `;` or space, quotes dropped.
fn transfer_encoding(v: &[u8]) -> TransferEncoding {
    let text = String::from_utf8_lossy(v);
    let mut plain = String::with_capacity(text.len());
    let (mut depth, mut escaped) = (0usize, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            c => plain.push(c),
        }
    }
    let v = plain
        .split(|c: char| c == ';' || c.is_whitespace())
        .map(|w| w.trim_matches('"'))
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase();
    match v.as_str() {
        "" | "7bit" | "8bit" | "binary" => TransferEncoding::Identity,
        "base64" => TransferEncoding::Base64,
        "quoted-printable" => TransferEncoding::QuotedPrintable,
        "x-uuencode" | "uuencode" | "x-uue" | "uue" => TransferEncoding::Uuencode,
        other => TransferEncoding::Other(other.to_string()),
    }
}

/// Finds the parts of a multipart body. Returns, per part, where its delimiter starts
/// (including the line break before it) and the part's own range.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<(usize, Range<usize>)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None; // (outer start, content start)
    let mut pos = body.start;
    while pos < body.end {
        let next = line_end(raw, pos, body.end);
        let line = trim_eol(&raw[pos..next]);
        if let Some(rest) = line.strip_prefix(b"--").and_then(|l| l.strip_prefix(boundary)) {
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            if rest.iter().all(|b| b.is_ascii_whitespace()) {
                let break_start = preceding_break(raw, pos, body.start);
                if let Some((outer, content)) = current.take() {
                    out.push((outer, content..break_start.max(content)));
                }
                if closing {
                    return out;
                }
                current = Some((break_start, next));
            }
        }
        pos = next;
    }
    if let Some((outer, content)) = current {
        out.push((outer, content..body.end));
    }
    out
}

/// Start of the CRLF or LF right before `pos` (it belongs to the delimiter), if any.
fn preceding_break(raw: &[u8], pos: usize, floor: usize) -> usize {
    if pos > floor && raw[pos - 1] == b'\n' {
        if pos - 1 > floor && raw[pos - 2] == b'\r' { pos - 2 } else { pos - 1 }
    } else {
        pos
    }
}

impl Part {
    /// The value of the last header field `name`, unfolded, RFC 2047-decoded.
    pub fn header_text(&self, raw: &[u8], name: &str) -> Option<String> {
        let h = self.headers.iter().rev().find(|h| h.name.eq_ignore_ascii_case(name))?;
        Some(encoded_word::decode_header(&h.unfolded(raw)))
    }

    /// The body with its transfer encoding undone.
    pub fn decoded_body(&self, raw: &[u8]) -> Vec<u8> {
        self.decoded_body_as(raw, &self.encoding)
    }

    /// Encodings named by further `Content-Transfer-Encoding` fields of this part that differ
    /// from the one in force (the first): readers that take another field decode it this way.
    pub fn other_encodings(&self, raw: &[u8]) -> Vec<TransferEncoding> {
        let mut out: Vec<TransferEncoding> = Vec::new();
        let fields = self.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-transfer-encoding"));
        for enc in fields.skip(1).map(|h| transfer_encoding(&h.unfolded(raw))) {
            let same = |a: &TransferEncoding, b: &TransferEncoding| a.decodes_as() == b.decodes_as();
            if !same(&enc, &self.encoding) && !out.iter().any(|o| same(o, &enc)) {
                out.push(enc);
            }
        }
        out
    }

    /// The body decoded as `encoding` says.
    pub fn decoded_body_as(&self, raw: &[u8], encoding: &TransferEncoding) -> Vec<u8> {
        let body = &raw[self.body.clone()];
        match encoding {
            TransferEncoding::Base64 => decode::base64(body),
            TransferEncoding::QuotedPrintable => decode::quoted_printable(body),
            TransferEncoding::Uuencode => {
                crate::uuencode::find(body).next().map(|f| f.data).unwrap_or_else(|| body.to_vec())
            }
            TransferEncoding::Identity | TransferEncoding::Other(_) => body.to_vec(),
        }
    }

    /// The file name: `Content-Disposition` `filename`, else `Content-Type` `name`.
    pub fn filename(&self) -> Option<String> {
        self.disposition_params
            .get("filename")
            .or_else(|| self.content_params.get("name"))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// `charset` of the content type.
    pub fn charset(&self) -> Option<&str> {
        self.content_params.get("charset")
    }

    /// Whether this is the body a reader sees (a text or HTML leaf that is not an
    /// attachment), as opposed to an attachment.
    pub fn is_body_text(&self) -> bool {
        self.kind == PartKind::Leaf
            && (self.content_type == "text/plain" || self.content_type == "text/html")
            && self.disposition.as_deref() != Some("attachment")
            && self.filename().is_none()
    }

    /// Every part of the tree, depth first, with its path (`[]` for this part, `[1, 2]` for the
    /// second child of the first child, 1-based like MIME part numbers).
    pub fn walk(&self) -> Vec<(Vec<usize>, &Part)> {
        let mut out = Vec::new();
        let mut stack: Vec<(Vec<usize>, &Part)> = vec![(Vec::new(), self)];
        while let Some((path, p)) = stack.pop() {
            for (i, c) in p.children.iter().enumerate().rev() {
                let mut cp = path.clone();
                cp.push(i + 1);
                stack.push((cp, c));
            }
            out.push((path, p));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--XX--\r\nepilogue\r\n";

    #[test]
    fn multipart_tree() {
        let m = parse(MULTI);
        assert_eq!(m.root.kind, PartKind::Multipart);
        assert_eq!(m.root.children.len(), 2);
        let text = &m.root.children[0];
        assert_eq!(&MULTI[text.body.clone()], b"hello");
        assert!(text.is_body_text());
        let bin = &m.root.children[1];
        assert_eq!(bin.filename().as_deref(), Some("a.bin"));
        assert_eq!(bin.decoded_body(MULTI), b"hello");
        assert!(!bin.is_body_text());
        let paths: Vec<Vec<usize>> = m.root.walk().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, vec![vec![], vec![1], vec![2]]);
    }

    #[test]
    fn nested_message_and_missing_close() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain\n\ninner body\n--b\nContent-Type: text/plain\n\nlast, never closed\n";
        let m = parse(raw);
        assert_eq!(m.root.children.len(), 2);
        let msg = &m.root.children[0];
        assert_eq!(msg.kind, PartKind::Message);
        assert_eq!(msg.children[0].header_text(raw, "subject").as_deref(), Some("inner"));
        assert_eq!(&raw[msg.children[0].body.clone()], b"inner body");
        assert_eq!(&raw[m.root.children[1].body.clone()], b"last, never closed\n");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut raw = Vec::new();
        for i in 0..500 {
            raw.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\nend\r\n");
        let m = parse(&raw);
        assert!(m.truncated);
        assert!(m.root.walk().len() <= MAX_DEPTH + 1);
    }
}

/// Parts found in `raw[range]` by delimiter-like lines (`--token`) whatever the declared
/// boundary, each kept only if it starts with MIME header fields. Scanners use this on text a
/// mail reader might still interpret as parts (preambles, epilogues, multiparts whose boundary
/// never occurs, parts whose headers were garbled on purpose) so that parser differentials
/// cannot hide an attachment.
pub fn loose_parts(raw: &[u8], range: Range<usize>) -> Vec<Part> {
    let region = &raw[range.clone()];
    if memchr::memmem::find(region, b"\n--").is_none() && !region.starts_with(b"--") {
        return Vec::new();
    }
    let mut starts = Vec::new();
    let mut pos = range.start;
    while pos < range.end {
        let next = line_end(raw, pos, range.end);
        let line = trim_eol(&raw[pos..next]);
        if line.len() > 2 && line.starts_with(b"--") && !line[2..].iter().any(|b| b.is_ascii_whitespace()) {
            starts.push((pos, next));
        }
        pos = next;
    }
    let mut out = Vec::new();
    let mut ctx = Ctx { parts: 0, truncated: false };
    for (k, &(line_start, content_start)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(range.end, |&(s, _)| preceding_break(raw, s, content_start));
        if content_start >= end {
            continue;
        }
        let part = parse_part(raw, content_start..end, 1, "text/plain", &mut ctx);
        let mime_fields = part.headers.iter().any(|h| h.name.to_ascii_lowercase().starts_with("content-"));
        if mime_fields {
            let mut part = part;
            part.outer = line_start..end;
            out.push(part);
        }
        if out.len() >= 1000 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod loose_tests {
    use super::*;

    #[test]
    fn finds_parts_under_any_boundary() {
        let raw = b"Content-Type: multipart/mixed; boundary=\"X;\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nhi\r\n--X--\r\n--Y\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--Y--\r\n";
        let m = parse(raw);
        assert_eq!(m.root.kind, PartKind::Leaf, "the declared boundary never occurs");
        let loose = loose_parts(raw, m.root.body.clone());
        assert_eq!(loose.len(), 2);
        assert_eq!(loose[1].decoded_body(raw), b"hello");
    }
}
