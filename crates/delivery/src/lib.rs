//! The sending side: a scheduler over the spool, routing, SMTP delivery and DSNs.
//!
//! - [`scheduler`]: which message is tried when (fresh mail first, retries apart, back-off).
//! - [`route`]: where a domain's mail goes.
//! - [`courier`]: the SMTP client side, with connection reuse and dead-host memory.
//! - [`dsn`]: RFC 3464 bounces.
//! - [`attempt`]: one delivery attempt of one message, from spool to status.

pub mod attempt;
pub mod courier;
pub mod dsn;
pub mod route;
pub mod scheduler;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use contracts::NextHop;

use spool::{QueueId, Spool};
use tokio::sync::mpsc;

use msglog::MessageLog;

/// `[delivery]`: the sending side (the binary reads it from the configuration file).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long a message is tried before it is bounced (one day).
    pub queue_lifetime: Duration,
    /// First retry interval.
    pub retry_min: Duration,
    /// Longest retry interval.
    pub retry_max: Duration,
    /// Messages in delivery at once.
    pub workers: usize,
    /// Deliveries to one destination domain at once.
    pub per_destination: usize,
    /// Connecting to a host.
    pub connect_timeout: Duration,
    /// Waiting for a reply to a command.
    pub command_timeout: Duration,
    /// Waiting for the reply to the final dot.
    pub data_timeout: Duration,
    /// Port of hosts found by MX lookup.
    pub smtp_port: u16,
    /// Name in our EHLO.
    pub helo_name: String,
    /// Use STARTTLS where a host offers it.
    pub starttls: bool,
    /// How long an idle connection is kept for reuse.
    pub idle_timeout: Duration,
    /// How long a host that refused connections is not tried.
    pub dead_host_ttl: Duration,
    /// Fixed next hops by domain (`[delivery.routes]`).
    pub routes: BTreeMap<String, NextHop>,
    /// DNS servers (empty: the system's).
    pub nameservers: Vec<SocketAddr>,
    /// Per DNS query.
    pub dns_timeout: Duration,
}

/// What every delivery attempt shares.
pub struct DeliveryContext {
    /// The configuration.
    pub cfg: DeliveryConfig,
    /// The spool.
    pub spool: Spool,
    /// Where mail for a domain goes.
    pub router: route::Router,
    /// The SMTP client side.
    pub courier: courier::Courier,
    /// Name in DSNs' `Reporting-MTA`.
    pub hostname: String,
    /// `From:` of DSNs.
    pub postmaster: String,
    /// Queues a message we generated (a DSN) for delivery.
    pub queued: mpsc::Sender<QueueId>,
    /// The message log: each recipient's outcome goes there.
    pub msglog: MessageLog,
    /// Deliveries in progress per destination domain.
    pub destinations: Destinations,
    /// The queue's size, as the scheduler last counted it.
    pub queue_size: QueueSize,
}

/// The queue's size, counted by the scheduler every second (for the node's heartbeat).
#[derive(Debug, Default)]
pub struct QueueSize {
    active: std::sync::atomic::AtomicU64,
    deferred: std::sync::atomic::AtomicU64,
    oldest_deferred: std::sync::atomic::AtomicU64,
}

impl QueueSize {
    /// Messages waiting for a first attempt or being attempted, and messages waiting for a retry.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.active.load(Relaxed), self.deferred.load(Relaxed))
    }

    /// When the oldest message waiting for a retry was queued (Unix seconds; 0: none).
    pub fn oldest_deferred(&self) -> u64 {
        self.oldest_deferred.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, active: usize, deferred: usize, oldest_deferred: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.active.store(active as u64, Relaxed);
        self.deferred.store(deferred as u64, Relaxed);
        self.oldest_deferred.store(oldest_deferred, Relaxed);
    }
}

/// Counts deliveries in progress per destination domain, so one destination (a customer
/// server that never answers) can hold at most `per_destination` of the workers.
#[derive(Debug, Default)]
pub struct Destinations {
    busy: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    freed: std::sync::Mutex<Vec<String>>,
    freed_signal: tokio::sync::Notify,
}

/// A delivery slot for one destination, given back when dropped.
pub struct DestinationSlot<'a> {
    owner: &'a Destinations,
    domain: String,
}

impl Destinations {
    /// Domains whose slot was given back since the last call (for the scheduler: messages
    /// waiting for a slot of one of them are tried now, not seconds later).
    pub fn take_freed(&self) -> Vec<String> {
        std::mem::take(&mut *self.freed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Woken whenever a slot is given back.
    pub fn freed_signal(&self) -> &tokio::sync::Notify {
        &self.freed_signal
    }

    /// A slot for `domain` if fewer than `max` deliveries to it are in progress.
    pub fn try_take(&self, domain: &str, max: usize) -> Option<DestinationSlot<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let n = busy.entry(domain.to_ascii_lowercase()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(DestinationSlot { owner: self, domain: domain.to_ascii_lowercase() })
    }
}

impl Drop for DestinationSlot<'_> {
    fn drop(&mut self) {
        let mut busy = self.owner.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = busy.get_mut(&self.domain) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.domain);
            }
        }
        drop(busy);
        self.owner.freed.lock().unwrap_or_else(|e| e.into_inner()).push(std::mem::take(&mut self.domain));
        self.owner.freed_signal.notify_one();
    }
}

/// Shared handle.
pub type Ctx = Arc<DeliveryContext>;

/// Unix time in milliseconds (the unit of the spool's next-attempt times).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why the delivery side could not start or queue a message it generated.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The DNS resolver could not be set up.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// The spool failed.
    #[error("spool: {0}")]
    Spool(#[from] spool::SpoolError),
    /// The original message could not be read.
    #[error("reading the original message: {0}")]
    Io(#[from] std::io::Error),
    /// A background task failed.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
