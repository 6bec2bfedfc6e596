//! The delivery scheduler: decides which queued message is attempted when.
//!
//! Fresh messages (just received, or DSNs) go to a FIFO that is always served first. A message
//! that must be retried waits in a timer heap, apart, until its next attempt is due; due
//! retries may use at most half of the workers, so a backlog for a dead customer server
//! never delays fresh mail for others. The number of messages in flight is bounded by
//! `delivery.workers`. `mxshield queue flush` (a touched `flush` file in the spool) makes
//! every waiting retry due at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spool::QueueId;
use tokio::sync::{Semaphore, mpsc, watch};

use super::attempt::{Next, attempt};
use super::{Ctx, now_ms};

/// A message known to the scheduler at start-up.
pub struct Known {
    /// Its queue id.
    pub id: QueueId,
    /// Unix milliseconds of the next attempt; 0 = fresh.
    pub next_attempt: u64,
}

struct Finished {
    id: QueueId,
    next: Next,
}

/// The scheduler's state.
struct Scheduler {
    ctx: Ctx,
    fresh: VecDeque<QueueId>,
    due: VecDeque<QueueId>,
    waiting: BinaryHeap<Reverse<(u64, QueueId)>>,
    /// Messages waiting (also in `waiting`, at their latest time) for a slot of a busy
    /// destination: made due as soon as the destination gives one back.
    for_slot: std::collections::HashMap<String, VecDeque<QueueId>>,
    /// The time of each message's current entry in `waiting`; an entry at another time is
    /// stale (the message was made due earlier by a freed slot) and is skipped.
    waiting_at: std::collections::HashMap<QueueId, u64>,
    in_flight: HashSet<QueueId>,
    /// Every id held anywhere above: a message the spool has and this set has not was never
    /// announced (its notice lost, or put there from outside) and is picked up by a rescan.
    known: HashSet<QueueId>,
    workers: Arc<Semaphore>,
    retry_slots: Arc<Semaphore>,
    flush_file: PathBuf,
    flush_seen: Option<SystemTime>,
}

/// Runs the scheduler until `shutdown` turns true; in-flight attempts are left to finish.
pub async fn run(
    ctx: Ctx,
    known: Vec<Known>,
    mut incoming: mpsc::Receiver<QueueId>,
    mut shutdown: watch::Receiver<bool>,
) {
    let workers = ctx.cfg.workers;
    let flush_file = ctx.spool.root().join("flush");
    let flush_seen = std::fs::metadata(&flush_file).and_then(|m| m.modified()).ok();
    let mut s = Scheduler {
        ctx,
        fresh: VecDeque::new(),
        due: VecDeque::new(),
        waiting: BinaryHeap::new(),
        for_slot: Default::default(),
        waiting_at: Default::default(),
        in_flight: HashSet::new(),
        known: HashSet::new(),
        workers: Arc::new(Semaphore::new(workers)),
        retry_slots: Arc::new(Semaphore::new(workers.div_ceil(2))),
        flush_file,
        flush_seen,
    };
    for k in known {
        s.known.insert(k.id.clone());
        if k.next_attempt == 0 {
            s.fresh.push_back(k.id);
        } else {
            s.wait_until(k.id, k.next_attempt);
        }
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        s.release_due();
        s.dispatch(&done_tx);
        let sleep_for = s.until_next_due().min(Duration::from_secs(1));
        tokio::select! {
            Some(id) = incoming.recv() => s.announce(id),
            Some(f) = done_rx.recv() => s.finished(f),
            _ = s.ctx.destinations.freed_signal().notified() => s.slots_freed(),
            _ = tokio::time::sleep(sleep_for) => {}
            _ = tick.tick() => {
                s.ctx.courier.sweep();
                s.check_flush();
                metrics::gauge!("mxshield_queue_messages").set(s.known.len() as f64);
                let deferred = s.waiting_at.len();
                let oldest = s.waiting_at.keys().filter_map(|id| id.created_micros()).min().map_or(0, |m| m / 1_000_000);
                s.ctx.queue_size.set(s.known.len().saturating_sub(deferred), deferred, oldest);
                ticks += 1;
                if ticks.is_multiple_of(RESCAN_TICKS) {
                    s.rescan();
                }
            }
            _ = shutdown.wait_for(|v| *v) => break,
        }
    }
}

/// Seconds between two looks at the spool for messages nobody announced.
const RESCAN_TICKS: u64 = 30;

impl Scheduler {
    /// A message was queued: attempted as fresh mail (once, however often it is announced).
    fn announce(&mut self, id: QueueId) {
        if self.known.insert(id.clone()) {
            self.fresh.push_back(id);
        }
    }

    /// Picks up every message in the spool the scheduler does not hold: nothing queued is
    /// stranded because its notice was lost (a full channel, a bug).
    fn rescan(&mut self) {
        let Ok(ids) = self.ctx.spool.list() else { return };
        let mut found = 0;
        for id in ids {
            if !self.known.contains(&id) {
                found += 1;
                self.announce(id);
            }
        }
        if found > 0 {
            tracing::warn!(
                event = "queue_rescan",
                picked_up = found,
                "messages in the spool that were never announced"
            );
        }
    }

    fn release_due(&mut self) {
        let now = now_ms();
        while let Some(Reverse((at, _))) = self.waiting.peek() {
            if *at > now {
                break;
            }
            let Reverse((at, id)) = self.waiting.pop().expect("peeked");
            if self.waiting_at.get(&id) == Some(&at) {
                self.waiting_at.remove(&id);
                self.due.push_back(id);
            }
        }
    }

    fn until_next_due(&self) -> Duration {
        match self.waiting.peek() {
            Some(Reverse((at, _))) => Duration::from_millis(at.saturating_sub(now_ms()).max(5)),
            None => Duration::from_secs(3600),
        }
    }

    fn dispatch(&mut self, done: &mpsc::UnboundedSender<Finished>) {
        while !self.fresh.is_empty() {
            let Ok(permit) = self.workers.clone().try_acquire_owned() else { return };
            let id = self.fresh.pop_front().expect("not empty");
            self.spawn(id, (permit, None), done);
        }
        while !self.due.is_empty() {
            let Ok(retry) = self.retry_slots.clone().try_acquire_owned() else { return };
            let Ok(permit) = self.workers.clone().try_acquire_owned() else { return };
            let id = self.due.pop_front().expect("not empty");
            self.spawn(id, (permit, Some(retry)), done);
        }
    }

    fn spawn(
        &mut self,
        id: QueueId,
        permits: (tokio::sync::OwnedSemaphorePermit, Option<tokio::sync::OwnedSemaphorePermit>),
        done: &mpsc::UnboundedSender<Finished>,
    ) {
        if !self.in_flight.insert(id.clone()) {
            return;
        }
        let ctx = self.ctx.clone();
        let done = done.clone();
        let retry = ctx.cfg.retry_min;
        tokio::spawn(async move {
            let attempt_ctx = ctx.clone();
            let attempt_id = id.clone();
            let started = std::time::Instant::now();
            let next = guarded(&id, retry, async move { attempt(&attempt_ctx, &attempt_id).await }).await;
            metrics::histogram!("mxshield_delivery_attempt_seconds").record(started.elapsed().as_secs_f64());
            drop(permits);
            let _ = done.send(Finished { id, next });
        });
    }

    fn wait_until(&mut self, id: QueueId, at: u64) {
        self.waiting_at.insert(id.clone(), at);
        self.waiting.push(Reverse((at, id)));
    }

    /// Destinations gave slots back: one waiting message each is made due now (the heap entry
    /// at its latest time stays; attempting a message twice is harmless, and `in_flight` keeps
    /// it from running twice at once).
    fn slots_freed(&mut self) {
        for domain in self.ctx.destinations.take_freed() {
            let Some(queue) = self.for_slot.get_mut(&domain) else { continue };
            while let Some(id) = queue.pop_front() {
                // still waiting (not made due or attempted meanwhile)
                if self.waiting_at.remove(&id).is_some() {
                    self.due.push_back(id);
                    break;
                }
            }
            if queue.is_empty() {
                self.for_slot.remove(&domain);
            }
        }
    }

    fn finished(&mut self, f: Finished) {
        self.in_flight.remove(&f.id);
        match f.next {
            Next::RetryAt(at) => self.wait_until(f.id, at),
            Next::Busy { domain, at } => {
                self.for_slot.entry(domain).or_default().push_back(f.id.clone());
                self.wait_until(f.id, at);
            }
            Next::Done => {
                self.known.remove(&f.id);
            }
        }
    }

    fn check_flush(&mut self) {
        let seen = std::fs::metadata(&self.flush_file).and_then(|m| m.modified()).ok();
        if seen.is_some() && seen != self.flush_seen {
            self.flush_seen = seen;
            let n = self.waiting_at.len();
            while let Some(Reverse((at, id))) = self.waiting.pop() {
                if self.waiting_at.get(&id) == Some(&at) {
                    self.waiting_at.remove(&id);
                    self.due.push_back(id);
                }
            }
            self.ctx.courier.forget_dead();
            tracing::info!(event = "queue_flushed", messages = n);
        }
    }
}

/// Runs one attempt in a task of its own: if it panics, the panic is logged and the message is
/// tried again after `retry` — it never stays "in flight" for ever.
async fn guarded<F>(id: &QueueId, retry: Duration, attempt: F) -> Next
where
    F: std::future::Future<Output = Next> + Send + 'static,
{
    match tokio::spawn(attempt).await {
        Ok(next) => next,
        Err(e) => {
            tracing::error!(event = "attempt_panicked", queue_id = %id, error = %e, "retrying later");
            Next::RetryAt(now_ms() + retry.as_millis() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_attempt_is_retried_not_stranded() {
        let id = QueueId::generate();
        let before = now_ms();
        let next = guarded(&id, Duration::from_secs(5), async { panic!("injected") }).await;
        let Next::RetryAt(at) = next else { panic!("{next:?}") };
        assert!(at >= before + 5_000 && at < before + 60_000);
        assert_eq!(guarded(&id, Duration::from_secs(5), async { Next::Done }).await, Next::Done);
    }
}
