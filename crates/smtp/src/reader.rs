//! The session's read buffer: small while the client sends commands or sits idle, large while
//! it sends message data, so a thousand idle sessions do not each hold a data-sized buffer.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What a session reads commands with (and holds while idle).
pub(crate) const COMMAND_BUFFER: usize = 4 * 1024;

/// A buffered reader whose buffer size can change between reads; the buffer is allocated at
/// the first read.
pub(crate) struct SessionReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    /// The size of the buffer the next time it is empty.
    want: usize,
}

impl<R: AsyncRead + Unpin> SessionReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        SessionReader { inner, buf: Vec::new(), pos: 0, filled: 0, want: COMMAND_BUFFER }
    }

    /// The bytes buffered and not yet consumed; reads more (one read) only when there are none.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled {
            if self.buf.capacity() != self.want {
                self.buf = Vec::with_capacity(self.want);
            }
            // into the buffer's spare capacity: nothing zeroed first (64 KiB per message)
            self.buf.clear();
            let n = self.inner.read_buf(&mut self.buf).await?;
            self.pos = 0;
            self.filled = n;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    /// Marks `n` buffered bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }

    /// The bytes buffered and not yet consumed.
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Sets the buffer's size for the reads to come; bytes already buffered are kept. A buffer
    /// larger than needed is given back as soon as it holds nothing.
    pub(crate) fn set_capacity(&mut self, n: usize) {
        self.want = n;
        if self.pos >= self.filled {
            self.pos = 0;
            self.filled = 0;
            if self.buf.capacity() > n {
                self.buf = Vec::new();
            }
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn buffered_bytes_survive_a_change_of_size() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n").await.unwrap();
        drop(client);
        let mut r = SessionReader::new(server);
        let got = r.fill_buf().await.unwrap().to_vec();
        assert_eq!(r.buf.capacity(), COMMAND_BUFFER);
        let line = got.iter().position(|&b| b == b'\n').unwrap() + 1;
        r.consume(line);
        // grown for the data while bytes are still buffered: nothing is lost
        r.set_capacity(64 * 1024);
        let mut rest = Vec::new();
        loop {
            let b = r.fill_buf().await.unwrap();
            if b.is_empty() {
                break;
            }
            let n = b.len();
            rest.extend_from_slice(b);
            r.consume(n);
        }
        assert_eq!(rest, b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
        // back to commands with nothing buffered: the large buffer is given back at once
        r.set_capacity(COMMAND_BUFFER);
        assert_eq!(r.buf.capacity(), 0);
    }
}
