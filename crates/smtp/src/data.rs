//! The DATA stream: decoding what a client sends (dot-unstuffing, end detection) and encoding
//! what a client sends (dot-stuffing).
//!
//! Both directions normalise every line ending to CRLF: a bare LF and a bare CR each become
//! CRLF. Only the exact sequence `CRLF . CRLF` as received ends the data. Together this closes
//! "SMTP smuggling": no variant (`LF . LF`, `CR . CR`, `CR . LF`, …) can end a message early
//! here, and nothing we send can read as the end of data or as a line break to a receiver that
//! treats bare CR or LF as a line ending — the bytes scanned are the bytes delivered, and a
//! header field hidden behind a bare CR is a header field for the scanner too.

/// Incremental decoder of a DATA stream.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    /// The previous line ended with CRLF (not a bare LF or CR).
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

    /// Ends a line in `out` (always as CRLF); `real` says it was received as CRLF.
    fn line_end(&mut self, out: &mut Vec<u8>, real: bool) -> State {
        out.extend_from_slice(b"\r\n");
        self.prev_crlf = real;
        State::LineStart
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
                            i += p + 1;
                            self.state = if rest[p] == b'\r' { State::MidCr } else { self.line_end(out, false) };
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
                // a dot line ended by a bare LF: the dot is unstuffed, the data goes on
                (State::Dot, b'\n') => self.line_end(out, false),
                (State::Dot, _) => {
                    i -= 1;
                    State::Mid
                }
                (State::DotCr, b'\n') if self.prev_crlf => State::Done,
                (State::DotCr | State::MidCr, b'\n') => self.line_end(out, true),
                // a bare CR ends the line; the byte after it starts the next one
                (State::DotCr | State::MidCr, _) => {
                    i -= 1;
                    self.line_end(out, false)
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

/// Incremental dot-stuffing encoder for sending a message with DATA. Bare CR and bare LF are
/// sent as CRLF, so the receiver sees exactly the lines we scanned.
#[derive(Debug)]
pub struct DataEncoder {
    at_line_start: bool,
    /// The previous chunk ended with a CR whose line ending is not known yet.
    pending_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DataEncoder {
    /// An encoder at the start of the message.
    pub fn new() -> Self {
        DataEncoder { at_line_start: true, pending_cr: false }
    }

    /// Appends the stuffed form of `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        out.reserve(chunk.len() + 8);
        let mut i = 0;
        if self.pending_cr {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
            i = usize::from(chunk[0] == b'\n');
            self.at_line_start = true;
        }
        // bytes from `run` to the cursor are copied as they are, in one go
        let mut run = i;
        while i < chunk.len() {
            if self.at_line_start && chunk[i] == b'.' {
                out.extend_from_slice(&chunk[run..i]);
                out.push(b'.');
                run = i;
            }
            self.at_line_start = false;
            let Some(p) = memchr::memchr2(b'\r', b'\n', &chunk[i..]) else { break };
            let at = i + p;
            self.at_line_start = true;
            match (chunk[at], chunk.get(at + 1)) {
                (b'\r', Some(b'\n')) => i = at + 2,
                (b'\r', None) => {
                    out.extend_from_slice(&chunk[run..at]);
                    self.pending_cr = true;
                    return;
                }
                _ => {
                    // a bare CR or LF: written as CRLF
                    out.extend_from_slice(&chunk[run..at]);
                    out.extend_from_slice(b"\r\n");
                    i = at + 1;
                    run = i;
                }
            }
        }
        out.extend_from_slice(&chunk[run..]);
    }

    /// Appends the end-of-data marker (adding a CRLF first if the message lacked one).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        self.pending_cr = false;
        self.at_line_start = true;
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

    /// Every line ending of the decoded data is CRLF: no bare CR or LF is left for a receiver
    /// to read as a line ending (and `CR . CR` as the end of data).
    fn only_crlf(out: &[u8]) -> bool {
        out.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => out.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && out[i - 1] == b'\r',
            _ => true,
        })
    }

    #[test]
    fn bare_cr_smuggling_is_normalised_not_passed_on() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n", b"a\r\n\r\nMAIL FROM:<x@y>\r\n"),
            (b"a\r.\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
            (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
            (b"a\r.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
            (b"X-A: 1\rContent-Transfer-Encoding: base64\r\n.\r\n", b"X-A: 1\r\nContent-Transfer-Encoding: base64\r\n"),
            (b"a\r\r\nb\r\r\r\n.\r\n", b"a\r\n\r\nb\r\n\r\n\r\n"),
        ];
        for (input, expect) in cases {
            for split in 0..=input.len() {
                let (out, done, _) = decode_all(&[&input[..split], &input[split..]]);
                assert!(done, "{:?} split {split}", String::from_utf8_lossy(input));
                assert_eq!(out, expect, "{:?} split {split}", String::from_utf8_lossy(input));
                assert!(only_crlf(&out));
            }
        }
    }

    /// `msg` encoded in two writes, split at `split`, and finished.
    fn encode_split(msg: &[u8], split: usize) -> Vec<u8> {
        let mut e = DataEncoder::new();
        let mut out = Vec::new();
        e.encode(&msg[..split], &mut out);
        e.encode(&msg[split..], &mut out);
        e.finish(&mut out);
        out
    }

    #[test]
    fn encoder_sends_bare_cr_and_lf_as_crlf() {
        let msg = b"a\r.\rb\r.\nc\n.\rd\r\n.\r\ne\r";
        for split in 0..=msg.len() {
            let out = encode_split(msg, split);
            assert_eq!(out, b"a\r\n..\r\nb\r\n..\r\nc\r\n..\r\nd\r\n..\r\ne\r\n.\r\n", "split at {split}");
            assert!(only_crlf(&out));
            // only the final marker reads as the end of data, however CR and LF are read
            let lines: Vec<&[u8]> = out.split(|&b| b == b'\r' || b == b'\n').filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.iter().filter(|l| **l == b".").count(), 1);
        }
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
            let out = encode_split(msg, split);
            assert_eq!(out, b"..a\r\n..b\r\n...c\r\n\r\n..\r\nx.\r\n..\r\n.\r\n", "split at {split}");
        }
    }
}
