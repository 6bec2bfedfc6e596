//! Counting `Received:` headers of a message as it streams in (loop detection).

/// Counts `Received:` header fields in the header section of a streamed message.
#[derive(Debug)]
pub struct HopCounter {
    in_headers: bool,
    prefix: Vec<u8>,
    line_len: usize,
    /// `Received:` fields seen so far.
    pub count: usize,
}

impl Default for HopCounter {
    fn default() -> Self {
        HopCounter { in_headers: true, prefix: Vec::with_capacity(9), line_len: 0, count: 0 }
    }
}

impl HopCounter {
    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, data: &[u8]) {
        if !self.in_headers {
            return;
        }
        for &b in data {
            match b {
                b'\n' => {
                    if self.line_len == 0 {
                        self.in_headers = false;
                        return;
                    }
                    if self.prefix.eq_ignore_ascii_case(b"received:") {
                        self.count += 1;
                    }
                    self.prefix.clear();
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => {
                    if self.prefix.len() < 9 {
                        self.prefix.push(b);
                    }
                    self.line_len += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_header_fields() {
        let mut c = HopCounter::default();
        c.feed(b"Received: a\r\n\tcontinued\r\nRECEIVED: b\r\nSubj");
        c.feed(b"ect: x\r\nReceived");
        c.feed(b": c\r\n\r\nReceived: in body\r\n");
        assert_eq!(c.count, 3);
    }
}
