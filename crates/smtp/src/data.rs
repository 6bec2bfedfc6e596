//! The DATA stream: decoding what a client sends (dot-unstuffing, end detection) and encoding
//! what a client sends (dot-stuffing).
//!
//! Decoding normalises every line ending to CRLF (a bare LF becomes CRLF) and only the exact
//! sequence `CRLF . CRLF` ends the data, so that "SMTP smuggling" variants such as `LF . LF`
//! can never end a message early here or downstream.

/// Incremental decoder of a DATA stream.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    /// The previous line ended with CRLF (not a bare LF).
    prev_crlf: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    Dot,
    DotCr,
    Mid,
    MidCr,
    Done,
}

impl Default for DataDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DataDecoder {
    /// A decoder positioned right after the `354` reply.
    pub fn new() -> Self {
        DataDecoder { state: State::LineStart, prev_crlf: true }
    }

    /// Whether the terminating `CRLF . CRLF` has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending message bytes to `out`. Returns how many input bytes
    /// were consumed; input after the end marker is left unconsumed (pipelined commands).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return i,
                State::Mid => {
                    let rest = &input[i..];
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        None => {
                            out.extend_from_slice(rest);
                            return input.len();
                        }
                        Some(p) => {
                            out.extend_from_slice(&rest[..p]);
                            i += p;
                            if rest[p] == b'\r' {
                                self.state = State::MidCr;
                            } else {
                                out.extend_from_slice(b"\r\n");
                                self.prev_crlf = false;
                                self.state = State::LineStart;
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart, _) => {
                    i -= 1;
                    State::Mid
                }
                (State::Dot, b'\r') => State::DotCr,
                (State::Dot, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    self.prev_crlf = false;
                    State::LineStart
                }
                (State::Dot, _) => {
                    i -= 1;
                    State::Mid
                }
                (State::DotCr, b'\n') if self.prev_crlf => State::Done,
                (State::DotCr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    self.prev_crlf = true;
                    State::LineStart
                }
                (State::DotCr, _) => {
                    out.push(b'\r');
                    i -= 1;
                    State::Mid
                }
                (State::MidCr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    self.prev_crlf = true;
                    State::LineStart
                }
                (State::MidCr, b'\r') => {
                    out.push(b'\r');
                    State::MidCr
                }
                (State::MidCr, _) => {
                    out.push(b'\r');
                    i -= 1;
                    State::Mid
                }
                (State::Mid, _) | (State::Done, _) => unreachable!("handled above"),
            };
            if self.state == State::Done {
                return i;
            }
        }
        i
    }
}

/// Incremental dot-stuffing encoder for sending a message with DATA.
#[derive(Debug)]
pub struct DataEncoder {
    at_line_start: bool,
    last_two: [u8; 2],
}

impl Default for DataEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DataEncoder {
    /// An encoder at the start of the message.
    pub fn new() -> Self {
        DataEncoder { at_line_start: true, last_two: [b'\r', b'\n'] }
    }

    /// Appends the stuffed form of `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = chunk.last() else { return };
        out.reserve(chunk.len() + 8);
        if self.at_line_start && chunk[0] == b'.' {
            out.push(b'.');
        }
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            if chunk.get(nl + 1) == Some(&b'.') {
                out.extend_from_slice(&chunk[start..=nl]);
                out.push(b'.');
                start = nl + 1;
            }
        }
        out.extend_from_slice(&chunk[start..]);
        self.at_line_start = last == b'\n';
        self.last_two = match chunk.len() {
            1 => [self.last_two[1], last],
            n => [chunk[n - 2], last],
        };
    }

    /// Appends the end-of-data marker (adding a CRLF first if the message lacked one).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.last_two != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> (Vec<u8>, bool, usize) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        let mut last_used = 0;
        for c in chunks {
            last_used = d.feed(c, &mut out);
        }
        (out, d.is_done(), last_used)
    }

    #[test]
    fn unstuffs_and_ends() {
        let (out, done, used) = decode_all(&[b"Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n"]);
        assert!(done);
        assert_eq!(out, b"Subject: x\r\n\r\n.hidden\r\n");
        assert_eq!(used, 27);
    }

    #[test]
    fn end_split_across_reads() {
        let (out, done, _) = decode_all(&[b"a\r", b"\n", b".", b"\r", b"\n"]);
        assert!(done);
        assert_eq!(out, b"a\r\n");
    }

    #[test]
    fn smuggling_variants_do_not_end() {
        for body in [&b"a\n.\nMAIL FROM:<x@y>\r\n"[..], b"a\r\n.\nb\r\n", b"a\n.\r\nb\r\n", b"a\r.\r\nb\r\n"] {
            let (out, done, _) = decode_all(&[body]);
            assert!(!done, "{:?} ended early", String::from_utf8_lossy(body));
            assert!(!out.windows(5).any(|w| w == b"\r\n.\r\n"));
        }
    }

    #[test]
    fn bare_lf_normalised() {
        let (out, _, _) = decode_all(&[b"a\nb\r\n.\r\n"]);
        assert_eq!(out, b"a\r\nb\r\n");
    }

    #[test]
    fn encoder_stuffs_and_terminates() {
        let mut e = DataEncoder::new();
        let mut out = Vec::new();
        e.encode(b".start\r\nmid", &mut out);
        e.encode(b"\r\n.\r\nend", &mut out);
        e.finish(&mut out);
        assert_eq!(out, b"..start\r\nmid\r\n..\r\nend\r\n.\r\n");
        let (back, done, _) = decode_all(&[&out]);
        assert!(done);
        assert_eq!(back, b".start\r\nmid\r\n.\r\nend\r\n");
    }

    #[test]
    fn encoder_round_trips_any_split() {
        let msg = b".a\r\n.b\n..c\r\n\r\n.\r\nx.\r\n.";
        for split in 0..=msg.len() {
            let mut e = DataEncoder::new();
            let mut out = Vec::new();
            e.encode(&msg[..split], &mut out);
            e.encode(&msg[split..], &mut out);
            e.finish(&mut out);
            assert_eq!(out, b"..a\r\n..b\n...c\r\n\r\n..\r\nx.\r\n..\r\n.\r\n", "split at {split}");
        }
    }
}
