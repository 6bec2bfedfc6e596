//! Removing header fields we own (`X-Virus-Scanned`, `X-Mxshield-Scan`) from incoming
//! messages as they stream in, so that nobody outside can forge a scan result.

/// Header fields mxshield adds and therefore never accepts from outside.
pub const OWN_FIELDS: [&str; 2] = ["x-virus-scanned", "x-mxshield-scan"];

/// Drops `OWN_FIELDS` (with their continuation lines) from the header section of a stream.
#[derive(Debug, Default)]
pub struct HeaderStripper {
    /// The header section is over; everything passes.
    done: bool,
    /// An incomplete line carried to the next chunk.
    partial: Vec<u8>,
    /// The current field is being dropped (so are its continuation lines).
    dropping: bool,
    /// Fields removed.
    pub removed: usize,
}

impl HeaderStripper {
    /// Feeds the next chunk; returns the bytes to keep.
    pub fn feed<'a>(&mut self, chunk: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.done && self.partial.is_empty() {
            return std::borrow::Cow::Borrowed(chunk);
        }
        let mut input = std::mem::take(&mut self.partial);
        input.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(input.len());
        let mut pos = 0;
        while pos < input.len() {
            if self.done {
                out.extend_from_slice(&input[pos..]);
                break;
            }
            let Some(nl) = memchr::memchr(b'\n', &input[pos..]) else {
                self.partial = input[pos..].to_vec();
                break;
            };
            let line = &input[pos..pos + nl + 1];
            pos += nl + 1;
            let content = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(line);
            if content.is_empty() {
                self.done = true;
                out.extend_from_slice(line);
                continue;
            }
            let continuation = content[0] == b' ' || content[0] == b'\t';
            if !continuation {
                let name = content.split(|&b| b == b':').next().unwrap_or_default();
                let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
                self.dropping = content.contains(&b':') && OWN_FIELDS.contains(&name.as_str());
                if self.dropping {
                    self.removed += 1;
                }
            }
            if !self.dropping {
                out.extend_from_slice(line);
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// Bytes still held back at the end of the message (an unterminated last line).
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.partial);
        if self.dropping && !self.done { Vec::new() } else { rest }
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

    #[test]
    fn unterminated_message_is_kept() {
        let mut s = HeaderStripper::default();
        let mut out = s.feed(b"Subject: x\r\n\r\nbody without newline").into_owned();
        out.extend_from_slice(&s.finish());
        assert_eq!(out, b"Subject: x\r\n\r\nbody without newline");
    }
}
