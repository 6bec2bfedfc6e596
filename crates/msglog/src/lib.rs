//! The message log (SPEC R19): one record per message with its scan result and action, and
//! each recipient's delivery outcome as it happens — in an SQLite file beside the spool (one
//! host) or in the PostgreSQL database several nodes share ([`LogLocation`]). Records are
//! written by one background task in batches, so the SMTP path only sends them down a channel;
//! retention is enforced hourly. With a shared database, records written while it is away go
//! to a local journal and on to the database when it returns, each exactly once.

mod journal;
pub mod search;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use store::{
    BulkCluster, HourlyMessages, HourlyOutcomes, LogLocation, LogStore, LogStoreError, OutboundOutcome, SpamCount,
    TimelineEvent,
};

use journal::{Appended, Entry, Journal};

/// One scanned part, as logged.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PartRecord {
    /// Where it is: `message › part 2 (a.zip) › eicar.com`.
    pub path: String,
    /// Decoded file name, if it had one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
    /// `Eicar-Test-Signature FOUND`, `Encrypted.Zip ENCRYPTED` …
    pub verdict: String,
}

/// What is logged about a message: the same when it is written and when it is found.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct MessageSummary {
    /// Unix seconds.
    pub at: i64,
    /// Queue id.
    pub queue_id: String,
    /// The node that handled it (`node_id`).
    #[serde(default)]
    pub node: String,
    /// Contract id(s), comma-separated (empty for none).
    pub contract: String,
    /// `inbound`, `outbound`, `warning` or `dsn`.
    pub direction: String,
    /// The SMTP client's address.
    pub client_ip: String,
    /// Envelope sender (empty for `<>`).
    pub sender: String,
    /// Message bytes.
    pub size: u64,
    /// `Message-ID` of the message.
    pub message_id: String,
    /// `Subject` of the message, decoded.
    pub subject: String,
    /// The scan verdict in a word (`clean`, `infected` …).
    pub verdict: String,
    /// The signature database version the verdict was made with (`release-7`, `clamd …`).
    #[serde(default)]
    pub signatures: String,
    /// Virus names found.
    pub viruses: Vec<String>,
    /// What was done (`deliver`, `rewrite`, `drop`, `refuse` …).
    pub action: String,
    /// What the result header says.
    pub result: String,
    /// The SMTP reply given to the client.
    pub reply: String,
    /// For warnings and DSNs: the queue id of the message they are about.
    pub related: String,
    /// Each scanned part with its verdict.
    pub parts: Vec<PartRecord>,
}

/// Where a recipient of a logged message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub enum RcptState {
    /// In the queue, not delivered yet.
    #[default]
    Queued,
    /// Deleted for a virus (never queued for delivery).
    Dropped,
    /// Refused at SMTP time.
    Refused,
    /// Accepted by the next hop.
    Delivered,
    /// Tried and to be tried again.
    Deferred,
    /// Given up on (a DSN goes to the sender).
    Bounced,
    /// Deleted from the queue by the operator.
    Deleted,
}

impl RcptState {
    /// The word stored and searched for.
    pub fn as_str(self) -> &'static str {
        match self {
            RcptState::Queued => "queued",
            RcptState::Dropped => "dropped",
            RcptState::Refused => "refused",
            RcptState::Delivered => "delivered",
            RcptState::Deferred => "deferred",
            RcptState::Bounced => "bounced",
            RcptState::Deleted => "deleted",
        }
    }
}

/// A message as logged when it is received (or generated).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct MessageRecord {
    /// What is logged about the message.
    pub summary: MessageSummary,
    /// Its recipients.
    pub recipients: Vec<String>,
    /// The state every recipient starts in: queued, dropped or refused.
    pub initial_state: RcptState,
}

impl MessageRecord {
    /// The record of a message the gateway generated (a warning or a DSN) about `related`.
    pub fn generated(
        queue_id: &str,
        contract: &str,
        direction: &str,
        subject: &str,
        size: u64,
        related: &str,
        to: &str,
    ) -> MessageRecord {
        MessageRecord {
            summary: MessageSummary {
                at: chrono::Utc::now().timestamp(),
                queue_id: queue_id.into(),
                contract: contract.into(),
                direction: direction.into(),
                size,
                subject: subject.into(),
                action: "deliver".into(),
                related: related.into(),
                ..Default::default()
            },
            recipients: vec![to.into()],
            initial_state: RcptState::Queued,
        }
    }
}

/// A recipient's outcome.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct DeliveryRecord {
    /// Unique per outcome, so that it is applied once however often it is written (empty: one
    /// is made when it is sent or written).
    #[serde(default)]
    pub event_id: String,
    /// Queue id of the message.
    pub queue_id: String,
    /// The recipient.
    pub rcpt: String,
    /// Delivered, deferred, bounced or deleted (by the operator).
    pub state: RcptState,
    /// The host that answered (empty if none).
    pub remote: String,
    /// Its reply or the error.
    pub reply: String,
    /// Unix seconds.
    pub at: i64,
}

enum Event {
    Message(Box<MessageRecord>),
    Delivery(DeliveryRecord),
}

/// A fresh event id: unique across restarts and nodes (time the process started, its id, a
/// counter).
pub fn fresh_event_id() -> String {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let start = START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{start:x}-{:x}-{:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Records waiting for the writer at most; beyond, new ones are shed (counted, logged): the log
/// never makes the mail path wait, and never holds unbounded memory.
const QUEUE: usize = 50_000;

/// The sending side, cheap to clone; a disabled log drops every record.
#[derive(Clone, Default)]
pub struct MessageLog {
    tx: Option<mpsc::Sender<Event>>,
    shed: std::sync::Arc<AtomicU64>,
}

/// How long a node waits for a shared log database before it journals (at start, and for
/// each batch).
const SHARED_TIMEOUT: Duration = Duration::from_secs(5);

impl MessageLog {
    /// Opens the log at `location` and starts the writer, which stamps every message with
    /// `node`; the task ends (after writing what it has) once every clone of the returned log
    /// is dropped. The log never stops mail: a damaged SQLite file is set aside
    /// (`messages.db.damaged-<time>`) and a new one started; a shared database that is away is
    /// replaced by the local journal until it returns; if nothing can be opened at all, the
    /// gateway runs without a message log, loudly.
    pub async fn start(location: &LogLocation, retention: Duration, node: &str) -> (MessageLog, JoinHandle<()>) {
        let shed: std::sync::Arc<AtomicU64> = Default::default();
        let sink = match location {
            LogLocation::File(path) => match open_file(path).await {
                Some(store) => Sink::File(store),
                None => return (MessageLog::default(), tokio::spawn(async {})),
            },
            LogLocation::Shared { url, journal, journal_max } => {
                let journal = match Journal::open(journal, *journal_max).await {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::error!(event = "message_log_unavailable", journal = %journal.display(), error = %e,
                            "the local journal cannot be opened: running without a message log");
                        return (MessageLog::default(), tokio::spawn(async {}));
                    }
                };
                let store = match tokio::time::timeout(SHARED_TIMEOUT, LogStore::connect(url)).await {
                    Ok(Ok(s)) => Some(s),
                    Ok(Err(e)) => {
                        tracing::warn!(event = "message_log_journaling", error = %e, "the shared message log cannot be reached: records go to the local journal");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(
                            event = "message_log_journaling",
                            error = "no answer",
                            "the shared message log cannot be reached: records go to the local journal"
                        );
                        None
                    }
                };
                if journal.len > 0 {
                    tracing::info!(event = "message_log_journal_pending", records = journal.len);
                }
                Sink::Shared(Shared {
                    url: url.clone(),
                    store,
                    journal,
                    away: false,
                    next_try: (tokio::time::Instant::now(), Duration::ZERO),
                    shed: shed.clone(),
                })
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(writer(sink, rx, retention, node.to_string()));
        (MessageLog { tx: Some(tx), shed }, handle)
    }

    /// Logs a message.
    pub fn message(&self, record: MessageRecord) {
        self.send(Event::Message(Box::new(record)));
    }

    /// Logs a recipient's outcome.
    pub fn delivery(&self, mut record: DeliveryRecord) {
        if record.event_id.is_empty() {
            record.event_id = fresh_event_id();
        }
        self.send(Event::Delivery(record));
    }

    /// Records shed so far because the writer was too far behind (or the journal was full).
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    fn send(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(event) {
            let n = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(
                    event = "message_log_shed",
                    records = n,
                    "the message log writer is behind; records dropped"
                );
            }
        }
    }
}

/// Opens an SQLite log, setting a damaged file aside.
async fn open_file(path: &Path) -> Option<LogStore> {
    match LogStore::open(path).await {
        Ok(s) => Some(s),
        Err(e) if e.is_damaged_file() => {
            let kept = set_aside(path);
            tracing::error!(
                event = "message_log_damaged", path = %path.display(), error = %e,
                kept_as = %kept.as_ref().map_or_else(|e| format!("(not moved: {e})"), |p| p.display().to_string()),
                "the damaged message log was set aside and a new one started"
            );
            LogStore::open(path)
                .await
                .map_err(|e| tracing::error!(event = "message_log_unavailable", path = %path.display(), error = %e))
                .ok()
        }
        Err(e) => {
            tracing::error!(event = "message_log_unavailable", path = %path.display(), error = %e,
                "running without a message log");
            None
        }
    }
}

/// Moves a damaged log file (and its WAL and shared-memory files) out of the way.
fn set_aside(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let target = path.with_file_name(format!(
        "{}.damaged-{stamp}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    std::fs::rename(path, &target)?;
    for ext in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(ext);
        let mut side_target = target.as_os_str().to_owned();
        side_target.push(ext);
        let _ = std::fs::rename(&side, &side_target);
    }
    Ok(target)
}

/// Most events written in one transaction.
const BATCH: usize = 512;

/// How long the writer gathers records before it writes a batch.
const LINGER: Duration = Duration::from_millis(100);

/// Longest wait between two tries of a batch the store refused.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Writes a batch, trying again (with a growing pause) for as long as the store refuses it —
/// a locked or busy file loses nothing; new records wait in the channel meanwhile. Only when
/// the gateway is stopping and the store still refuses are the records given up, loudly.
async fn write_until_done(store: &LogStore, messages: &[MessageRecord], deliveries: &[DeliveryRecord], closing: bool) {
    let mut wait = Duration::from_millis(500);
    for tries in 1.. {
        match store.write(messages, deliveries).await {
            Ok(()) => {
                if tries > 1 {
                    tracing::warn!(event = "message_log_recovered", tries, records = messages.len() + deliveries.len());
                }
                return;
            }
            Err(e) if closing && tries >= 3 => {
                tracing::error!(event = "message_log_lost", error = %e, records = messages.len() + deliveries.len());
                return;
            }
            Err(e) => {
                tracing::error!(event = "message_log_error", error = %e, tries, waiting = messages.len() + deliveries.len(),
                    "the message log refused a batch; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
}

/// Where the writer puts records.
enum Sink {
    File(LogStore),
    Shared(Shared),
}

/// A shared database and the local journal that stands in for it.
struct Shared {
    url: String,
    store: Option<LogStore>,
    journal: Journal,
    /// Whether the database was found away (logged once, until it returns).
    away: bool,
    /// While it is away: when to try it next (the pause grows to 5 s).
    next_try: (tokio::time::Instant, Duration),
    shed: std::sync::Arc<AtomicU64>,
}

impl Shared {
    /// Writes a batch to the database — unless records wait in the journal (order is kept) or
    /// the database is away, in which case the batch goes to the journal.
    async fn write(&mut self, entries: Vec<Entry>) {
        if self.journal.len == 0
            && let Some(store) = &self.store
        {
            let (messages, deliveries) = split(entries.iter());
            match tokio::time::timeout(SHARED_TIMEOUT, store.write(&messages, &deliveries)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => self.went_away(&e.to_string()),
                Err(_) => self.went_away("no answer"),
            }
        }
        self.journal_append(&entries).await;
    }

    async fn journal_append(&mut self, entries: &[Entry]) {
        match self.journal.append(entries).await {
            Ok(Appended::All) => {}
            Ok(Appended::Dropped(n)) => {
                let total = self.shed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                tracing::error!(
                    event = "message_log_journal_full",
                    dropped = n,
                    shed_total = total,
                    "the local message-log journal is full ([log] journal_max): records dropped until the database returns"
                );
            }
            Err(e) => {
                let total = self.shed.fetch_add(entries.len() as u64, Ordering::Relaxed) + entries.len() as u64;
                tracing::error!(event = "message_log_lost", error = %e, records = entries.len(), shed_total = total,
                    "the local message-log journal cannot be written");
            }
        }
    }

    fn went_away(&mut self, why: &str) {
        let pause = (self.next_try.1 * 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
        self.next_try = (tokio::time::Instant::now() + pause, pause);
        if !std::mem::replace(&mut self.away, true) {
            tracing::warn!(event = "message_log_journaling", error = %why,
                "the shared message log cannot be written: records go to the local journal");
        }
    }

    /// Moves what the journal holds to the database, oldest first, while it accepts.
    async fn drain(&mut self) {
        if (self.journal.len == 0 && self.store.is_some()) || tokio::time::Instant::now() < self.next_try.0 {
            return;
        }
        if self.store.is_none() {
            match tokio::time::timeout(SHARED_TIMEOUT, LogStore::connect(&self.url)).await {
                Ok(Ok(s)) => self.store = Some(s),
                Ok(Err(e)) => return self.went_away(&e.to_string()),
                Err(_) => return self.went_away("no answer"),
            }
        }
        let Some(store) = self.store.clone() else { return };
        let mut moved = 0u64;
        while self.journal.len > 0 {
            let (entries, last) = match self.journal.oldest(BATCH).await {
                Ok(got) => got,
                Err(e) => {
                    tracing::error!(event = "message_log_error", error = %e, "the local journal cannot be read");
                    return;
                }
            };
            let (messages, deliveries) = split(entries.iter());
            match tokio::time::timeout(SHARED_TIMEOUT, store.write(&messages, &deliveries)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return self.went_away(&e.to_string()),
                Err(_) => return self.went_away("no answer"),
            }
            if let Err(e) = self.journal.remove_through(last).await {
                // written again next time: the database applies it once
                tracing::error!(event = "message_log_error", error = %e, "the local journal cannot be trimmed");
                return;
            }
            moved += entries.len() as u64;
        }
        self.next_try.1 = Duration::ZERO;
        if std::mem::replace(&mut self.away, false) || moved > 0 {
            tracing::info!(
                event = "message_log_journal_drained",
                records = moved,
                "the shared message log is written again"
            );
        }
    }
}

/// The messages and the outcomes of a batch, in order.
fn split<'a>(entries: impl Iterator<Item = &'a Entry>) -> (Vec<MessageRecord>, Vec<DeliveryRecord>) {
    let (mut messages, mut deliveries) = (Vec::new(), Vec::new());
    for e in entries {
        match e {
            Entry::Message(m) => messages.push((**m).clone()),
            Entry::Delivery(d) => deliveries.push(d.clone()),
        }
    }
    (messages, deliveries)
}

async fn writer(mut sink: Sink, mut rx: mpsc::Receiver<Event>, retention: Duration, node: String) {
    // hourly, or more often for a retention shorter than two hours
    let every = (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut purge = tokio::time::interval(every);
    let mut drain = tokio::time::interval(Duration::from_secs(1));
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            got = rx.recv_many(&mut batch, BATCH) => {
                if got == 0 {
                    break;
                }
                // one commit per batch: gathering for a moment makes a few large batches of
                // many small ones (a shared database is often on another host; each
                // statement to SQLite is a hand-off to its worker thread)
                let until = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    match tokio::time::timeout_at(until, rx.recv_many(&mut batch, room)).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                let entries: Vec<Entry> = batch.drain(..).map(|e| match e {
                    Event::Message(mut m) => {
                        m.summary.node.clone_from(&node);
                        Entry::Message(m)
                    }
                    Event::Delivery(d) => Entry::Delivery(d),
                }).collect();
                match &mut sink {
                    Sink::File(store) => {
                        // messages first: a delivery in the same batch may be about one of them
                        let (mut messages, mut deliveries) = (Vec::new(), Vec::new());
                        for e in entries {
                            match e {
                                Entry::Message(m) => messages.push(*m),
                                Entry::Delivery(d) => deliveries.push(d),
                            }
                        }
                        write_until_done(store, &messages, &deliveries, rx.is_closed()).await;
                    }
                    Sink::Shared(shared) => shared.write(entries).await,
                }
            }
            _ = drain.tick() => {
                if let Sink::Shared(shared) = &mut sink {
                    shared.drain().await;
                }
            }
            _ = purge.tick() => {
                let store = match &sink {
                    Sink::File(store) => Some(store),
                    Sink::Shared(shared) => shared.store.as_ref(),
                };
                let Some(store) = store else { continue };
                let before = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
                match store.purge(before, every.as_secs() as i64).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(event = "message_log_purged", messages = n),
                    Err(e) => tracing::error!(event = "message_log_error", error = %e),
                }
            }
        }
    }
    // stopping: what the journal holds goes now if the database is there, else at next start
    if let Sink::Shared(shared) = &mut sink {
        shared.drain().await;
        if shared.journal.len > 0 {
            tracing::warn!(
                event = "message_log_journal_pending",
                records = shared.journal.len,
                "records stay in the local journal until the shared message log can be written"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that cannot keep up makes the log shed records and count them; the caller
    /// never waits.
    #[test]
    fn a_full_queue_sheds_and_counts() {
        let (tx, _rx) = mpsc::channel(2);
        let log = MessageLog { tx: Some(tx), shed: Default::default() };
        for _ in 0..5 {
            log.message(MessageRecord::default());
        }
        assert_eq!(log.shed(), 3);
    }
}
