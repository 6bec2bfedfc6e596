//! The commit journal: small messages made durable together.
//!
//! Without it each commit syncs its own file and then the queue directory, two synchronous
//! writes per message. With it, a message of at most [`RECORD_MAX`] bytes (with its
//! companions) is committed by appending its whole spool file, as one record, to the active
//! segment (`journal/SEQ.seg`) and syncing the segment once for every writer waiting at that
//! moment (group commit); its file is then renamed into `queue/` without a sync of its own.
//! Most messages are delivered and removed within a second, so their files never have to
//! reach the disk at all. A message still queued when its status is first written (deferred,
//! partly delivered) is made durable on its own ([`Journal::settle`]).
//!
//! Each message in the journal is *live* until it is settled: removed, or its file synced; a
//! `settled` record says so. A full segment is closed and a new one started; closed segments
//! are deleted, oldest first, once no live message is left in them. At start-up [`Journal::replay`] rewrites (and syncs)
//! every message of the journal that is not settled and whose file in `queue/` is missing or
//! damaged, then deletes the segments.
//!
//! Only the process that holds the spool and has recovered it ([`crate::Spool::recover`]) uses
//! the journal. A message removed by another process (the operator's `queue delete`) within its
//! live window — usually the milliseconds of its first delivery attempt — could be restored by
//! a replay after a crash: delivered at least once, as everywhere else in the spool.
//!
//! Record: `MXJ1`, payload length (u32 LE), CRC-32 of the payload (u32 LE), payload. Payload:
//! kind `F` (files): count (u16 LE), then per file: id length (u8), id, file length (u32 LE),
//! the spool file's bytes; kind `S` (settled): id length (u8), id. A segment is read from its
//! start up to the first record that does not check out (the end of what was written).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{GroupSync, QueueId};

const MAGIC: &[u8; 4] = b"MXJ1";
const HEADER_LEN: usize = 12;
/// A segment is closed once it holds this much.
const SEGMENT_MAX: u64 = 16 * 1024 * 1024;
/// A commit larger than this (all its files together) syncs its own files instead.
pub(crate) const RECORD_MAX: usize = 4 * 1024 * 1024;

/// The journal of a spool; see the module documentation.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    state: Mutex<State>,
    sync: GroupSync,
}

#[derive(Debug, Default)]
struct State {
    /// The segment records are appended to (made when first needed).
    active: Option<Segment>,
    /// Closed segments that still hold live messages, by sequence number.
    closed: BTreeMap<u64, Segment>,
    /// Live messages and the segment that holds each.
    live: HashMap<QueueId, u64>,
    next_seq: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    /// Live messages in it.
    live: usize,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016}.seg")
}

impl Journal {
    /// The journal in `dir` (created if needed); segments left there must have been replayed.
    pub(crate) fn open(dir: PathBuf) -> io::Result<Journal> {
        fs::create_dir_all(&dir)?;
        let next_seq = segments(&dir)?.last().map_or(1, |(seq, _)| seq + 1);
        Ok(Journal { dir, state: Mutex::new(State { next_seq, ..State::default() }), sync: GroupSync::default() })
    }

    /// Where the segments are.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `files` (queue id, whole spool file) as one record and returns once it is on
    /// disk: either all of them are in the journal after a crash, or none.
    pub(crate) fn commit(&self, files: &[(&QueueId, &[u8])]) -> io::Result<()> {
        let mut payload = Vec::with_capacity(files.iter().map(|(_, b)| b.len() + 32).sum::<usize>() + 3);
        payload.push(b'F');
        payload.extend_from_slice(&(files.len() as u16).to_le_bytes());
        for (id, bytes) in files {
            put_id(&mut payload, id);
            payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            payload.extend_from_slice(bytes);
        }
        {
            let mut s = self.state();
            let seq = self.append(&mut s, &payload)?;
            for (id, _) in files {
                if s.live.insert((*id).clone(), seq).is_none()
                    && let Some(seg) = s.active.as_mut()
                {
                    seg.live += 1;
                }
            }
        }
        self.sync.sync(|| match self.state().active.as_ref().map(|a| a.file.clone()) {
            Some(file) => file.sync_data(),
            None => Ok(()),
        })
    }

    /// Records that `id` no longer needs the journal: removed, or its file synced. Not synced
    /// itself (the next commit's sync carries it): lost in a crash, the message is restored and
    /// delivered again — at least once.
    pub(crate) fn settled(&self, id: &QueueId) {
        let mut s = self.state();
        let Some(seq) = s.live.remove(id) else { return };
        let mut payload = vec![b'S'];
        put_id(&mut payload, id);
        // a failed append only means a possible second delivery after a crash
        let _ = self.append(&mut s, &payload);
        if let Some(a) = s.active.as_mut().filter(|a| a.seq == seq) {
            a.live = a.live.saturating_sub(1);
        } else if let Some(seg) = s.closed.get_mut(&seq) {
            seg.live = seg.live.saturating_sub(1);
            prune(&mut s);
        }
    }

    /// Syncs run so far.
    #[cfg(test)]
    pub(crate) fn sync_runs(&self) -> u64 {
        self.sync.state.lock().unwrap().runs
    }

    /// Whether `id` is live in the journal (its file may not be on disk yet).
    pub(crate) fn is_live(&self, id: &QueueId) -> bool {
        self.state().live.contains_key(id)
    }

    /// Appends one record to the active segment, closing it first if the record does not fit;
    /// returns the segment's sequence number.
    fn append(&self, s: &mut State, payload: &[u8]) -> io::Result<u64> {
        let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let full = s.active.as_ref().is_some_and(|a| a.len > 0 && a.len + record.len() as u64 > SEGMENT_MAX);
        if full && let Some(old) = s.active.take() {
            // everything appended to it is synced before a sync of the next one can be
            // taken to cover it
            if let Err(e) = old.file.sync_data() {
                s.active = Some(old);
                return Err(e);
            }
            s.closed.insert(old.seq, old);
            prune(s);
        }
        if s.active.is_none() {
            let seq = s.next_seq;
            let path = self.dir.join(segment_name(seq));
            let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
            // the new segment's name must survive a crash as well as what is written in it
            File::open(&self.dir)?.sync_all()?;
            s.next_seq += 1;
            s.active = Some(Segment { seq, path, file: Arc::new(file), len: 0, live: 0 });
        }
        let a = s.active.as_mut().expect("an active segment was just made");
        a.file.write_all_at(&record, a.len)?;
        a.len += record.len() as u64;
        Ok(a.seq)
    }
}

/// Deletes the closed segments that no longer hold a live message, oldest first, stopping at
/// the first that still does: a segment holds the `settled` records of messages in older ones,
/// so it may only go after them. The active segment is synced first, so that the `settled`
/// records which emptied them are on disk before they go.
fn prune(s: &mut State) {
    let Some((_, oldest)) = s.closed.first_key_value() else { return };
    if oldest.live > 0 || s.active.as_ref().is_some_and(|a| a.file.sync_data().is_err()) {
        return;
    }
    while let Some(entry) = s.closed.first_entry() {
        if entry.get().live > 0 {
            break;
        }
        let _ = fs::remove_file(&entry.remove().path);
    }
}

fn put_id(out: &mut Vec<u8>, id: &QueueId) {
    out.push(id.as_str().len() as u8);
    out.extend_from_slice(id.as_str().as_bytes());
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        if let Some(seq) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// What the journal in `dir` still holds: the last copy of every message not settled, oldest
/// first.
pub(crate) fn unsettled(dir: &Path) -> io::Result<Vec<(QueueId, Vec<u8>)>> {
    let mut files: Vec<(QueueId, Vec<u8>)> = Vec::new();
    let mut settled = HashSet::new();
    if !dir.exists() {
        return Ok(files);
    }
    for (_, path) in segments(dir)? {
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        for payload in Records(&data) {
            match payload.split_first() {
                Some((b'F', rest)) => files.extend(decode_files(rest)),
                Some((b'S', rest)) => settled.extend(decode_id(rest).map(|(id, _)| id)),
                _ => {}
            }
        }
    }
    // the last copy of an id wins; settled ones are left out
    let mut seen = HashSet::new();
    let mut out: Vec<_> =
        files.into_iter().rev().filter(|(id, _)| !settled.contains(id) && seen.insert(id.clone())).collect();
    out.reverse();
    Ok(out)
}

/// Deletes every segment in `dir` and syncs it.
pub(crate) fn clear(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for (_, path) in segments(dir)? {
        fs::remove_file(path)?;
    }
    File::open(dir)?.sync_all()
}

/// The payloads of a segment's valid records, up to the first that is not.
struct Records<'a>(&'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let d = self.0;
        if d.len() < HEADER_LEN || &d[..4] != MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(d[4..8].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(d[8..12].try_into().ok()?);
        let payload = d.get(HEADER_LEN..HEADER_LEN.checked_add(len)?)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        self.0 = &d[HEADER_LEN + len..];
        Some(payload)
    }
}

fn decode_id(d: &[u8]) -> Option<(QueueId, &[u8])> {
    let (&n, rest) = d.split_first()?;
    let id = std::str::from_utf8(rest.get(..usize::from(n))?).ok()?;
    Some((QueueId::parse(id).ok()?, &rest[usize::from(n)..]))
}

fn decode_files(d: &[u8]) -> Vec<(QueueId, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(count) = d.get(..2).map(|c| u16::from_le_bytes([c[0], c[1]])) else { return out };
    let mut rest = &d[2..];
    for _ in 0..count {
        let Some((id, r)) = decode_id(rest) else { return Vec::new() };
        let Some(len) = r.get(..4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize) else {
            return Vec::new();
        };
        let Some(bytes) = r.get(4..4 + len) else { return Vec::new() };
        out.push((id, bytes.to_vec()));
        rest = &r[4 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stop_at_the_first_that_does_not_check_out() {
        let dir = std::env::temp_dir().join(format!("mxj-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let j = Journal::open(dir.clone()).unwrap();
        let (a, b, c) = (QueueId::generate(), QueueId::generate(), QueueId::generate());
        j.commit(&[(&a, b"first")]).unwrap();
        j.commit(&[(&b, b"second"), (&c, b"third")]).unwrap();
        j.settled(&a);
        let left = unsettled(&dir).unwrap();
        assert_eq!(left, vec![(b.clone(), b"second".to_vec()), (c.clone(), b"third".to_vec())]);
        // a torn last record (a crash in mid-write) is the end of the segment
        let seg = segments(&dir).unwrap()[0].1.clone();
        let len = fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        let left = unsettled(&dir).unwrap();
        let ids: Vec<_> = left.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![a, b, c], "the settled record was torn: a is not settled");
        clear(&dir).unwrap();
        assert!(unsettled(&dir).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
