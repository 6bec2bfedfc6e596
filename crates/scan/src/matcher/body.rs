//! Body signatures: a 4-byte-anchor prefilter in front of exact verification with wildcards,
//! alternatives and jumps. Signatures with a fixed offset are checked directly where they must
//! start.
//!
//! The prefilter probes a blocked Bloom filter (three bits per key in one 64-bit word, about 20
//! bits per key) with a hash of a 4-byte window, and on a hit looks the window up in a flat
//! table (buckets of `(window, pattern, shift)`). A pattern whose exact anchor run is at
//! least `S + 3` bytes long is entered once per shift `0..S`, so the input needs probing only
//! at every `S`-th position: one of the anchor's first `S` windows always falls on such a
//! position. Patterns are grouped in tiers by anchor length (`TIERS`), each with its own
//! filter and a stride as long as its shortest anchor allows.

use std::collections::HashMap;

use crate::sigdb::pattern::{ByteMatch, Class, Pattern, Piece};
use crate::sigdb::{Layout, Offset};

/// Work allowed to verify one candidate (bounds pathological `*` patterns).
const VERIFY_BUDGET: u32 = 100_000;
/// Tiers of anchors: (minimum anchor length, longest probe stride). An anchor of length `L` may
/// be probed every `L - 3` bytes; longer anchors mean fewer probes. A tier's stride is the
/// longest its shortest anchor allows, up to its own limit (a database whose short anchors are
/// all 7 bytes long probes them every 4 bytes, not at every byte).
const TIERS: [(usize, usize); 2] = [(8, 5), (4, 4)];
/// How many probes ahead the filter is prefetched.
const PREFETCH_PROBES: usize = 16;

/// Who a pattern belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A body signature with this name index.
    Body(u32),
    /// Sub-signature `sub` (global index) of a logical signature.
    Sub(u32),
}

struct Compiled {
    pattern: Pattern,
    offset: Offset,
    target: u32,
    owner: Owner,
    /// The exact anchor run is `anchor_len` bytes at `anchor_off` in piece `anchor_piece`.
    anchor_piece: u16,
    anchor_off: u16,
    anchor_len: u16,
    /// For a sub-signature split by a variable jump (`*`, `{n-m}`, `{-n}`, `{n-}`): the index
    /// of the last such jump. libclamav counts such a sub-signature once per position where
    /// its last part ends a match, not once per start.
    split_at: Option<u16>,
}

/// The index of the last jump of variable length in `pattern`, if any.
fn last_variable_gap(pattern: &Pattern) -> Option<usize> {
    pattern.pieces.iter().rposition(|p| matches!(p, Piece::Gap { min, max } if *max != Some(*min)))
}

/// Windows of anchors, probed at every `stride`-th input position.
struct Prefilter {
    stride: usize,
    word_bits: u32,
    bucket_bits: u32,
    bitmap: Vec<u64>,
    /// `buckets[b]..buckets[b + 1]` index `entries` of hash bucket `b`.
    buckets: Vec<u32>,
    /// (window, pattern index, shift of the window inside the anchor)
    entries: Vec<(u32, u32, u8)>,
    /// (pattern index, the anchor's first 8 bytes, anchor length) until `finish`.
    pending: Vec<(u32, [u8; 8], u8)>,
    /// The longest stride allowed.
    max_stride: usize,
}

impl Prefilter {
    fn new(max_stride: usize) -> Self {
        Prefilter {
            stride: max_stride,
            max_stride,
            word_bits: 0,
            bucket_bits: 0,
            bitmap: Vec::new(),
            buckets: Vec::new(),
            entries: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn add(&mut self, idx: u32, run: &[u8]) {
        let mut head = [0u8; 8];
        let n = run.len().min(8);
        head[..n].copy_from_slice(&run[..n]);
        self.pending.push((idx, head, n as u8));
    }

    fn finish(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let shortest = self.pending.iter().map(|&(_, _, len)| usize::from(len)).min().unwrap_or(4);
        self.stride = self.max_stride.min(shortest - 3);
        let stride = self.stride;
        let keys: Vec<(u32, u32, u8)> = std::mem::take(&mut self.pending)
            .into_iter()
            .flat_map(|(idx, head, _)| (0..stride).map(move |shift| (window(&head, shift), idx, shift as u8)))
            .collect();
        let n = keys.len();
        // about 20 filter bits per key, rounded down to a power of two (cache-friendly size)
        self.word_bits = usize::BITS - 1 - (n / 3).max(1024).leading_zeros();
        self.bucket_bits = n.max(256).next_power_of_two().trailing_zeros();
        self.bitmap = vec![0u64; 1usize << self.word_bits];
        let mut counts = vec![0u32; (1usize << self.bucket_bits) + 1];
        for &(key, _, _) in &keys {
            let (word, mask, bucket) = self.probe(key);
            self.bitmap[word] |= mask;
            counts[bucket + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut fill = counts.clone();
        let mut entries = vec![(0u32, 0u32, 0u8); n];
        for &e in &keys {
            let b = self.probe(e.0).2;
            entries[fill[b] as usize] = e;
            fill[b] += 1;
        }
        self.buckets = counts;
        self.entries = entries;
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Filter word, the two bits to test in it, and the table bucket of a window.
    #[inline]
    fn probe(&self, w: u32) -> (usize, u64, usize) {
        let h = u64::from(w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let word = (h >> (64 - self.word_bits)) as usize;
        let mask = (1u64 << ((h >> 40) & 63)) | (1u64 << ((h >> 34) & 63)) | (1u64 << ((h >> 28) & 63));
        let bucket = ((h >> 12) as usize) & ((1 << self.bucket_bits) - 1);
        (word, mask, bucket)
    }

    /// Asks the CPU to load the filter word of a window probed a few steps later, so that the
    /// probe finds it in cache (the filter is larger than L1).
    #[inline]
    fn prefetch(&self, key: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let word = self.probe(key).0;
            let p = self.bitmap.as_ptr().wrapping_add(word) as *const i8;
            // SAFETY: a prefetch is a hint; it never faults and `word` is in bounds anyway.
            unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    #[inline]
    fn candidates(&self, key: u32) -> &[(u32, u32, u8)] {
        let (word, mask, bucket) = self.probe(key);
        if self.bitmap[word] & mask != mask {
            return &[];
        }
        &self.entries[self.buckets[bucket] as usize..self.buckets[bucket + 1] as usize]
    }
}

/// The compiled body-signature matcher.
pub struct BodyMatcher {
    compiled: Vec<Compiled>,
    /// One prefilter per tier of `TIERS`.
    tiers: Vec<Prefilter>,
    /// Offset-constrained patterns, checked at their allowed starts.
    positioned: Vec<u32>,
    /// Floating patterns without a 4-byte exact run: checked at every position of their first
    /// exact byte (or everywhere).
    unanchored: Vec<u32>,
    /// Sub-signatures split by a variable jump → their patterns (one per form, `::wa`),
    /// counted by match ends.
    split_subs: HashMap<u32, Vec<u32>>,
}

/// What a scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BodyHits {
    /// First body signature that matched: (name index, start offset).
    pub first: Option<(u32, usize)>,
    /// Matches per logical sub-signature (global index), only for those that matched.
    pub sub_counts: Vec<(u32, u32)>,
    /// Where libclamav places the last match of each counted sub-signature (the latest start;
    /// for one split by a variable jump, the earliest start that reaches its last match's end).
    pub sub_last: HashMap<u32, usize>,
}

impl Default for BodyMatcher {
    fn default() -> Self {
        BodyMatcher {
            compiled: Vec::new(),
            tiers: TIERS.iter().map(|&(_, stride)| Prefilter::new(stride)).collect(),
            positioned: Vec::new(),
            unanchored: Vec::new(),
            split_subs: HashMap::new(),
        }
    }
}

#[inline]
fn window(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

impl BodyMatcher {
    /// Adds a pattern.
    pub fn add(&mut self, pattern: Pattern, offset: Offset, target: u32, owner: Owner) {
        let idx = self.compiled.len() as u32;
        let (anchor_piece, anchor_off, run) = pattern.anchor(4).unwrap_or((0, 0, Vec::new()));
        if offset != Offset::Any {
            self.positioned.push(idx);
        } else if let Some(t) = TIERS.iter().position(|&(min, _)| run.len() >= min) {
            self.tiers[t].add(idx, &run);
        } else {
            self.unanchored.push(idx);
        }
        let small = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let split_at = match owner {
            Owner::Sub(_) => last_variable_gap(&pattern).filter(|&k| k + 1 < pattern.pieces.len()).map(small),
            Owner::Body(_) => None,
        };
        if let (Some(_), Owner::Sub(sub)) = (split_at, owner) {
            self.split_subs.entry(sub).or_default().push(idx);
        }
        self.compiled.push(Compiled {
            pattern,
            offset,
            target,
            owner,
            anchor_piece: small(anchor_piece),
            anchor_off: small(anchor_off),
            anchor_len: small(run.len()),
            split_at,
        });
    }

    /// Builds the prefilter; call once after the last `add`.
    pub fn finish(&mut self) {
        for t in &mut self.tiers {
            t.finish();
        }
        self.compiled.shrink_to_fit();
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }

    /// Scans `data`. `target_ok(t)` says whether target type `t` applies to this file. Stops at
    /// the first body-signature match.
    pub fn scan(&self, data: &[u8], target_ok: &dyn Fn(u32) -> bool, layout: &Layout) -> BodyHits {
        let mut hits = BodyHits::default();
        let mut counts: HashMap<u32, u32> = HashMap::new();
        let mut last_start: HashMap<u32, usize> = HashMap::new();
        let mut first_start: HashMap<u32, usize> = HashMap::new();
        let mut record = |c: &Compiled, start: usize, hits: &mut BodyHits| -> bool {
            if c.pattern.fullword && !whole_word(data, start, start + c.pattern.fixed_len().unwrap_or(0)) {
                return false;
            }
            match c.owner {
                Owner::Body(name) => {
                    hits.first = Some((name, start));
                    true
                }
                Owner::Sub(s) => {
                    *counts.entry(s).or_default() += 1;
                    let l = last_start.entry(s).or_default();
                    *l = (*l).max(start);
                    let f = first_start.entry(s).or_insert(start);
                    *f = (*f).min(start);
                    false
                }
            }
        };
        // positioned patterns
        for &i in &self.positioned {
            let c = &self.compiled[i as usize];
            if !target_ok(c.target) {
                continue;
            }
            let Some((lo, hi)) = c.offset.resolve(data.len() as u64, layout) else { continue };
            let hi = hi.min(data.len() as u64);
            let mut pos = lo;
            while pos <= hi {
                let mut budget = VERIFY_BUDGET;
                if forward(&c.pattern.pieces, data, pos as usize, &mut budget).is_some()
                    && record(c, pos as usize, &mut hits)
                {
                    return finish_counts(hits, counts, last_start);
                }
                pos += 1;
            }
        }
        // unanchored floating patterns
        for &i in &self.unanchored {
            let c = &self.compiled[i as usize];
            if !target_ok(c.target) {
                continue;
            }
            for pos in 0..data.len() {
                let mut budget = VERIFY_BUDGET;
                if forward(&c.pattern.pieces, data, pos, &mut budget).is_some() && record(c, pos, &mut hits) {
                    return finish_counts(hits, counts, last_start);
                }
            }
        }
        // anchored floating patterns through the prefilters
        for pf in &self.tiers {
            if pf.is_empty() || data.len() < 4 {
                continue;
            }
            let last = data.len() - 4;
            let ahead = PREFETCH_PROBES * pf.stride;
            let mut i = 0;
            while i <= last {
                if i + ahead <= last {
                    pf.prefetch(window(data, i + ahead));
                }
                for &(key, ci, shift) in pf.candidates(window(data, i)) {
                    if key != window(data, i) || i < shift as usize {
                        continue;
                    }
                    let c = &self.compiled[ci as usize];
                    if let Some(start) = self.verify_at_anchor(c, data, i - shift as usize)
                        && target_ok(c.target)
                        && record(c, start, &mut hits)
                    {
                        return finish_counts(hits, counts, last_start);
                    }
                }
                i += pf.stride;
            }
        }
        // split sub-signatures found at least once: counted again by the ends of their matches;
        // libclamav places the last match at the earliest start that reaches its end
        for (s, n) in counts.iter_mut() {
            if let Some(forms) = self.split_subs.get(s) {
                let ends: Option<Vec<EndCount>> =
                    forms.iter().map(|&ci| count_ends(&self.compiled[ci as usize], data)).collect();
                let mut placed = None;
                if let Some(ends) = ends {
                    *n = ends.iter().map(|e| e.0).sum();
                    // the form whose last match ends last
                    placed = ends.iter().filter_map(|e| e.1).max_by_key(|&(end, _)| end).map(|(_, start)| start);
                }
                if let Some(start) = placed.or_else(|| first_start.get(s).copied()) {
                    last_start.insert(*s, start);
                }
            }
        }
        finish_counts(hits, counts, last_start)
    }

    /// Verifies a pattern whose anchor run starts at `at`; returns the match start.
    fn verify_at_anchor(&self, c: &Compiled, data: &[u8], at: usize) -> Option<usize> {
        let pieces = &c.pattern.pieces;
        let (ap, ao) = (usize::from(c.anchor_piece), usize::from(c.anchor_off));
        let Piece::Bytes(bytes) = &pieces[ap] else { return None };
        let anchor = &bytes[ao..ao + usize::from(c.anchor_len)];
        if data.len() < at + anchor.len() || !bytes_match(anchor, &data[at..at + anchor.len()]) {
            return None;
        }
        let piece_start = at.checked_sub(ao)?;
        let piece_end = piece_start + bytes.len();
        if piece_end > data.len() || !bytes_match(bytes, &data[piece_start..piece_end]) {
            return None;
        }
        let mut budget = VERIFY_BUDGET;
        forward(&pieces[ap + 1..], data, piece_end, &mut budget)?;
        let mut start = None;
        backward(&pieces[..ap], data, piece_start, &mut budget, &mut |s| {
            start = Some(s);
            true
        });
        start
    }
}

/// Whether `data[start..end]` stands between bytes that are not letters or digits (`::f`).
fn whole_word(data: &[u8], start: usize, end: usize) -> bool {
    let word = |i: usize| data.get(i).is_some_and(u8::is_ascii_alphanumeric);
    (start == 0 || !word(start - 1)) && !word(end)
}

/// A split sub-signature's count of match ends, and for its last end: (where the part after
/// the jump starts, the earliest start of the whole that reaches it).
type EndCount = (u32, Option<(usize, usize)>);

/// Work allowed for counting the match ends of one split sub-signature in one buffer.
const COUNT_BUDGET: u32 = 16 * VERIFY_BUDGET;

/// How many positions end a match of split sub-signature `c` (libclamav's count): each
/// place where the part after the last variable jump starts a match with a valid start of
/// the whole before it (with a part of one length, each place where a match ends); and, for
/// the last of them, (where its part after the jump starts, the earliest start of the whole
/// that reaches it) when that was found within the budget.
/// `None` when that takes more than [`COUNT_BUDGET`] (hostile data): the caller keeps the
/// count by starts.
fn count_ends(c: &Compiled, data: &[u8]) -> Option<EndCount> {
    let k = usize::from(c.split_at?);
    let (prefix, suffix) = c.pattern.pieces.split_at(k + 1);
    // after an unbounded last jump (`*`), a position that has a start before it makes every
    // later one valid too: no looking back from each
    let unbounded = matches!(prefix.last(), Some(Piece::Gap { max: None, .. }));
    let mut left = COUNT_BUDGET;
    let (mut n, mut valid_from, mut last) = (0u32, None::<usize>, None::<usize>);
    let mut at = |pos: usize| -> bool {
        // the suffix has no variable jump: matching it is cheap; looking back is budgeted
        let mut budget = VERIFY_BUDGET;
        if forward(suffix, data, pos, &mut budget).is_none() {
            return true;
        }
        let ok = valid_from.is_some_and(|v| pos >= v) || {
            let mut budget = VERIFY_BUDGET.min(left);
            let found = backward(prefix, data, pos, &mut budget, &mut |_| true);
            left -= VERIFY_BUDGET.min(left) - budget;
            found
        };
        if ok {
            n += 1;
            last = Some(pos);
            if unbounded && valid_from.is_none() {
                valid_from = Some(pos);
            }
        }
        left > 0
    };
    // where the suffix starts with an exact byte, only those positions are tried
    let complete = match suffix.first() {
        Some(Piece::Bytes(b)) if b.first().is_some_and(|f| f.mask == 0xff) => {
            memchr::memchr_iter(b[0].value, data).all(&mut at)
        }
        _ => (0..=data.len()).all(&mut at),
    };
    if !complete {
        return None;
    }
    // the earliest start that reaches the last end
    let placed = last.and_then(|pos| {
        let mut budget = VERIFY_BUDGET;
        let mut earliest = None::<usize>;
        backward(prefix, data, pos, &mut budget, &mut |st| {
            earliest = Some(earliest.map_or(st, |e| e.min(st)));
            false
        });
        (budget > 0).then_some(earliest?).map(|st| (pos, st))
    });
    Some((n, placed))
}

fn finish_counts(mut hits: BodyHits, counts: HashMap<u32, u32>, last: HashMap<u32, usize>) -> BodyHits {
    hits.sub_counts = counts.into_iter().collect();
    hits.sub_last = last;
    hits
}

#[inline]
fn bytes_match(pat: &[ByteMatch], data: &[u8]) -> bool {
    pat.iter().zip(data).all(|(p, &d)| p.matches(d))
}

/// Matches `pieces` starting at `pos`; returns where the match ends.
fn forward(pieces: &[Piece], data: &[u8], pos: usize, budget: &mut u32) -> Option<usize> {
    if *budget == 0 {
        return None;
    }
    *budget -= 1;
    let Some((first, rest)) = pieces.split_first() else { return Some(pos) };
    match first {
        Piece::Bytes(b) => {
            let end = pos + b.len();
            (end <= data.len() && bytes_match(b, &data[pos..end])).then_some(())?;
            forward(rest, data, end, budget)
        }
        Piece::Alt(alts) => alts.iter().find_map(|a| {
            let end = pos + a.len();
            if end <= data.len() && bytes_match(a, &data[pos..end]) { forward(rest, data, end, budget) } else { None }
        }),
        Piece::Class(Class::Line) => match data.get(pos..) {
            Some([b'\n', ..]) => forward(rest, data, pos + 1, budget),
            _ => None,
        },
        Piece::NotClass(class) => {
            let b = *data.get(pos)?;
            let crlf = *class == Class::LineAfter && b == b'\r' && data.get(pos + 1) == Some(&b'\n');
            if class.contains(b) || crlf { None } else { forward(rest, data, pos + 1, budget) }
        }
        Piece::Class(Class::LineAfter) => match data.get(pos..) {
            Some([]) => forward(rest, data, pos, budget),
            Some([b'\n', ..]) => forward(rest, data, pos + 1, budget),
            Some([b'\r', b'\n', ..]) => forward(rest, data, pos + 2, budget),
            _ => None,
        },
        Piece::Class(class) => {
            // one byte of the class, or nothing where the data ends
            if pos == data.len() {
                return forward(rest, data, pos, budget);
            }
            if class.contains(data[pos]) { forward(rest, data, pos + 1, budget) } else { None }
        }
        Piece::NotAlt(set) => {
            let n = set.first().map_or(1, Vec::len);
            let here = data.get(pos..pos + n)?;
            if set.iter().any(|s| s.as_slice() == here) { None } else { forward(rest, data, pos + n, budget) }
        }
        Piece::Gap { min, max } => {
            let lo = pos + min;
            let hi = max.map_or(data.len(), |m| (pos + m).min(data.len()));
            if lo > hi {
                return None;
            }
            // jump straight to positions where the next exact byte occurs
            if let Some(Piece::Bytes(next)) = rest.first()
                && next[0].mask == 0xff
            {
                let mut p = lo;
                while p <= hi {
                    let off = memchr::memchr(next[0].value, &data[p..(hi + 1).min(data.len())])?;
                    if let Some(e) = forward(rest, data, p + off, budget) {
                        return Some(e);
                    }
                    if *budget == 0 {
                        return None;
                    }
                    p += off + 1;
                }
                return None;
            }
            (lo..=hi).find_map(|p| forward(rest, data, p, budget))
        }
    }
}

/// Matches `pieces` so that they end at `end`; calls `accept(start)` for each way they fit and
/// stops when it returns true.
fn backward(
    pieces: &[Piece],
    data: &[u8],
    end: usize,
    budget: &mut u32,
    accept: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((last, rest)) = pieces.split_last() else { return accept(end) };
    match last {
        Piece::Bytes(b) => {
            let Some(start) = end.checked_sub(b.len()) else { return false };
            bytes_match(b, &data[start..end]) && backward(rest, data, start, budget, accept)
        }
        Piece::Alt(alts) => alts.iter().any(|a| {
            end.checked_sub(a.len())
                .is_some_and(|s| bytes_match(a, &data[s..end]) && backward(rest, data, s, budget, accept))
        }),
        Piece::Class(Class::Line) => end > 0 && data[end - 1] == b'\n' && backward(rest, data, end - 1, budget, accept),
        Piece::NotClass(class) => {
            end > 0 && !class.contains(data[end - 1]) && backward(rest, data, end - 1, budget, accept)
        }
        Piece::Class(class) => {
            // one byte of the class, or nothing where the data starts
            if end == 0 {
                return backward(rest, data, 0, budget, accept);
            }
            class.contains(data[end - 1]) && backward(rest, data, end - 1, budget, accept)
        }
        Piece::NotAlt(set) => {
            let n = set.first().map_or(1, Vec::len);
            end.checked_sub(n).is_some_and(|s| {
                !set.iter().any(|x| x.as_slice() == &data[s..end]) && backward(rest, data, s, budget, accept)
            })
        }
        Piece::Gap { min, max } => {
            let Some(hi) = end.checked_sub(*min) else { return false };
            let lo = max.map_or(0, |m| end.saturating_sub(m));
            (lo..=hi).rev().any(|p| backward(rest, data, p, budget, accept))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(sigs: &[(&str, Offset)]) -> BodyMatcher {
        let mut m = BodyMatcher::default();
        for (i, (hex, off)) in sigs.iter().enumerate() {
            m.add(Pattern::parse(hex).unwrap(), *off, 0, Owner::Body(i as u32));
        }
        m.finish();
        m
    }

    fn first(m: &BodyMatcher, data: &[u8]) -> Option<(u32, usize)> {
        m.scan(data, &|_| true, &Layout::Plain).first
    }

    #[test]
    fn wildcards_jumps_and_alternatives() {
        let m = matcher(&[("4142434445??47{2-4}(5859|5a)", Offset::Any)]);
        assert_eq!(first(&m, b"xxABCDE_G12Z"), Some((0, 2)));
        assert_eq!(first(&m, b"xxABCDE_G1234XY"), Some((0, 2)));
        assert_eq!(first(&m, b"xxABCDE_G1Z"), None, "jump too short");
        assert_eq!(first(&m, b"xxABCDE_G12345Z"), None, "jump too long");
        let m = matcher(&[("00??(61|62)*41424344{-2}ff", Offset::Any)]);
        assert_eq!(first(&m, b"\x00\x01b.......ABCD\x09\xff"), Some((0, 0)));
        assert_eq!(first(&m, b"\x00\x01c.......ABCD\x09\xff"), None);
    }

    #[test]
    fn nibbles_and_negation() {
        let m = matcher(&[("41424344a?!(00|01)", Offset::Any)]);
        assert_eq!(first(&m, b"ABCD\xa7\x02"), Some((0, 0)));
        assert_eq!(first(&m, b"ABCD\xb7\x02"), None);
        assert_eq!(first(&m, b"ABCD\xa7\x01"), None);
    }

    #[test]
    fn offsets() {
        let m = matcher(&[
            ("4d5a9000", Offset::Exact(0)),
            ("454e4421", Offset::FromEnd(4, 0)),
            ("58585858", Offset::Window(2, 4)),
        ]);
        assert_eq!(first(&m, b"MZ\x90\x00rest"), Some((0, 0)));
        assert_eq!(first(&m, b"_MZ\x90\x00"), None);
        assert_eq!(first(&m, b"........END!"), Some((1, 8)));
        assert_eq!(first(&m, b"...XXXX"), Some((2, 3)));
        assert_eq!(first(&m, b".....XXXX"), None);
    }

    #[test]
    fn every_tier_finds_matches_at_every_alignment() {
        // anchors of 16 (stride 8), 8 (stride 4) and 5 (stride 1) bytes
        let m = matcher(&[
            ("000102030405060708090a0b0c0d0e0f", Offset::Any),
            ("1011121314151617??ff", Offset::Any),
            ("2021222324??ff", Offset::Any),
        ]);
        let sigs: [&[u8]; 3] = [
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            &[0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x00, 0xff],
            &[0x20, 0x21, 0x22, 0x23, 0x24, 0x00, 0xff],
        ];
        for (i, sig) in sigs.iter().enumerate() {
            for at in 0..20 {
                let mut d = vec![0xeeu8; 64];
                d[at..at + sig.len()].copy_from_slice(sig);
                assert_eq!(first(&m, &d), Some((i as u32, at)), "signature {i} at {at}");
            }
        }
    }

    /// The short-anchor tier probes as sparsely as its shortest anchor allows (7 and 6 bytes:
    /// every 3rd position) and still finds every anchor at every alignment.
    #[test]
    fn a_tier_strides_by_its_shortest_anchor() {
        let m = matcher(&[("30313233343536", Offset::Any), ("404142434445??ff", Offset::Any)]);
        assert_eq!(m.tiers[1].stride, 3);
        let sigs: [&[u8]; 2] = [b"0123456", &[0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x00, 0xff]];
        for (i, sig) in sigs.iter().enumerate() {
            for at in 0..12 {
                let mut d = vec![0xeeu8; 40];
                d[at..at + sig.len()].copy_from_slice(sig);
                assert_eq!(first(&m, &d), Some((i as u32, at)), "signature {i} at {at}");
            }
        }
    }

    #[test]
    fn short_patterns_without_anchor() {
        let m = matcher(&[("41??42", Offset::Any)]);
        assert_eq!(first(&m, b"zzA-Bzz"), Some((0, 2)));
    }

    #[test]
    fn many_random_patterns_find_planted_ones() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pats: Vec<Vec<u8>> = (0..5000).map(|_| (0..16).map(|_| rnd() as u8).collect()).collect();
        let mut m = BodyMatcher::default();
        for (i, p) in pats.iter().enumerate() {
            let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
            m.add(Pattern::parse(&hex).unwrap(), Offset::Any, 0, Owner::Body(i as u32));
        }
        m.finish();
        let data: Vec<u8> = (0..200_000).map(|_| rnd() as u8).collect();
        assert_eq!(first(&m, &data), None);
        for at in [123_456, 123_457, 123_458, 123_459, 0, 200_000 - 16] {
            let mut d = data.clone();
            d[at..at + 16].copy_from_slice(&pats[4321]);
            assert_eq!(first(&m, &d), Some((4321, at)), "planted at {at}");
        }
    }
}
