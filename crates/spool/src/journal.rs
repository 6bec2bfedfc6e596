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
//! Segments are written in advance: a new one is [`SEGMENT_MAX`] bytes of zeros, synced once,
//! and a segment no longer needed is renamed `SEQ.free` and taken again for a later sequence
//! number (at most [`FREE_KEEP`] are kept). Records are only ever written over blocks the file
//! already has, so syncing one writes those blocks and nothing else — no block allocation, no
//! inode size, no file-system metadata to write with every group commit (as database write-ahead
//! logs do).
//!
//! Record: `MXJ2`, payload length (u32 LE), CRC-32 of the segment's sequence number (u64 LE)
//! followed by the payload (u32 LE), payload. Payload: kind `F` (files): count (u16 LE), then
//! per file: id length (u8), id, file length (u32 LE), the spool file's bytes; kind `S`
//! (settled): id length (u8), id. A segment is read from its start up to the first record that
//! does not check out: the end of what was written, zeros, or a record of the file's earlier
//! life under another sequence number (sequence numbers are never used twice in a journal).
//! Records `MXJ1` (CRC of the payload alone, written by earlier versions into files that grew
//! as they were written) are still read at start-up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{GroupSync, QueueId};

const MAGIC: &[u8; 4] = b"MXJ2";
/// Records of earlier versions: CRC of the payload alone.
const MAGIC_V1: &[u8; 4] = b"MXJ1";
const HEADER_LEN: usize = 12;
/// The size of a segment; it is closed once the next record would not fit.
pub(crate) const SEGMENT_MAX: u64 = 16 * 1024 * 1024;
/// At most this many segments no longer needed are kept to be written again.
pub(crate) const FREE_KEEP: usize = 4;
/// A commit larger than this (all its files together) syncs its own files instead.
pub(crate) const RECORD_MAX: usize = 4 * 1024 * 1024;

/// The journal of a spool; see the module documentation.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    state: Mutex<State>,
    sync: GroupSync,
    /// Whether free segments are prepared in the background.
    spares: bool,
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

fn free_name(seq: u64) -> String {
    format!("{seq:016}.free")
}

/// The CRC of a record: its segment's sequence number, then its payload.
fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl Journal {
    /// The journal in `dir` (created if needed); segments left there must have been replayed.
    pub(crate) fn open(dir: PathBuf) -> io::Result<Journal> {
        Journal::open_with(dir, true)
    }

    /// [`Journal::open`], preparing spare segments in the background or not (`spares`).
    fn open_with(dir: PathBuf, spares: bool) -> io::Result<Journal> {
        fs::create_dir_all(&dir)?;
        // a spare whose writing a crash cut short
        for (_, path) in files(&dir, "prep")? {
            let _ = fs::remove_file(path);
        }
        let last = |ext| files(&dir, ext).map(|f| f.last().map_or(0, |(seq, _)| *seq));
        let next_seq = last("seg")?.max(last("free")?) + 1;
        let journal = Journal {
            dir,
            state: Mutex::new(State { next_seq, ..State::default() }),
            sync: GroupSync::default(),
            spares,
        };
        journal.prepare_spare(&mut journal.state());
        Ok(journal)
    }

    /// Starts writing a free segment in the background if none is kept, so that the commit
    /// which needs a new segment finds one ready instead of writing 16 MiB of zeros while
    /// every other commit waits.
    fn prepare_spare(&self, s: &mut State) {
        if !self.spares || files(&self.dir, "free").is_ok_and(|f| !f.is_empty()) {
            return;
        }
        // a number of its own: never that of a segment, so nothing in it is ever read as a record
        let seq = s.next_seq;
        s.next_seq += 1;
        let dir = self.dir.clone();
        let prepare = move || -> io::Result<()> {
            let prep = dir.join(format!("{seq:016}.prep"));
            let file = OpenOptions::new().write(true).create_new(true).open(&prep)?;
            write_zeros(&file)?;
            fs::rename(&prep, dir.join(free_name(seq)))?;
            File::open(&dir)?.sync_all()
        };
        // without a thread, the next new segment is written when it is needed
        let _ = std::thread::Builder::new().name("journal-spare".into()).spawn(move || {
            let _ = prepare();
        });
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
        self.sync.sync(|| {
            // the state is not held during the sync: appends and settlements go on meanwhile (a
            // segment closed since is synced before it was closed)
            let active = self.state().active.as_ref().map(|a| a.file.clone());
            match active {
                Some(file) => file.sync_data(),
                None => Ok(()),
            }
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
    #[cfg(test)]
    pub(crate) fn is_live(&self, id: &QueueId) -> bool {
        self.state().live.contains_key(id)
    }

    /// Appends one record to the active segment, closing it first if the record does not fit;
    /// returns the segment's sequence number.
    fn append(&self, s: &mut State, payload: &[u8]) -> io::Result<u64> {
        let full =
            s.active.as_ref().is_some_and(|a| a.len > 0 && a.len + (HEADER_LEN + payload.len()) as u64 > SEGMENT_MAX);
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
            let (path, file) = self.new_segment(seq)?;
            s.next_seq += 1;
            s.active = Some(Segment { seq, path, file: Arc::new(file), len: 0, live: 0 });
        }
        let a = s.active.as_mut().expect("an active segment was just made");
        let was = a.len;
        let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&record_crc(a.seq, payload).to_le_bytes());
        record.extend_from_slice(payload);
        a.file.write_all_at(&record, a.len)?;
        a.len += record.len() as u64;
        let (seq, half) = (a.seq, SEGMENT_MAX / 2);
        if was < half && a.len >= half {
            self.prepare_spare(s);
        }
        Ok(seq)
    }

    /// The file of segment `seq`: a free one renamed, or [`SEGMENT_MAX`] zeros written and
    /// synced; its name made durable either way.
    fn new_segment(&self, seq: u64) -> io::Result<(PathBuf, File)> {
        let path = self.dir.join(segment_name(seq));
        let file = match files(&self.dir, "free")?.into_iter().next() {
            Some((_, free)) => {
                fs::rename(&free, &path)?;
                OpenOptions::new().read(true).write(true).open(&path)?
            }
            None => {
                let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
                write_zeros(&file)?;
                file
            }
        };
        // the new segment's name must survive a crash as well as what is written in it
        File::open(&self.dir)?.sync_all()?;
        Ok((path, file))
    }
}

/// Writes a segment's [`SEGMENT_MAX`] zeros and syncs them.
fn write_zeros(file: &File) -> io::Result<()> {
    let zeros = vec![0u8; 1024 * 1024];
    let mut at = 0;
    while at < SEGMENT_MAX {
        file.write_all_at(&zeros, at)?;
        at += zeros.len() as u64;
    }
    file.sync_all()
}

/// Renames a segment no longer needed to be written again, or deletes it when enough are kept.
fn retire(dir: &Path, seq: u64, path: &Path) -> io::Result<()> {
    if files(dir, "free")?.len() < FREE_KEEP {
        fs::rename(path, dir.join(free_name(seq)))
    } else {
        fs::remove_file(path)
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
        let seg = entry.remove();
        if let Some(dir) = seg.path.parent() {
            let _ = retire(dir, seg.seq, &seg.path);
        }
    }
}

fn put_id(out: &mut Vec<u8>, id: &QueueId) {
    out.push(id.as_str().len() as u8);
    out.extend_from_slice(id.as_str().as_bytes());
}

/// The segments in `dir` (`ext` "seg"), or the free ones ("free"), oldest first.
fn files(dir: &Path, ext: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == ext)
            && let Some(seq) = path.file_stem().and_then(|n| n.to_str()).and_then(|n| n.parse::<u64>().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    files(dir, "seg")
}

/// What the journal in `dir` still holds: the last copy of every message not settled, oldest
/// first.
pub(crate) fn unsettled(dir: &Path) -> io::Result<Vec<(QueueId, Vec<u8>)>> {
    let mut files: Vec<(QueueId, Vec<u8>)> = Vec::new();
    let mut settled = HashSet::new();
    if !dir.exists() {
        return Ok(files);
    }
    for (seq, path) in segments(dir)? {
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        for payload in (Records { seq, rest: &data }) {
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

/// Retires every segment in `dir` (kept free to be written again, or deleted) and syncs it.
pub(crate) fn clear(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for (seq, path) in segments(dir)? {
        retire(dir, seq, &path)?;
    }
    File::open(dir)?.sync_all()
}

/// The payloads of a segment's valid records, up to the first that is not.
struct Records<'a> {
    /// The segment's sequence number, part of each record's CRC.
    seq: u64,
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let d = self.rest;
        if d.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_le_bytes(d[4..8].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(d[8..12].try_into().ok()?);
        let payload = d.get(HEADER_LEN..HEADER_LEN.checked_add(len)?)?;
        let valid = match &d[..4] {
            m if m == MAGIC => record_crc(self.seq, payload) == crc,
            m if m == MAGIC_V1 => crc32fast::hash(payload) == crc,
            _ => false,
        };
        if !valid {
            return None;
        }
        self.rest = &d[HEADER_LEN + len..];
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
        let j = Journal::open_with(dir.clone(), false).unwrap();
        let (a, b, c) = (QueueId::generate(), QueueId::generate(), QueueId::generate());
        j.commit(&[(&a, b"first")]).unwrap();
        j.commit(&[(&b, b"second"), (&c, b"third")]).unwrap();
        j.settled(&a);
        let left = unsettled(&dir).unwrap();
        assert_eq!(left, vec![(b.clone(), b"second".to_vec()), (c.clone(), b"third".to_vec())]);
        // a torn last record (a crash in mid-write) is the end of the segment
        let seg = segments(&dir).unwrap()[0].1.clone();
        assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT_MAX, "written over, never grown");
        let data = fs::read(&seg).unwrap();
        let last = data.windows(4).rposition(|w| w == MAGIC).unwrap();
        let end = last + HEADER_LEN + u32::from_le_bytes(data[last + 4..last + 8].try_into().unwrap()) as usize;
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0; 3], (end - 3) as u64).unwrap();
        let left = unsettled(&dir).unwrap();
        let ids: Vec<_> = left.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![a, b, c], "the settled record was torn: a is not settled");
        clear(&dir).unwrap();
        assert!(unsettled(&dir).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_segment_written_again_does_not_bring_back_its_earlier_records() {
        let dir = std::env::temp_dir().join(format!("mxj-again-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let j = Journal::open_with(dir.clone(), false).unwrap();
        let (old1, old2, new) = (QueueId::generate(), QueueId::generate(), QueueId::generate());
        j.commit(&[(&old1, b"the first message")]).unwrap();
        j.commit(&[(&old2, b"the next message")]).unwrap();
        drop(j);
        // a restart: replayed, then cleared, its segment kept free
        assert_eq!(unsettled(&dir).unwrap().len(), 2);
        clear(&dir).unwrap();
        assert_eq!(files(&dir, "free").unwrap().len(), 1);
        assert!(unsettled(&dir).unwrap().is_empty());
        // the free segment is written again from its start, a record as long as the first
        // one: the earlier second record follows it intact, but under the old number
        let j = Journal::open_with(dir.clone(), false).unwrap();
        j.commit(&[(&new, b"a new message....")]).unwrap();
        assert!(files(&dir, "free").unwrap().is_empty(), "the free segment was taken");
        let left: Vec<_> = unsettled(&dir).unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(left, vec![new]);
        drop(j);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Waits (bounded) until `dir` holds `n` free segments.
    fn wait_for_free(dir: &Path, n: usize) -> bool {
        for _ in 0..500 {
            if files(dir, "free").unwrap().len() >= n {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_spare_segment_is_ready_before_it_is_needed() {
        let dir = std::env::temp_dir().join(format!("mxj-spare-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let j = Journal::open(dir.clone()).unwrap();
        assert!(wait_for_free(&dir, 1), "a spare is written when the journal opens");
        let spare = files(&dir, "free").unwrap()[0].0;
        j.commit(&[(&QueueId::generate(), b"first")]).unwrap();
        assert!(files(&dir, "free").unwrap().is_empty(), "the first segment is the spare");
        assert!(segments(&dir).unwrap()[0].0 > spare, "under a number of its own");
        // past half the segment, the next one is written in the background
        let big = vec![b'x'; 1024 * 1024];
        for _ in 0..9 {
            j.commit(&[(&QueueId::generate(), &big)]).unwrap();
        }
        assert!(wait_for_free(&dir, 1), "a spare for the next segment");
        assert!(files(&dir, "prep").unwrap().is_empty());
        for _ in 0..8 {
            j.commit(&[(&QueueId::generate(), &big)]).unwrap();
        }
        assert_eq!(segments(&dir).unwrap().len(), 2, "the second segment");
        assert!(segments(&dir).unwrap().iter().all(|(_, p)| fs::metadata(p).unwrap().len() == SEGMENT_MAX));
        assert_eq!(unsettled(&dir).unwrap().len(), 18);
        drop(j);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_of_earlier_versions_are_still_read() {
        let dir = std::env::temp_dir().join(format!("mxj-v1-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let id = QueueId::generate();
        let mut payload = vec![b'F', 1, 0];
        put_id(&mut payload, &id);
        payload.extend_from_slice(&5u32.to_le_bytes());
        payload.extend_from_slice(b"bytes");
        let mut record = MAGIC_V1.to_vec();
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        fs::write(dir.join(segment_name(7)), &record).unwrap();
        assert_eq!(unsettled(&dir).unwrap(), vec![(id, b"bytes".to_vec())]);
        // numbers go on after those found, free or not
        let j = Journal::open_with(dir.clone(), false).unwrap();
        assert_eq!(j.state().next_seq, 8);
        let _ = fs::remove_dir_all(&dir);
    }
}
