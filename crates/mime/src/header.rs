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

/// Longest start of a header line held back to read its field name; a line with no `:` by
/// then is not one of ours (RFC 5322 lines are at most 998 bytes).
const MAX_NAME_SCAN: usize = 1000;

/// Drops the fields of some names (with their continuation lines) from the header section of
/// a stream; the body passes untouched. Each byte is looked at once: only the start of a line
/// is held back, until its field name is known, so an endless header line costs linear time
/// and bounded memory. [`without_fields`] is the same for a whole message in memory.
#[derive(Debug, Default)]
pub struct FieldDropper {
    /// The names dropped, lower case.
    names: Vec<String>,
    /// The header section is over; everything passes.
    done: bool,
    /// The start of the current line, held until it is known whether the line is kept.
    pending: Vec<u8>,
    /// Whether the rest of the current line is kept (`None`: not decided yet).
    keep_line: Option<bool>,
    /// The current field is being dropped (so are its continuation lines).
    dropping: bool,
    /// Fields removed.
    pub removed: usize,
}

impl FieldDropper {
    /// Drops the fields named `names` (any case).
    pub fn new(names: &[&str]) -> FieldDropper {
        FieldDropper { names: names.iter().map(|n| n.to_ascii_lowercase()).collect(), ..FieldDropper::default() }
    }

    /// Feeds the next chunk; returns the bytes to keep.
    pub fn feed<'a>(&mut self, chunk: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.done && self.pending.is_empty() {
            return std::borrow::Cow::Borrowed(chunk);
        }
        let mut out = Vec::with_capacity(chunk.len() + self.pending.len());
        let mut pos = 0;
        while pos < chunk.len() {
            if self.done {
                out.extend_from_slice(&chunk[pos..]);
                break;
            }
            let rest = &chunk[pos..];
            if let Some(keep) = self.keep_line {
                // the line is decided: pass or drop it up to its end
                let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |p| p + 1);
                if keep {
                    out.extend_from_slice(&rest[..end]);
                }
                if rest[end - 1] == b'\n' {
                    self.keep_line = None;
                }
                pos += end;
                continue;
            }
            if self.pending.is_empty() && (rest[0] == b' ' || rest[0] == b'\t') {
                self.keep_line = Some(!self.dropping);
                continue;
            }
            let room = MAX_NAME_SCAN.saturating_sub(self.pending.len()).max(1);
            let window = &rest[..rest.len().min(room)];
            match memchr::memchr2(b'\n', b':', window) {
                Some(p) if window[p] == b'\n' => {
                    self.pending.extend_from_slice(&window[..=p]);
                    pos += p + 1;
                    let line = std::mem::take(&mut self.pending);
                    let content = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l));
                    if content.is_some_and(<[u8]>::is_empty) {
                        self.done = true;
                    } else {
                        // a line without a colon is no field of ours
                        self.dropping = false;
                    }
                    out.extend_from_slice(&line);
                }
                Some(p) => {
                    let name = String::from_utf8_lossy(&[&self.pending[..], &window[..p]].concat())
                        .trim()
                        .to_ascii_lowercase();
                    self.dropping = self.names.contains(&name);
                    self.removed += usize::from(self.dropping);
                    self.keep_line = Some(!self.dropping);
                    if !self.dropping {
                        out.extend_from_slice(&std::mem::take(&mut self.pending));
                    }
                    self.pending.clear();
                }
                None if self.pending.len() + window.len() >= MAX_NAME_SCAN => {
                    self.pending.extend_from_slice(window);
                    pos += window.len();
                    self.dropping = false;
                    self.keep_line = Some(true);
                    out.extend_from_slice(&std::mem::take(&mut self.pending));
                }
                None => {
                    self.pending.extend_from_slice(window);
                    pos += window.len();
                }
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// Bytes still held back at the end of the message (an unterminated last line).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// `message` without the header fields named `names` (any case, with their continuation
/// lines); the body and every other byte unchanged.
pub fn without_fields(message: &[u8], names: &[&str]) -> Vec<u8> {
    let mut d = FieldDropper::new(names);
    let mut out = d.feed(message).into_owned();
    out.extend_from_slice(&d.finish());
    out
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

#[cfg(test)]
mod dropper_tests {
    use super::*;

    const OWN: [&str; 2] = ["X-Virus-Scanned", "x-mxshield-scan"];

    #[test]
    fn drops_own_fields_in_any_chunking() {
        let msg = b"Subject: hi\r\nX-Virus-Scanned: fake\r\n  continued\r\nX-MXSHIELD-SCAN: clean\r\nTo: a\r\n\r\nX-Virus-Scanned: in the body stays\r\n";
        let expected = b"Subject: hi\r\nTo: a\r\n\r\nX-Virus-Scanned: in the body stays\r\n";
        for size in [1, 2, 3, 7, 16, msg.len()] {
            let mut s = FieldDropper::new(&OWN);
            let mut out = Vec::new();
            for c in msg.chunks(size) {
                out.extend_from_slice(&s.feed(c));
            }
            out.extend_from_slice(&s.finish());
            assert_eq!(out, expected, "chunks of {size}");
            assert_eq!(s.removed, 2);
        }
        assert_eq!(without_fields(msg, &OWN), expected);
        assert_eq!(without_fields(b"A: 1\nB: 2\n b\nC: 3", &["b"]), b"A: 1\nC: 3");
    }

    /// One 20 MB header line fed in 64 KiB chunks is looked at once, not copied again for
    /// every chunk (issue 8.9: a 45 MB line took 16.8 s on the async workers).
    #[test]
    fn an_endless_header_line_is_linear() {
        let mut s = FieldDropper::new(&OWN);
        let mut msg = b"Subject: ".to_vec();
        msg.resize(20_000_000, b'a');
        msg.extend_from_slice(b"\r\nX-Mxshield-Scan: ");
        msg.resize(msg.len() + 5_000_000, b'b');
        msg.extend_from_slice(b"\r\n\r\nbody\r\n");
        let mut out = 0;
        for c in msg.chunks(64 * 1024) {
            out += s.feed(c).len();
            assert!(s.pending.len() <= MAX_NAME_SCAN);
        }
        out += s.finish().len();
        assert_eq!(out, msg.len() - 5_000_000 - "X-Mxshield-Scan: \r\n".len());
        assert_eq!(s.removed, 1);
    }

    #[test]
    fn unterminated_message_is_kept() {
        let mut s = FieldDropper::new(&OWN);
        let mut out = s.feed(b"Subject: x\r\n\r\nbody without newline").into_owned();
        out.extend_from_slice(&s.finish());
        assert_eq!(out, b"Subject: x\r\n\r\nbody without newline");
    }
}
