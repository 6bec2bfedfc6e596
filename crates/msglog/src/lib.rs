//! The message log (SPEC R19): one record per message in the embedded store (an SQLite file
//! beside the spool) with its scan result and action, and each recipient's delivery outcome as
//! it happens. Records are written by one background task in batches, so the SMTP path only
//! sends them down a channel; retention is enforced hourly.

pub mod search;
mod store;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use store::{LogStore, LogStoreError};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
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

/// Records waiting for the writer at most; beyond, new ones are shed (counted, logged): the log
/// never makes the mail path wait, and never holds unbounded memory.
const QUEUE: usize = 50_000;

/// The sending side, cheap to clone; a disabled log drops every record.
#[derive(Clone, Default)]
pub struct MessageLog {
    tx: Option<mpsc::Sender<Event>>,
    shed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl MessageLog {
    /// Opens the store at `path` and starts the writer; the task ends (after writing what it
    /// has) once every clone of the returned log is dropped. The log never stops mail: a
    /// damaged file is set aside (`messages.db.damaged-<time>`) and a new one started; if no
    /// store can be opened at all, the gateway runs without a message log, loudly.
    pub async fn start(path: &Path, retention: Duration) -> (MessageLog, JoinHandle<()>) {
        let store = match LogStore::open(path).await {
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
        };
        let Some(store) = store else { return (MessageLog::default(), tokio::spawn(async {})) };
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(writer(store, rx, retention));
        (MessageLog { tx: Some(tx), shed: Default::default() }, handle)
    }

    /// Logs a message.
    pub fn message(&self, record: MessageRecord) {
        self.send(Event::Message(Box::new(record)));
    }

    /// Logs a recipient's outcome.
    pub fn delivery(&self, record: DeliveryRecord) {
        self.send(Event::Delivery(record));
    }

    /// Records shed so far because the writer was too far behind.
    pub fn shed(&self) -> u64 {
        self.shed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn send(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(event) {
            let n = self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
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

async fn writer(store: LogStore, mut rx: mpsc::Receiver<Event>, retention: Duration) {
    // hourly, or more often for a retention shorter than two hours
    let every = (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut purge = tokio::time::interval(every);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            got = rx.recv_many(&mut batch, BATCH) => {
                if got == 0 {
                    break;
                }
                let (mut messages, mut deliveries) = (Vec::new(), Vec::new());
                for e in batch.drain(..) {
                    match e {
                        Event::Message(m) => messages.push(*m),
                        Event::Delivery(d) => deliveries.push(d),
                    }
                }
                // messages first: a delivery in the same batch may be about one of them
                write_until_done(&store, &messages, &deliveries, rx.is_closed()).await;
            }
            _ = purge.tick() => {
                let before = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
                match store.purge(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(event = "message_log_purged", messages = n),
                    Err(e) => tracing::error!(event = "message_log_error", error = %e),
                }
            }
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
