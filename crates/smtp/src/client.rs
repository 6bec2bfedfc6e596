//! An SMTP client that delivers messages to one host: greeting, EHLO (falling back to HELO),
//! opportunistic STARTTLS, pipelined MAIL/RCPT/DATA, several transactions on one connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::Io;
use crate::data::DataEncoder;
use crate::reply::Reply;

/// Why talking to a server failed (as opposed to the server answering with an error reply).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made.
    #[error("connection to {addr} failed: {source}")]
    Connect {
        /// The host.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// No answer in time (what was being waited for).
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The connection failed.
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

/// Timeouts of the client side (RFC 5321 §4.5.3.2).
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// Connecting.
    pub connect: Duration,
    /// Waiting for a reply to a command.
    pub command: Duration,
    /// Wait for the reply to the final dot (RFC 5321: 10 minutes).
    pub data_end: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(300),
            data_end: Duration::from_secs(600),
        }
    }
}

/// What the server advertised in its EHLO reply.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    /// The server answered EHLO (not only HELO).
    pub esmtp: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// 8BITMIME.
    pub eight_bit: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// SIZE, with its limit (0: none given).
    pub size: Option<u64>,
}

/// What the client needs to know of a message to send it.
#[derive(Debug, Clone, Default)]
pub struct MailOptions {
    /// Its size, declared with `SIZE=` where the server has the extension.
    pub size: Option<u64>,
    /// It needs SMTPUTF8 (UTF-8 header fields: the sender declared `SMTPUTF8`).
    pub smtputf8: bool,
}

/// Replies of one mail transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Reply to MAIL FROM.
    pub mail: Reply,
    /// One reply per recipient, in order (empty if MAIL was refused).
    pub rcpts: Vec<Reply>,
    /// Reply to the final dot (or to DATA if it was refused); `None` if no recipient was
    /// accepted.
    pub data: Option<Reply>,
}

/// A connection to one SMTP server.
pub struct Client {
    stream: BufReader<Box<dyn Io>>,
    timeouts: ClientTimeouts,
    /// Extensions of the last EHLO.
    pub extensions: Extensions,
    /// Whether the connection is encrypted.
    pub tls: bool,
    /// The server's address.
    pub peer: SocketAddr,
    /// The server's greeting.
    pub greeting: Reply,
}

impl Client {
    /// Connects and reads the greeting; a non-220 greeting is returned as `Err(Ok(reply))`.
    pub async fn connect(addr: SocketAddr, timeouts: ClientTimeouts) -> Result<Result<Client, Reply>, ClientError> {
        let tcp = match timeout(timeouts.connect, TcpStream::connect(addr)).await {
            Err(_) => return Err(ClientError::Timeout("connecting")),
            Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
            Ok(Ok(s)) => s,
        };
        tcp.set_nodelay(true)?;
        let mut client = Client {
            stream: BufReader::new(Box::new(tcp)),
            timeouts,
            extensions: Extensions::default(),
            tls: false,
            peer: addr,
            greeting: Reply::new(220, (2, 0, 0), ""),
        };
        let greeting = client.read_reply(timeouts.command).await?;
        if greeting.code != 220 {
            return Ok(Err(greeting));
        }
        client.greeting = greeting;
        Ok(Ok(client))
    }

    /// Sends EHLO (HELO if EHLO is refused) and records the extensions.
    pub async fn ehlo(&mut self, name: &str) -> Result<Reply, ClientError> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        if reply.is_positive() {
            self.extensions = parse_extensions(&reply);
            return Ok(reply);
        }
        let reply = self.command(&format!("HELO {name}")).await?;
        self.extensions = Extensions::default();
        Ok(reply)
    }

    /// Upgrades with STARTTLS. Returns `Ok(false)` if the server refused the command (the
    /// connection is still usable in clear text).
    pub async fn starttls(
        &mut self,
        connector: &TlsConnector,
        server_name: ServerName<'static>,
    ) -> Result<bool, ClientError> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Ok(false);
        }
        let placeholder: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.stream, BufReader::new(placeholder)).into_inner();
        let tls = match timeout(self.timeouts.command, connector.connect(server_name, plain)).await {
            Err(_) => return Err(ClientError::Timeout("in the TLS handshake")),
            Ok(Err(e)) => return Err(ClientError::Tls(e)),
            Ok(Ok(t)) => t,
        };
        self.stream = BufReader::new(Box::new(tls));
        self.tls = true;
        Ok(true)
    }

    /// Runs one transaction: MAIL, RCPTs and, if any recipient was accepted, DATA with the
    /// message read from `body` (stored form: CRLF lines, not dot-stuffed).
    pub async fn send<R: AsyncRead + Unpin>(
        &mut self,
        from: &str,
        rcpts: &[String],
        size: Option<u64>,
        body: R,
    ) -> Result<Transaction, ClientError> {
        self.send_with(from, rcpts, &MailOptions { size, smtputf8: false }, body).await
    }

    /// [`Client::send`] with the options of the message: a message that needs SMTPUTF8 (UTF-8
    /// addresses, or the sender said so) is not sent to a server without it — the reply is a
    /// made-up `553 5.6.7` (RFC 6531 §3.4), nothing crosses the wire.
    pub async fn send_with<R: AsyncRead + Unpin>(
        &mut self,
        from: &str,
        rcpts: &[String],
        opts: &MailOptions,
        body: R,
    ) -> Result<Transaction, ClientError> {
        let mut mail_cmd = format!("MAIL FROM:<{from}>");
        if let (Some(n), Some(_)) = (opts.size, self.extensions.size) {
            mail_cmd.push_str(&format!(" SIZE={n}"));
        }
        if self.extensions.eight_bit {
            mail_cmd.push_str(" BODY=8BITMIME");
        }
        let needs_utf8 = opts.smtputf8 || !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
        if needs_utf8 {
            if !self.extensions.smtputf8 {
                let refused =
                    Reply::new(553, (5, 6, 7), "The next hop does not support SMTPUTF8, which this message needs");
                return Ok(Transaction { mail: refused, rcpts: Vec::new(), data: None });
            }
            mail_cmd.push_str(" SMTPUTF8");
        }
        let (txn, ended) = if self.extensions.pipelining {
            self.send_pipelined(&mail_cmd, rcpts, body, opts.size).await?
        } else {
            self.send_lockstep(&mail_cmd, rcpts, body, opts.size).await?
        };
        if !ended {
            // a transaction that did not end with the reply to the final dot may still be open
            // on the server (Postfix keeps it after refusing DATA): reset it, or the next MAIL
            // on this connection is a "nested MAIL command"
            let r = self.rset().await?;
            if !r.is_positive() {
                return Err(ClientError::Protocol(format!("RSET refused: {}", r.one_line())));
            }
        }
        Ok(txn)
    }

    async fn send_pipelined<R: AsyncRead + Unpin>(
        &mut self,
        mail_cmd: &str,
        rcpts: &[String],
        body: R,
        size: Option<u64>,
    ) -> Result<(Transaction, bool), ClientError> {
        let mut batch = format!("{mail_cmd}\r\n");
        for r in rcpts {
            batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        batch.push_str("DATA\r\n");
        self.write(batch.as_bytes()).await?;
        let mail = self.read_reply(self.timeouts.command).await?;
        let mut replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            replies.push(self.read_reply(self.timeouts.command).await?);
        }
        let data = self.read_reply(self.timeouts.command).await?;
        if !mail.is_positive() {
            return Ok((Transaction { mail, rcpts: Vec::new(), data: None }, false));
        }
        let any_ok = replies.iter().any(Reply::is_positive);
        if data.code != 354 {
            let data = any_ok.then_some(data);
            return Ok((Transaction { mail, rcpts: replies, data }, false));
        }
        if !any_ok {
            // The server started DATA although no recipient was accepted: end it empty.
            self.write(b".\r\n").await?;
            let _ = self.read_reply(self.timeouts.data_end).await?;
            return Ok((Transaction { mail, rcpts: replies, data: None }, true));
        }
        let end = self.write_body(body, size).await?;
        Ok((Transaction { mail, rcpts: replies, data: Some(end) }, true))
    }

    async fn send_lockstep<R: AsyncRead + Unpin>(
        &mut self,
        mail_cmd: &str,
        rcpts: &[String],
        body: R,
        size: Option<u64>,
    ) -> Result<(Transaction, bool), ClientError> {
        let mail = self.command(mail_cmd).await?;
        if !mail.is_positive() {
            return Ok((Transaction { mail, rcpts: Vec::new(), data: None }, false));
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            replies.push(self.command(&format!("RCPT TO:<{r}>")).await?);
        }
        if !replies.iter().any(Reply::is_positive) {
            return Ok((Transaction { mail, rcpts: replies, data: None }, false));
        }
        let data = self.command("DATA").await?;
        if data.code != 354 {
            return Ok((Transaction { mail, rcpts: replies, data: Some(data) }, false));
        }
        let end = self.write_body(body, size).await?;
        Ok((Transaction { mail, rcpts: replies, data: Some(end) }, true))
    }

    /// Sends the body (dot-stuffed, then the final dot) and reads the reply; `size`, if known,
    /// sizes the buffers (a 10 KiB message does not need 256 KiB zeroed and mapped for it).
    async fn write_body<R: AsyncRead + Unpin>(&mut self, mut body: R, size: Option<u64>) -> Result<Reply, ClientError> {
        let mut enc = DataEncoder::new();
        // large reads: a tokio file read is a round trip to the blocking pool each time
        const MOST: usize = 256 * 1024;
        let len = size.map_or(MOST, |n| usize::try_from(n).unwrap_or(MOST).saturating_add(1).clamp(4096, MOST));
        // read into spare capacity: nothing zeroed first
        let mut buf = Vec::with_capacity(len);
        let mut out = Vec::with_capacity(len + len / 32 + 8);
        loop {
            // fill the buffer before sending (a body made of pieces — a prepended header, then
            // the data — goes out in one write, not one per piece), and end a body that fits
            // with its final dot: a small message is a single write
            buf.clear();
            while buf.len() < len {
                // at most the spare capacity (a Vec grows only when it has none)
                if body.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            enc.encode(&buf, &mut out);
            if buf.len() < len {
                break;
            }
            self.write(&out).await?;
            out.clear();
        }
        enc.finish(&mut out);
        self.write(&out).await?;
        self.read_reply(self.timeouts.data_end).await
    }

    /// DATA, then — if the server answers `354` — `message` (dot-stuffed, with the final dot):
    /// the reply to DATA and, when the message was sent, the reply to its end. For a caller that
    /// sends MAIL and RCPT one by one with [`Client::command`].
    pub async fn data(&mut self, message: &[u8]) -> Result<(Reply, Option<Reply>), ClientError> {
        let go = self.command("DATA").await?;
        if go.code != 354 {
            return Ok((go, None));
        }
        let end = self.write_body(message, Some(message.len() as u64)).await?;
        Ok((go, Some(end)))
    }

    /// RSET.
    pub async fn rset(&mut self) -> Result<Reply, ClientError> {
        self.command("RSET").await
    }

    /// QUIT, ignoring errors (the connection is closed either way).
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
    }

    /// Sends one command and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(self.timeouts.command).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let w = self.stream.get_mut();
        match timeout(self.timeouts.command, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        {
            Err(_) => Err(ClientError::Timeout("sending")),
            Ok(r) => Ok(r?),
        }
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self, limit: Duration) -> Result<Reply, ClientError> {
        match timeout(limit, self.read_reply_inner()).await {
            Err(_) => Err(ClientError::Timeout("waiting for a reply")),
            Ok(r) => r,
        }
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = (&mut self.stream).take(4096).read_until(b'\n', &mut raw).await?;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
            let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                break;
            }
            if lines.len() > 100 {
                return Err(ClientError::Protocol("reply has too many lines".into()));
            }
        }
        Reply::parse_lines(&lines).ok_or_else(|| ClientError::Protocol(format!("malformed reply {:?}", lines[0])))
    }
}

fn parse_extensions(reply: &Reply) -> Extensions {
    let mut ext = Extensions { esmtp: true, ..Default::default() };
    for line in reply.lines.iter().skip(1) {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default().to_ascii_uppercase();
        match key.as_str() {
            "PIPELINING" => ext.pipelining = true,
            "STARTTLS" => ext.starttls = true,
            "8BITMIME" => ext.eight_bit = true,
            "SMTPUTF8" => ext.smtputf8 = true,
            "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
            _ => {}
        }
    }
    ext
}

/// A TLS client configuration for opportunistic STARTTLS: encrypts without authenticating the
/// server, as RFC 3207 / RFC 7435 opportunistic security does for MX delivery.
pub fn opportunistic_tls() -> TlsConnector {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
