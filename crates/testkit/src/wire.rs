//! A byte-exact SMTP receiver written without our `smtp` crate: it records every command line
//! and the DATA bytes exactly as they crossed the wire (still dot-stuffed), so tests can check
//! what a strict or a normalising downstream server would see. It keeps an open transaction
//! after a refused DATA, as Postfix does (a second `MAIL` is then `503 5.5.1`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the wire server behaves.
#[derive(Debug, Clone)]
pub struct WireConfig {
    /// EHLO keywords after the greeting line (e.g. `PIPELINING`, `8BITMIME`, `SMTPUTF8`).
    pub extensions: Vec<String>,
    /// Refuse this many DATA commands (the first ones) with `451 4.3.2`, keeping the
    /// transaction open.
    pub refuse_data: usize,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig { extensions: vec!["PIPELINING".into(), "8BITMIME".into(), "SMTPUTF8".into()], refuse_data: 0 }
    }
}

/// One transaction that reached the final dot.
#[derive(Debug, Clone)]
pub struct WireMessage {
    /// The `MAIL FROM` line as sent.
    pub mail: String,
    /// The `RCPT TO` lines as sent.
    pub rcpts: Vec<String>,
    /// DATA bytes up to (not including) the final `CRLF . CRLF`, exactly as sent (stuffed).
    pub raw: Vec<u8>,
}

#[derive(Default)]
struct WireState {
    commands: Vec<String>,
    messages: Vec<WireMessage>,
    refused_data: usize,
}

/// A running wire server.
pub struct WireServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<WireState>>,
    task: tokio::task::JoinHandle<()>,
}

impl WireServer {
    /// Starts on a free loopback port.
    pub async fn start(config: WireConfig) -> WireServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind wire server");
        let addr = listener.local_addr().expect("wire addr");
        let state = Arc::new(Mutex::new(WireState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, config) = (st.clone(), config.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, st, config).await;
                });
            }
        });
        WireServer { addr, state, task }
    }

    /// Every command line received, in order, over all connections.
    pub fn commands(&self) -> Vec<String> {
        self.state.lock().expect("wire state").commands.clone()
    }

    /// Messages that reached the final dot.
    pub fn messages(&self) -> Vec<WireMessage> {
        self.state.lock().expect("wire state").messages.clone()
    }

    /// Waits (bounded) until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize, limit: std::time::Duration) -> Vec<WireMessage> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.messages().len() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.messages()
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, st: Arc<Mutex<WireState>>, config: WireConfig) -> std::io::Result<()> {
    let mut s = BufReader::new(stream);
    s.get_mut().write_all(b"220 wire.test ESMTP\r\n").await?;
    let mut txn: Option<WireMessage> = None;
    loop {
        let mut line = Vec::new();
        if s.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        st.lock().expect("wire state").commands.push(text.clone());
        let verb = text.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut r = String::from("250-wire.test\r\n");
                for (i, e) in config.extensions.iter().enumerate() {
                    let sep = if i + 1 == config.extensions.len() { ' ' } else { '-' };
                    r.push_str(&format!("250{sep}{e}\r\n"));
                }
                if config.extensions.is_empty() {
                    r = "250 wire.test\r\n".into();
                }
                r
            }
            "HELO" | "NOOP" => "250 ok\r\n".into(),
            "RSET" => {
                txn = None;
                "250 2.0.0 reset\r\n".into()
            }
            "QUIT" => {
                s.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "MAIL" if txn.is_some() => "503 5.5.1 Error: nested MAIL command\r\n".into(),
            "MAIL" => {
                txn = Some(WireMessage { mail: text.clone(), rcpts: Vec::new(), raw: Vec::new() });
                "250 2.1.0 ok\r\n".into()
            }
            "RCPT" => match txn.as_mut() {
                Some(t) => {
                    t.rcpts.push(text.clone());
                    "250 2.1.5 ok\r\n".into()
                }
                None => "503 5.5.1 need MAIL\r\n".into(),
            },
            "DATA" => {
                let refuse = {
                    let mut g = st.lock().expect("wire state");
                    let refuse = g.refused_data < config.refuse_data;
                    g.refused_data += usize::from(refuse);
                    refuse
                };
                if refuse {
                    "451 4.3.2 not now\r\n".into()
                } else if let Some(mut t) = txn.take() {
                    s.get_mut().write_all(b"354 go ahead\r\n").await?;
                    t.raw = read_data(&mut s).await?;
                    st.lock().expect("wire state").messages.push(t);
                    "250 2.0.0 queued\r\n".into()
                } else {
                    "503 5.5.1 need RCPT\r\n".into()
                }
            }
            _ => "502 5.5.2 unknown\r\n".into(),
        };
        s.get_mut().write_all(reply.as_bytes()).await?;
    }
}

/// Reads up to the strict `CRLF . CRLF` (the one after the 354 counts as a line start).
async fn read_data(s: &mut BufReader<tokio::net::TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut raw = b"\r\n".to_vec();
    let mut buf = [0u8; 65536];
    let mut searched = 0;
    loop {
        if let Some(p) = raw[searched..].windows(5).position(|w| w == b"\r\n.\r\n") {
            raw.truncate(searched + p + 2);
            return Ok(raw.split_off(2));
        }
        searched = raw.len().saturating_sub(4);
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// How many times a receiver that takes any of CR, LF or CRLF as a line ending would see the
/// end of data (a line holding only `.`) in `raw`, the final marker excluded.
pub fn lenient_ends(raw: &[u8]) -> usize {
    raw.split(|&b| b == b'\r' || b == b'\n').filter(|line| *line == b".").count()
}

/// Bare CR or LF bytes in `raw` (not part of a CRLF pair).
pub fn bare_line_ends(raw: &[u8]) -> usize {
    raw.iter()
        .enumerate()
        .filter(|&(i, &b)| match b {
            b'\r' => raw.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || raw[i - 1] != b'\r',
            _ => false,
        })
        .count()
}
