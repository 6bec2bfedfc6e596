//! The receiving side: listeners, connection limits, sessions and graceful shutdown.
//!
//! - [`policy`]: the relay decisions as pure functions.
//! - [`refusal`]: every cause of a refusal and the one table of their replies.
//! - [`session`]: [`session::GatewaySession`], the gateway's [`smtp::server::Policy`].
//! - [`hops`]: loop detection by counting `Received:` headers.
//! - [`strip`]: incoming header fields we own are removed (no forged scan results).

pub mod hops;
pub mod policy;
pub mod refusal;
pub mod session;
pub mod strip;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smtp::server::{Session, SessionConfig};
use spool::{QueueId, Spool};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError, mpsc, watch};

use contracts::LiveContracts;
use filter::Filter;
use msglog::MessageLog;

/// `[smtp]`: the receiving side (the binary reads it from the configuration file).
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Our name in the greeting, EHLO and `Received:`.
    pub hostname: String,
    /// Sessions at once.
    pub max_connections: usize,
    /// Sessions one client address may hold at once.
    pub max_connections_per_client: usize,
    /// Of `max_connections`, slots only the contracts' registered sending servers may take.
    pub reserved_connections: usize,
    /// Recipients in one transaction.
    pub max_recipients: usize,
    /// Largest message, in bytes.
    pub max_message_size: u64,
    /// Longest command line.
    pub max_line_length: usize,
    /// Bad commands before the session is closed.
    pub max_errors: u32,
    /// More `Received:` headers than this is a loop.
    pub max_received_headers: usize,
    /// Waiting for a command.
    pub command_timeout: Duration,
    /// Waiting for each block of message data.
    pub data_timeout: Duration,
    /// All of one message's DATA.
    pub data_total_timeout: Duration,
    /// How long sessions may finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Certificate and key for STARTTLS.
    pub tls: Option<TlsFiles>,
}

/// `[smtp.tls]`: certificate chain and key for STARTTLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Everything a session needs, shared by all sessions.
pub struct InboundContext {
    /// The receiving side's configuration.
    pub smtp: SmtpConfig,
    /// The spool.
    pub spool: Spool,
    /// The contracts in force.
    pub contracts: LiveContracts,
    /// The filter stage.
    pub filter: Filter,
    /// Tells delivery that a message was queued.
    pub queued: mpsc::Sender<QueueId>,
    /// The message log (R19).
    pub msglog: MessageLog,
    /// The gateway's postmaster address, and where its mail goes (`None`: to that address).
    pub postmaster: String,
    /// Where its mail goes (`None`: to that address).
    pub postmaster_forward: Option<String>,
    /// Contracts whose outbound mail is held by the operator's policy on a measured condition
    /// of use (R18): deferred or refused while the finding stands.
    pub held: HeldContracts,
    /// The bulk meter accepted messages are offered to after their `250` (`None`: off).
    pub bulk: Option<bulk::meter::Meter>,
    /// The spam meter outbound messages are offered to after their `250` (`None`: no engine).
    pub spam: Option<bulk::spam::SpamMeter>,
    /// The open-relay probe's canaries ([`bulk::canary`]): the domain they are addressed at and
    /// where their arrivals go (`None`: no canary is recognised).
    pub canaries: Option<Canaries>,
    /// Whether `mxshield_contract_messages_total` counts messages per contract (`[admin]
    /// metrics_by_contract`; a label value per contract, so switchable off for many contracts).
    pub metrics_by_contract: bool,
}

/// Where the canaries of the open-relay probe are received and reported.
#[derive(Debug, Clone)]
pub struct Canaries {
    /// The domain of the canary addresses (one this gateway receives for: its MX or address
    /// record points here).
    pub domain: String,
    /// Each arrival, once its message has been received whole (bounded; a full channel drops
    /// the report with a warning, the probe then finds no arrival and says so).
    pub arrivals: mpsc::Sender<CanaryArrival>,
}

/// A canary received: the proof that a probed server relayed it.
#[derive(Debug, Clone)]
pub struct CanaryArrival {
    /// The probe's token.
    pub token: String,
    /// When (Unix seconds).
    pub at: i64,
    /// The client that delivered it (the relaying server, or a hop after it).
    pub client: IpAddr,
    /// The client's EHLO name.
    pub helo: String,
    /// The envelope sender.
    pub sender: String,
    /// The message's beginning (its header section shows the path it took), at most 16 KiB.
    pub head: String,
}

/// How a contract's outbound mail is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// `451 4.7.1`: try later (the policy `defer`).
    Defer(String),
    /// `550 5.7.1` (the policy `refuse`).
    Refuse(String),
}

/// The contracts whose outbound mail is held, and why — replaced whole by whoever measures
/// the conditions; read at every outbound `RCPT`.
#[derive(Debug, Clone, Default)]
pub struct HeldContracts(std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Hold>>>);

impl HeldContracts {
    /// Replaces the set.
    pub fn set(&self, held: std::collections::HashMap<String, Hold>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = held;
    }

    /// How contract `id`'s outbound mail is held, if it is.
    pub fn get(&self, id: &str) -> Option<Hold> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

/// Session slots: `max_connections` in all, of which `reserved` only the contracts' registered
/// sending servers may take (strangers cannot crowd the customers out), and at most
/// `per_client` held by one client address.
pub struct Slots {
    shared: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    total: (usize, usize),
    per_client: usize,
    by_client: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// A session slot, given back when dropped.
pub struct SlotGuard {
    slots: Arc<Slots>,
    client: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut map = self.slots.by_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

/// Why a connection got no slot.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot it may take is in use.
    Full,
    /// Its address already holds `max_connections_per_client` sessions.
    PerClient,
}

impl Slots {
    /// `max` slots, `reserved` of them for sending servers, `per_client` per address.
    pub fn new(max: usize, reserved: usize, per_client: usize) -> Arc<Slots> {
        let reserved = reserved.min(max.saturating_sub(1));
        Arc::new(Slots {
            shared: Arc::new(Semaphore::new(max - reserved)),
            reserved: Arc::new(Semaphore::new(reserved)),
            total: (max - reserved, reserved),
            per_client,
            by_client: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `client`; `registered` says it is a contract's sending server.
    pub fn take(self: &Arc<Self>, client: IpAddr, registered: bool) -> Result<SlotGuard, NoSlot> {
        let mut map = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.get(&client).copied().unwrap_or(0);
        if held >= self.per_client {
            return Err(NoSlot::PerClient);
        }
        let permit = self.shared.clone().try_acquire_owned().or_else(|_| {
            if registered { self.reserved.clone().try_acquire_owned() } else { Err(TryAcquireError::NoPermits) }
        });
        let permit = permit.map_err(|_| NoSlot::Full)?;
        *map.entry(client).or_default() += 1;
        Ok(SlotGuard { slots: self.clone(), client, _permit: permit })
    }

    /// Waits until every slot is free again (sessions drained).
    async fn drained(&self) {
        let _a = self.shared.acquire_many(self.total.0 as u32).await;
        let _b = self.reserved.acquire_many(self.total.1 as u32).await;
    }
}

/// Serves SMTP on `listeners` until `shutdown` turns true, then lets sessions finish for up
/// to `shutdown_timeout`.
pub async fn serve(
    ctx: Arc<InboundContext>,
    listeners: Vec<TcpListener>,
    session_config: SessionConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let smtp = &ctx.smtp;
    let slots = Slots::new(smtp.max_connections, smtp.reserved_connections, smtp.max_connections_per_client);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let (ctx, slots, cfg, stop) = (ctx.clone(), slots.clone(), session_config.clone(), shutdown.clone());
        accept_tasks.push(tokio::spawn(accept_loop(ctx, listener, slots, cfg, stop)));
    }
    let _ = shutdown.wait_for(|s| *s).await;
    for t in &accept_tasks {
        t.abort();
    }
    let drained = tokio::time::timeout(ctx.smtp.shutdown_timeout, slots.drained()).await;
    match drained {
        Ok(_) => tracing::info!(event = "sessions_drained"),
        Err(_) => tracing::warn!(event = "sessions_cut", after = ?ctx.smtp.shutdown_timeout),
    }
}

async fn accept_loop(
    ctx: Arc<InboundContext>,
    listener: TcpListener,
    slots: Arc<Slots>,
    cfg: SessionConfig,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(event = "accept_failed", error = %e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = peer.ip();
        let registered = ctx.contracts.get().sending_contract(client, ctx.contracts.today()).is_some();
        match slots.take(client, registered) {
            Ok(slot) => {
                let (ctx, cfg, stop) = (ctx.clone(), cfg.clone(), shutdown.clone());
                metrics::gauge!("mxshield_smtp_sessions").increment(1.0);
                tokio::spawn(async move {
                    run_session(ctx, stream, peer, cfg, stop).await;
                    drop(slot);
                    metrics::gauge!("mxshield_smtp_sessions").decrement(1.0);
                });
            }
            Err(why) => {
                let (reason, cause) = match why {
                    NoSlot::Full => ("full", refusal::Cause::Busy),
                    NoSlot::PerClient => ("per_client", refusal::Cause::BusyClient),
                };
                metrics::counter!("mxshield_smtp_sessions_refused_total", "reason" => reason).increment(1);
                tokio::spawn(async move {
                    let (mut s, reply) = (stream, cause.reply());
                    let mut wire = Vec::new();
                    reply.write_to(&mut wire);
                    let _ = s.write_all(&wire).await;
                    tracing::info!(event = "refused", stage = "connect", client_ip = %client, cause = %cause,
                        reply = %reply.one_line());
                });
            }
        }
    }
}

async fn run_session(
    ctx: Arc<InboundContext>,
    stream: TcpStream,
    peer: SocketAddr,
    cfg: SessionConfig,
    shutdown: watch::Receiver<bool>,
) {
    let client = peer.ip();
    let policy = session::GatewaySession::new(ctx, client);
    match Session::new(Box::new(stream), policy, cfg, Some(shutdown)).run().await {
        Ok(end) => tracing::debug!(event = "session_end", client_ip = %client, end = ?end),
        Err(e) => tracing::debug!(event = "session_end", client_ip = %client, error = %e),
    }
}
