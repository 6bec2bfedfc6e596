//! The bulk meter of a running gateway: accepted messages are offered to it after their
//! `250` (a bounded queue; a full queue drops the offer and counts it in
//! `mxshield_bulk_unmetered_total` — metering never holds mail up); its own thread
//! fingerprints them, counts their copies in each contract's [`Clusters`], and flushes the
//! counts to the message log's database every `every`, where the nodes' counts are summed:
//! a local cluster is matched to a shared one (the same rule as on a node) or recorded as new.
//! A flush that fails keeps its counts for the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::{AGREE, Clusters, agreement, carried_hex, fingerprint, minhash_from_hex, minhash_hex};

/// Offers waiting at most; beyond, offers are dropped (and counted).
const QUEUE: usize = 10_000;

/// Messages read from their spool files in flight at most (each holds an open file).
const LARGE_IN_FLIGHT: usize = 32;
/// Of a message read from its file, its beginning is fingerprinted (as much as a message kept
/// in memory: the cost of metering does not grow with the size of the attachments).
const LARGE_READ_MAX: u64 = 256 * 1024;

/// One accepted message: its delivered copies for a contract.
pub struct Offer {
    /// The contract.
    pub contract: String,
    /// Recipients it is delivered to for that contract.
    pub copies: u64,
    /// When (Unix seconds).
    pub at: i64,
    /// The message as committed.
    pub message: Body,
}

/// Where an offered message's bytes are.
#[derive(Clone)]
pub enum Body {
    /// In memory (a small message, from the spool's recent copies).
    Memory(Arc<spool::CommittedMessage>),
    /// In its spool file, held open: readable even once delivered and removed.
    File(Arc<LargeMessage>),
}

impl Body {
    /// The message in memory, if it is there.
    pub fn in_memory(&self) -> Option<Arc<spool::CommittedMessage>> {
        match self {
            Body::Memory(m) => Some(m.clone()),
            Body::File(_) => None,
        }
    }
}

/// A message too large to be kept in memory, read by the meter from its open spool file.
pub struct LargeMessage {
    file: std::fs::File,
    offset: u64,
    len: u64,
    _slot: Slot,
}

impl LargeMessage {
    /// The message data of an open spool file (`offset`, `len` as the spool gives them),
    /// holding `slot` until it is read.
    pub fn new(file: std::fs::File, offset: u64, len: u64, slot: Slot) -> LargeMessage {
        LargeMessage { file, offset, len, _slot: slot }
    }

    fn read(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let n = self.len.min(LARGE_READ_MAX) as usize;
        let mut data = vec![0u8; n];
        self.file.read_exact_at(&mut data, self.offset)?;
        Ok(data)
    }
}

/// A place among the messages read from their files (32 at most); freed on drop.
pub struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The handle sessions offer messages to.
#[derive(Clone)]
pub struct Meter {
    tx: SyncSender<Offer>,
    large: Arc<std::sync::atomic::AtomicUsize>,
}

impl Meter {
    /// Starts the meter's thread, flushing into the log at `location` every `every` through
    /// `rt`. The thread ends (after a last flush) when every handle is dropped.
    pub fn start(
        location: msglog::LogLocation,
        every: Duration,
        rt: tokio::runtime::Handle,
    ) -> (Meter, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("bulk-meter".into())
            .spawn(move || run(rx, location, every, rt))
            .expect("spawning the bulk meter");
        (Meter { tx, large: Default::default() }, thread)
    }

    /// A place for a message read from its spool file (`None` when too many are in flight:
    /// that message goes unmetered, counted).
    pub fn large_slot(&self) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        if self.large.fetch_add(1, Ordering::Relaxed) >= LARGE_IN_FLIGHT {
            self.large.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("mxshield_bulk_unmetered_total").increment(1);
            return None;
        }
        Some(Slot(self.large.clone()))
    }

    /// Offers a message; never waits.
    pub fn offer(&self, offer: Offer) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(offer) {
            metrics::counter!("mxshield_bulk_unmetered_total").increment(1);
        }
    }
}

/// What is not flushed yet: copies per (contract, local cluster, hour).
type Pending = HashMap<(String, u64), HashMap<i64, u64>>;

struct State {
    clusters: HashMap<String, Clusters>,
    pending: Pending,
    /// Local cluster → its shared id.
    shared: HashMap<(String, u64), String>,
    log: Option<msglog::LogStore>,
}

/// After a burst of offers, the meter pauses this long before it waits again: a busy gateway
/// wakes its thread a few hundred times a second, not once per message (each wake-up is a
/// context switch on the mail path's cores).
const PAUSE: Duration = Duration::from_millis(5);

fn run(rx: Receiver<Offer>, location: msglog::LogLocation, every: Duration, rt: tokio::runtime::Handle) {
    let mut st = State { clusters: HashMap::new(), pending: HashMap::new(), shared: HashMap::new(), log: None };
    let mut next_flush = Instant::now() + every;
    loop {
        let wait = next_flush.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(offer) => {
                meter(&mut st, offer);
                while let Ok(offer) = rx.try_recv() {
                    meter(&mut st, offer);
                }
                std::thread::sleep(PAUSE);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                flush(&mut st, &location, &rt);
                return;
            }
        }
        if Instant::now() >= next_flush {
            flush(&mut st, &location, &rt);
            next_flush = Instant::now() + every;
        }
    }
}

/// Adds one delivered message's copies to its contract's clusters.
fn meter(st: &mut State, offer: Offer) {
    let fp = match &offer.message {
        Body::Memory(m) => fingerprint(&m.data),
        Body::File(l) => match l.read() {
            Ok(data) if (data.len() as u64) < l.len => crate::fingerprint_prefix(&data),
            Ok(data) => fingerprint(&data),
            Err(e) => {
                tracing::warn!(event = "bulk_unmetered", error = %e, "the spool file could not be read");
                metrics::counter!("mxshield_bulk_unmetered_total").increment(1);
                return;
            }
        },
    };
    drop(offer.message);
    let id = st.clusters.entry(offer.contract.clone()).or_default().add(&fp, offer.copies, offer.at);
    let hour = offer.at - offer.at.rem_euclid(3600);
    *st.pending.entry((offer.contract, id)).or_default().entry(hour).or_default() += offer.copies;
}

/// A fresh shared cluster id: 16 random bytes in hex.
fn fresh_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // no randomness: time and a counter still make ids unique within this node
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("{t:024x}{n:08x}");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn flush(st: &mut State, location: &msglog::LogLocation, rt: &tokio::runtime::Handle) {
    if st.pending.is_empty() {
        return;
    }
    if st.log.is_none() {
        match rt.block_on(msglog::LogStore::open_at(location)) {
            Ok(l) => st.log = Some(l),
            Err(e) => {
                tracing::warn!(event = "bulk_flush_failed", error = %e, "kept for the next flush");
                return;
            }
        }
    }
    let Some(log) = st.log.clone() else { return };
    // match the local clusters not yet known to the store with the shared ones
    let mut known: HashMap<String, Vec<msglog::BulkCluster>> = HashMap::new();
    let mut new = Vec::new();
    let keys: Vec<(String, u64)> = st.pending.keys().cloned().collect();
    for key in &keys {
        if st.shared.contains_key(key) {
            continue;
        }
        let (contract, local) = key;
        let Some(rep) = st.clusters.get(contract).and_then(|c| c.get(*local)).map(|c| c.representative.clone()) else {
            continue;
        };
        if !known.contains_key(contract) {
            match rt.block_on(log.bulk_clusters(Some(contract))) {
                Ok(list) => {
                    known.insert(contract.clone(), list);
                }
                Err(e) => {
                    tracing::warn!(event = "bulk_flush_failed", error = %e, "kept for the next flush");
                    return;
                }
            }
        }
        let list = known.get_mut(contract).expect("just loaded");
        let carried = carried_hex(&rep);
        let found = list.iter().find(|s| {
            let by_text =
                rep.minhash.as_ref().zip(minhash_from_hex(&s.minhash)).is_some_and(|(a, b)| agreement(a, &b) >= AGREE);
            by_text || (!carried.is_empty() && s.carried == carried)
        });
        let id = match found {
            Some(s) => s.id.clone(),
            None => {
                let c = msglog::BulkCluster {
                    id: fresh_id(),
                    contract: contract.clone(),
                    minhash: rep.minhash.as_ref().map(minhash_hex).unwrap_or_default(),
                    carried,
                    subject: rep.subject_text.chars().take(200).collect(),
                };
                list.push(c.clone());
                new.push(c);
                list.last().expect("just pushed").id.clone()
            }
        };
        st.shared.insert(key.clone(), id);
    }
    let counts: Vec<(String, i64, i64)> = st
        .pending
        .iter()
        .filter_map(|(key, hours)| st.shared.get(key).map(|id| (id, hours)))
        .flat_map(|(id, hours)| hours.iter().map(move |(h, n)| (id.clone(), *h, *n as i64)))
        .collect();
    match rt.block_on(log.bulk_flush(&new, &counts)) {
        Ok(()) => {
            let flushed: std::collections::HashSet<&String> = counts.iter().map(|(id, _, _)| id).collect();
            st.pending.retain(|key, _| st.shared.get(key).is_none_or(|id| !flushed.contains(id)));
        }
        Err(e) => {
            // the new clusters were not recorded: matched again next time
            let ids: std::collections::HashSet<String> = new.into_iter().map(|c| c.id).collect();
            st.shared.retain(|_, id| !ids.contains(id));
            tracing::warn!(event = "bulk_flush_failed", error = %e, "kept for the next flush");
        }
    }
}
