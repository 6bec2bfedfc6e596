//! Scan limits (R6) and the running budget of one scan.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Configurable limits; defaults from R6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes produced by decoding and decompression for one scan (60 MB).
    pub max_expanded: u64,
    /// Nesting of containers (17, ClamAV's `MaxRecursion` default, counted as ClamAV counts
    /// it: the file itself is at depth 0, and containers up to this depth are opened).
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
            max_depth: 17,
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

/// A limit that was reached (R6), by kind; its text is what the log and the report show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    /// More bytes decoded and decompressed than `max_expanded`.
    #[error("more than {max} bytes expanded")]
    Expanded {
        /// The limit.
        max: u64,
    },
    /// More archive members and MIME parts than `max_entries`.
    #[error("more than {max} entries")]
    Entries {
        /// The limit.
        max: usize,
    },
    /// Containers nested deeper than `max_depth`.
    #[error("nested deeper than {max}")]
    Depth {
        /// The limit.
        max: usize,
    },
    /// A member that expands more than `max_ratio` times its compressed size.
    #[error("compression ratio above {max}:1 ({produced} bytes from {packed})")]
    Ratio {
        /// The limit.
        max: u64,
        /// Bytes produced when the check fired.
        produced: u64,
        /// The member's compressed size.
        packed: u64,
    },
    /// A MIME structure deeper or with more parts than the parser follows.
    #[error("MIME structure beyond {depth} levels or {parts} parts")]
    MimeStructure {
        /// The parser's depth limit.
        depth: usize,
        /// The parser's part limit.
        parts: usize,
    },
    /// A decoder that asks for more memory than the scan may use (`what`: its model).
    #[error("{what} of {bytes} bytes")]
    DecoderMemory {
        /// The decoder's structure, e.g. `LZMA dictionary`.
        what: &'static str,
        /// The memory it asks for.
        bytes: u64,
    },
    /// The scan ran longer than `max_time`.
    #[error("scan took longer than {max:?}")]
    Time {
        /// The limit.
        max: Duration,
    },
    /// The scan was cancelled: its client has gone.
    #[error("scan cancelled: the client has gone")]
    Cancelled,
    /// A limit reported by an external engine (clamd), in its words.
    #[error("{0}")]
    Engine(String),
}

impl Limit {
    /// The scan stopped for lack of time (load, or nobody waiting), not because of what the
    /// content is: a temporary condition, unlike content that is too big or too deep.
    pub fn is_time(&self) -> bool {
        matches!(self, Limit::Time { .. } | Limit::Cancelled)
    }
}

impl serde::Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
    pub fn spend(&mut self, n: u64) -> Result<(), Limit> {
        self.expanded += n;
        if self.expanded > self.limits.max_expanded {
            return Err(Limit::Expanded { max: self.limits.max_expanded });
        }
        Ok(())
    }

    /// Records one more member or part.
    pub fn entry(&mut self) -> Result<(), Limit> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Limit::Entries { max: self.limits.max_entries });
        }
        self.check_time()
    }

    /// Fails once the time budget is spent, or the scan was cancelled.
    pub fn check_time(&self) -> Result<(), Limit> {
        if self.cancelled.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Limit::Cancelled);
        }
        if Instant::now() > self.deadline {
            return Err(Limit::Time { max: self.limits.max_time });
        }
        Ok(())
    }
}
