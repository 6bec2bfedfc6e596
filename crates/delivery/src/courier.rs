//! Delivering one message to one destination: try each candidate host in order, the next on
//! connection failure or 4xx; reuse idle connections; opportunistic STARTTLS; remember hosts
//! that refused connections so a dead server costs nothing while it stays dead.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use smtp::client::{Client, ClientError, ClientTimeouts, MailOptions, Transaction, opportunistic_tls};
use smtp::{Reply, Status};
use spool::{QueueId, Spool};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::route::Candidate;
use crate::DeliveryConfig;
use spool::attrs;

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the host: its reply.
    Delivered {
        /// The host that answered.
        remote: String,
        /// Its reply to the final dot.
        reply: String,
    },
    /// Permanent failure: (remote, enhanced status, diagnostic).
    Failed {
        /// The host that answered (empty if none).
        remote: String,
        /// Enhanced status code, e.g. `5.1.1`.
        status: Status,
        /// The reply or error text.
        diagnostic: String,
    },
    /// Temporary failure: (remote, error).
    Deferred {
        /// The host last tried (empty if none).
        remote: String,
        /// Why it did not work.
        error: String,
    },
}

impl Outcome {
    /// What the outcome makes of the recipient in the message log.
    pub fn state(&self) -> msglog::RcptState {
        match self {
            Outcome::Delivered { .. } => msglog::RcptState::Delivered,
            Outcome::Failed { .. } => msglog::RcptState::Bounced,
            Outcome::Deferred { .. } => msglog::RcptState::Deferred,
        }
    }
}

/// Most idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 8;

/// Messages up to this size are read from the spool in one plain read before they are sent.
const READ_AT_ONCE: u64 = 256 * 1024;

/// The SMTP client side of delivery.
pub struct Courier {
    cfg: DeliveryConfig,
    tls: TlsConnector,
    idle: Mutex<HashMap<SocketAddr, Vec<(Client, Instant)>>>,
    dead: Mutex<HashMap<SocketAddr, (Instant, String)>>,
}

enum HostError {
    /// Could not talk to the host; `dead` if the connection itself failed.
    Unreachable { error: String, dead: bool },
    /// The host answered the greeting or EHLO with an error.
    Refused(Reply),
}

impl Courier {
    /// A courier with this configuration.
    pub fn new(cfg: DeliveryConfig) -> Courier {
        Courier { cfg, tls: opportunistic_tls(), idle: Mutex::default(), dead: Mutex::default() }
    }

    fn timeouts(&self) -> ClientTimeouts {
        ClientTimeouts {
            connect: self.cfg.connect_timeout,
            command: self.cfg.command_timeout,
            data_end: self.cfg.data_timeout,
        }
    }

    /// Delivers message `id` from `sender` to `rcpts` via `candidates`; one outcome per
    /// recipient, in order.
    pub async fn deliver(
        &self,
        spool: &Spool,
        id: &QueueId,
        sender: &str,
        rcpts: &[String],
        candidates: &[Candidate],
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        let mut last = ("".to_string(), "no next hop was reachable".to_string());
        'hosts: for cand in candidates {
            for &addr in &cand.addrs {
                let remaining: Vec<usize> = (0..rcpts.len()).filter(|&i| outcomes[i].is_none()).collect();
                if remaining.is_empty() {
                    break 'hosts;
                }
                let remote = format!("{} [{}]", cand.name, addr);
                if let Some(why) = self.is_dead(addr) {
                    last = (remote, format!("host not tried: {why}"));
                    continue;
                }
                let subset: Vec<String> = remaining.iter().map(|&i| rcpts[i].clone()).collect();
                let tx = match self.transaction(spool, id, addr, &cand.name, sender, &subset).await {
                    Ok(tx) => tx,
                    Err(HostError::Unreachable { error, dead }) => {
                        if dead {
                            self.mark_dead(addr, &error);
                        }
                        last = (remote, error);
                        continue;
                    }
                    Err(HostError::Refused(reply)) => {
                        last = (remote, reply.one_line());
                        continue;
                    }
                };
                if tx.mail.is_permanent() {
                    for &i in &remaining {
                        outcomes[i] = Some(failed(&remote, &tx.mail));
                    }
                    break 'hosts;
                }
                if !tx.mail.is_positive() {
                    last = (remote, tx.mail.one_line());
                    continue;
                }
                for (k, &i) in remaining.iter().enumerate() {
                    let Some(r) = tx.rcpts.get(k) else { continue };
                    outcomes[i] = match (r, &tx.data) {
                        (r, _) if r.is_permanent() => Some(failed(&remote, r)),
                        (r, _) if !r.is_positive() => None,
                        (_, Some(d)) if d.is_positive() => {
                            Some(Outcome::Delivered { remote: remote.clone(), reply: d.one_line() })
                        }
                        (_, Some(d)) if d.is_permanent() => Some(failed(&remote, d)),
                        _ => None,
                    };
                    if outcomes[i].is_none() {
                        let err = tx.data.as_ref().filter(|_| r.is_positive()).unwrap_or(r);
                        last = (remote.clone(), err.one_line());
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Deferred { remote: last.0.clone(), error: last.1.clone() }))
            .collect()
    }

    async fn transaction(
        &self,
        spool: &Spool,
        id: &QueueId,
        addr: SocketAddr,
        name: &str,
        sender: &str,
        rcpts: &[String],
    ) -> Result<Transaction, HostError> {
        if let Some(mut client) = self.checkout(addr)
            && let Ok(tx) = self.send_on(&mut client, spool, id, sender, rcpts).await
        {
            if !out_of_sequence(&tx) {
                self.checkin(addr, client);
                return Ok(tx);
            }
            // "bad sequence of commands" on a reused connection: the connection's state is at
            // fault, not the message; close it and try again on a fresh one
            tracing::info!(event = "connection_reset", remote = %addr, reply = %tx.mail.one_line());
        }
        // No idle connection, or it went stale: open a fresh one.
        let mut client = self.open(addr, name, self.cfg.starttls).await?;
        match self.send_on(&mut client, spool, id, sender, rcpts).await {
            Ok(tx) if out_of_sequence(&tx) => {
                // even on a fresh connection a 503 is the server's confusion: try again later
                let reply = [Some(&tx.mail), tx.rcpts.iter().find(|r| r.code == 503), tx.data.as_ref()]
                    .into_iter()
                    .flatten()
                    .find(|r| r.code == 503)
                    .map_or_else(String::new, |r| r.one_line());
                Err(HostError::Unreachable { error: format!("out of sequence: {reply}"), dead: false })
            }
            Ok(tx) => {
                self.checkin(addr, client);
                Ok(tx)
            }
            Err(e) => Err(HostError::Unreachable { error: e.to_string(), dead: false }),
        }
    }

    /// Sends `id` on an open connection.
    async fn send_on(
        &self,
        client: &mut Client,
        spool: &Spool,
        id: &QueueId,
        sender: &str,
        rcpts: &[String],
    ) -> Result<Transaction, ClientError> {
        if let Some(m) = spool.recent(id) {
            // committed a moment ago by this process: the copy in memory, no file to read
            let env = &m.envelope;
            let prepend = env.attr(attrs::PREPEND).unwrap_or("").as_bytes().to_vec();
            let (smtputf8, eight_bit) = (env.attr(attrs::SMTPUTF8).is_some(), env.attr(attrs::EIGHT_BIT).is_some());
            return self.send_data(client, sender, rcpts, prepend, Data::Shared(m), smtputf8, eight_bit).await;
        }
        let stored = spool.open_message(id).map_err(|e| ClientError::Protocol(format!("spool: {e}")))?;
        let prepend = stored.envelope.attr(attrs::PREPEND).unwrap_or("").as_bytes().to_vec();
        let smtputf8 = stored.envelope.attr(attrs::SMTPUTF8).is_some();
        let eight_bit = stored.envelope.attr(attrs::EIGHT_BIT).is_some();
        if stored.data_len <= READ_AT_ONCE {
            // a small message, just written, is in the page cache: one plain read here costs
            // less than the blocking pool's round trips of a tokio file (one per seek and read)
            let mut data = Vec::with_capacity(stored.data_len as usize);
            let mut file = stored.file;
            std::io::Seek::seek(&mut file, SeekFrom::Start(stored.data_offset))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, stored.data_len), &mut data)?;
            return self.send_data(client, sender, rcpts, prepend, Data::Own(data), smtputf8, eight_bit).await;
        }
        let mut file = tokio::fs::File::from_std(stored.file);
        file.seek(SeekFrom::Start(stored.data_offset)).await?;
        if eight_bit && !client.extensions.eight_bit && !smtputf8 {
            let mut data = Vec::with_capacity(stored.data_len as usize);
            (&mut file).take(stored.data_len).read_to_end(&mut data).await?;
            return self.send_data(client, sender, rcpts, prepend, Data::Own(data), smtputf8, eight_bit).await;
        }
        let opts = MailOptions { size: Some(stored.data_len + prepend.len() as u64), smtputf8 };
        let body = (&prepend[..]).chain(file.take(stored.data_len));
        client.send_with(sender, rcpts, &opts, body).await
    }

    /// Sends a message whose data is in memory — made 7-bit first for a server without
    /// 8BITMIME (RFC 6152 §3).
    #[allow(clippy::too_many_arguments)]
    async fn send_data(
        &self,
        client: &mut Client,
        sender: &str,
        rcpts: &[String],
        prepend: Vec<u8>,
        data: Data,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Transaction, ClientError> {
        let data = if eight_bit && !client.extensions.eight_bit && !smtputf8 {
            let (data, converted) = tokio::task::spawn_blocking(move || {
                let converted = mime::to_seven_bit(data.bytes());
                (data, converted)
            })
            .await
            .map_err(|e| ClientError::Protocol(format!("converting to 7 bit: {e}")))?;
            converted.map_or(data, Data::Own)
        } else {
            data
        };
        let data = data.bytes();
        let opts = MailOptions { size: Some((prepend.len() + data.len()) as u64), smtputf8 };
        client.send_with(sender, rcpts, &opts, (&prepend[..]).chain(data)).await
    }

    async fn open(&self, addr: SocketAddr, name: &str, try_tls: bool) -> Result<Client, HostError> {
        let unreachable = |e: ClientError| {
            let dead = matches!(e, ClientError::Connect { .. } | ClientError::Timeout("connecting"));
            HostError::Unreachable { error: e.to_string(), dead }
        };
        let mut client = match Client::connect(addr, self.timeouts()).await.map_err(unreachable)? {
            Ok(c) => c,
            Err(greeting) => return Err(HostError::Refused(greeting)),
        };
        let ehlo = client.ehlo(&self.cfg.helo_name).await.map_err(unreachable)?;
        if !ehlo.is_positive() {
            return Err(HostError::Refused(ehlo));
        }
        if try_tls && client.extensions.starttls {
            let server_name =
                ServerName::try_from(name.to_string()).unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
            match client.starttls(&self.tls, server_name).await {
                Ok(true) => {
                    let ehlo = client.ehlo(&self.cfg.helo_name).await.map_err(unreachable)?;
                    if !ehlo.is_positive() {
                        return Err(HostError::Refused(ehlo));
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::info!(event = "starttls_failed", remote = %addr, error = %e);
                    return Box::pin(self.open(addr, name, false)).await;
                }
            }
        }
        Ok(client)
    }

    fn checkout(&self, addr: SocketAddr) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some((client, since)) = list.pop() {
            if since.elapsed() < self.cfg.idle_timeout {
                return Some(client);
            }
        }
        None
    }

    /// Keeps a connection for reuse (the client has reset any transaction left open).
    fn checkin(&self, addr: SocketAddr, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((client, Instant::now()));
        }
    }

    /// Closes connections idle longer than `idle_timeout`.
    pub fn sweep(&self) {
        let mut stale = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            for list in idle.values_mut() {
                let (old, fresh): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|(_, since)| since.elapsed() >= self.cfg.idle_timeout);
                *list = fresh;
                stale.extend(old.into_iter().map(|(c, _)| c));
            }
            idle.retain(|_, l| !l.is_empty());
        }
        for c in stale {
            tokio::spawn(c.quit());
        }
        let ttl = self.cfg.dead_host_ttl;
        self.dead.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (since, _)| since.elapsed() < ttl);
    }

    fn is_dead(&self, addr: SocketAddr) -> Option<String> {
        let dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        dead.get(&addr).filter(|(since, _)| since.elapsed() < self.cfg.dead_host_ttl).map(|(_, why)| why.clone())
    }

    fn mark_dead(&self, addr: SocketAddr, why: &str) {
        self.dead.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, (Instant::now(), why.to_string()));
    }

    /// Forgets every dead-host mark (after `queue flush`).
    pub fn forget_dead(&self) {
        self.dead.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A reply of `503` (bad sequence of commands) anywhere in the transaction: the session was
/// not where we thought, which says nothing about the message.
fn out_of_sequence(tx: &Transaction) -> bool {
    tx.mail.code == 503 || tx.rcpts.iter().any(|r| r.code == 503) || tx.data.as_ref().is_some_and(|d| d.code == 503)
}

fn failed(remote: &str, reply: &Reply) -> Outcome {
    Outcome::Failed { remote: remote.to_string(), status: reply.status(), diagnostic: reply.one_line() }
}

/// Message data in memory: read from the file, or the spool's copy of a recent message.
enum Data {
    Own(Vec<u8>),
    Shared(std::sync::Arc<spool::CommittedMessage>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Own(v) => v,
            Data::Shared(m) => &m.data,
        }
    }
}
