//! Removing header fields we own (`X-Virus-Scanned`, `X-Mxshield-Scan`) from incoming
//! messages as they stream in, so that nobody outside can forge a scan result.

/// Header fields mxshield adds and therefore never accepts from outside.
pub const OWN_FIELDS: [&str; 2] = ["x-virus-scanned", "x-mxshield-scan"];

/// Longest start of a header line held back to read its field name; a line with no `:` by
/// then is not one of ours (RFC 5322 lines are at most 998 bytes).
const MAX_NAME_SCAN: usize = 1000;

/// Drops `OWN_FIELDS` (with their continuation lines) from the header section of a stream.
/// Each byte is looked at once: only the start of a line is held back, until its field name
/// is known, so an endless header line costs linear time and bounded memory.
#[derive(Debug, Default)]
pub struct HeaderStripper {
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

impl HeaderStripper {
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
                    self.dropping = OWN_FIELDS.contains(&name.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_own_fields_in_any_chunking() {
        let msg = b"Subject: hi\r\nX-Virus-Scanned: fake\r\n  continued\r\nX-MXSHIELD-SCAN: clean\r\nTo: a\r\n\r\nX-Virus-Scanned: in the body stays\r\n";
        let expected = b"Subject: hi\r\nTo: a\r\n\r\nX-Virus-Scanned: in the body stays\r\n";
        for size in [1, 2, 3, 7, 16, msg.len()] {
            let mut s = HeaderStripper::default();
            let mut out = Vec::new();
            for c in msg.chunks(size) {
                out.extend_from_slice(&s.feed(c));
            }
            out.extend_from_slice(&s.finish());
            assert_eq!(out, expected, "chunks of {size}");
            assert_eq!(s.removed, 2);
        }
    }

    /// One 20 MB header line fed in 64 KiB chunks is looked at once, not copied again for
    /// every chunk (issue 8.9: a 45 MB line took 16.8 s on the async workers).
    #[test]
    fn an_endless_header_line_is_linear() {
        let mut s = HeaderStripper::default();
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
        let mut s = HeaderStripper::default();
        let mut out = s.feed(b"Subject: x\r\n\r\nbody without newline").into_owned();
        out.extend_from_slice(&s.finish());
        assert_eq!(out, b"Subject: x\r\n\r\nbody without newline");
    }
}
