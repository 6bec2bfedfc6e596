//! Body signatures: a 4-byte-anchor prefilter (a 2^24-bit bitmap and a table keyed by the
//! anchor's first four bytes) in front of exact verification with wildcards, alternatives and
//! jumps. Signatures with a fixed offset are checked directly where they must start.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::sigdb::Offset;
use crate::sigdb::pattern::{ByteMatch, Pattern, Piece};

/// Work allowed to verify one candidate (bounds pathological `*` patterns).
const VERIFY_BUDGET: u32 = 100_000;
const BITMAP_BITS: u32 = 24;

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
    anchor_piece: usize,
    anchor_off: usize,
    /// The anchor run after its first four bytes.
    anchor_rest: Vec<u8>,
}

#[derive(Default)]
struct U32Hasher(u64);

impl Hasher for U32Hasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        let h = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The compiled body-signature matcher.
#[derive(Default)]
pub struct BodyMatcher {
    compiled: Vec<Compiled>,
    bitmap: Vec<u64>,
    table: HashMap<u32, Vec<u32>, BuildHasherDefault<U32Hasher>>,
    /// Offset-constrained patterns, checked at their allowed starts.
    positioned: Vec<u32>,
    /// Floating patterns without a 4-byte exact run: checked at every position of their first
    /// exact byte (or everywhere).
    unanchored: Vec<u32>,
}

/// What a scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BodyHits {
    /// First body signature that matched: (name index, start offset).
    pub first: Option<(u32, usize)>,
    /// Matches per logical sub-signature (global index), only for those that matched.
    pub sub_counts: Vec<(u32, u32)>,
}

#[inline]
fn bit_of(w: u32) -> usize {
    (w.wrapping_mul(0x9E37_79B1) >> (32 - BITMAP_BITS)) as usize
}

impl BodyMatcher {
    /// Adds a pattern.
    pub fn add(&mut self, pattern: Pattern, offset: Offset, target: u32, owner: Owner) {
        let idx = self.compiled.len() as u32;
        let anchor = pattern.anchor(4);
        let (anchor_piece, anchor_off, run) = anchor.clone().unwrap_or((0, 0, Vec::new()));
        let anchor_rest = run.get(4..).map(<[u8]>::to_vec).unwrap_or_default();
        if offset != Offset::Any {
            self.positioned.push(idx);
        } else if run.len() >= 4 {
            let key = u32::from_le_bytes([run[0], run[1], run[2], run[3]]);
            self.table.entry(key).or_default().push(idx);
        } else {
            self.unanchored.push(idx);
        }
        self.compiled.push(Compiled { pattern, offset, target, owner, anchor_piece, anchor_off, anchor_rest });
    }

    /// Builds the prefilter; call once after the last `add`.
    pub fn finish(&mut self) {
        self.bitmap = vec![0u64; (1usize << BITMAP_BITS) / 64];
        for key in self.table.keys() {
            let b = bit_of(*key);
            self.bitmap[b / 64] |= 1 << (b % 64);
        }
        self.table.shrink_to_fit();
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
    pub fn scan(&self, data: &[u8], target_ok: &dyn Fn(u32) -> bool) -> BodyHits {
        let mut hits = BodyHits::default();
        let mut counts: HashMap<u32, u32> = HashMap::new();
        let mut record = |c: &Compiled, start: usize, hits: &mut BodyHits| -> bool {
            match c.owner {
                Owner::Body(name) => {
                    hits.first = Some((name, start));
                    true
                }
                Owner::Sub(s) => {
                    *counts.entry(s).or_default() += 1;
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
            let (lo, hi) = match c.offset {
                Offset::Exact(n) => (n, n),
                Offset::Window(a, b) => (a, b),
                Offset::FromEnd(n, shift) => {
                    let Some(s) = (data.len() as u64).checked_sub(n) else { continue };
                    (s, s + shift)
                }
                Offset::Any => unreachable!("floating patterns are not positioned"),
            };
            let hi = hi.min(data.len() as u64);
            let mut pos = lo;
            while pos <= hi {
                let mut budget = VERIFY_BUDGET;
                if forward(&c.pattern.pieces, data, pos as usize, &mut budget).is_some()
                    && record(c, pos as usize, &mut hits)
                {
                    return finish_counts(hits, counts);
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
                    return finish_counts(hits, counts);
                }
            }
        }
        // anchored floating patterns through the prefilter
        if self.table.is_empty() || data.len() < 4 {
            return finish_counts(hits, counts);
        }
        let bitmap = &self.bitmap[..];
        for (i, w) in data.windows(4).enumerate() {
            let key = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let b = bit_of(key);
            if bitmap[b >> 6] & (1 << (b & 63)) == 0 {
                continue;
            }
            let Some(list) = self.table.get(&key) else { continue };
            for &ci in list {
                let c = &self.compiled[ci as usize];
                if let Some(start) = self.verify_at_anchor(c, data, i)
                    && target_ok(c.target)
                    && record(c, start, &mut hits)
                {
                    return finish_counts(hits, counts);
                }
            }
        }
        finish_counts(hits, counts)
    }

    /// Verifies a pattern whose anchor run starts at `at`; returns the match start.
    fn verify_at_anchor(&self, c: &Compiled, data: &[u8], at: usize) -> Option<usize> {
        let rest_start = at + 4;
        if data.len() < rest_start + c.anchor_rest.len()
            || data[rest_start..rest_start + c.anchor_rest.len()] != c.anchor_rest[..]
        {
            return None;
        }
        let pieces = &c.pattern.pieces;
        let Piece::Bytes(bytes) = &pieces[c.anchor_piece] else { return None };
        let piece_start = at.checked_sub(c.anchor_off)?;
        let piece_end = piece_start + bytes.len();
        if piece_end > data.len() || !bytes_match(bytes, &data[piece_start..piece_end]) {
            return None;
        }
        let mut budget = VERIFY_BUDGET;
        forward(&pieces[c.anchor_piece + 1..], data, piece_end, &mut budget)?;
        let mut start = None;
        backward(&pieces[..c.anchor_piece], data, piece_start, &mut budget, &mut |s| {
            start = Some(s);
            true
        });
        start
    }
}

fn finish_counts(mut hits: BodyHits, counts: HashMap<u32, u32>) -> BodyHits {
    hits.sub_counts = counts.into_iter().collect();
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
        Piece::NotAlt(set) => {
            let b = *data.get(pos)?;
            if set.contains(&b) { None } else { forward(rest, data, pos + 1, budget) }
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
        Piece::NotAlt(set) => end > 0 && !set.contains(&data[end - 1]) && backward(rest, data, end - 1, budget, accept),
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
        m.scan(data, &|_| true).first
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
        let mut data: Vec<u8> = (0..200_000).map(|_| rnd() as u8).collect();
        assert_eq!(first(&m, &data), None);
        data[123_456..123_472].copy_from_slice(&pats[4321]);
        assert_eq!(first(&m, &data), Some((4321, 123_456)));
    }
}
