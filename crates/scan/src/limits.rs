//! Scan limits (R6) and the running budget of one scan.

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
    pub limits: Limits,
    pub expanded: u64,
    pub entries: usize,
    deadline: Instant,
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
        Self::until(limits, Instant::now() + limits.max_time)
    }

    /// A fresh budget whose time runs out at `deadline` (shared by several scans of one
    /// message: the scan, then the scans of its rewritten form).
    pub fn until(limits: Limits, deadline: Instant) -> Budget {
        Budget { limits, expanded: 0, entries: 0, deadline }
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

    /// Fails once the time budget is spent.
    pub fn check_time(&self) -> Result<(), LimitHit> {
        if Instant::now() > self.deadline {
            return Err(LimitHit(format!("{TIME_LIMIT} {:?}", self.limits.max_time)));
        }
        Ok(())
    }
}
