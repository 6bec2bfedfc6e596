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
    pub queue_id: String,
    pub contract: String,
    pub direction: String,
    pub client_ip: String,
    pub sender: String,
    pub size: u64,
    pub message_id: String,
    pub subject: String,
    pub verdict: String,
    pub viruses: Vec<String>,
    pub action: String,
    pub result: String,
    pub reply: String,
    pub related: String,
    pub parts: Vec<PartRecord>,
}

/// A message as logged when it is received (or generated).
#[derive(Debug, Clone, Default)]
pub struct MessageRecord {
    pub summary: MessageSummary,
    pub recipients: Vec<String>,
    /// The state every recipient starts in: `queued`, `dropped` or `refused`.
    pub initial_state: &'static str,
}

/// A recipient's outcome.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub queue_id: String,
    pub rcpt: String,
    /// `delivered`, `deferred` or `bounced`.
    pub state: &'static str,
    pub remote: String,
    pub reply: String,
    pub at: i64,
}

enum Event {
    Message(Box<MessageRecord>),
    Delivery(DeliveryRecord),
}

/// The sending side, cheap to clone; a disabled log drops every record.
#[derive(Clone, Default)]
pub struct MessageLog {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl MessageLog {
    /// Opens the store at `path` and starts the writer; the task ends (after writing what it
    /// has) once every clone of the returned log is dropped.
    pub async fn start(path: &Path, retention: Duration) -> Result<(MessageLog, JoinHandle<()>), LogStoreError> {
        let store = LogStore::open(path).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(writer(store, rx, retention));
        Ok((MessageLog { tx: Some(tx) }, handle))
    }

    /// Logs a message.
    pub fn message(&self, record: MessageRecord) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event::Message(Box::new(record)));
        }
    }

    /// Logs a recipient's outcome.
    pub fn delivery(&self, record: DeliveryRecord) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event::Delivery(record));
        }
    }
}

/// Most events written in one transaction.
const BATCH: usize = 512;

async fn writer(store: LogStore, mut rx: mpsc::UnboundedReceiver<Event>, retention: Duration) {
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
                if let Err(e) = store.write(&messages, &deliveries).await {
                    tracing::error!(event = "message_log_error", error = %e, lost = messages.len() + deliveries.len());
                }
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
