//! Petite 2.1/2.2-packed Windows executables (issue 17). Petite's loader, at the entry point,
//! starts by loading the address of its own section (`mov eax, imm32`: the last section for
//! 2.2, the one before for 2.1); its table, at a fixed place in that section, lists moves of
//! packed data (entries with the top bit set) and the sections to decompress (source, size,
//! destination). Each section decodes from a byte-wise bit stream (a sentinel bit marks when the
//! next byte is needed): literals XORed with the count of bytes still to come, copies with
//! Elias-gamma-like offsets and lengths, the offset reused when the gamma code says so. The
//! loader's own code, appended to the last section it decompresses, is left out, as libclamav
//! leaves it out, and the executable is rebuilt from the decompressed sections in address order,
//! each as long as it decompressed, so that what the original file ended with ends the rebuilt
//! one. Decoded from that description; bounded by the image and the budget. Petite's level 0
//! (no compression) and older versions are not read.

use super::UnpackError;
use super::peimage::{Section, le16, le32, put32, sections};
use crate::limits::Budget;

/// Where the table is in the loader's section, and the size of the loader code appended to the
/// last section decompressed (2.2, 2.1).
const LAYOUT_22: (usize, usize, usize) = (0x1b8, 0x355, 0x35);
const LAYOUT_21: (usize, usize, usize) = (0x178, 0x323, 0x34);
/// Most sections decompressed.
const MAX_SECTIONS: usize = 96;
/// Most moves of packed data (Petite makes one or two: the resources, the rest).
const MAX_MOVES: usize = 8;

/// A section decompressed: its address, and how many bytes of it are kept.
#[derive(Debug, Clone, Copy)]
struct Unpacked {
    rva: usize,
    len: usize,
}

/// The unpacked executable, if `data` is packed by Petite 2.1 or 2.2 and decodes; `Ok(None)`
/// when it is not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some(pe) = le32(data, 0x3c).filter(|&p| data.get(p..p + 4) == Some(b"PE\0\0")) else { return Ok(None) };
    if le16(data, pe + 24) != Some(0x10b) {
        return Ok(None);
    }
    let Some((secs, opt)) = sections(data, pe, MAX_SECTIONS) else { return Ok(None) };
    let (Some(entry), Some(base)) = (le32(data, pe + 0x28), le32(data, pe + 0x34)) else { return Ok(None) };
    let Some(ep) = secs
        .iter()
        .find(|s| entry >= s.rva && entry - s.rva < s.rsize)
        .map(|s| s.raw + (entry - s.rva))
        .and_then(|at| data.get(at..at.checked_add(0x84)?))
    else {
        return Ok(None);
    };
    let loads = le32(ep, 1).filter(|_| ep[0] == 0xb8);
    let n = secs.len();
    let (layout, count) = match loads {
        Some(v) if v == secs[n - 1].rva.wrapping_add(base) & 0xffff_ffff => (LAYOUT_22, n),
        Some(v) if n >= 2 && v == secs[n - 2].rva.wrapping_add(base) & 0xffff_ffff => (LAYOUT_21, n - 1),
        _ => return Ok(None),
    };
    // level 0: stored, not compressed
    if le32(ep, 0x80) == Some(0x163c_988d) {
        return Ok(None);
    }
    // sizes in memory rounded up to the section alignment, as libclamav reads them
    let align = le32(data, pe + 24 + 32).filter(|a| a.is_power_of_two() && *a <= 0x10000).unwrap_or(0x1000);
    let secs: Vec<Section> =
        secs[..count].iter().map(|s| Section { vsize: s.vsize.max(s.rsize).next_multiple_of(align), ..*s }).collect();
    let secs = &secs[..];
    let Some(min) = secs.iter().map(|s| s.rva).min() else { return Ok(None) };
    let max = secs.iter().map(|s| s.rva.saturating_add(s.vsize)).max().unwrap_or(0);
    let size = max.saturating_sub(min);
    if size == 0 || size as u64 > budget.remaining() {
        return Ok(None);
    }
    budget.spend(size as u64)?;
    let mut image = vec![0u8; size];
    for s in secs.iter().filter(|s| s.raw != 0 && s.rsize != 0) {
        let Some(bytes) = data.get(s.raw..s.raw.saturating_add(s.rsize).min(data.len())) else { return Ok(None) };
        let Some(place) = image.get_mut(s.rva - min..(s.rva - min).saturating_add(bytes.len())) else {
            return Ok(None);
        };
        place.copy_from_slice(bytes);
    }
    let mut limit = None;
    let unpacked = inflate(&mut image, min, secs, layout, budget, &mut limit);
    if let Some(l) = limit {
        return Err(l.into());
    }
    Ok(unpacked.and_then(|u| rebuild(data, pe, opt, &image, min, &u)))
}

/// Runs the table: moves and decompressions in the image (which starts at address `min`);
/// returns the sections decompressed, in address order. Each section's size is charged to the
/// budget before it is decoded; the limit reached, if any, is left in `limit`.
fn inflate(
    image: &mut [u8],
    min: usize,
    secs: &[Section],
    layout: (usize, usize, usize),
    budget: &mut Budget,
    limit: &mut Option<crate::limits::Limit>,
) -> Option<Vec<Unpacked>> {
    let (table_at, grown, skew) = layout;
    let addr = |rva: usize| rva.checked_sub(min);
    let mut table = addr(secs.last()?.rva)? + table_at;
    let mut out: Vec<Unpacked> = Vec::new();
    let mut bottom = 0usize;
    let mut after_move = true;
    let mut moves = 0;
    loop {
        let source = le32(image, table)?;
        if source == 0 {
            break;
        }
        if source & 0x8000_0000 != 0 {
            // packed data moved up to the end of its section (words); a few at most, each a
            // copy of up to the whole image
            moves += 1;
            if moves > MAX_MOVES {
                return None;
            }
            let words = source & 0x7fff_ffff;
            let (from, to) = (le32(image, table + 4)?, le32(image, table + 8)?);
            bottom = to.checked_add(4)?;
            let back = words.checked_sub(1)?.checked_mul(4)?;
            let len = words.checked_mul(4)?;
            let (from, to) = (addr(from.checked_sub(back)?)?, addr(to.checked_sub(back)?)?);
            if from.checked_add(len)? > image.len() || to.checked_add(len)? > image.len() {
                return None;
            }
            image.copy_within(from..from + len, to);
            table += 12;
            after_move = true;
            continue;
        }
        if out.len() >= MAX_SECTIONS {
            return None;
        }
        let (len, rva) = (le32(image, table + 4)?, le32(image, table + 8)?);
        table += 16;
        let span = if bottom > rva { bottom - rva } else { len };
        let mut kept = Unpacked { rva, len };
        if len == 0 {
            out.push(kept);
            continue;
        }
        // the original section it is in: the first decompressed after a move keeps the whole
        // section from its start
        let holder = secs.iter().find(|s| rva >= s.rva && rva + span <= s.rva + s.vsize)?;
        if after_move {
            kept = Unpacked { rva: holder.rva, len: rva - holder.rva + len };
        }
        if let Err(l) = budget.spend(len as u64) {
            *limit = Some(l);
            return None;
        }
        let end = decompress(image, addr(source)?, addr(rva)?, len)?;
        // the loader's code at the end of what was just decompressed: left out
        let magic_at = |skewed: usize| end.checked_sub(grown + skewed)?.checked_add(5 + 0x4f);
        let is_loader = |at: Option<usize>| {
            at.is_some_and(|at| le32(image, at) == Some(0x645e_c033) && le32(image, at + 4) == Some(0x1b8b_188b))
        };
        if kept.len > grown && is_loader(magic_at(0)) {
            kept.len -= grown;
        } else if kept.len > grown + skew && is_loader(magic_at(skew)) {
            kept.len -= grown + skew;
        }
        out.push(kept);
        after_move = false;
    }
    if out.is_empty() {
        return None;
    }
    out.sort_by_key(|u| u.rva);
    Some(out)
}

/// Petite's bit reader: bits of one byte at a time, from the top, with a sentinel bit that says
/// when the byte is used up; the next byte is taken from the same place literals are.
struct Bits {
    reg: u8,
}

impl Bits {
    fn bit(&mut self, image: &[u8], src: &mut usize) -> Option<u32> {
        let old = self.reg;
        if old & 0x7f == 0 {
            let b = *image.get(*src)?;
            *src += 1;
            self.reg = b.wrapping_mul(2) | 1;
            return Some(u32::from(b >> 7));
        }
        self.reg = old.wrapping_mul(2);
        Some(u32::from(old >> 7))
    }

    /// An Elias-gamma-like number (at least 2): a 1, then bits each followed by a flag that
    /// says whether another comes; `None` past 2^30 or at the end of the data.
    fn gamma(&mut self, image: &[u8], src: &mut usize) -> Option<i64> {
        let mut v: i64 = 1;
        loop {
            v = v * 2 + i64::from(self.bit(image, src)?);
            if v > 1 << 30 {
                return None;
            }
            if self.bit(image, src)? == 0 {
                return Some(v);
            }
        }
    }
}

/// Decompresses `len` bytes from `src` to `dst` in the image; returns where the output ends.
fn decompress(image: &mut [u8], mut src: usize, mut dst: usize, len: usize) -> Option<usize> {
    // the width of a new offset's low part, and the offsets past which copies are longer
    let (width, far, farther): (u32, i64, i64) = match len {
        0..0x10000 => (5, -0x3a0, -0x3fa0),
        0x10000..0x40000 => (7, -0x680, -0x7e80),
        _ => (8, -0x500, -0x7d00),
    };
    let mut bits = Bits { reg: 0 };
    *image.get_mut(dst)? = *image.get(src)?;
    (src, dst) = (src + 1, dst + 1);
    let mut left = len as i64 - 1;
    let mut last_back: i64 = 0;
    while left > 0 {
        if bits.bit(image, &mut src)? == 0 {
            *image.get_mut(dst)? = *image.get(src)? ^ (left as u8);
            (src, dst, left) = (src + 1, dst + 1, left - 1);
            continue;
        }
        let gamma = bits.gamma(image, &mut src)?;
        let (back, mut count, extra) = if gamma >= 3 {
            let mut v = gamma - 3;
            for _ in 0..width {
                v = v * 2 + i64::from(bits.bit(image, &mut src)?);
            }
            // the offset, as a negative number
            let back = -(v + 1);
            last_back = back;
            (back, 0, 1 + i64::from(back < farther) + i64::from(back < far))
        } else {
            (last_back, gamma - 2, 0)
        };
        count = count * 2 + i64::from(bits.bit(image, &mut src)?);
        count = count * 2 + i64::from(bits.bit(image, &mut src)?);
        if count == 0 {
            count = bits.gamma(image, &mut src)? + 2;
        }
        count += extra;
        let from = usize::try_from(dst as i64 + back).ok()?;
        let n = usize::try_from(count).ok()?;
        if back >= 0 || dst.checked_add(n)? > image.len() {
            return None;
        }
        for i in 0..n {
            image[dst + i] = image[from + i];
        }
        dst += n;
        left -= count;
    }
    Some(dst)
}

/// An executable of the decompressed sections: the original DOS and PE headers with a new
/// section table, then each section's kept bytes, in address order.
fn rebuild(data: &[u8], pe: usize, opt: usize, image: &[u8], min: usize, unpacked: &[Unpacked]) -> Option<Vec<u8>> {
    let table = pe + 24 + opt;
    let head = (table + unpacked.len() * 40).next_multiple_of(0x200);
    let mut out = data.get(..table)?.to_vec();
    out.resize(head, 0);
    out.get_mut(pe + 6..pe + 8)?.copy_from_slice(&u16::try_from(unpacked.len()).ok()?.to_le_bytes());
    let mut raw = head;
    let mut bodies = Vec::new();
    for (i, (u, next)) in unpacked.iter().zip(unpacked.iter().skip(1).map(Some).chain([None])).enumerate() {
        let vsize = next.map_or(u.len, |n| n.rva - u.rva);
        let from = u.rva.checked_sub(min)?;
        let bytes = image.get(from..from.checked_add(u.len)?)?;
        let h = table + i * 40;
        out[h..h + 8].copy_from_slice(format!(".sect{i}").as_bytes().get(..8).unwrap_or(b".sect\0\0\0"));
        for (field, v) in [(8, vsize), (12, u.rva), (16, u.len), (20, raw)] {
            put32(&mut out, h + field, v)?;
        }
        raw += u.len;
        bodies.push(bytes);
    }
    for b in bodies {
        out.extend_from_slice(b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// Writes Petite streams to check the decoder against: bits into bytes from the top, a new
    /// byte's place taken when its first bit is written, literal bytes in between.
    struct Writer {
        out: Vec<u8>,
        byte_at: usize,
        used: u32,
        /// Bytes still to come, as the decoder counts them (literals are XORed with it).
        left: usize,
        width: u32,
        far: i64,
        farther: i64,
    }

    impl Writer {
        fn new(first: u8, len: usize) -> Self {
            let (width, far, farther) = match len {
                0..0x10000 => (5, -0x3a0, -0x3fa0),
                0x10000..0x40000 => (7, -0x680, -0x7e80),
                _ => (8, -0x500, -0x7d00),
            };
            Writer { out: vec![first], byte_at: 0, used: 8, left: len - 1, width, far, farther }
        }
        fn bit(&mut self, b: u32) {
            if self.used == 8 {
                self.byte_at = self.out.len();
                self.out.push(0);
                self.used = 0;
            }
            self.out[self.byte_at] |= (b as u8) << (7 - self.used);
            self.used += 1;
        }
        fn gamma(&mut self, v: u32) {
            let n = 32 - v.leading_zeros();
            for i in (0..n - 1).rev() {
                self.bit((v >> i) & 1);
                self.bit(u32::from(i > 0));
            }
        }
        fn literal(&mut self, c: u8) {
            self.bit(0);
            self.out.push(c ^ self.left as u8);
            self.left -= 1;
        }
        fn count(&mut self, count: u32) {
            if (1..=3).contains(&count) {
                self.bit(count >> 1);
                self.bit(count & 1);
            } else {
                self.bit(0);
                self.bit(0);
                self.gamma(count - 2);
            }
        }
        /// A copy of `len` bytes from `dist` back, with a new offset.
        fn copy(&mut self, dist: u32, len: u32) {
            self.bit(1);
            let v = dist - 1;
            self.gamma((v >> self.width) + 3);
            for i in (0..self.width).rev() {
                self.bit((v >> i) & 1);
            }
            let back = -i64::from(dist);
            let extra = 1 + u32::from(back < self.farther) + u32::from(back < self.far);
            self.count(len - extra);
            self.left -= len as usize;
        }
        /// A copy of `len` bytes from the last offset again.
        fn again(&mut self, len: u32) {
            self.bit(1);
            self.gamma(2);
            self.count(len);
            self.left -= len as usize;
        }
    }

    #[test]
    fn a_stream_of_literals_and_copies_decodes() {
        let text = testkit::pseudo_random(3, 3000);
        let mut want = text.clone();
        let plan: &[(u32, u32)] = &[(3, 4), (3, 9), (100, 5), (1000, 40), (0x3a1, 3), (2999, 100), (17, 2)];
        let total = want.len() + plan.iter().map(|&(_, l)| l as usize).sum::<usize>() + 50;
        let mut w = Writer::new(text[0], total);
        for &c in &text[1..] {
            w.literal(c);
        }
        for &(dist, len) in plan {
            w.copy(dist, len);
            for _ in 0..len {
                want.push(want[want.len() - dist as usize]);
            }
        }
        // the last offset again
        w.again(50);
        for _ in 0..50 {
            want.push(want[want.len() - 17]);
        }
        assert_eq!(w.left, 0);
        let mut image = vec![0u8; 0x20000];
        image[0x10000..0x10000 + w.out.len()].copy_from_slice(&w.out);
        let end = decompress(&mut image, 0x10000, 0, total).unwrap();
        assert_eq!(end, total);
        assert_eq!(&image[..total], &want[..]);
        // cut short, or copying from before the start: refused
        let mut short = vec![0u8; 0x10000 + w.out.len() / 2];
        short[0x10000..].copy_from_slice(&w.out[..w.out.len() / 2]);
        assert!(decompress(&mut short, 0x10000, 0, total).is_none());
        let mut w = Writer::new(b'a', 10);
        w.copy(5, 9);
        let mut image = vec![0u8; 0x100];
        image[0x80..0x80 + w.out.len()].copy_from_slice(&w.out);
        assert!(decompress(&mut image, 0x80, 0, 10).is_none());
    }

    /// A small Petite 2.2 executable: `.petite` starts with the loader's `mov eax, imm32` of its
    /// own address, holds `stream` at 0x200 and a table (at 0x1b8) that decompresses it into
    /// `.text`.
    fn packed(stream: &[u8], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 0x800];
        let put16 = |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 = |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        f[..2].copy_from_slice(b"MZ");
        put32(&mut f, 0x3c, 0x40);
        let pe = 0x40;
        f[pe..pe + 4].copy_from_slice(b"PE\0\0");
        put16(&mut f, pe + 4, 0x14c);
        put16(&mut f, pe + 6, 2);
        put16(&mut f, pe + 20, 0xe0);
        put16(&mut f, pe + 24, 0x10b);
        for (at, v) in [(0x28, 0x2000), (0x34, 0x40_0000), (24 + 32, 0x1000), (24 + 36, 0x200), (24 + 92, 16)] {
            put32(&mut f, pe + at, v);
        }
        let table = pe + 24 + 0xe0;
        for (i, (name, rva, raw)) in
            [(&b".text"[..], 0x1000, 0x200), (b".petite", 0x2000, 0x400)].into_iter().enumerate()
        {
            let h = table + i * 40;
            f[h..h + name.len()].copy_from_slice(name);
            for (at, v) in [(8, 0x1000), (12, rva), (16, 0x200 * (i as u32 + 1)), (20, raw)] {
                put32(&mut f, h + at, v);
            }
        }
        f[0x400] = 0xb8;
        put32(&mut f, 0x401, 0x40_2000);
        f[0x600..0x600 + stream.len()].copy_from_slice(stream);
        for (at, v) in [(0, 0x2200), (4, len as u32), (8, 0x1000), (12, 0)] {
            put32(&mut f, 0x400 + LAYOUT_22.0 + at, v);
        }
        f
    }

    #[test]
    fn a_packed_executable_is_rebuilt_from_its_decompressed_sections() {
        let text = b"Petite test section: ";
        let len = text.len() + 300;
        let mut w = Writer::new(text[0], len);
        for &c in &text[1..] {
            w.literal(c);
        }
        w.copy(text.len() as u32, 300);
        let exe = packed(&w.out, len);
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
            std::fs::write(std::path::Path::new(&dir).join("seed-exe-petite"), [&[0][..], &exe].concat()).unwrap();
        }
        let rebuilt = unpack(&exe, &mut Budget::new(Limits::default())).unwrap().unwrap();
        let mut want = text.to_vec();
        for _ in 0..300 {
            want.push(want[want.len() - text.len()]);
        }
        // one section, from the start of .text to the end of what was decompressed
        let (secs, _) = sections(&rebuilt, 0x40, 96).unwrap();
        assert_eq!(secs.len(), 1);
        assert_eq!((secs[0].rva, secs[0].rsize), (0x1000, len));
        assert_eq!(&rebuilt[secs[0].raw..], &want[..]);
        // each section's size is charged: a budget that holds the image but not the decoded
        // bytes as well is exceeded
        let tight = Limits { max_expanded: 0x2000 + 10, ..Limits::default() };
        assert!(matches!(unpack(&exe, &mut Budget::new(tight)), Err(UnpackError::Limit(_))));
        // not Petite's loader: not unpacked
        let mut other = exe.clone();
        other[0x400] = 0x90;
        assert!(unpack(&other, &mut Budget::new(Limits::default())).unwrap().is_none());
    }

    #[test]
    fn damaged_files_end_in_bounded_time() {
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-petite.exe").expect("clamav-testfiles");
        let rebuilt = unpack(&real, &mut Budget::new(Limits::default())).unwrap().unwrap();
        // what the file carries, decompressed: a zip holding clam.exe
        let zip = memchr::memmem::find(&rebuilt, b"PK\x03\x04").expect("a zip in the rebuilt file");
        assert_eq!(rebuilt.get(zip + 30..zip + 38), Some(&b"clam.exe"[..]));
        assert!(memchr::memmem::find(&real, b"clam.exe").is_none(), "not readable before");
        for at in 0..real.len() {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut Budget::new(Limits::default()));
        }
        for cut in (0..real.len()).step_by(61) {
            let _ = unpack(&real[..cut], &mut Budget::new(Limits::default()));
        }
        let junk = testkit::pseudo_random(9, 50_000);
        let mut image = junk.clone();
        let _ = decompress(&mut image, 0, 25_000, 25_000);
    }
}
