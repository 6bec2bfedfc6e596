//! Spam scores of outbound mail (R18: the service is not for customers who send spam), from a
//! spam engine the operator runs — SpamAssassin's `spamd` (the SPAMC/1.5 `CHECK` command) or
//! `rspamd` (its HTTP `/checkv2`) — as an optional backend, as clamd is for viruses. The
//! [`SpamMeter`] takes outbound messages after their `250` (a bounded queue: it never holds mail
//! up), asks the engine, and counts per contract and UTC day the messages scored, those the
//! engine calls spam and those it could not score (down, timed out, too large: unmeasured,
//! never refused), flushing the counts to the message log's database where the nodes' counts
//! are summed. A flush that fails keeps its counts for the next one.
//!
//! Main items: [`Engine`], [`SpamMeter`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

/// Which protocol the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// SpamAssassin's `spamd` (SPAMC/1.5).
    Spamd,
    /// `rspamd`'s normal worker (HTTP `/checkv2`).
    Rspamd,
}

/// A spam engine on the network.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Its protocol.
    pub kind: EngineKind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connecting and the whole check.
    pub timeout: Duration,
    /// Larger messages are not sent (counted unmeasured): spamd's own default is 500 KB.
    pub max_size: usize,
}

/// What the engine said of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Its score.
    pub score: f64,
    /// The engine's threshold for spam.
    pub threshold: f64,
    /// Whether the engine calls it spam.
    pub spam: bool,
}

/// Why a message could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum SpamError {
    /// The engine could not be reached or the connection failed.
    #[error("spam engine: {0}")]
    Io(#[from] std::io::Error),
    /// It did not answer in time.
    #[error("spam engine: no answer in {0:?}")]
    Timeout(Duration),
    /// It answered something we do not understand, or an error.
    #[error("spam engine: {0}")]
    Protocol(String),
    /// The message is larger than the engine is given.
    #[error("message of {0} bytes is above the spam engine's limit")]
    TooLarge(usize),
}

impl Engine {
    /// Asks the engine about `message`.
    pub async fn check(&self, message: &[u8]) -> Result<Score, SpamError> {
        if message.len() > self.max_size {
            return Err(SpamError::TooLarge(message.len()));
        }
        match tokio::time::timeout(self.timeout, self.exchange(message)).await {
            Err(_) => Err(SpamError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(answer)) => match self.kind {
                EngineKind::Spamd => parse_spamd(&answer),
                EngineKind::Rspamd => parse_rspamd(&answer),
            },
        }
    }

    /// Sends the request, reads the whole answer (bounded: 1 MiB).
    async fn exchange(&self, message: &[u8]) -> Result<Vec<u8>, SpamError> {
        let mut s = TcpStream::connect(self.addr).await?;
        let head = match self.kind {
            EngineKind::Spamd => {
                format!("CHECK SPAMC/1.5\r\nContent-length: {}\r\nUser: mxshield\r\n\r\n", message.len())
            }
            EngineKind::Rspamd => format!(
                "POST /checkv2 HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.addr,
                message.len()
            ),
        };
        s.write_all(head.as_bytes()).await?;
        s.write_all(message).await?;
        s.flush().await?;
        if self.kind == EngineKind::Spamd {
            // spamd reads to the end of its input
            s.shutdown().await?;
        }
        let mut answer = Vec::new();
        (&mut s).take(1 << 20).read_to_end(&mut answer).await?;
        Ok(answer)
    }
}

/// `SPAMD/1.1 0 EX_OK` then `Spam: True ; 1005.2 / 5.0`.
fn parse_spamd(answer: &[u8]) -> Result<Score, SpamError> {
    let text = String::from_utf8_lossy(answer);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut words = status.split_whitespace();
    if !words.next().is_some_and(|w| w.starts_with("SPAMD/")) {
        return Err(SpamError::Protocol(format!("not a spamd answer: {status:?}")));
    }
    if words.next() != Some("0") {
        return Err(SpamError::Protocol(format!("spamd says {status:?}")));
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else { continue };
        if !name.trim().eq_ignore_ascii_case("spam") {
            continue;
        }
        // "True ; 1005.2 / 5.0"
        let (verdict, numbers) = value.split_once(';').unwrap_or((value, ""));
        let (score, threshold) = numbers.split_once('/').unwrap_or((numbers, ""));
        let number =
            |s: &str| s.trim().parse::<f64>().map_err(|_| SpamError::Protocol(format!("bad Spam header: {line:?}")));
        let spam = matches!(verdict.trim().to_ascii_lowercase().as_str(), "true" | "yes");
        return Ok(Score { score: number(score)?, threshold: number(threshold)?, spam });
    }
    Err(SpamError::Protocol(format!("spamd gave no Spam header: {status:?}")))
}

/// `HTTP/1.1 200 OK` and a JSON body with `score`, `required_score` and `action`; spam is an
/// action that marks or refuses the message (`add header`, `rewrite subject`, `reject`).
fn parse_rspamd(answer: &[u8]) -> Result<Score, SpamError> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| SpamError::Protocol("no HTTP header end".into()))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(SpamError::Protocol(format!("rspamd says {status:?}")));
    }
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let raw = &answer[split + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| SpamError::Protocol(format!("rspamd's answer is not JSON: {e}")))?;
    let score = v["score"].as_f64().ok_or_else(|| SpamError::Protocol("rspamd gave no score".into()))?;
    let threshold = v["required_score"].as_f64().unwrap_or(f64::NAN);
    let action = v["action"].as_str().unwrap_or_default();
    let spam = matches!(action, "reject" | "add header" | "rewrite subject");
    Ok(Score { score, threshold, spam })
}

/// An HTTP/1.1 chunked body, decoded.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, SpamError> {
    let bad = || SpamError::Protocol("bad chunked encoding".into());
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad())?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).ok_or_else(bad)?);
        raw = raw.get(size + 2..).ok_or_else(bad)?;
    }
}

/// One outbound message offered for scoring.
pub struct SpamOffer {
    /// The sender's contract.
    pub contract: String,
    /// When it was accepted (Unix seconds).
    pub at: i64,
    /// The message as committed (`None`: too large to be kept in memory — counted unmeasured).
    pub message: Option<Arc<spool::CommittedMessage>>,
}

/// Counts not flushed yet, per (contract, day).
type Pending = HashMap<(String, i64), msglog::SpamCount>;

/// The handle sessions offer outbound messages to.
#[derive(Clone)]
pub struct SpamMeter {
    tx: mpsc::Sender<SpamOffer>,
    pending: Arc<Mutex<Pending>>,
}

/// Checks in flight at once.
const CONCURRENT: usize = 4;

impl SpamMeter {
    /// Starts the meter on the current runtime: it asks `engine` and flushes into the log at
    /// `location` every `every`; it ends (after a last flush) when every handle is dropped.
    pub fn start(
        engine: Engine,
        location: msglog::LogLocation,
        every: Duration,
    ) -> (SpamMeter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1_000);
        let pending: Arc<Mutex<Pending>> = Default::default();
        let task = tokio::spawn(run(engine, rx, pending.clone(), location, every));
        (SpamMeter { tx, pending }, task)
    }

    /// Offers a message; never waits (a full queue counts it unmeasured).
    pub fn offer(&self, offer: SpamOffer) {
        if let Err(mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o)) = self.tx.try_send(offer)
        {
            count(&self.pending, &o.contract, o.at, None);
        }
    }
}

/// Adds one message's result to the pending counts (`None`: unmeasured).
fn count(pending: &Mutex<Pending>, contract: &str, at: i64, spam: Option<bool>) {
    let day = at - at.rem_euclid(86_400);
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    let c = p.entry((contract.to_string(), day)).or_insert_with(|| msglog::SpamCount {
        contract: contract.to_string(),
        day,
        ..Default::default()
    });
    match spam {
        Some(s) => {
            c.scored += 1;
            c.spam += i64::from(s);
        }
        None => c.unmeasured += 1,
    }
    metrics::counter!("mxshield_spam_checks_total", "result" => match spam {
        Some(true) => "spam",
        Some(false) => "ham",
        None => "unmeasured",
    })
    .increment(1);
}

async fn run(
    engine: Engine,
    mut rx: mpsc::Receiver<SpamOffer>,
    pending: Arc<Mutex<Pending>>,
    location: msglog::LogLocation,
    every: Duration,
) {
    let engine = Arc::new(engine);
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut log: Option<msglog::LogStore> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            offer = rx.recv() => {
                let Some(o) = offer else { break };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let (engine, pending) = (engine.clone(), pending.clone());
                tokio::spawn(async move {
                    let result = match &o.message {
                        Some(m) => engine.check(&m.data).await,
                        None => Err(SpamError::TooLarge(usize::MAX)),
                    };
                    match result {
                        Ok(s) => count(&pending, &o.contract, o.at, Some(s.spam)),
                        Err(e) => {
                            tracing::debug!(event = "spam_unmeasured", contract = %o.contract, error = %e);
                            count(&pending, &o.contract, o.at, None);
                        }
                    }
                    drop(slot);
                });
            }
            _ = tick.tick() => flush(&pending, &location, &mut log).await,
        }
    }
    // the checks in flight finish, then the last flush
    let _ = slots.acquire_many(CONCURRENT as u32).await;
    flush(&pending, &location, &mut log).await;
}

async fn flush(pending: &Mutex<Pending>, location: &msglog::LogLocation, log: &mut Option<msglog::LogStore>) {
    let deltas: Vec<msglog::SpamCount> = {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        p.drain().map(|(_, c)| c).collect()
    };
    if deltas.is_empty() {
        return;
    }
    if log.is_none() {
        match msglog::LogStore::open_at(location).await {
            Ok(l) => *log = Some(l),
            Err(e) => {
                tracing::warn!(event = "spam_flush_failed", error = %e, "kept for the next flush");
                restore(pending, deltas);
                return;
            }
        }
    }
    let Some(l) = log.as_ref() else { return };
    if let Err(e) = l.spam_flush(&deltas).await {
        tracing::warn!(event = "spam_flush_failed", error = %e, "kept for the next flush");
        restore(pending, deltas);
    }
}

/// Puts counts that could not be flushed back.
fn restore(pending: &Mutex<Pending>, deltas: Vec<msglog::SpamCount>) {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    for d in deltas {
        let c = p.entry((d.contract.clone(), d.day)).or_insert_with(|| msglog::SpamCount {
            contract: d.contract.clone(),
            day: d.day,
            ..Default::default()
        });
        c.scored += d.scored;
        c.spam += d.spam;
        c.unmeasured += d.unmeasured;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_answers_are_read_and_errors_are_not_scores() {
        let s = parse_spamd(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 1005.2 / 5.0\r\n\r\n").unwrap();
        assert_eq!(s, Score { score: 1005.2, threshold: 5.0, spam: true });
        let s = parse_spamd(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\n\r\n").unwrap();
        assert!(!s.spam);
        assert!(parse_spamd(b"SPAMD/1.0 76 Bad header line: x\r\n\r\n").is_err());
        assert!(parse_spamd(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        let body = br#"{"is_skipped":false,"score":1500.0,"required_score":15.0,"action":"reject","symbols":{}}"#;
        let mut http = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        http.extend_from_slice(body);
        assert_eq!(parse_rspamd(&http).unwrap(), Score { score: 1500.0, threshold: 15.0, spam: true });
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        chunked.extend_from_slice(body);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        assert!(parse_rspamd(&chunked).unwrap().spam);
        let ham = br#"HTTP/1.1 200 OK

{"score":1.2,"required_score":15.0,"action":"no action"}"#;
        let ham = String::from_utf8_lossy(ham).replace('\n', "\r\n");
        assert!(!parse_rspamd(ham.as_bytes()).unwrap().spam);
        assert!(parse_rspamd(b"HTTP/1.1 500 Internal\r\n\r\n{}").is_err());
    }
}
