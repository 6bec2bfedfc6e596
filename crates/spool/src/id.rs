//! Queue ids: 20 upper-case hex digits — the time, the node, a counter — ordered by creation
//! time and unique across the nodes of a cluster (16-digit ids of earlier versions are still
//! read).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of a queued message, e.g. `0640F3A2B1C4D00A1001` (node `00A1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl QueueId {
    /// A fresh id on node 0 (see [`QueueId::generate_on`]).
    pub fn generate() -> QueueId {
        Self::generate_on(0)
    }

    /// A fresh id made on `node`: microseconds since the epoch (13 hex digits), the node (4),
    /// a per-process counter (3).
    pub fn generate_on(node: u16) -> QueueId {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xfff;
        QueueId(format!("{:013X}{node:04X}{:03X}", micros & 0x1f_ffff_ffff_ffff, n))
    }

    /// Accepts exactly 20 (or, from earlier versions, 16) hex digits, so an id can never name a
    /// path outside the spool.
    pub fn parse(s: &str) -> Result<QueueId, String> {
        if (s.len() == 20 || s.len() == 16) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(QueueId(s.to_ascii_uppercase()))
        } else {
            Err(format!("invalid queue id {s:?} (expected 20 hex digits)"))
        }
    }

    /// When the id was made (microseconds since the epoch), for ids of this version.
    pub fn created_micros(&self) -> Option<u64> {
        (self.0.len() == 20).then(|| u64::from_str_radix(&self.0[..13], 16).ok()).flatten()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
