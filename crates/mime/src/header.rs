//! The header section of a message or part: fields with byte ranges, unfolding.

use std::ops::Range;

/// Most header fields kept per part (more are ignored).
pub const MAX_FIELDS: usize = 2000;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name as written.
    pub name: String,
    /// The raw value (after the colon, folding included) in the message.
    pub value: Range<usize>,
}

impl Header {
    /// The value with folding removed and surrounding whitespace trimmed.
    pub fn unfolded(&self, raw: &[u8]) -> Vec<u8> {
        unfold(&raw[self.value.clone()])
    }
}

/// Removes CRLF/LF line breaks that precede whitespace (RFC 5322 §2.2.3) and trims.
pub fn unfold(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\r' if v.get(i + 1) == Some(&b'\n') => i += 2,
            b'\n' | b'\r' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let start = out.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(out.len());
    let end = out.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    out[start..end].to_vec()
}

/// Parses the header section in `raw[start..end]`. Returns the fields and where the body
/// starts. The section ends at an empty line, or at the first line that is neither a field
/// nor a continuation (that line then belongs to the body). A leading mbox `From ` line is
/// skipped.
pub fn parse(raw: &[u8], start: usize, end: usize) -> (Vec<Header>, usize) {
    let mut fields: Vec<Header> = Vec::new();
    let mut pos = start;
    if raw[pos..end].starts_with(b"From ") {
        pos = line_end(raw, pos, end);
    }
    while pos < end {
        let next = line_end(raw, pos, end);
        let line = trim_eol(&raw[pos..next]);
        if line.is_empty() {
            return (fields, next);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                last.value.end = pos + line.len();
            }
            pos = next;
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return (fields, pos);
        };
        let name = &line[..colon];
        let name_trimmed = trim_end_ws(name);
        if name_trimmed.is_empty() || !name_trimmed.iter().all(|&b| (33..=126).contains(&b)) {
            return (fields, pos);
        }
        if fields.len() < MAX_FIELDS {
            fields.push(Header {
                name: String::from_utf8_lossy(name_trimmed).into_owned(),
                value: pos + colon + 1..pos + line.len(),
            });
        }
        pos = next;
    }
    (fields, end)
}

/// Position after the line that starts at `pos` (after its LF), at most `end`.
pub fn line_end(raw: &[u8], pos: usize, end: usize) -> usize {
    memchr::memchr(b'\n', &raw[pos..end]).map_or(end, |p| pos + p + 1)
}

/// A line without its CRLF or LF.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |e| e + 1);
    &s[..end]
}

/// The header section of a message (up to and excluding the blank line), at most `max` bytes.
pub fn section(data: &[u8], max: usize) -> &[u8] {
    let limit = data.len().min(max);
    let end = data[..limit].windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2).unwrap_or(limit);
    &data[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_stops_at_blank_line() {
        assert_eq!(section(b"A: 1\r\nB: 2\r\n\r\nbody", 1000), b"A: 1\r\nB: 2\r\n");
        assert_eq!(section(b"A: 1\r\nB: 2", 4), b"A: 1");
    }

    #[test]
    fn fields_folding_and_body_start() {
        let raw = b"Subject: a\r\n b\r\nX-Y : z\r\n\r\nbody";
        let (f, body) = parse(raw, 0, raw.len());
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].unfolded(raw), b"a b");
        assert_eq!(f[1].name, "X-Y");
        assert_eq!(&raw[body..], b"body");
    }

    #[test]
    fn no_blank_line_and_mbox_from() {
        let raw = b"From someone Sat Nov 28 07:00:00 2026\nA: 1\nthis is body\n";
        let (f, body) = parse(raw, 0, raw.len());
        assert_eq!(f.len(), 1);
        assert_eq!(&raw[body..], b"this is body\n");
        let raw = b"just text\n";
        let (f, body) = parse(raw, 0, raw.len());
        assert!(f.is_empty());
        assert_eq!(body, 0);
    }
}
