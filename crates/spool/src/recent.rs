//! The messages committed most recently, kept in memory for their first delivery attempt: a
//! small message is read from here instead of being opened and parsed again a few
//! milliseconds after it was written. What a queue id names never changes once committed, so
//! a copy is never stale; it is dropped when the message is removed, and the oldest copies go
//! first when the cache is full.
//!
//! A message committed through the journal is *unwritten* at first: the journal holds it on
//! disk and this cache is its only other copy; it has no file in `queue/` until
//! [`crate::Spool`] writes it out (a first status, its file opened, age, memory, shutdown). Unwritten
//! copies are never dropped to make room; they have a budget of their own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Envelope, QueueId};

/// A message larger than this is not kept (read from its file when delivered).
pub(crate) const MESSAGE_MAX: usize = 256 * 1024;
/// At most this many bytes of written messages' data are kept in all.
const TOTAL_MAX: usize = 16 * 1024 * 1024;
/// Unwritten messages beyond this many bytes are written out, oldest first.
pub(crate) const UNWRITTEN_MAX: usize = 32 * 1024 * 1024;
/// An unwritten message older than this is written out (so that the journal can let go of it).
pub(crate) const UNWRITTEN_AGE: Duration = Duration::from_secs(5);

/// A committed message as it is in its file.
#[derive(Debug)]
pub struct CommittedMessage {
    /// Its envelope.
    pub envelope: Envelope,
    /// Its data.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Recent {
    inner: Mutex<Inner>,
    /// Held while a message is written out: one at a time, and whoever needs a message's file
    /// waits for a write-out of it in progress.
    writing: Mutex<()>,
}

#[derive(Debug)]
struct Entry {
    message: Arc<CommittedMessage>,
    /// While the message has no file: the end of its file (envelope and trailer).
    unwritten: Option<Arc<Vec<u8>>>,
    /// Its file is being written.
    writing: bool,
    /// Removed while its file was being written: the writer deletes the file.
    removed: bool,
}

impl Entry {
    fn new(message: CommittedMessage, unwritten: Option<Vec<u8>>) -> Entry {
        Entry { message: Arc::new(message), unwritten: unwritten.map(Arc::new), writing: false, removed: false }
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<QueueId, Entry>,
    /// Insertion order of the written ones (ids no longer held are skipped when met).
    order: VecDeque<QueueId>,
    bytes: usize,
    /// Unwritten ones, oldest first, with when they were committed (ids no longer unwritten
    /// are skipped when met).
    unwritten: VecDeque<(QueueId, Instant)>,
    unwritten_count: usize,
    unwritten_bytes: usize,
}

/// What [`Recent::remove`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Removed {
    /// An unwritten message: it has no file.
    Unwritten,
    /// A message being written out: its writer deletes the file.
    Writing,
    /// A written message, or one not kept here: delete its file.
    Written,
}

impl Inner {
    fn make_room(&mut self, len: usize) {
        while self.bytes + len > TOTAL_MAX {
            let Some(old) = self.order.pop_front() else { break };
            if self.by_id.get(&old).is_some_and(|e| e.unwritten.is_none()) {
                let e = self.by_id.remove(&old).expect("just seen");
                self.bytes -= e.message.data.len();
            }
        }
    }

    fn push_written(&mut self, id: QueueId, len: usize) {
        self.bytes += len;
        self.order.push_back(id);
        // ids removed by `forget` stay in `order` until met: keep it from growing without end
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let Inner { by_id, order, .. } = self;
            order.retain(|id| by_id.get(id).is_some_and(|e| e.unwritten.is_none()));
        }
    }

    /// Takes an unwritten entry out of the unwritten accounting (it was removed or written).
    fn no_longer_unwritten(&mut self, len: usize) {
        self.unwritten_bytes -= len;
        self.unwritten_count -= 1;
        if self.unwritten.len() > 2 * self.unwritten_count + 64 {
            let Inner { by_id, unwritten, .. } = self;
            unwritten.retain(|(id, _)| by_id.get(id).is_some_and(|e| e.unwritten.is_some()));
        }
    }
}

impl Recent {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a copy of a message whose file is in `queue/`.
    pub(crate) fn insert(&self, id: QueueId, message: CommittedMessage) {
        let len = message.data.len();
        if len > MESSAGE_MAX {
            return;
        }
        let mut inner = self.lock();
        inner.make_room(len);
        if let Some(old) = inner.by_id.insert(id.clone(), Entry::new(message, None)) {
            inner.bytes -= old.message.data.len();
        }
        inner.push_written(id, len);
    }

    /// Keeps a message that has no file yet (a new id); `tail` is the end of its file.
    pub(crate) fn insert_unwritten(&self, id: QueueId, message: CommittedMessage, tail: Vec<u8>) {
        let len = message.data.len();
        let mut inner = self.lock();
        inner.by_id.insert(id.clone(), Entry::new(message, Some(tail)));
        inner.unwritten_bytes += len;
        inner.unwritten_count += 1;
        inner.unwritten.push_back((id, Instant::now()));
    }

    /// The copy of `id`, and whether it is unwritten (has no file in `queue/`).
    pub(crate) fn get(&self, id: &QueueId) -> Option<(Arc<CommittedMessage>, bool)> {
        let inner = self.lock();
        let e = inner.by_id.get(id).filter(|e| !e.removed)?;
        Some((e.message.clone(), e.unwritten.is_some()))
    }

    /// Whether `id` is held and has no file in `queue/` yet.
    pub(crate) fn is_unwritten(&self, id: &QueueId) -> bool {
        self.lock().by_id.get(id).is_some_and(|e| e.unwritten.is_some() && !e.removed)
    }

    /// The unwritten messages.
    pub(crate) fn unwritten_ids(&self) -> Vec<QueueId> {
        let inner = self.lock();
        let held = |id: &QueueId| inner.by_id.get(id).is_some_and(|e| e.unwritten.is_some() && !e.removed);
        inner.unwritten.iter().filter(|(id, _)| held(id)).map(|(id, _)| id.clone()).collect()
    }

    /// The unwritten messages to write out now: older than [`UNWRITTEN_AGE`], or the oldest
    /// beyond [`UNWRITTEN_MAX`] bytes in all.
    pub(crate) fn due(&self) -> Vec<QueueId> {
        let mut inner = self.lock();
        let Inner { by_id, unwritten, unwritten_bytes, .. } = &mut *inner;
        let waiting = |id: &QueueId| by_id.get(id).is_some_and(|e| e.unwritten.is_some());
        while unwritten.front().is_some_and(|(id, _)| !waiting(id)) {
            unwritten.pop_front();
        }
        let now = Instant::now();
        let mut over = unwritten_bytes.saturating_sub(UNWRITTEN_MAX);
        let mut out = Vec::new();
        for (id, at) in unwritten.iter() {
            let Some(e) = by_id.get(id).filter(|e| e.unwritten.is_some() && !e.removed && !e.writing) else {
                continue;
            };
            if over == 0 && now.duration_since(*at) < UNWRITTEN_AGE {
                break;
            }
            over = over.saturating_sub(e.message.data.len());
            out.push(id.clone());
        }
        out
    }

    /// Held while writing messages out.
    pub(crate) fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks an unwritten message as being written out (call with [`Recent::write_lock`] held)
    /// and returns its copy and the end of its file; `None` if it is not unwritten (any more).
    pub(crate) fn start_writing(&self, id: &QueueId) -> Option<(Arc<CommittedMessage>, Arc<Vec<u8>>)> {
        let mut inner = self.lock();
        let e = inner.by_id.get_mut(id).filter(|e| !e.removed)?;
        let tail = e.unwritten.clone()?;
        e.writing = true;
        Some((e.message.clone(), tail))
    }

    /// The write-out of `id` ended (`ok`: its file is in `queue/`); returns true if the
    /// message was removed meanwhile (its file, if any, must go).
    pub(crate) fn done_writing(&self, id: &QueueId, ok: bool) -> bool {
        let mut inner = self.lock();
        let Some(e) = inner.by_id.get_mut(id) else { return false };
        e.writing = false;
        let len = e.message.data.len();
        if e.removed {
            inner.by_id.remove(id);
            inner.no_longer_unwritten(len);
            return true;
        }
        if !ok || e.unwritten.take().is_none() {
            return false;
        }
        inner.no_longer_unwritten(len);
        inner.make_room(len);
        inner.push_written(id.clone(), len);
        false
    }

    /// Drops the copy of a removed message, and says what was held.
    pub(crate) fn remove(&self, id: &QueueId) -> Removed {
        let mut inner = self.lock();
        let Some(e) = inner.by_id.get_mut(id) else { return Removed::Written };
        if e.unwritten.is_none() {
            let e = inner.by_id.remove(id).expect("just seen");
            inner.bytes -= e.message.data.len();
            return Removed::Written;
        }
        if e.writing {
            e.removed = true;
            return Removed::Writing;
        }
        let len = e.message.data.len();
        inner.by_id.remove(id);
        inner.no_longer_unwritten(len);
        Removed::Unwritten
    }

    /// Drops the copy of a written message (no longer queued).
    pub(crate) fn forget(&self, id: &QueueId) {
        let mut inner = self.lock();
        if inner.by_id.get(id).is_some_and(|e| e.unwritten.is_none()) {
            let e = inner.by_id.remove(id).expect("just seen");
            inner.bytes -= e.message.data.len();
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    #[cfg(test)]
    pub(crate) fn unwritten_bytes(&self) -> usize {
        self.lock().unwritten_bytes
    }
}
