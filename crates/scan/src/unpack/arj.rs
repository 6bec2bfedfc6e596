//! ARJ archives (issue 17): members stored (method 0), compressed with ARJ's LZ77 and static
//! Huffman codes (methods 1-3, one decoder: the methods differ only in how hard the packer
//! searched) or with its "fastest" variable-length codes (method 4); garbled (encrypted)
//! members reported as such. Each member's CRC-32 is checked (a mismatch is reported as damage,
//! its bytes still scanned); every byte produced is charged to the budget.

use super::{Entry, UnpackError};
use crate::limits::{Budget, Limit};
use crate::verdict::Unreadable;

/// How a header starts.
pub const MAGIC: [u8; 2] = [0x60, 0xea];

/// Largest basic header (ARJ's own limit).
const MAX_HEADER: usize = 2600;

fn le16(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether `d` starts with an ARJ main header whose size and CRC hold.
pub fn is_arj(d: &[u8]) -> bool {
    header(d, 0).is_some_and(|(h, _)| h.len() >= 30)
}

/// The basic header at `at` (checked against its CRC) and where what follows its extended
/// headers begins; `None` at the end marker or on damage.
fn header(d: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if d.get(at..at + 2)? != MAGIC {
        return None;
    }
    let size = le16(d, at + 2)?;
    if size == 0 || size > MAX_HEADER {
        return None;
    }
    let h = d.get(at + 4..at + 4 + size)?;
    if le32(d, at + 4 + size)? != crc32fast::hash(h) {
        return None;
    }
    let mut next = at + 8 + size;
    // extended headers: a size (0 ends them), the data and its CRC
    loop {
        let n = le16(d, next)?;
        next += 2;
        if n == 0 {
            return Some((h, next));
        }
        next = next.checked_add(n + 4)?;
    }
}

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let Some((_, mut at)) = header(data, 0) else {
        return Err(UnpackError::Broken(Unreadable::damaged("ARJ", "no main header")));
    };
    let mut entries = Vec::new();
    while let Some((h, data_at)) = header(data, at) {
        let first = usize::from(h[0]);
        let (flags, method, kind) = (h[4], h[5], h[6]);
        let (Some(packed), Some(size), Some(crc)) = (le32(h, 12), le32(h, 16), le32(h, 20)) else { break };
        let name_raw = h.get(first..).unwrap_or_default();
        let name = super::text_name(&name_raw[..name_raw.iter().position(|&b| b == 0).unwrap_or(name_raw.len())]);
        let end = data_at.saturating_add(packed as usize);
        at = end;
        // directories, volume labels and the like hold no data
        if kind > 1 {
            continue;
        }
        budget.entry()?;
        let input = &data[data_at.min(data.len())..end.min(data.len())];
        if flags & 0x01 != 0 {
            entries.push(Entry::Encrypted { name, kind: "Encrypted.ARJ" });
            continue;
        }
        let decoded = match method {
            0 => {
                budget.spend(input.len() as u64)?;
                Ok(input.to_vec())
            }
            1..=3 => Decoder::new(input, size as usize, budget).lzh(),
            4 => Decoder::new(input, size as usize, budget).fastest(),
            m => {
                entries.push(Entry::Broken { name, why: Unreadable::unsupported("ARJ", format!("method {m}")) });
                continue;
            }
        };
        let out = match decoded {
            Ok(out) => out,
            Err(Stop::Limit(l)) => return Err(UnpackError::Limit(l)),
            Err(Stop::Damaged(out)) => out,
        };
        entries.push(if out.len() == size as usize && crc32fast::hash(&out) == crc && input.len() == packed as usize {
            Entry::File { name, data: out }
        } else if out.is_empty() {
            Entry::Broken { name, why: Unreadable::damaged("ARJ", "the member does not decode") }
        } else {
            let why = format!(
                "{} of {size} bytes, CRC {}",
                out.len(),
                if crc32fast::hash(&out) == crc { "ok" } else { "mismatch" }
            );
            Entry::Damaged { name, data: out, why: Unreadable::damaged("ARJ", why).to_string() }
        });
    }
    Ok(entries)
}

/// Why decoding stopped early.
enum Stop {
    /// A limit of the scan.
    Limit(Limit),
    /// The stream is damaged: what was decoded before.
    Damaged(Vec<u8>),
}

/// Codes of the literal/length tree: 256 bytes and lengths 3 to 256.
const NC: usize = 510;
/// Codes of the position tree.
const NP: usize = 17;
/// Codes of the tree that codes the literal tree's lengths.
const NT: usize = 19;
const TABLE_BITS_C: usize = 12;
const TABLE_BITS_PT: usize = 8;

struct Decoder<'a, 'b> {
    input: &'a [u8],
    at: usize,
    bitbuf: u16,
    sub: u8,
    count: u32,
    out: Vec<u8>,
    size: usize,
    budget: &'b mut Budget,
    c_len: [u8; NC],
    c_table: Vec<u16>,
    pt_len: [u8; NT],
    pt_table: Vec<u16>,
    left: Vec<u16>,
    right: Vec<u16>,
}

impl<'a, 'b> Decoder<'a, 'b> {
    fn new(input: &'a [u8], size: usize, budget: &'b mut Budget) -> Self {
        let mut d = Decoder {
            input,
            at: 0,
            bitbuf: 0,
            sub: 0,
            count: 0,
            out: Vec::new(),
            size,
            budget,
            c_len: [0; NC],
            c_table: vec![0; 1 << TABLE_BITS_C],
            pt_len: [0; NT],
            pt_table: vec![0; 1 << TABLE_BITS_PT],
            left: vec![0; 2 * NC - 1],
            right: vec![0; 2 * NC - 1],
        };
        d.fill(16);
        d
    }

    /// Shifts `n` bits out of the 16-bit window, reading bytes as needed (zeros past the end).
    fn fill(&mut self, mut n: u32) {
        self.bitbuf = ((u32::from(self.bitbuf) << n) & 0xffff) as u16;
        while n > self.count {
            n -= self.count;
            self.bitbuf |= ((u32::from(self.sub) << n) & 0xffff) as u16;
            self.sub = self.input.get(self.at).copied().unwrap_or(0);
            self.at += 1;
            self.count = 8;
        }
        self.count -= n;
        self.bitbuf |= (u32::from(self.sub) >> self.count) as u16;
    }

    fn bits(&mut self, n: u32) -> u16 {
        let v = if n == 0 { 0 } else { self.bitbuf >> (16 - n) };
        self.fill(n);
        v
    }

    /// Past the input by more than the window holds: the stream broke off.
    fn exhausted(&self) -> bool {
        self.at > self.input.len() + 4
    }

    fn damaged(&mut self) -> Stop {
        Stop::Damaged(std::mem::take(&mut self.out))
    }

    /// Appends `b`, charging the budget in 64 KiB steps.
    fn push(&mut self, b: u8) -> Result<(), Stop> {
        if self.out.len().is_multiple_of(65536) {
            self.budget.spend(65536.min((self.size - self.out.len()) as u64)).map_err(Stop::Limit)?;
        }
        self.out.push(b);
        Ok(())
    }

    /// A copy of `len` bytes from `back + 1` bytes before the end.
    fn copy(&mut self, back: usize, len: usize) -> Result<(), Stop> {
        if back >= self.out.len() {
            return Err(self.damaged());
        }
        for _ in 0..len.min(self.size - self.out.len()) {
            let b = self.out[self.out.len() - back - 1];
            self.push(b)?;
        }
        Ok(())
    }

    /// Methods 1-3.
    fn lzh(mut self) -> Result<Vec<u8>, Stop> {
        let mut block = 0u32;
        while self.out.len() < self.size {
            if self.exhausted() {
                return Err(self.damaged());
            }
            if block == 0 {
                block = u32::from(self.bits(16));
                let ok = self.read_pt_len(NT, 5, Some(3)) && self.read_c_len() && self.read_pt_len(NP, 5, None);
                if !ok {
                    return Err(self.damaged());
                }
            }
            block = block.wrapping_sub(1);
            let c = self.decode(true);
            if c < 256 {
                self.push(c as u8)?;
            } else {
                let len = c - 253;
                let back = self.decode_position();
                self.copy(back, len)?;
            }
        }
        Ok(self.out)
    }

    /// Method 4: lengths and positions in unary-prefixed widths.
    fn fastest(mut self) -> Result<Vec<u8>, Stop> {
        while self.out.len() < self.size {
            if self.exhausted() {
                return Err(self.damaged());
            }
            let len = self.prefixed(0, 7);
            if len == 0 {
                let b = self.bits(8) as u8;
                self.push(b)?;
            } else {
                let back = self.prefixed(9, 13);
                self.copy(back, len + 2)?;
            }
        }
        Ok(self.out)
    }

    /// A value of method 4: up to `stop - start` one bits pick the width, from `start`.
    fn prefixed(&mut self, start: u32, stop: u32) -> usize {
        let (mut plus, mut pwr, mut width) = (0usize, 1usize << start, start);
        while width < stop {
            if self.bits(1) == 0 {
                break;
            }
            plus += pwr;
            pwr <<= 1;
            width += 1;
        }
        plus + usize::from(self.bits(width))
    }

    /// A symbol of the literal/length tree (`literal`) or of the position tree.
    fn decode(&mut self, literal: bool) -> usize {
        let (table, bits, lens, n): (&[u16], usize, &[u8], usize) = if literal {
            (&self.c_table, TABLE_BITS_C, &self.c_len, NC)
        } else {
            (&self.pt_table, TABLE_BITS_PT, &self.pt_len, NP)
        };
        let mut j = usize::from(table[usize::from(self.bitbuf >> (16 - bits))]);
        let mut mask = 1u16 << (15 - bits);
        let mut steps = 0;
        while j >= n && steps < 16 {
            j = usize::from(if self.bitbuf & mask != 0 { self.right[j] } else { self.left[j] });
            mask >>= 1;
            steps += 1;
        }
        let j = j.min(n - 1);
        let len = u32::from(lens[j]);
        self.fill(len);
        j
    }

    fn decode_position(&mut self) -> usize {
        let j = self.decode(false);
        if j == 0 { 0 } else { (1 << (j - 1)) + usize::from(self.bits(j as u32 - 1)) }
    }

    /// The code lengths of the tree of `n` codes read with `nbit`-bit counts (`special`: after
    /// that many, a 2-bit count of zero lengths follows).
    fn read_pt_len(&mut self, n: usize, nbit: u32, special: Option<usize>) -> bool {
        let count = usize::from(self.bits(nbit));
        if count == 0 {
            let c = self.bits(nbit);
            self.pt_len[..n].fill(0);
            self.pt_table.fill(c);
            return true;
        }
        if count > n {
            return false;
        }
        let mut i = 0;
        while i < count {
            let mut c = u32::from(self.bitbuf >> 13);
            if c == 7 {
                let mut mask = 1u16 << 12;
                while mask != 0 && self.bitbuf & mask != 0 {
                    mask >>= 1;
                    c += 1;
                }
                if c > 16 {
                    return false;
                }
            }
            self.fill(if c < 7 { 3 } else { c - 3 });
            self.pt_len[i] = c as u8;
            i += 1;
            if Some(i) == special {
                let zeros = usize::from(self.bits(2));
                for _ in 0..zeros {
                    if i < n {
                        self.pt_len[i] = 0;
                        i += 1;
                    }
                }
            }
        }
        self.pt_len[i.min(n)..n].fill(0);
        let lens = self.pt_len;
        make_table(&lens[..n], TABLE_BITS_PT, &mut self.pt_table, &mut self.left, &mut self.right)
    }

    fn read_c_len(&mut self) -> bool {
        let count = usize::from(self.bits(9));
        if count == 0 {
            let c = self.bits(9);
            self.c_len.fill(0);
            self.c_table.fill(c);
            return true;
        }
        if count > NC {
            return false;
        }
        let mut i = 0;
        while i < count {
            let mut c = usize::from(self.pt_table[usize::from(self.bitbuf >> 8)]);
            let mut mask = 1u16 << 7;
            let mut steps = 0;
            while c >= NT && steps < 16 {
                c = usize::from(if self.bitbuf & mask != 0 { self.right[c] } else { self.left[c] });
                mask >>= 1;
                steps += 1;
            }
            if c >= NT {
                return false;
            }
            self.fill(u32::from(self.pt_len[c]));
            if c <= 2 {
                let zeros = match c {
                    0 => 1,
                    1 => usize::from(self.bits(4)) + 3,
                    _ => usize::from(self.bits(9)) + 20,
                };
                for _ in 0..zeros {
                    if i < NC {
                        self.c_len[i] = 0;
                        i += 1;
                    }
                }
            } else {
                self.c_len[i] = (c - 2) as u8;
                i += 1;
            }
        }
        self.c_len[i.min(NC)..].fill(0);
        let lens = self.c_len;
        make_table(&lens, TABLE_BITS_C, &mut self.c_table, &mut self.left, &mut self.right)
    }
}

/// The lookup table (and, for codes longer than `bits`, the tree below it) of the canonical
/// Huffman code with code lengths `lens`; false when the lengths do not make a code.
fn make_table(lens: &[u8], bits: usize, table: &mut [u16], left: &mut [u16], right: &mut [u16]) -> bool {
    let mut count = [0u32; 17];
    for &l in lens {
        if l > 16 {
            return false;
        }
        count[usize::from(l)] += 1;
    }
    let mut start = [0u32; 18];
    for i in 1..=16 {
        start[i + 1] = start[i] + (count[i] << (16 - i));
    }
    if start[17] != 1 << 16 {
        return false;
    }
    let jut = 16 - bits;
    let mut weight = [0u32; 17];
    for i in 1..=bits {
        start[i] >>= jut;
        weight[i] = 1 << (bits - i);
    }
    for (i, w) in weight.iter_mut().enumerate().skip(bits + 1) {
        *w = 1 << (16 - i);
    }
    let first_free = (start[bits + 1] >> jut) as usize;
    let n = table.len();
    table[first_free.min(n)..].fill(0);
    let mut avail = lens.len();
    let mask = 1u32 << (15 - bits);
    for (ch, &l) in lens.iter().enumerate() {
        let l = usize::from(l);
        if l == 0 {
            continue;
        }
        let next = start[l] + weight[l];
        if l <= bits {
            for slot in table.iter_mut().take(next as usize).skip(start[l] as usize) {
                *slot = ch as u16;
            }
        } else {
            let mut k = start[l];
            // where the next node is: the table's slot or a node's child
            let mut at = Slot::Table((k >> jut) as usize);
            let nodes = left.len();
            for _ in 0..l - bits {
                let get = |at: Slot, table: &[u16], left: &[u16], right: &[u16]| match at {
                    Slot::Table(i) => table[i],
                    Slot::Left(n) => left[n],
                    Slot::Right(n) => right[n],
                };
                let mut node = get(at, table, left, right);
                if node == 0 {
                    if avail >= nodes {
                        return false;
                    }
                    left[avail] = 0;
                    right[avail] = 0;
                    node = avail as u16;
                    match at {
                        Slot::Table(i) => table[i] = node,
                        Slot::Left(n) => left[n] = node,
                        Slot::Right(n) => right[n] = node,
                    }
                    avail += 1;
                }
                let n = usize::from(node);
                at = if k & mask != 0 { Slot::Right(n) } else { Slot::Left(n) };
                k <<= 1;
            }
            match at {
                Slot::Table(i) => table[i] = ch as u16,
                Slot::Left(n) => left[n] = ch as u16,
                Slot::Right(n) => right[n] = ch as u16,
            }
        }
        start[l] = next;
    }
    true
}

/// A place in the lookup table or the tree.
#[derive(Clone, Copy)]
enum Slot {
    Table(usize),
    Left(usize),
    Right(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn not_an_archive_and_garbage_members_end_without_a_panic() {
        assert!(!is_arj(b"not an archive"));
        assert!(unpack(b"\x60\xea\x00\x00", &mut Budget::new(Limits::default())).is_err());
        let junk = testkit::pseudo_random(3, 5000);
        let mut budget = Budget::new(Limits::default());
        for method in [1, 4] {
            let _ = Decoder::new(&junk, 100_000, &mut budget).lzh().map(|v| v.len());
            let r = if method == 1 {
                Decoder::new(&junk, 100_000, &mut budget).lzh()
            } else {
                Decoder::new(&junk, 100_000, &mut budget).fastest()
            };
            assert!(r.map(|v| v.len() <= 100_000).unwrap_or(true));
        }
    }
}
