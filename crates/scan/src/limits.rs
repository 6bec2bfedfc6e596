//! Scan limits (R6) and the running budget of one scan.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Configurable limits; defaults from R6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes produced by decoding and decompression for one scan (60 MB).
    pub max_expanded: u64,
    /// Nesting of containers (16).
    pub max_depth: usize,
    /// Archive members and MIME parts in one scan (10,000).
    pub max_entries: usize,
    /// Largest expansion ratio of one compressed member once it exceeds 1 MiB (1:`max_ratio`).
    pub max_ratio: u64,
    /// Wall-clock time for one scan.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_expanded: 60_000_000,
            max_depth: 16,
            max_entries: 10_000,
            max_ratio: 250,
            max_time: Duration::from_secs(60),
        }
    }
}

/// What one scan has used so far.
#[derive(Debug)]
pub struct Budget {
    /// The limits.
    pub limits: Limits,
    /// Bytes produced by decoding and decompression so far.
    pub expanded: u64,
    /// Members and parts so far.
    pub entries: usize,
    deadline: Instant,
    cancelled: Option<Arc<AtomicBool>>,
}

/// When a scan must stop early: at `deadline`, or as soon as `cancelled` is set (its client
/// has gone: nobody is waiting for the verdict any more).
#[derive(Debug, Clone)]
pub struct Stop {
    /// When the scan must stop.
    pub deadline: Instant,
    /// Set when nobody waits for the verdict any more.
    pub cancelled: Arc<AtomicBool>,
}

impl Stop {
    /// Stop at `deadline` unless cancelled first.
    pub fn at(deadline: Instant) -> Stop {
        Stop { deadline, cancelled: Arc::new(AtomicBool::new(false)) }
    }

    /// Whether the scan was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// A limit that was reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitHit(pub String);

/// How the time limit's [`LimitHit`] text starts.
const TIME_LIMIT: &str = "scan took longer than";

/// Whether a limit text (of [`crate::Verdict::LimitExceeded`]) is the time limit: a
/// transient condition (load), unlike content that is too big or too deep.
pub fn is_time_limit(why: &str) -> bool {
    why.starts_with(TIME_LIMIT)
}

impl Budget {
    /// A fresh budget starting now.
    pub fn new(limits: Limits) -> Budget {
        Budget { limits, expanded: 0, entries: 0, deadline: Instant::now() + limits.max_time, cancelled: None }
    }

    /// A fresh budget that stops as `stop` says (shared by several scans of one message: the
    /// scan, then the scans of its rewritten form).
    pub fn until(limits: Limits, stop: &Stop) -> Budget {
        Budget { limits, expanded: 0, entries: 0, deadline: stop.deadline, cancelled: Some(stop.cancelled.clone()) }
    }

    /// Bytes that may still be produced.
    pub fn remaining(&self) -> u64 {
        self.limits.max_expanded.saturating_sub(self.expanded)
    }

    /// Records `n` produced bytes.
    pub fn spend(&mut self, n: u64) -> Result<(), LimitHit> {
        self.expanded += n;
        if self.expanded > self.limits.max_expanded {
            return Err(LimitHit(format!("more than {} bytes expanded", self.limits.max_expanded)));
        }
        Ok(())
    }

    /// Records one more member or part.
    pub fn entry(&mut self) -> Result<(), LimitHit> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(LimitHit(format!("more than {} entries", self.limits.max_entries)));
        }
        self.check_time()
    }

    /// Fails once the time budget is spent, or the scan was cancelled.
    pub fn check_time(&self) -> Result<(), LimitHit> {
        if self.cancelled.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(LimitHit("scan cancelled: the client has gone".into()));
        }
        if Instant::now() > self.deadline {
            return Err(LimitHit(format!("{TIME_LIMIT} {:?}", self.limits.max_time)));
        }
        Ok(())
    }
}
