//! The server side of one SMTP session, generic over its I/O.
//!
//! [`Session::run`] reads commands (pipelined or not), keeps the protocol state, enforces the
//! protocol limits of [`SessionConfig`] (line length, recipients, message size, timeouts, errors)
//! and asks a [`Policy`] for every decision about senders, recipients and message data. Replies
//! are buffered and flushed when the client has nothing more pipelined (RFC 2920).

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::Io;
use crate::address::Path;
use crate::command::{Command, Param, ParseError};
use crate::data::DataDecoder;
use crate::reader::{COMMAND_BUFFER, SessionReader};
use crate::reply::Reply;

/// Protocol limits and identity of the server.
#[derive(Clone)]
pub struct SessionConfig {
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message accepted (advertised with `SIZE`).
    pub max_message_size: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    /// How long to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// How long to wait for each block of DATA (RFC 5321 §4.5.3.2.6: 3 minutes).
    pub data_timeout: Duration,
    /// How long one message's DATA may take in all, however steadily it trickles in.
    pub data_total_timeout: Duration,
    /// Bad commands tolerated before the session is closed.
    pub max_errors: u32,
    /// Offer STARTTLS with this acceptor.
    pub tls: Option<TlsAcceptor>,
}

/// What `MAIL FROM` parameters said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// Declared size (`SIZE=`).
    pub size: Option<u64>,
    /// `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

/// Why DATA did not reach [`Policy::data_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataAbort {
    /// More than `max_message_size` bytes.
    TooBig,
    /// A [`Policy::data_chunk`] call failed.
    Rejected,
    /// The client went away or timed out.
    Disconnected,
    /// The client went away after the final dot, while [`Policy::data_end`] was working (its
    /// future was dropped).
    GoneBeforeReply,
}

/// The decisions a session delegates. Every method may be slow (storage, lookups).
pub trait Policy: Send {
    /// `HELO` (`esmtp` false) or `EHLO` (`esmtp` true) with this name.
    fn helo(&mut self, name: &str, esmtp: bool) -> impl Future<Output = Result<(), Reply>> + Send;
    /// The connection is now encrypted (after STARTTLS).
    fn tls_started(&mut self) {}
    /// Decides on a sender; `Ok` answers `250 2.1.0`.
    fn mail_from(&mut self, from: &Path, params: &MailParams) -> impl Future<Output = Result<(), Reply>> + Send;
    /// Decides on a recipient; `Ok` answers `250 2.1.5`.
    fn rcpt_to(&mut self, to: &Path) -> impl Future<Output = Result<(), Reply>> + Send;
    /// DATA is about to start (at least one recipient was accepted).
    fn data_start(&mut self) -> impl Future<Output = Result<(), Reply>> + Send;
    /// Decoded message bytes, in order. After an `Err`, no more chunks are given and the
    /// error is the reply at the end of DATA.
    fn data_chunk(&mut self, chunk: &[u8]) -> impl Future<Output = Result<(), Reply>> + Send;
    /// The whole message arrived within limits; the answer is the reply to the final dot.
    fn data_end(&mut self) -> impl Future<Output = Reply> + Send;
    /// DATA ended without [`Policy::data_end`]; discard what was stored.
    fn data_abort(&mut self, why: DataAbort) -> impl Future<Output = ()> + Send;
    /// The transaction was reset (RSET, EHLO, STARTTLS, end of DATA).
    fn reset(&mut self);
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection.
    ClientClosed,
    /// The client was silent too long.
    Timeout,
    /// Too many bad commands.
    TooManyErrors,
    /// The server is shutting down.
    Shutdown,
}

const DATA_CHUNK: usize = 64 * 1024;

/// Resolves when `rx` turns true; never without a receiver (or once its sender is gone).
async fn shutdown_signal(rx: Option<watch::Receiver<bool>>) {
    if let Some(mut rx) = rx
        && rx.wait_for(|v| *v).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Resolves when the client has closed its side of the connection; never if it sent more
/// (pipelined commands are left unread for after the reply).
async fn client_gone<R: AsyncRead + Unpin>(stream: &mut SessionReader<R>) {
    match stream.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// One SMTP server session.
pub struct Session<P: Policy> {
    config: SessionConfig,
    policy: P,
    stream: SessionReader<Box<dyn Io>>,
    out: Vec<u8>,
    helo: Option<String>,
    has_mail: bool,
    rcpts: usize,
    tls_active: bool,
    errors: u32,
    shutdown: Option<watch::Receiver<bool>>,
}

enum Line {
    Ok(Vec<u8>),
    TooLong,
    Eof,
}

impl<P: Policy> Session<P> {
    /// A session over `io`; `shutdown` (if given) turning `true` ends it between transactions.
    pub fn new(io: Box<dyn Io>, policy: P, config: SessionConfig, shutdown: Option<watch::Receiver<bool>>) -> Self {
        Session {
            config,
            policy,
            stream: SessionReader::new(io),
            out: Vec::with_capacity(1024),
            helo: None,
            has_mail: false,
            rcpts: 0,
            tls_active: false,
            errors: 0,
            shutdown,
        }
    }

    /// The policy (e.g. to read what it recorded after the session).
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Runs the session to its end: greeting, commands, QUIT.
    pub async fn run(mut self) -> io::Result<SessionEnd> {
        let greeting = Reply::plain(220, format!("{} ESMTP mxshield", self.config.hostname));
        self.reply(greeting);
        self.flush().await?;
        loop {
            if self.shutting_down() && !self.has_mail {
                self.reply(Reply::new(421, (4, 3, 2), "Service shutting down, try again later"));
                self.flush().await?;
                return Ok(SessionEnd::Shutdown);
            }
            if self.stream.buffer().is_empty() {
                self.flush().await?;
            }
            // between transactions, a shutdown reaches an idle client at once, not after its
            // command timeout
            let stop = shutdown_signal(self.shutdown.clone().filter(|_| !self.has_mail));
            let read = timeout(self.config.command_timeout, self.read_line());
            let line = tokio::select! {
                r = read => r,
                () = stop => {
                    self.reply(Reply::new(421, (4, 3, 2), "Service shutting down, try again later"));
                    let _ = self.flush().await;
                    return Ok(SessionEnd::Shutdown);
                }
            };
            let line = match line {
                Err(_) => {
                    self.reply(Reply::new(421, (4, 4, 2), "Timeout waiting for a command"));
                    let _ = self.flush().await;
                    self.abort_transaction();
                    return Ok(SessionEnd::Timeout);
                }
                Ok(r) => r?,
            };
            let line = match line {
                Line::Eof => {
                    self.abort_transaction();
                    return Ok(SessionEnd::ClientClosed);
                }
                Line::TooLong => {
                    if let Some(end) = self.error(Reply::new(500, (5, 5, 2), "Line too long")).await? {
                        return Ok(end);
                    }
                    continue;
                }
                Line::Ok(l) => l,
            };
            match Command::parse(&line) {
                Err(e) => {
                    if let Some(end) = self.error(parse_error_reply(&e)).await? {
                        return Ok(end);
                    }
                }
                Ok(Command::Quit) => {
                    self.reply(Reply::new(221, (2, 0, 0), "Bye"));
                    self.flush().await?;
                    self.abort_transaction();
                    return Ok(SessionEnd::Quit);
                }
                Ok(cmd) => {
                    if let Some(end) = self.command(cmd).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> io::Result<Option<SessionEnd>> {
        match cmd {
            Command::Ehlo(name) => self.on_helo(name, true).await,
            Command::Helo(name) => self.on_helo(name, false).await,
            Command::Mail { from, params } => self.on_mail(from, params).await,
            Command::Rcpt { to, params } => self.on_rcpt(to, params).await,
            Command::Data => self.on_data().await,
            Command::Rset => {
                self.abort_transaction();
                self.reply(Reply::new(250, (2, 0, 0), "Ok"));
                Ok(None)
            }
            Command::Noop => {
                self.reply(Reply::new(250, (2, 0, 0), "Ok"));
                Ok(None)
            }
            Command::Vrfy(_) => {
                self.reply(Reply::new(252, (2, 5, 2), "Cannot VRFY user, but will accept message"));
                Ok(None)
            }
            Command::Expn(_) => self.error(Reply::new(502, (5, 5, 1), "EXPN not available")).await,
            Command::Help => {
                self.reply(Reply::new(214, (2, 0, 0), "See RFC 5321"));
                Ok(None)
            }
            Command::StartTls => self.on_starttls().await,
            Command::Quit => unreachable!("handled by run"),
            Command::Unknown(verb) => {
                self.error(Reply::new(502, (5, 5, 1), format!("Command {verb} not implemented"))).await
            }
        }
    }

    async fn on_helo(&mut self, name: String, esmtp: bool) -> io::Result<Option<SessionEnd>> {
        self.abort_transaction();
        if let Err(r) = self.policy.helo(&name, esmtp).await {
            return self.error(r).await;
        }
        self.helo = Some(name.clone());
        if !esmtp {
            self.reply(Reply::plain(250, self.config.hostname.clone()));
            return Ok(None);
        }
        let mut lines = vec![
            format!("{} greets {}", self.config.hostname, name),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
        ];
        if self.config.tls.is_some() && !self.tls_active {
            lines.push("STARTTLS".to_string());
        }
        self.reply(Reply { code: 250, enhanced: None, lines });
        Ok(None)
    }

    async fn on_mail(&mut self, from: Path, params: Vec<Param>) -> io::Result<Option<SessionEnd>> {
        if self.helo.is_none() {
            return self.error(Reply::new(503, (5, 5, 1), "Send HELO/EHLO first")).await;
        }
        if self.has_mail {
            return self.error(Reply::new(503, (5, 5, 1), "Nested MAIL command")).await;
        }
        let params = match mail_params(&params) {
            Ok(p) => p,
            Err(r) => return self.error(r).await,
        };
        if params.size.is_some_and(|s| s > self.config.max_message_size) {
            self.reply(Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
            return Ok(None);
        }
        match self.policy.mail_from(&from, &params).await {
            Ok(()) => {
                self.has_mail = true;
                self.reply(Reply::new(250, (2, 1, 0), "Sender OK"));
                Ok(None)
            }
            Err(r) => self.error(r).await,
        }
    }

    async fn on_rcpt(&mut self, to: Path, params: Vec<Param>) -> io::Result<Option<SessionEnd>> {
        if !self.has_mail {
            return self.error(Reply::new(503, (5, 5, 1), "Need MAIL before RCPT")).await;
        }
        if let Some(p) = params.first() {
            let r = Reply::new(555, (5, 5, 4), format!("Unsupported RCPT parameter {}", p.key));
            return self.error(r).await;
        }
        if self.rcpts >= self.config.max_recipients {
            self.reply(Reply::new(452, (4, 5, 3), "Too many recipients"));
            return Ok(None);
        }
        match self.policy.rcpt_to(&to).await {
            Ok(()) => {
                self.rcpts += 1;
                self.reply(Reply::new(250, (2, 1, 5), "Recipient OK"));
                Ok(None)
            }
            Err(r) => self.error(r).await,
        }
    }

    async fn on_data(&mut self) -> io::Result<Option<SessionEnd>> {
        if !self.has_mail {
            return self.error(Reply::new(503, (5, 5, 1), "Need MAIL command")).await;
        }
        if self.rcpts == 0 {
            return self.error(Reply::new(554, (5, 5, 1), "No valid recipients")).await;
        }
        if let Err(r) = self.policy.data_start().await {
            self.abort_transaction();
            return self.error(r).await;
        }
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        self.flush().await?;
        let reply = match self.receive_data().await? {
            Ok(()) => {
                // while the message is scanned, notice a client that goes away: the work for
                // it is dropped (the policy's future with it) rather than finished for no one
                let stream = &mut self.stream;
                let policy = &mut self.policy;
                tokio::select! {
                    r = policy.data_end() => r,
                    () = client_gone(stream) => {
                        self.policy.data_abort(DataAbort::GoneBeforeReply).await;
                        self.reset_state();
                        return Ok(Some(SessionEnd::ClientClosed));
                    }
                }
            }
            Err((why, reply)) => {
                self.policy.data_abort(why).await;
                if why == DataAbort::Disconnected {
                    self.reset_state();
                    return Ok(Some(SessionEnd::ClientClosed));
                }
                reply
            }
        };
        self.reset_state();
        self.policy.reset();
        self.reply(reply);
        Ok(None)
    }

    /// Streams DATA into the policy. `Err` carries why it was cut short and the reply to give.
    async fn receive_data(&mut self) -> io::Result<Result<(), (DataAbort, Reply)>> {
        self.stream.set_capacity(DATA_CHUNK);
        let received = self.receive_data_inner().await;
        self.stream.set_capacity(COMMAND_BUFFER);
        received
    }

    async fn receive_data_inner(&mut self) -> io::Result<Result<(), (DataAbort, Reply)>> {
        let mut decoder = DataDecoder::new();
        let mut chunk = Vec::with_capacity(DATA_CHUNK + 1024);
        let mut total: u64 = 0;
        let mut failure: Option<(DataAbort, Reply)> = None;
        let deadline = tokio::time::Instant::now() + self.config.data_total_timeout;
        while !decoder.is_done() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let buf = match timeout(self.config.data_timeout.min(left), self.stream.fill_buf()).await {
                Err(_) => {
                    let why = if left < self.config.data_timeout {
                        "Timeout: the message data took too long"
                    } else {
                        "Timeout waiting for data"
                    };
                    self.reply(Reply::new(421, (4, 4, 2), why));
                    let _ = self.flush().await;
                    return Ok(Err((DataAbort::Disconnected, Reply::plain(421, "timeout"))));
                }
                Ok(r) => r?,
            };
            if buf.is_empty() {
                return Ok(Err((DataAbort::Disconnected, Reply::plain(421, "closed"))));
            }
            let used = decoder.feed(buf, &mut chunk);
            self.stream.consume(used);
            if chunk.len() >= DATA_CHUNK || decoder.is_done() {
                total += chunk.len() as u64;
                if failure.is_none() && total > self.config.max_message_size {
                    failure = Some((
                        DataAbort::TooBig,
                        Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"),
                    ));
                }
                if failure.is_none()
                    && let Err(r) = self.policy.data_chunk(&chunk).await
                {
                    failure = Some((DataAbort::Rejected, r));
                }
                chunk.clear();
            }
        }
        Ok(failure.map_or(Ok(()), Err))
    }

    async fn on_starttls(&mut self) -> io::Result<Option<SessionEnd>> {
        let Some(acceptor) = self.config.tls.clone() else {
            return self.error(Reply::new(502, (5, 5, 1), "STARTTLS not available")).await;
        };
        if self.tls_active {
            return self.error(Reply::new(503, (5, 5, 1), "TLS already active")).await;
        }
        self.reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
        self.flush().await?;
        self.abort_transaction();
        self.helo = None;
        // Anything pipelined after STARTTLS was sent in clear text: discard it (CVE-2011-0411).
        let placeholder: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.stream, SessionReader::new(placeholder)).into_inner();
        let tls = match timeout(self.config.command_timeout, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(_)) | Err(_) => return Ok(Some(SessionEnd::ClientClosed)),
        };
        self.stream = SessionReader::new(Box::new(tls));
        self.tls_active = true;
        self.policy.tls_started();
        Ok(None)
    }

    /// Records an error reply; after `max_errors` closes the session with 421.
    async fn error(&mut self, reply: Reply) -> io::Result<Option<SessionEnd>> {
        self.errors += 1;
        self.reply(reply);
        if self.errors >= self.config.max_errors {
            self.reply(Reply::new(421, (4, 7, 0), "Too many errors, closing connection"));
            self.flush().await?;
            self.abort_transaction();
            return Ok(Some(SessionEnd::TooManyErrors));
        }
        Ok(None)
    }

    fn abort_transaction(&mut self) {
        if self.has_mail {
            self.policy.reset();
        }
        self.reset_state();
    }

    fn reset_state(&mut self) {
        self.has_mail = false;
        self.rcpts = 0;
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|s| *s.borrow())
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let w = self.stream.get_mut();
            w.write_all(&self.out).await?;
            w.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads one line up to `max_line_length`, without its line ending.
    async fn read_line(&mut self) -> io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let buf = self.stream.fill_buf().await?;
            if buf.is_empty() {
                return Ok(Line::Eof);
            }
            let (take, found) = match memchr::memchr(b'\n', buf) {
                Some(p) => (p + 1, true),
                None => (buf.len(), false),
            };
            if !too_long {
                line.extend_from_slice(&buf[..take]);
                if line.len() > self.config.max_line_length {
                    too_long = true;
                    line.clear();
                }
            }
            self.stream.consume(take);
            if found {
                if too_long {
                    return Ok(Line::TooLong);
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                return Ok(Line::Ok(line));
            }
        }
    }
}

fn mail_params(params: &[Param]) -> Result<MailParams, Reply> {
    let mut out = MailParams::default();
    for p in params {
        match (p.key.as_str(), p.value.as_deref()) {
            ("SIZE", Some(v)) => {
                out.size = Some(v.parse().map_err(|_| Reply::new(501, (5, 5, 4), "Bad SIZE value"))?);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => out.eight_bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {}
            ("SMTPUTF8", None) => out.smtputf8 = true,
            (k, _) => return Err(Reply::new(555, (5, 5, 4), format!("Unsupported MAIL parameter {k}"))),
        }
    }
    Ok(out)
}

fn parse_error_reply(e: &ParseError) -> Reply {
    match e {
        ParseError::Address(a) => Reply::new(501, (5, 1, 3), format!("Bad address syntax: {a}")),
        ParseError::MissingArgument => Reply::new(501, (5, 5, 4), "Missing argument"),
        ParseError::NotUtf8 => Reply::new(500, (5, 5, 2), "Invalid characters in command"),
        ParseError::Syntax => Reply::new(501, (5, 5, 4), "Syntax error"),
    }
}
