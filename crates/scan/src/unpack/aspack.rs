//! ASPack 2.x-packed Windows executables (issue 17). ASPack's loader sits in a section of its
//! own (`.aspack`, followed by an empty `.adata`); the entry point is one byte into it and starts
//! `pusha; call $+8`. Its version (2.12, 2.12b–2.41, 2.42) shows in where a `push 0; ret`
//! placeholder sits in the loader; each version keeps its block table, its table of offset
//! widths and its length extras at fixed places in the loader. Each block (address, size) is
//! decompressed in place, from a copy of its first bytes, with an adaptive Huffman-coded LZ77:
//! symbols below 256 are literals, 720 and above rebuild the code tables from the stream,
//! the rest a copy whose offset is coded by one of 58 slots (with a history of the last three
//! offsets) and whose length may take extra bits. After the first block, the `call`/`jmp`
//! targets ASPack rewrote are turned back. The executable is rebuilt with its file layout set
//! to its memory layout, the loader's two sections left out and the original entry point
//! restored, as libclamav rebuilds it. Decoded from that description; bounded by the image and
//! the budget.

use super::UnpackError;
use super::peimage::{Section, le16, le32, load, put32, sections};
use crate::limits::Budget;

/// The loader's first bytes (at the entry point).
const ENTRY: &[u8] = b"\x60\xe8\x03\x00\x00\x00\xe9\xeb";
/// `push 0; ret`, where the loader's jump to the original entry point is patched in.
const PLACEHOLDER: &[u8] = b"\x68\x00\x00\x00\x00\xc3";
/// Most blocks decompressed (one per section).
const MAX_BLOCKS: usize = 96;

/// Where a version keeps its things, as offsets from the loader's start (one byte before the
/// entry point).
struct Layout {
    /// The placeholder, from the entry point.
    placeholder: usize,
    /// The table of blocks: (address, size), 8 bytes each for 2.12, 12 for the others.
    blocks: usize,
    entry_len: usize,
    /// 58 widths of the offset slots.
    widths: usize,
    /// Length extras and widths, offset-slot widths (0x72 bytes).
    extras: usize,
    /// The byte that marks a rewritten `call`/`jmp` target.
    marker: usize,
    /// The original entry point.
    oep: usize,
}

const LAYOUTS: [Layout; 3] = [
    // 2.12
    Layout { placeholder: 0x3b9, blocks: 0x57c, entry_len: 8, widths: 0x70e, extras: 0x6d6, marker: 0x148, oep: 0x39b },
    // 2.12b to 2.41
    Layout {
        placeholder: 0x41f,
        blocks: 0x5d8,
        entry_len: 12,
        widths: 0x76a,
        extras: 0x732,
        marker: 0x13a,
        oep: 0x401,
    },
    // 2.42
    Layout {
        placeholder: 0x42b,
        blocks: 0x5e4,
        entry_len: 12,
        widths: 0x776,
        extras: 0x73e,
        marker: 0x148,
        oep: 0x40d,
    },
];

/// The unpacked executable, if `data` is packed by ASPack 2.x and decodes; `Ok(None)` when it
/// is not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some(pe) = le32(data, 0x3c).filter(|&p| data.get(p..p + 4) == Some(b"PE\0\0")) else { return Ok(None) };
    if le16(data, pe + 24) != Some(0x10b) {
        return Ok(None);
    }
    let Some((secs, opt)) = sections(data, pe, 96) else { return Ok(None) };
    let (Some(entry), Some(align)) = (le32(data, pe + 0x28), le32(data, pe + 24 + 32)) else { return Ok(None) };
    let Some(code) = secs
        .iter()
        .find(|s| entry >= s.rva && entry - s.rva < s.rsize)
        .map(|s| s.raw + (entry - s.rva))
        .and_then(|at| data.get(at..))
    else {
        return Ok(None);
    };
    if !code.starts_with(ENTRY) {
        return Ok(None);
    }
    let Some(layout) = LAYOUTS.iter().find(|l| code.get(l.placeholder..l.placeholder + 6) == Some(PLACEHOLDER)) else {
        return Ok(None);
    };
    let align = if align.is_power_of_two() && align <= 0x10000 { align } else { 0x1000 };
    let Some(mut image) = load(data, &secs, align, budget)? else { return Ok(None) };
    let Some(loader) = entry.checked_sub(1) else { return Ok(None) };
    let mut limit = None;
    if decompress(&mut image, loader, layout, budget, &mut limit).is_none() {
        return match limit {
            Some(l) => Err(l.into()),
            None => Ok(None),
        };
    }
    // the loader's section and the empty one after it are left out
    let n = secs.len();
    let kept = if n > 2 && secs[n - 2].rva == loader && secs[n - 1].rsize == 0 { n - 2 } else { n };
    let oep = le32(&image, loader + layout.oep);
    Ok(rebuild(image, pe, opt, &secs[..kept], align, oep))
}

/// Runs the block table; `None` if a block does not decode (the limit reached, if any, left in
/// `limit`).
fn decompress(
    image: &mut [u8],
    loader: usize,
    layout: &Layout,
    budget: &mut Budget,
    limit: &mut Option<crate::limits::Limit>,
) -> Option<()> {
    // the base of each offset slot: the sum of 2^width of the slots before it
    let mut bases = [0u32; 58];
    let mut next = 0u32;
    for (i, base) in bases.iter_mut().enumerate() {
        *base = next;
        if let Some(&w) = image.get(loader + layout.widths + i) {
            next = next.wrapping_add(1u32.wrapping_shl(u32::from(w)));
        }
    }
    let mut tables = Tables::new();
    let mut table = loader + layout.blocks;
    let mut first = true;
    for _ in 0..MAX_BLOCKS {
        let (rva, size) = (le32(image, table)?, le32(image, table + 4)?);
        if rva == 0 || size == 0 {
            return (rva == 0).then_some(());
        }
        if rva.checked_add(size)? > image.len() {
            return None;
        }
        if let Err(l) = budget.spend(size as u64) {
            *limit = Some(l);
            return None;
        }
        // the loader's tables, read where they are now (a block may have written over them)
        let extras: [u8; 0x72] = image.get(loader + layout.extras..loader + layout.extras + 0x72)?.try_into().ok()?;
        // the packed bytes are the block's first ones, followed by zeros
        let mut input = image[rva..rva + size].to_vec();
        input.resize(size + 0x10e, 0);
        let mut s = Decoder { input: &input, at: 0, bitpos: 0x20, hash: 0x10000, tables: &mut tables };
        s.tables.reset_block();
        s.read_tables()?;
        s.decode(&extras, &bases, &mut image[rva..rva + size])?;
        if first && size > 7 {
            let marker = *image.get(loader + layout.marker)?;
            unrewrite_calls(&mut image[rva..rva + size], marker);
            first = false;
        }
        table += layout.entry_len;
        if layout.entry_len == 12 {
            // entries whose size is -0x10e are skipped
            let mut skipped = 0;
            while le32(image, table + 4)? == 0xffff_fef2 {
                table += 12;
                skipped += 1;
                if skipped > MAX_BLOCKS {
                    return None;
                }
            }
        }
    }
    None
}

/// Turns the targets of `call` and `jmp` (E8/E9) that ASPack made absolute and marked back
/// into relative ones.
fn unrewrite_calls(block: &mut [u8], marker: u8) {
    let mut i = 0;
    while i + 6 < block.len() {
        if matches!(block[i], 0xe8 | 0xe9) && block[i + 1] == marker {
            let v = u32::from_le_bytes(block[i + 1..i + 5].try_into().unwrap_or_default());
            let target = (v & 0xffff_ff00).rotate_left(24).wrapping_sub(i as u32);
            block[i + 1..i + 5].copy_from_slice(&target.to_le_bytes());
            i += 4;
        }
        i += 1;
    }
}

/// The image as an executable: the kept sections laid out in the file as in memory, the entry
/// point set to the original one, the file ending with the last kept section.
fn rebuild(
    mut image: Vec<u8>,
    pe: usize,
    opt: usize,
    kept: &[Section],
    align: usize,
    oep: Option<usize>,
) -> Option<Vec<u8>> {
    let end = kept.iter().map(|s| s.rva.saturating_add(s.vsize.max(s.rsize).next_multiple_of(align))).max()?;
    image.truncate(end);
    image.get_mut(pe + 6..pe + 8)?.copy_from_slice(&u16::try_from(kept.len()).ok()?.to_le_bytes());
    if let Some(oep) = oep {
        put32(&mut image, pe + 0x28, oep)?;
    }
    let table = pe + 24 + opt;
    for (i, s) in kept.iter().enumerate() {
        let h = table + i * 40;
        let size = s.vsize.max(s.rsize).next_multiple_of(align);
        for (field, v) in [(8, size), (12, s.rva), (16, size), (20, s.rva)] {
            put32(&mut image, h + field, v)?;
        }
    }
    Some(image)
}

/// A canonical code: which symbol each code of a length stands for.
struct Code {
    /// Symbols in code order.
    symbols: Vec<u32>,
    /// For codes that start in the top 8 bits: their length by the top byte.
    short: [u8; 256],
}

impl Code {
    fn new(size: usize) -> Self {
        Code { symbols: vec![0; size], short: [0; 256] }
    }
}

/// The four codes (symbols, length extras, offset low bits, the lengths of the others), their
/// limits and first indices by length, and the previous code lengths the next table adds to.
struct Tables {
    codes: [Code; 4],
    limits: [[u32; 24]; 4],
    firsts: [[u32; 24]; 4],
    lengths1: [u8; 19],
    lengths2: [u8; 758],
    previous: [u8; 757],
    /// Offsets take a coded low part (a table of offset-low lengths that is not all 3).
    coded_low: bool,
}

const SIZES: [usize; 4] = [721, 28, 8, 19];

impl Tables {
    fn new() -> Self {
        Tables {
            codes: SIZES.map(Code::new),
            limits: [[0; 24]; 4],
            firsts: [[0; 24]; 4],
            lengths1: [0; 19],
            lengths2: [0; 758],
            previous: [0; 757],
            coded_low: false,
        }
    }

    fn reset_block(&mut self) {
        self.limits = [[0; 24]; 4];
        self.firsts = [[0; 24]; 4];
        self.previous = [0; 757];
    }

    /// Builds code `which` from the code lengths `lengths` (one per symbol, at most 17).
    fn build(&mut self, which: usize, lengths: &[u8]) -> Option<()> {
        let size = SIZES[which];
        let mut count = [0u32; 18];
        for &l in &lengths[..size] {
            *count.get_mut(usize::from(l))? += 1;
        }
        let mut next = [0u32; 18];
        let (limits, firsts) = (&mut self.limits[which], &mut self.firsts[which]);
        limits[0] = 0;
        firsts[0] = 0;
        let mut sum = 0u32;
        let mut end = 0usize;
        for (i, shift) in (9..=23u32).rev().enumerate() {
            sum = sum.wrapping_add(count[i + 1] << shift);
            if sum > 0x100_0000 {
                return None;
            }
            limits[i + 1] = sum;
            firsts[i + 1] = count[i].wrapping_add(firsts[i]);
            next[i + 1] = firsts[i + 1];
            if shift >= 16 {
                let start = end;
                end = (sum >> 16) as usize;
                if end < start || end > 0x100 {
                    return None;
                }
                self.codes[which].short[start..end].fill(i as u8 + 1);
            }
        }
        if sum != 0x100_0000 {
            return None;
        }
        for (symbol, &l) in lengths[..size].iter().enumerate() {
            if l != 0 {
                let slot = next.get_mut(usize::from(l))?;
                *self.codes[which].symbols.get_mut(*slot as usize)? = symbol as u32;
                *slot += 1;
            }
        }
        Some(())
    }
}

/// The bit reader and the codes, over one block's input.
struct Decoder<'a> {
    input: &'a [u8],
    at: usize,
    /// How many bits of the top byte of `hash` are used up (at most 7 after a refill).
    bitpos: u32,
    hash: u32,
    tables: &'a mut Tables,
}

impl Decoder<'_> {
    /// Refills `hash` until fewer than 8 bits are used up.
    fn refill(&mut self) -> Option<()> {
        while self.bitpos >= 8 {
            let b = *self.input.get(self.at)?;
            self.at += 1;
            self.hash = (self.hash << 8) | u32::from(b);
            self.bitpos -= 8;
        }
        Some(())
    }

    /// The next 24 bits, the first one on top.
    fn window(&mut self) -> Option<u32> {
        self.refill()?;
        Some((self.hash >> (8 - self.bitpos)) & 0xff_ffff)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        if n > 24 {
            return None;
        }
        let v = self.window()? >> (24 - n);
        self.bitpos += n;
        Some(v)
    }

    /// The next symbol of code `which`.
    fn symbol(&mut self, which: usize) -> Option<u32> {
        let v = self.window()? & 0xff_fe00;
        let limits = &self.tables.limits[which];
        let len = if v < limits[8] {
            let l = self.tables.codes[which].short[(v >> 16) as usize];
            if l == 0 || l >= 24 {
                return None;
            }
            usize::from(l)
        } else if v < limits[10] {
            if v < limits[9] { 9 } else { 10 }
        } else {
            // the limits are compared in this order even where a hostile table makes them
            // decrease
            (11..=14).find(|&l| v < limits[l]).unwrap_or(15)
        };
        self.bitpos += len as u32;
        let index = (v.wrapping_sub(limits[len - 1]) >> (24 - len)).wrapping_add(self.tables.firsts[which][len]);
        self.tables.codes[which].symbols.get(index as usize).copied()
    }

    /// Reads new code tables from the stream.
    fn read_tables(&mut self) -> Option<()> {
        if self.bits(1)? == 0 {
            self.tables.previous = [0; 757];
        }
        for i in 0..19 {
            self.tables.lengths1[i] = self.bits(4)? as u8;
        }
        let lengths1 = self.tables.lengths1;
        self.tables.build(3, &lengths1)?;
        let mut n = 0;
        while n < 757 {
            let s = self.symbol(3)?;
            match s {
                0..=15 => {
                    self.tables.lengths2[1 + n] = (self.tables.previous[n].wrapping_add(s as u8)) & 0xf;
                    n += 1;
                }
                16 => {
                    let run = 3 + self.bits(2)?;
                    for _ in 0..run {
                        if n >= 757 {
                            break;
                        }
                        self.tables.lengths2[1 + n] = self.tables.lengths2[n];
                        n += 1;
                    }
                }
                _ => {
                    let run = if s == 17 { 3 + self.bits(3)? } else { 11 + self.bits(7)? };
                    for _ in 0..run {
                        if n >= 757 {
                            break;
                        }
                        self.tables.lengths2[1 + n] = 0;
                        n += 1;
                    }
                }
            }
        }
        let lengths2 = self.tables.lengths2;
        self.tables.build(0, &lengths2[1..722])?;
        self.tables.build(1, &lengths2[722..750])?;
        self.tables.build(2, &lengths2[750..758])?;
        self.tables.coded_low = lengths2[750..758].iter().any(|&l| l != 3);
        self.tables.previous.copy_from_slice(&lengths2[1..758]);
        Some(())
    }

    /// Decodes `out.len()` bytes.
    fn decode(&mut self, extras: &[u8; 0x72], bases: &[u32; 58], out: &mut [u8]) -> Option<()> {
        let mut history = [0u32; 3];
        let mut n = 0;
        while n < out.len() {
            let s = self.symbol(0)?;
            if s < 256 {
                out[n] = s as u8;
                n += 1;
                continue;
            }
            if s >= 720 {
                self.read_tables()?;
                continue;
            }
            let slot = ((s - 256) >> 3) as usize;
            let mut len = ((s - 256) & 7) + 2;
            if len == 9 {
                let e = self.symbol(1)? as usize;
                if e >= 0x56 {
                    return None;
                }
                len += u32::from(extras[e]) + self.bits(u32::from(extras[e + 0x1c]))?;
            }
            let mut offset = bases[slot];
            let width = u32::from(extras[slot + 0x38]);
            if !self.tables.coded_low || width < 3 {
                offset = offset.wrapping_add(self.bits(width)?);
            } else {
                offset = offset.wrapping_add(self.bits(width - 3)?.wrapping_mul(8));
                offset = offset.wrapping_add(self.symbol(2)?);
            }
            let distance = if offset < 3 {
                let d = history[offset as usize];
                if offset != 0 {
                    history[offset as usize] = history[0];
                    history[0] = d;
                }
                d
            } else {
                history = [offset - 3, history[0], history[1]];
                offset - 3
            };
            let distance = distance.wrapping_add(1) as usize;
            let len = len as usize;
            if distance == 0 || distance > n || len > out.len() - n {
                return None;
            }
            for _ in 0..len {
                out[n] = out[n - distance];
                n += 1;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::unpack::peimage::test_exe;

    /// Bits most significant first.
    #[derive(Default)]
    struct BitWriter {
        out: Vec<u8>,
        acc: u8,
        used: u32,
    }

    impl BitWriter {
        fn bits(&mut self, v: u32, n: u32) {
            for k in (0..n).rev() {
                self.acc = (self.acc << 1) | ((v >> k) & 1) as u8;
                self.used += 1;
                if self.used == 8 {
                    self.out.push(self.acc);
                    (self.acc, self.used) = (0, 0);
                }
            }
        }
        fn finish(mut self) -> Vec<u8> {
            if self.used > 0 {
                self.bits(0, 8 - self.used);
            }
            self.out
        }
    }

    /// Writes symbols of the codes the decoder builds from the same lengths.
    struct Encoder {
        w: BitWriter,
        tables: Tables,
        lengths: [Vec<u8>; 4],
    }

    impl Encoder {
        fn symbol(&mut self, which: usize, s: u32) {
            let l = usize::from(self.lengths[which][s as usize]);
            assert!(l > 0, "symbol {s} of code {which} has no code");
            let first = self.tables.firsts[which][l] as usize;
            let rank = (first..).position(|i| self.tables.codes[which].symbols[i] == s).unwrap() as u32;
            let code = (self.tables.limits[which][l - 1] >> (24 - l)) + rank;
            self.w.bits(code, l as u32);
        }
    }

    /// Widths of the 58 offset slots and the length extras (values, then widths at 0x1c).
    fn loader_tables() -> ([u8; 58], [u8; 0x72]) {
        let widths: [u8; 58] = std::array::from_fn(|i| (i / 2).min(14) as u8);
        let mut extras = [0u8; 0x72];
        extras[..4].copy_from_slice(&[0, 4, 20, 100]);
        extras[0x1c..0x20].copy_from_slice(&[2, 4, 6, 8]);
        extras[0x38..].copy_from_slice(&widths);
        (widths, extras)
    }

    /// A packed block: the code tables, then `text` as literals and copies (distance, length),
    /// `items` in order; returns the stream and what it decodes to.
    fn stream(items: &[Result<u8, (u32, u32)>]) -> (Vec<u8>, Vec<u8>) {
        let (widths, extras) = loader_tables();
        let mut bases = [0u32; 58];
        let mut next = 0;
        for (b, &w) in bases.iter_mut().zip(&widths) {
            *b = next;
            next += 1 << w;
        }
        // code 3: symbols 0, 2, 3 (2 bits), 9, 18 (3 bits)
        let mut l3 = vec![0u8; 19];
        for (s, l) in [(0, 2), (2, 2), (3, 2), (9, 3), (18, 3)] {
            l3[s] = l;
        }
        // code 0: every literal and 256 copy symbols, 9 bits each; code 1: four extras of 2
        // bits; code 2: eight symbols of 3 bits (offsets' low bits not coded)
        let mut l0 = vec![9u8; 512];
        l0.resize(721, 0);
        let mut l1 = vec![2u8; 4];
        l1.resize(28, 0);
        let l2 = vec![3u8; 8];
        let mut tables = Tables::new();
        tables.build(3, &l3).unwrap();
        tables.build(0, &l0).unwrap();
        tables.build(1, &l1).unwrap();
        tables.build(2, &l2).unwrap();
        let mut e =
            Encoder { w: BitWriter::default(), tables, lengths: [l0.clone(), l1.clone(), l2.clone(), l3.clone()] };
        e.w.bits(0, 1);
        for &l in &l3 {
            e.w.bits(u32::from(l), 4);
        }
        // the 757 lengths: runs of zeros by symbol 18 (11 + 7 bits), the others as deltas from 0
        let all: Vec<u8> = [&l0[..], &l1[..], &l2[..]].concat();
        let mut i = 0;
        while i < all.len() {
            if all[i] == 0 {
                let run = all[i..].iter().take_while(|&&l| l == 0).count().min(138);
                if run >= 11 {
                    e.symbol(3, 18);
                    e.w.bits(run as u32 - 11, 7);
                    i += run;
                    continue;
                }
            }
            e.symbol(3, u32::from(all[i]));
            i += 1;
        }
        let mut out = Vec::new();
        let mut history = [0u32; 3];
        for item in items {
            match *item {
                Ok(b) => {
                    e.symbol(0, u32::from(b));
                    out.push(b);
                }
                Err((distance, len)) => {
                    // a repeat of the last distance is coded as slot 0, offset 0
                    let offset = if distance - 1 == history[0] { 0 } else { distance + 2 };
                    let slot = (0..58).rev().find(|&s| bases[s] <= offset).unwrap();
                    let short = len.min(9);
                    e.symbol(0, 256 + ((slot as u32) << 3) + (short - 2));
                    if short == 9 {
                        let (k, extra) = (0..4)
                            .rev()
                            .filter_map(|k| Some((k, (len - 9).checked_sub(u32::from(extras[k]))?)))
                            .find(|&(k, x)| x < 1 << extras[k + 0x1c])
                            .unwrap();
                        e.symbol(1, k as u32);
                        e.w.bits(extra, u32::from(extras[k + 0x1c]));
                    }
                    e.w.bits(offset - bases[slot], u32::from(widths[slot]));
                    if offset >= 3 {
                        history = [offset - 3, history[0], history[1]];
                    }
                    for _ in 0..len {
                        // (a hostile copy from before the start writes nothing here)
                        let Some(from) = out.len().checked_sub(distance as usize) else { break };
                        out.push(out[from]);
                    }
                }
            }
        }
        (e.w.finish(), out)
    }

    /// A small ASPack 2.12 executable: `.text` (0x1000) holds the packed block, `.aspack`
    /// (0x2000) the loader, `.adata` is empty.
    fn packed(stream: &[u8], size: usize) -> Vec<u8> {
        let mut f = test_exe(
            0x2000,
            0x40,
            &[(0x28, 0x2001), (0x34, 0x40_0000), (24 + 32, 0x1000), (24 + 36, 0x200), (0x50, 0x4000)],
            &[
                (b".text", 0x1000, 0x1000, 0x800, 0x400),
                (b".aspack", 0x1000, 0x2000, 0x1000, 0xc00),
                (b".adata", 0x1000, 0x3000, 0, 0),
            ],
        );
        assert!(stream.len() <= 0x800);
        f[0x400..0x400 + stream.len()].copy_from_slice(stream);
        let loader = 0xc00;
        f[loader + 1..loader + 1 + ENTRY.len()].copy_from_slice(ENTRY);
        f[loader + 1 + 0x3b9..loader + 1 + 0x3b9 + 6].copy_from_slice(PLACEHOLDER);
        put32(&mut f, loader + 0x39b, 0x1010).unwrap();
        f[loader + 0x148] = 0xee;
        put32(&mut f, loader + 0x57c, 0x1000).unwrap();
        put32(&mut f, loader + 0x57c + 4, size).unwrap();
        let (_, extras) = loader_tables();
        f[loader + 0x6d6..loader + 0x6d6 + 0x72].copy_from_slice(&extras);
        f
    }

    fn items(text: &[u8], copies: &[(u32, u32)]) -> Vec<Result<u8, (u32, u32)>> {
        text.iter().map(|&b| Ok(b)).chain(copies.iter().map(|&c| Err(c))).collect()
    }

    #[test]
    fn a_packed_executable_is_rebuilt_with_its_block_decoded() {
        let text = b"ASPack test section: a call \xe8\xee\x00\x10\x00 and some text";
        // lengths 2-8, 9 with each extra, distances in several slots, a repeated distance
        let copies = [(3, 2), (10, 5), (20, 8), (text.len() as u32, 9), (7, 13), (7, 30), (50, 110), (1, 355), (4, 40)];
        let (packed_stream, want) = stream(&items(text, &copies));
        let exe = packed(&packed_stream, want.len());
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
            std::fs::write(std::path::Path::new(&dir).join("seed-exe-aspack"), [&[0][..], &exe].concat()).unwrap();
        }
        let image = unpack(&exe, &mut Budget::new(Limits::default())).unwrap().unwrap();
        // the call ASPack made absolute is relative again: (0x001000ee & ~0xff) rotated, minus
        // its place
        let call = text.iter().position(|&b| b == 0xe8).unwrap();
        let mut fixed = want.clone();
        let target = 0x0010_0000u32.rotate_left(24).wrapping_sub(call as u32);
        fixed[call + 1..call + 5].copy_from_slice(&target.to_le_bytes());
        assert_eq!(&image[0x1000..0x1000 + want.len()], &fixed[..]);
        // the loader's sections left out, the file laid out as memory, the original entry point
        assert_eq!(image.len(), 0x2000);
        let (secs, _) = sections(&image, 0x40, 96).unwrap();
        assert_eq!(secs.len(), 1);
        assert_eq!((secs[0].rva, secs[0].raw, secs[0].rsize), (0x1000, 0x1000, 0x1000));
        assert_eq!(le32(&image, 0x40 + 0x28), Some(0x1010));
        // the block's size is charged: a budget that holds the image only is exceeded
        let tight = Limits { max_expanded: 0x4000 + 10, ..Default::default() };
        assert!(matches!(unpack(&exe, &mut Budget::new(tight)), Err(UnpackError::Limit(_))));
        // not ASPack's loader: not unpacked
        let mut other = exe.clone();
        other[0xc01] = 0x90;
        assert!(unpack(&other, &mut Budget::new(Limits::default())).unwrap().is_none());
        // a copy from before the start: not unpacked
        // (the packed bytes are read from the block's first bytes and 270 zeros after them:
        // the block decodes to more than its packed bytes)
        let (bad, _) = stream(&[Ok(b'a'), Err((5, 3)), Ok(b'b'), Err((1, 300)), Err((1, 300))]);
        assert!(unpack(&packed(&bad, 605), &mut Budget::new(Limits::default())).unwrap().is_none());
        let (good, _) = stream(&[Ok(b'a'), Err((1, 3)), Ok(b'b'), Err((1, 300)), Err((1, 300))]);
        assert!(unpack(&packed(&good, 605), &mut Budget::new(Limits::default())).unwrap().is_some());
    }

    #[test]
    fn the_real_test_file_and_its_damage_end_in_bounded_time() {
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-aspack.exe").expect("clamav-testfiles");
        let clam = std::fs::read("/usr/share/clamav-testfiles/clam.exe").unwrap();
        let image = unpack(&real, &mut Budget::new(Limits::default())).unwrap().unwrap();
        assert!(image.ends_with(&clam), "clam.exe ends the rebuilt file");
        for at in 0..real.len() {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut Budget::new(Limits::default()));
        }
        for cut in (0..real.len()).step_by(31) {
            let _ = unpack(&real[..cut], &mut Budget::new(Limits::default()));
        }
    }
}
