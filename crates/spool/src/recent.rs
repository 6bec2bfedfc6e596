//! The messages committed most recently, kept in memory for their first delivery attempt: a
//! small message is read from here instead of being opened and parsed again a few
//! milliseconds after it was written. What a queue id names never changes once committed, so
//! a copy is never stale; it is dropped when the message is removed, and the oldest copies go
//! first when the cache is full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::{Envelope, QueueId};

/// A message larger than this is not kept (read from its file when delivered).
pub(crate) const MESSAGE_MAX: usize = 256 * 1024;
/// At most this many bytes of message data are kept in all.
const TOTAL_MAX: usize = 16 * 1024 * 1024;

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
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<QueueId, Arc<CommittedMessage>>,
    /// Insertion order (ids already removed are skipped when met).
    order: VecDeque<QueueId>,
    bytes: usize,
}

impl Recent {
    pub(crate) fn insert(&self, id: QueueId, message: CommittedMessage) {
        let len = message.data.len();
        if len > MESSAGE_MAX {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while inner.bytes + len > TOTAL_MAX {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(m) = inner.by_id.remove(&old) {
                inner.bytes -= m.data.len();
            }
        }
        if let Some(m) = inner.by_id.insert(id.clone(), Arc::new(message)) {
            inner.bytes -= m.data.len();
        }
        inner.bytes += len;
        inner.order.push_back(id);
        // ids removed by `forget` stay in `order` until met: keep it from growing without end
        if inner.order.len() > 2 * inner.by_id.len() + 64 {
            let Inner { by_id, order, .. } = &mut *inner;
            order.retain(|id| by_id.contains_key(id));
        }
    }

    pub(crate) fn get(&self, id: &QueueId) -> Option<Arc<CommittedMessage>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).by_id.get(id).cloned()
    }

    pub(crate) fn forget(&self, id: &QueueId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = inner.by_id.remove(id) {
            inner.bytes -= m.data.len();
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().unwrap().bytes
    }
}
