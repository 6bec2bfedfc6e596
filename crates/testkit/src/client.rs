//! A line-level SMTP client for tests: send exactly what the test says, read exact replies.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A reply as received: the code and the full text of all lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    /// The reply code.
    pub code: u16,
    /// Every line of the text, without the codes.
    pub text: String,
}

impl RawReply {
    /// The enhanced status code, if the reply has one (`5.7.1`).
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        (first.split('.').count() == 3 && first.chars().all(|c| c.is_ascii_digit() || c == '.')).then_some(first)
    }
}

/// A connection to an SMTP server.
pub struct RawClient {
    stream: BufReader<TcpStream>,
}

impl RawClient {
    /// Connects and returns the client and the greeting.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<(RawClient, RawReply)> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = RawClient { stream: BufReader::new(s) };
        let greeting = c.reply().await?;
        Ok((c, greeting))
    }

    /// Connects from a chosen loopback source address (to play a registered sending server).
    pub async fn connect_from(src: std::net::IpAddr, addr: SocketAddr) -> anyhow::Result<(RawClient, RawReply)> {
        let sock = if src.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        sock.bind(SocketAddr::new(src, 0))?;
        let s = sock.connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = RawClient { stream: BufReader::new(s) };
        let greeting = c.reply().await?;
        Ok((c, greeting))
    }

    /// Closes the sending side (a FIN after everything sent), keeping the connection open for
    /// reading: the way a client "goes away" without its data being discarded by a reset.
    pub async fn shutdown_write(&mut self) -> anyhow::Result<()> {
        self.stream.get_mut().shutdown().await?;
        Ok(())
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Sends one command line and reads the reply.
    pub async fn cmd(&mut self, line: &str) -> anyhow::Result<RawReply> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// Reads one reply (all its lines), waiting at most 30 s.
    pub async fn reply(&mut self) -> anyhow::Result<RawReply> {
        tokio::time::timeout(Duration::from_secs(30), self.reply_inner()).await?
    }

    async fn reply_inner(&mut self) -> anyhow::Result<RawReply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                anyhow::bail!("connection closed (got so far: {text:?})");
            }
            let line = line.trim_end();
            anyhow::ensure!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3].parse()?;
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(RawReply { code, text });
            }
        }
    }

    /// Sends DATA, the message (dot-stuffed here) and the final dot; returns the final reply.
    pub async fn data(&mut self, message: &[u8]) -> anyhow::Result<RawReply> {
        let r = self.cmd("DATA").await?;
        if r.code != 354 {
            return Ok(r);
        }
        self.send_raw(&stuff(message)).await?;
        self.reply().await
    }

    /// EHLO, MAIL, RCPTs, DATA in lock-step; returns the final reply (or the first error).
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> anyhow::Result<RawReply> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await?;
        if r.code != 250 {
            return Ok(r);
        }
        let mut any = false;
        let mut last = r;
        for rc in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rc}>")).await?;
            any |= r.code == 250;
            last = r;
        }
        if !any {
            return Ok(last);
        }
        self.data(message).await
    }
}

/// Dot-stuffs a message and appends the terminator.
pub fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_start = true;
    for &b in message {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Connects, says EHLO, sends one message, QUITs; returns the final reply.
pub async fn send_one(addr: SocketAddr, from: &str, rcpts: &[&str], message: &[u8]) -> anyhow::Result<RawReply> {
    let (mut c, _) = RawClient::connect(addr).await?;
    c.cmd("EHLO client.test").await?;
    let r = c.send_mail(from, rcpts, message).await?;
    let _ = c.cmd("QUIT").await;
    Ok(r)
}

/// A small valid message.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.test>\r\nTo: alice@acme.example\r\nSubject: {subject}\r\nMessage-ID: <{}@remote.test>\r\nDate: Sat, 28 Nov 2026 07:00:00 +0000\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}
