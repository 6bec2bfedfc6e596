//! Queue ids: 16 upper-case hex digits, ordered by creation time.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of a queued message, e.g. `0640F3A2B1C4D001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl QueueId {
    /// A fresh id: microseconds since the epoch (13 hex digits) and a per-process counter.
    pub fn generate() -> QueueId {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xfff;
        QueueId(format!("{:013X}{:03X}", micros & 0x1f_ffff_ffff_ffff, n))
    }

    /// Accepts exactly 16 hex digits (so an id can never name a path outside the spool).
    pub fn parse(s: &str) -> Result<QueueId, String> {
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(QueueId(s.to_ascii_uppercase()))
        } else {
            Err(format!("invalid queue id {s:?} (expected 16 hex digits)"))
        }
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
