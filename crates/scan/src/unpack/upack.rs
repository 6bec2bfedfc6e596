//! Upack 0.39-packed Windows executables, the three-section form (issue 17). Upack's header
//! overlaps its loader (an optional header of 0x148 bytes, sections starting in the headers);
//! its loader keeps an LZMA decoder's state — range, code, the last distances, the probability
//! tables — in the loaded image, and its parameters (the literal context bits, the number of
//! probabilities, the table's source) in the loader's code, found by following the loader's
//! jumps. libclamav lays the image out as the loader sees it, follows the same jumps, sets the
//! tables up as the loader does, runs a transliteration of the loader's decoder over the image
//! and turns the `call`/`jmp` targets Upack rewrote back; so does this module, from that
//! description, every access bounded by the image. The two-section forms (0.39 with two
//! sections, 1.1/1.2) and the variant with `push [esi]` are not read.

use super::UnpackError;
use super::peimage::{Built, build, clam_sections, le16, le32};
use crate::limits::Budget;

/// The loaded image and bounds-checked 32-bit access by offset (offsets wrap as the
/// loader's pointers do: one below the start is far past the end).
struct Image {
    b: Vec<u8>,
}

impl Image {
    fn has(&self, at: u32, n: u32) -> bool {
        (at as u64) + (n as u64) <= self.b.len() as u64
    }
    fn byte(&self, at: u32) -> Option<u8> {
        self.b.get(at as usize).copied()
    }
    fn get32(&self, at: u32) -> Option<u32> {
        le32(&self.b, at as usize).map(|v| v as u32)
    }
    fn put32(&mut self, at: u32, v: u32) -> Option<()> {
        self.b.get_mut(at as usize..at as usize + 4)?.copy_from_slice(&v.to_le_bytes());
        Some(())
    }
}

/// The unpacked executable, if `data` is packed by Upack 0.39 (three sections) and unpacks;
/// `Ok(None)` when it is not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some((info, secs)) = clam_sections(data) else { return Ok(None) };
    let Some(pe) = le32(data, 0x3c) else { return Ok(None) };
    if le16(data, pe + 20) != Some(0x148) || info.pe32plus || secs.len() != 3 {
        return Ok(None);
    }
    let Some(base) = le32(data, pe + 0x34).map(|v| v as u32) else { return Ok(None) };
    let ep = info.ep as usize;
    let Some(code) = data.get(ep..ep + 168) else { return Ok(None) };
    let min = secs.iter().map(|s| s.rva as u32).min().unwrap_or(0);
    let esi = u32::from_le_bytes([code[1], code[2], code[3], code[4]]);
    if code[0] != 0xbe || esi.wrapping_sub(base) <= min || code[5] != 0xad || code[6] != 0x50 {
        return Ok(None);
    }
    // the file's headers and first section, then again where the loader moves them; the second
    // section where it goes
    let Some(pe_headers) = crate::unpack::peimage::sections(data, pe, 96).map(|(h, _)| h) else { return Ok(None) };
    let raw_end = |i: usize| {
        pe_headers[i].raw.saturating_add(pe_headers[i].rsize.min(data.len().saturating_sub(pe_headers[i].raw)))
    };
    let dsize = secs[0].vsize + secs[1].vsize + secs[2].vsize;
    let ssize = raw_end(0);
    let (r1, r2) = (secs[1].rva.wrapping_sub(secs[0].rva), secs[2].rva.wrapping_sub(secs[0].rva));
    let ursz1 = raw_end(1) - pe_headers[1].raw.min(raw_end(1));
    if r1.checked_add(ursz1).is_none_or(|e| e > dsize)
        || r2.checked_add(ssize).is_none_or(|e| e > dsize)
        || ssize > dsize
    {
        return Ok(None);
    }
    if dsize as u64 > budget.remaining() || ssize > data.len() {
        return Ok(None);
    }
    budget.spend(dsize as u64)?;
    let mut dest = vec![0u8; dsize];
    dest[..ssize].copy_from_slice(&data[..ssize]);
    dest.copy_within(0..ssize, r2);
    let from = pe_headers[1].raw;
    let Some(second) = data.get(from..from + ursz1) else { return Ok(None) };
    dest[r1..r1 + ursz1].copy_from_slice(second);
    let vma = base.wrapping_add(secs[0].rva as u32);
    let mut img = Image { b: dest };
    let Some((start, end, oep)) = run(&mut img, code, vma, ep as u32, budget)? else { return Ok(None) };
    let len = end.wrapping_sub(start) as usize;
    if len > img.b.len() {
        return Ok(None);
    }
    let part = Built { rva: secs[0].rva, vsize: len, data: &img.b[..len] };
    Ok(build(&[part], oep as usize, base as usize))
}

/// Follows the loader, sets the decoder up, decodes and fixes the calls: (start, end of the
/// output, original entry point).
fn run(
    img: &mut Image,
    code: &[u8],
    vma: u32,
    ep: u32,
    budget: &mut Budget,
) -> Result<Option<(u32, u32, u32)>, UnpackError> {
    let Some(r) = setup(img, code, vma, ep) else { return Ok(None) };
    budget.check_time()?;
    if decode(img, r.ebx, r.edi, r.end, r.lc, r.paddr).is_none() {
        return Ok(None);
    }
    // the rewritten call and jump targets: marked with the byte the loader compares with
    let Some(search) = img.byte(r.marker) else { return Ok(None) };
    let (mut left, mut k) = (r.calls, 0u32);
    while left > 0 {
        let at = r.edi.wrapping_add(k);
        let Some(op) = img.byte(at) else { return Ok(None) };
        k = k.wrapping_add(1);
        if op != 0xe8 && op != 0xe9 {
            continue;
        }
        let Some(v) = img.get32(at.wrapping_add(1)) else { return Ok(None) };
        if v & 0xff != u32::from(search) {
            continue;
        }
        if img.put32(at.wrapping_add(1), (v & 0xffff_ff00).swap_bytes().wrapping_sub(k).wrapping_sub(4)).is_none() {
            return Ok(None);
        }
        k = k.wrapping_add(4);
        left -= 1;
    }
    Ok(Some((r.edi, r.end, r.oep)))
}

/// What the loader's code and data say.
struct Setup {
    /// The decoder's state (range, code, distances, probabilities) in the image.
    ebx: u32,
    /// Output start and end.
    edi: u32,
    end: u32,
    /// Literal context bits (as a shift of the previous byte).
    lc: u32,
    /// The compressed data.
    paddr: u32,
    /// The byte that marks a rewritten call target, and how many there are.
    marker: u32,
    calls: u32,
    oep: u32,
}

fn setup(img: &mut Image, code: &[u8], vma: u32, ep: u32) -> Option<Setup> {
    let esi0 = u32::from_le_bytes(code[1..5].try_into().ok()?);
    let mut esi = esi0.wrapping_sub(vma);
    if !img.has(esi, 12) {
        return None;
    }
    let oep = img.get32(esi)?.wrapping_sub(vma);
    esi = esi.wrapping_add(8);
    let mut edi = img.get32(esi)?.wrapping_sub(vma);
    // the loader's first short jump, then a second one 0x1a further
    if !img.has(ep.wrapping_add(0xa), 2) || img.byte(ep.wrapping_add(0xa))? != 0xeb {
        return None;
    }
    esi = (img.byte(ep.wrapping_add(0xb))? as i8 as u32).wrapping_add(ep).wrapping_add(0xc);
    let mut al = esi.wrapping_add(0x1a);
    if !img.has(al, 2) || img.byte(al)? != 0xeb {
        return None;
    }
    al = al.wrapping_add(1);
    al = al.wrapping_add(u32::from(img.byte(al)?)).wrapping_add(1 + 0xa);
    let long_jump = 8;
    if !img.has(al, 2) || img.byte(al)? != 0xb5 {
        return None;
    }
    al = al.wrapping_add(1);
    let count = u32::from(img.byte(al)?);
    if !img.has(al, long_jump + 5) || img.byte(al.wrapping_add(long_jump))? != 0xe9 {
        return None;
    }
    let mut head = img.get32(al.wrapping_add(long_jump + 1))?;
    head =
        head.wrapping_add(esi).wrapping_add(img.byte(esi.wrapping_add(0x1b))? as i8 as u32).wrapping_add(0x1c + 0x18);
    // `jecxz` 43 bytes into the decoder (46 in a later build)
    let (mut al, mut after_jecxz, mut shift_at) = (head.wrapping_add(43), 8u32, 24u32);
    if !img.has(al.wrapping_sub(1), 2) || img.byte(al.wrapping_sub(1))? != 0xe3 {
        al = head.wrapping_add(46);
        if !img.has(al.wrapping_sub(1), 2) || img.byte(al.wrapping_sub(1))? != 0xe3 {
            return None;
        }
        (after_jecxz, shift_at) = (7, 26);
    }
    al = al.wrapping_add(u32::from(img.byte(al)?)).wrapping_add(1);
    if !img.has(al, after_jecxz + 5) || img.byte(al.wrapping_add(after_jecxz))? != 0xe9 {
        return None;
    }
    let rel = img.get32(al.wrapping_add(after_jecxz + 1))?;
    let marker = al.wrapping_add(rel).wrapping_add(after_jecxz + 1 + 4 + 27);
    // `shr ebp, n`: the literal context
    let s = head.wrapping_add(shift_at);
    if !img.has(s, 3) || img.byte(s)? != 0xc1 || img.byte(s.wrapping_add(1))? != 0xed {
        return None;
    }
    let lc = u32::from(img.byte(s.wrapping_add(2))?);
    let count = count * 0x100;
    if !(2..=8).contains(&lc) {
        return None;
    }
    if !img.has(esi.wrapping_add(7), 5) || img.byte(esi.wrapping_add(7))? != 0xbe {
        return None;
    }
    let mut src = img.get32(esi.wrapping_add(8))?.wrapping_sub(vma);
    // the loader's table copied to where the decoder keeps its state
    if !img.has(edi, 0x9c + 24 + 4 * count) || !img.has(src, 0x9c + 0x34 + 4) {
        return None;
    }
    for _ in 0..0x27 {
        let v = img.get32(src)?;
        img.put32(edi, v)?;
        src = src.wrapping_add(4);
        edi = edi.wrapping_add(4);
    }
    let calls = img.get32(src.wrapping_add(4))?;
    let paddr = img.get32(edi.wrapping_sub(4))?.wrapping_sub(vma);
    let ebx = edi;
    img.put32(edi, 0xffff_ffff)?;
    img.put32(edi.wrapping_add(4), 0)?;
    edi = edi.wrapping_add(8);
    for _ in 0..4 {
        img.put32(edi, 1)?;
        edi = edi.wrapping_add(4);
    }
    // every probability at one half
    for _ in 0..count {
        img.put32(edi, 0x400)?;
        edi = edi.wrapping_add(4);
    }
    let out = img.get32(src.wrapping_add(0xc))?.wrapping_sub(vma);
    let end = img.get32(src.wrapping_add(0x34))?.wrapping_sub(vma);
    if out > end {
        return None;
    }
    Some(Setup { ebx, edi: out, end, lc, paddr, marker, calls, oep })
}

/// The range decoder as the loader keeps it: the input position, the range and the low end.
struct Range {
    at: u32,
    range: u32,
    low: u32,
}

impl Range {
    /// One bit with the probability at `prob` (adapted as LZMA adapts it).
    fn bit(&mut self, img: &mut Image, prob: u32) -> Option<u32> {
        let p = img.get32(prob)?;
        let bound = (self.range >> 11).wrapping_mul(p);
        let code = img.get32(self.at)?.swap_bytes().wrapping_sub(self.low);
        let bit = if code < bound {
            self.range = bound;
            img.put32(prob, p.wrapping_add((0x800u32.wrapping_sub(p)) >> 5))?;
            0
        } else {
            self.low = self.low.wrapping_add(bound);
            self.range = self.range.wrapping_sub(bound);
            img.put32(prob, p.wrapping_sub(p >> 5))?;
            1
        };
        if self.range & 0xff00_0000 == 0 {
            self.low <<= 8;
            self.range <<= 8;
            self.at = self.at.wrapping_add(1);
        }
        Some(bit)
    }

    /// A bit tree from `start` (the node number) until it reaches `limit`: the number less
    /// `limit`.
    fn tree(&mut self, img: &mut Image, start: u32, limit: u32, probs: u32) -> Option<u32> {
        let mut n = start;
        loop {
            n = n.wrapping_add(n).wrapping_add(self.bit(img, probs.wrapping_add(n << 2))?);
            if n >= limit {
                return Some(n - limit);
            }
        }
    }

    /// A length: a choice bit, a second one, then 8 short (1-8), 8 middle (9-16) or 256 long
    /// (17-272) values from bit trees after the choices.
    fn length(&mut self, img: &mut Image, probs: u32) -> Option<u32> {
        let trees = probs.wrapping_add(4);
        let (base, limit) = if self.bit(img, probs)? == 0 {
            (1, 8)
        } else if self.bit(img, trees)? == 0 {
            (9, 8)
        } else {
            (0x11, 0x100)
        };
        Some(base + self.tree(img, 1, limit, trees.wrapping_add(base << 2))?)
    }
}

/// The loader's decoder (libclamav's transliteration of it), over the image.
fn decode(img: &mut Image, ebx: u32, start: u32, end: u32, lc: u32, paddr: u32) -> Option<()> {
    let mut rc = Range { at: paddr, range: img.get32(ebx)?, low: img.get32(ebx.wrapping_add(4))? };
    let mut state = [0u32; 6];
    for (i, s) in state.iter_mut().enumerate() {
        *s = img.get32(ebx.wrapping_add((i as u32) << 2))?;
    }
    let (mut eax_copy, mut ecx, mut edi) = (0u32, 0u32, start);
    let mut eax: u32;
    loop {
        eax = eax_copy;
        let mut edx = ebx.wrapping_add(eax << 2).wrapping_add(0x58);
        if rc.bit(img, edx)? == 1 {
            // a match
            let al = if (eax & 0xff) + 0xf9 > 0xff { 3 + 8 } else { 8 };
            eax = (eax & 0xffff_ff00) | al;
            let mut ebp = state[2];
            ecx = (ecx & 0xffff_ff00) | 0x30;
            edx = edx.wrapping_add(ecx);
            if rc.bit(img, edx)? == 0 {
                // a new distance
                eax = eax.wrapping_sub(1);
                let t = ebp;
                ebp = state[4];
                state[4] = state[3];
                state[3] = t;
                eax_copy = eax;
                state[5] = ebp;
                let len = rc.length(img, ebx.wrapping_add(0xbc0))?;
                let slot_len = (len.wrapping_sub(1)).min(3);
                let slot_probs = ebx.wrapping_add((slot_len << 6 << 2) + 0x378);
                let slot = rc.tree(img, 1, 0x40, slot_probs)?;
                ebp = slot;
                if slot & 0xff >= 4 {
                    let direct = (slot >> 1).wrapping_sub(1);
                    ebp = (2 + (slot & 1)) << (direct & 0xff);
                    let mut probs = ebx.wrapping_add(ebp << 2).wrapping_add(0x178);
                    let mut bits = direct & 0xff;
                    if bits > 5 {
                        // direct bits, then four aligned ones
                        let mut v = 0u32;
                        for _ in 0..bits - 4 {
                            if !img.has(rc.at, 4) {
                                return None;
                            }
                            let code = img.get32(rc.at)?.swap_bytes();
                            rc.range >>= 1;
                            let c = code.wrapping_sub(rc.low);
                            v <<= 1;
                            if c >= rc.range {
                                v += 1;
                                rc.low = rc.low.wrapping_add(rc.range);
                            }
                            if rc.range & 0xff00_0000 == 0 {
                                rc.low <<= 8;
                                rc.range <<= 8;
                                rc.at = rc.at.wrapping_add(1);
                            }
                        }
                        bits = 4;
                        ebp = ebp.wrapping_add(v << 4);
                        probs = ebx.wrapping_add(0x18);
                    }
                    // reverse bit tree
                    let r = rc.tree(img, 1, 1 << bits, probs)?;
                    let mut rev = ((r as i32) >> 31) as u32;
                    let mut x = r;
                    for _ in 0..bits {
                        rev = rev.wrapping_add(rev).wrapping_add(x & 1);
                        x >>= 1;
                    }
                    ebp = ebp.wrapping_add(rev);
                }
                ebp = ebp.wrapping_add(1);
                ecx = len;
                copy(img, &mut edi, ebp, ecx, &mut state, &mut eax)?;
                ecx = 0x80;
            } else {
                edx = edx.wrapping_add(ecx);
                let mut rep_len = true;
                if rc.bit(img, edx)? == 1 {
                    edx = edx.wrapping_add(0x60);
                    if rc.bit(img, edx)? == 1 {
                        edx = edx.wrapping_add(ecx);
                        let third = rc.bit(img, edx)?;
                        let t = ebp;
                        ebp = state[4];
                        state[4] = state[3];
                        state[3] = t;
                        if third == 1 {
                            std::mem::swap(&mut ebp, &mut state[5]);
                        }
                    } else {
                        std::mem::swap(&mut ebp, &mut state[3]);
                    }
                } else {
                    edx = edx.wrapping_add(ecx);
                    if rc.bit(img, edx)? == 0 {
                        // a single byte from the last distance
                        eax |= 1;
                        eax_copy = eax;
                        ecx = (ecx & 0xffff_ff00) | 0x80;
                        let from = edi.wrapping_sub(state[2]);
                        if !img.has(from, 1) || !img.has(edi, 1) {
                            return None;
                        }
                        let b = img.byte(from)?;
                        img.b[edi as usize] = b;
                        edi = edi.wrapping_add(1);
                        rep_len = false;
                    }
                }
                if rep_len {
                    eax_copy = eax;
                    let len = rc.length(img, ebx.wrapping_add(0x778))?;
                    eax = ecx;
                    ecx = len;
                    copy(img, &mut edi, ebp, ecx, &mut state, &mut eax)?;
                    ecx = 0x80;
                } else {
                    if edi >= end {
                        return Some(());
                    }
                    continue;
                }
            }
        } else {
            // a literal
            let mut al = eax & 0xff;
            loop {
                al = if al + 0xfd > 0xff { al - 3 } else { 0 };
                if al < 7 {
                    break;
                }
            }
            eax = (eax & 0xffff_ff00) | al;
            eax_copy = eax;
            let prev =
                if edi > start && (edi as usize) < img.b.len() { u32::from(img.b[edi as usize - 1]) >> lc } else { 0 };
            let probs = ebx.wrapping_add((prev.wrapping_mul(0x300) << 2).wrapping_add(0x1008));
            let saved = edi;
            eax = (eax & 0xffff_ff00) | 1;
            if ecx != 0 {
                // with the byte at the last distance as context
                let mut cl = (ecx & 0xff) as u8;
                let at = edi.wrapping_sub(state[2]);
                let m = img.byte(at)?;
                loop {
                    eax = (eax & 0xffff_00ff) | if m & cl != 0 { 0x200 } else { 0x100 };
                    let bit = rc.bit(img, probs.wrapping_add(eax << 2))?;
                    let low = ((eax & 0xff) * 2 + bit) & 0xff;
                    eax = (eax & 0xffff_ff00) | low;
                    cl >>= 1;
                    if cl == 0 {
                        break;
                    }
                    let ah = (((eax >> 8) & 0xff).wrapping_sub(low)) & 1;
                    if ah == 0 {
                        eax = (eax & 0xffff_0000) | low;
                        let v = rc.tree(img, eax, 0x100, probs)?;
                        eax = v;
                        break;
                    }
                }
            } else {
                ecx = (ecx & 0xffff_00ff) | 0x100;
                let v = rc.tree(img, eax, ecx, probs)?;
                eax = v;
            }
            ecx = 0;
            edi = saved;
        }
        if !img.has(edi, 1) {
            return None;
        }
        img.b[edi as usize] = eax as u8;
        edi = edi.wrapping_add(1);
        if edi >= end {
            return Some(());
        }
    }
}

/// A match's copy: `len` bytes from `distance` back; the distance becomes the last one and the
/// byte after the copy's source is left in `eax`'s low byte.
fn copy(img: &mut Image, edi: &mut u32, distance: u32, len: u32, state: &mut [u32; 6], eax: &mut u32) -> Option<()> {
    if !img.has(*edi, len) || !img.has(edi.wrapping_sub(distance), len.wrapping_add(1)) {
        return None;
    }
    state[2] = distance;
    for _ in 0..len {
        let b = img.b[edi.wrapping_sub(distance) as usize];
        img.b[*edi as usize] = b;
        *edi = edi.wrapping_add(1);
    }
    *eax = (*eax & 0xffff_ff00) | u32::from(img.b[edi.wrapping_sub(distance) as usize]);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn the_range_decoder_adapts_as_lzma_does() {
        // a probability of one half, a code at the bottom of the range: 0, the probability
        // rising by (2048 - p) / 32; at the top: 1, falling by p / 32
        let mut img = Image { b: vec![0; 16] };
        img.put32(0, 0x400).unwrap();
        img.b[8..12].copy_from_slice(&0x0000_0000u32.to_be_bytes());
        let mut rc = Range { at: 8, range: 0xffff_ffff, low: 0 };
        assert_eq!(rc.bit(&mut img, 0), Some(0));
        assert_eq!(img.get32(0), Some(0x400 + (0x800 - 0x400) / 32));
        assert_eq!(rc.range, (0xffff_ffffu32 >> 11) * 0x400);
        img.put32(0, 0x400).unwrap();
        img.b[8..12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        let mut rc = Range { at: 8, range: 0xffff_ffff, low: 0 };
        assert_eq!(rc.bit(&mut img, 0), Some(1));
        assert_eq!(img.get32(0), Some(0x400 - 0x400 / 32));
        // a probability or a code outside the image: no bit
        assert_eq!(rc.bit(&mut img, 14), None);
        let mut rc = Range { at: 14, range: 0xffff_ffff, low: 0 };
        assert_eq!(rc.bit(&mut img, 0), None);
    }

    #[test]
    fn the_real_test_file_and_its_damage_end_in_bounded_time() {
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-upack.exe").expect("clamav-testfiles");
        let clam = std::fs::read("/usr/share/clamav-testfiles/clam.exe").unwrap();
        let budget = || Budget::new(Limits::default());
        let out = unpack(&real, &mut budget()).unwrap().unwrap();
        // what Upack hid: a zip holding clam.exe (opened by the scan like any embedded zip)
        let zip = memchr::memmem::find(&out, b"PK\x03\x04").expect("a zip in the unpacked image");
        let mut b = Budget::new(Limits::default());
        let members = crate::unpack::unpack(crate::filetype::FileType::Zip, &out[zip..], &mut b).unwrap();
        assert!(members.iter().any(|e| matches!(e, crate::unpack::Entry::File { data, .. } if *data == clam)));
        // the image is charged: a budget smaller than it is not spent
        let tight = Limits { max_expanded: 0x1000, ..Default::default() };
        assert!(unpack(&real, &mut Budget::new(tight)).unwrap().is_none());
        // every byte changed in turn, and every cut: never a panic
        for at in 0..real.len() {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut budget());
        }
        for cut in 0..real.len() {
            let _ = unpack(&real[..cut], &mut budget());
        }
    }
}
