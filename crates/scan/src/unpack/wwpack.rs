//! WWPack32-packed Windows executables (issue 17). WWPack adds a last section (`.WWP32`) holding
//! its loader and a table of compressed blocks; each block's compressed data sits in the original
//! sections where its output goes (the entry gives where its source ends). Unpacking loads the
//! sections where they go in memory, decodes each block in place from a copy and gives back the
//! image as an executable whose file layout is its memory layout (the loader's section left
//! out), as libclamav rebuilds it.
//!
//! Recognised as libclamav recognises it: the entry point is the start of the last section and
//! the loader's first instructions are WWPack's. The compression is an LZ77 variant: a bit stream
//! of 32-bit little-endian words read from the top bit, literal bytes taken from the same stream
//! between the words (a word is fetched as soon as the last one is used up), copies of two bytes
//! with short offsets, and longer copies with offsets of 5 to 15 bits and Elias-gamma-like
//! lengths. Decoded from that description; output is bounded by the image and the budget.

use super::UnpackError;
use super::peimage::{Section, le32, load, put32, sections};
use crate::limits::Budget;

/// The loader's first bytes at the entry point, and those 0x68 bytes further.
const ENTRY: &[u8] = b"\x53\x55\x8b\xe8\x33\xdb\xeb";
const ENTRY_AT_0X68: &[u8] = b"\xe8\x00\x00\x00\x00\x58\x2d\x6d\x00\x00\x00\x50\x60\x33\xc9\x50\x58\x50\x50";
/// Where the block table starts in the loader's section.
const TABLE: usize = 0x2a1;
/// Each entry: source delta, destination delta, compressed size in 32-bit words, end of the
/// source; then a byte that says whether another entry follows.
const ENTRY_LEN: usize = 16;
/// Most blocks decoded (WWPack writes one per section).
const MAX_BLOCKS: usize = 96;

/// The unpacked executable, if `data` is packed by WWPack32 and decodes; `Ok(None)` when it is
/// not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some(pe) = le32(data, 0x3c).filter(|&p| data.get(p..p + 4) == Some(b"PE\0\0")) else { return Ok(None) };
    let Some((secs, opt)) = sections(data, pe, 96) else { return Ok(None) };
    let [originals @ .., loader] = &secs[..] else { return Ok(None) };
    let entry = le32(data, pe + 0x28);
    if originals.is_empty() || entry != Some(loader.rva) {
        return Ok(None);
    }
    let Some(code) = data.get(loader.raw..loader.raw.saturating_add(loader.rsize).min(data.len())) else {
        return Ok(None);
    };
    if !code.starts_with(ENTRY) || code.get(0x68..0x68 + ENTRY_AT_0X68.len()) != Some(ENTRY_AT_0X68) {
        return Ok(None);
    }
    let align = le32(data, pe + 24 + 32).filter(|a| a.is_power_of_two() && *a <= 0x10000).unwrap_or(0x1000);
    let Some(mut image) = load(data, originals, align, budget)? else { return Ok(None) };
    let mut table = TABLE;
    for _ in 0..MAX_BLOCKS {
        let Some(fields) = code.get(table..table + ENTRY_LEN + 1) else { return Ok(None) };
        let (Some(delta), Some(words), Some(end)) = (le32(fields, 0), le32(fields, 8), le32(fields, 12)) else {
            return Ok(None);
        };
        let (Some(start), Some(len)) = (loader.rva.checked_sub(delta), words.checked_mul(4)) else { return Ok(None) };
        // the compressed bytes end where the block's source ends, and decode from where they start
        // (WWPack makes that the block's start)
        let Some(at) = start.checked_add(end).and_then(|e| (e + 4).checked_sub(len)) else { return Ok(None) };
        if len == 0 || at.checked_add(len).is_none_or(|e| e > image.len()) {
            return Ok(None);
        }
        let packed = image[at..at + len].to_vec();
        image[at..at + len].fill(0xff);
        // what each block decodes is charged: a table of many blocks cannot decode the image
        // over and over
        let Some(decoded) = decode(&packed, &mut image, at) else { return Ok(None) };
        budget.spend(decoded as u64)?;
        table += ENTRY_LEN;
        if fields[ENTRY_LEN] == 0 {
            return Ok(rebuild(image, pe, opt, originals, loader, code));
        }
    }
    Ok(None)
}

/// The image as an executable: the loader's section dropped from the header, every other
/// section's place in the file set to its place in memory, the entry point set to where the
/// loader jumps in the end.
fn rebuild(
    mut image: Vec<u8>,
    pe: usize,
    opt: usize,
    originals: &[Section],
    loader: &Section,
    code: &[u8],
) -> Option<Vec<u8>> {
    image.get_mut(pe + 6..pe + 8)?.copy_from_slice(&u16::try_from(originals.len()).ok()?.to_le_bytes());
    let jump = le32(code, 0x295)?.wrapping_add(loader.rva).wrapping_add(0x299) & 0xffff_ffff;
    put32(&mut image, pe + 0x28, jump)?;
    let image_size = le32(&image, pe + 0x50)?.wrapping_sub(loader.vsize) & 0xffff_ffff;
    put32(&mut image, pe + 0x50, image_size)?;
    let table = pe + 24 + opt;
    for (i, s) in originals.iter().enumerate() {
        let h = table + i * 40;
        for (field, v) in [(8, s.vsize), (12, s.rva), (16, s.vsize), (20, s.rva)] {
            put32(&mut image, h + field, v)?;
        }
    }
    let last = table + originals.len() * 40;
    image.get_mut(last..last + 40)?.fill(0);
    Some(image)
}

/// WWPack's bit stream: 32-bit little-endian words read from the top bit; literal bytes are
/// read from the same place, between words. A word is fetched as soon as the previous one is
/// used up, so the order of words and literals is the packer's.
struct Stream<'a> {
    data: &'a [u8],
    at: usize,
    word: u32,
    left: u32,
    /// The last word was used up and no other follows: any further bit is an error.
    dry: bool,
}

impl<'a> Stream<'a> {
    fn new(data: &'a [u8]) -> Option<Stream<'a>> {
        let mut s = Stream { data, at: 0, word: 0, left: 0, dry: false };
        s.fetch().then_some(s)
    }

    fn fetch(&mut self) -> bool {
        match self.data.get(self.at..self.at + 4) {
            Some(w) => {
                self.word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                self.at += 4;
                self.left = 32;
                true
            }
            None => {
                self.dry = true;
                false
            }
        }
    }

    /// The next `n` bits (1 to 16), most significant first.
    fn bits(&mut self, n: u32) -> Option<u32> {
        if self.dry {
            return None;
        }
        let mut v = self.word >> (32 - n);
        if self.left > n {
            self.word <<= n;
            self.left -= n;
        } else if self.left == n {
            self.fetch();
        } else {
            // the rest of this word, then the top of the next
            let missing = n - self.left;
            if !self.fetch() {
                return None;
            }
            v |= self.word >> (32 - missing);
            self.word <<= missing;
            self.left -= missing;
        }
        Some(v)
    }

    fn bit(&mut self) -> Option<u32> {
        self.bits(1)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }
}

/// Decodes `packed` into `out` from `at` up to the end marker and returns how many bytes it
/// wrote; `None` when the stream breaks off or a copy reaches outside `out`.
fn decode(packed: &[u8], out: &mut [u8], start: usize) -> Option<usize> {
    let mut at = start;
    let mut s = Stream::new(packed)?;
    let copy = |out: &mut [u8], at: usize, back: usize, len: usize| -> Option<usize> {
        let from = at.checked_sub(back)?;
        if back == 0 || at + len > out.len() {
            return None;
        }
        for i in 0..len {
            out[at + i] = out[from + i];
        }
        Some(at + len)
    };
    loop {
        if s.bit()? == 0 {
            *out.get_mut(at)? = s.byte()?;
            at += 1;
            continue;
        }
        let kind = s.bits(2)?;
        if kind == 3 {
            // two bytes from close by: 5, 6, 8 or 9 bits of offset past a base
            let class = s.bits(2)?;
            let (width, base) = match class {
                0 => (5, 1),
                1 => (6, 0x21),
                2 => (8, 0x61),
                _ => (9, 0x161),
            };
            let v = s.bits(width)?;
            if v == 0x1ff {
                return Some(at - start);
            }
            at = copy(out, at, (base + v) as usize, 2)?;
            continue;
        }
        // a longer copy: the offset (5 to 15 bits past a base), then the length — given by
        // `kind` itself (1, 2: three or four bytes) or, for 0, coded after the offset
        let back = match s.bits(3)? {
            c @ 0..=5 => {
                let width = match c {
                    3 => 8 + s.bit()?,
                    4 => 10 + s.bit()?,
                    5 => 12,
                    c => c + 5,
                };
                s.bits(width)? + (1 << width) - 31
            }
            6 => s.bits(14)? + 0x1fe1,
            _ => s.bits(15)? + 0x5fe1,
        };
        let len = match kind {
            0 => copy_length(&mut s)?,
            k => k + 2,
        };
        at = copy(out, at, back as usize, len as usize)?;
    }
}

/// The length of a long copy: 5–6, 7–13, 14–28, or a wider field past a base.
fn copy_length(s: &mut Stream) -> Option<u32> {
    if s.bit()? == 0 {
        return Some(s.bit()? + 5);
    }
    let v = s.bits(3)?;
    if v != 0 {
        return Some(v + 6);
    }
    let v = s.bits(4)?;
    if v != 0 {
        return Some(v + 13);
    }
    // each 0 bit widens the field by one and raises the base (29, 61, 125); after three, 14 bits
    let (mut width, mut base) = (4, 13);
    loop {
        if width == 7 {
            width = 14;
            base = 0;
            break;
        }
        base = (base + 2) * 2 - 1;
        width += 1;
        if s.bit()? != 0 {
            break;
        }
    }
    Some(s.bits(width)? + base)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes WWPack streams to check the decoder against: bits into 32-bit words from the top,
    /// the next word's place taken as soon as one is full, literal bytes in between.
    struct Writer {
        out: Vec<u8>,
        word_at: usize,
        word: u32,
        used: u32,
    }

    impl Writer {
        fn new() -> Self {
            Writer { out: vec![0; 4], word_at: 0, word: 0, used: 0 }
        }
        fn bit(&mut self, b: u32) {
            self.word |= b << (31 - self.used);
            self.used += 1;
            if self.used == 32 {
                self.flush();
                self.word_at = self.out.len();
                self.out.extend([0; 4]);
                (self.word, self.used) = (0, 0);
            }
        }
        fn bits(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1);
            }
        }
        fn flush(&mut self) {
            self.out[self.word_at..self.word_at + 4].copy_from_slice(&self.word.to_le_bytes());
        }
        fn literal(&mut self, c: u8) {
            self.bit(0);
            self.out.push(c);
        }
        /// Two bytes from `back` (1 to 0x35f) back.
        fn pair(&mut self, back: u32) {
            self.bit(1);
            self.bits(3, 2);
            let (class, width, base) = [(0, 5, 1), (1, 6, 0x21), (2, 8, 0x61), (3, 9, 0x161)]
                .into_iter()
                .find(|&(_, w, b)| back >= b && back - b < (1 << w) - u32::from(w == 9))
                .unwrap();
            self.bits(class, 2);
            self.bits(back - base, width);
        }
        /// `len` bytes from `back` back.
        fn copy(&mut self, back: u32, len: u32) {
            self.bit(1);
            self.bits(
                if len == 3 {
                    1
                } else if len == 4 {
                    2
                } else {
                    0
                },
                2,
            );
            let width = (5..=12).find(|&w| back < (2 << w) - 31);
            match width {
                Some(w) => {
                    match w {
                        5..=7 => self.bits(w - 5, 3),
                        8 | 9 => {
                            self.bits(3, 3);
                            self.bit(w - 8);
                        }
                        10 | 11 => {
                            self.bits(4, 3);
                            self.bit(w - 10);
                        }
                        _ => self.bits(5, 3),
                    }
                    self.bits(back - ((1 << w) - 31), w);
                }
                None if back < 0x5fe1 => {
                    self.bits(6, 3);
                    self.bits(back - 0x1fe1, 14);
                }
                None => {
                    self.bits(7, 3);
                    self.bits(back - 0x5fe1, 15);
                }
            }
            if (3..=4).contains(&len) {
                return;
            }
            match len {
                5 | 6 => {
                    self.bit(0);
                    self.bit(len - 5);
                }
                7..=13 => {
                    self.bit(1);
                    self.bits(len - 6, 3);
                }
                14..=28 => {
                    self.bits(0b1000, 4);
                    self.bits(len - 13, 4);
                }
                _ => {
                    self.bits(0b10000000, 8);
                    let (width, base) = [(5, 29), (6, 61), (7, 125)]
                        .into_iter()
                        .find(|&(w, b)| len >= b && len - b < (1 << w))
                        .unwrap_or((14, 0));
                    // a 0 for each step past the first width, then 1 (none after the third)
                    for _ in 5..width.min(8) {
                        self.bit(0);
                    }
                    if width < 8 {
                        self.bit(1);
                    }
                    self.bits(len - base, width);
                }
            }
        }
        fn end(mut self) -> Vec<u8> {
            self.bit(1);
            self.bits(0b1111, 4);
            self.bits(0x1ff, 9);
            self.flush();
            self.out
        }
    }

    #[test]
    fn a_stream_of_literals_and_copies_decodes() {
        let text = testkit::pseudo_random(17, 30_000);
        let mut w = Writer::new();
        let mut want = Vec::new();
        for &c in &text {
            w.literal(c);
            want.push(c);
        }
        let copies = [(3, 9), (2, 3), (40, 4), (100, 5), (300, 6), (600, 7), (1500, 13), (3000, 14), (5000, 28)];
        let longer = [(7000, 29), (9000, 60), (20000, 61), (25000, 124), (29000, 125), (1, 252), (2, 253), (3, 1000)];
        for (back, len) in copies.into_iter().chain(longer) {
            w.copy(back, len);
            for _ in 0..len {
                want.push(want[want.len() - back as usize]);
            }
        }
        for back in [1, 0x20, 0x21, 0x60, 0x61, 0x160, 0x161, 0x35f] {
            w.pair(back);
            for _ in 0..2 {
                want.push(want[want.len() - back as usize]);
            }
            w.literal(b'!');
            want.push(b'!');
        }
        let stream = w.end();
        let mut out = vec![0; want.len() + 100];
        decode(&stream, &mut out, 0).unwrap();
        assert_eq!(&out[..want.len()], &want[..]);
        // a stream cut short, or a copy from before the start, is refused
        assert!(decode(&stream[..stream.len() - 8], &mut out, 0).is_none());
        let mut w = Writer::new();
        w.literal(b'a');
        w.copy(5, 3);
        assert!(decode(&w.end(), &mut out, 0).is_none());
        // the output is bounded by the image
        assert!(decode(&stream, &mut vec![0; 1000], 0).is_none());
    }

    /// A small WWPack32 executable: `.text` holds `stream` at the start of its data, the loader's
    /// section WWPack's first instructions and a one-block table.
    fn packed(stream: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x800];
        f[..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        let pe = 0x40;
        let put16 = |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 = |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        f[pe..pe + 4].copy_from_slice(b"PE\0\0");
        put16(&mut f, pe + 4, 0x14c);
        put16(&mut f, pe + 6, 2);
        put16(&mut f, pe + 20, 0xe0);
        put16(&mut f, pe + 24, 0x10b);
        for (at, v) in
            [(0x28, 0x2000), (24 + 32, 0x1000), (24 + 36, 0x200), (0x50, 0x3000), (24 + 60, 0x200), (24 + 92, 16)]
        {
            put32(&mut f, pe + at, v);
        }
        let table = pe + 24 + 0xe0;
        for (i, (name, rva, rsize, raw)) in
            [(&b".text"[..], 0x1000, 0x200, 0x200), (b".WWP32", 0x2000, 0x400, 0x400)].into_iter().enumerate()
        {
            let h = table + i * 40;
            f[h..h + name.len()].copy_from_slice(name);
            for (at, v) in [(8, 0x1000), (12, rva), (16, rsize), (20, raw)] {
                put32(&mut f, h + at, v);
            }
        }
        assert!(stream.len() <= 0x200 && stream.len().is_multiple_of(4));
        f[0x200..0x200 + stream.len()].copy_from_slice(stream);
        let loader = 0x400;
        f[loader..loader + ENTRY.len()].copy_from_slice(ENTRY);
        f[loader + 0x68..loader + 0x68 + ENTRY_AT_0X68.len()].copy_from_slice(ENTRY_AT_0X68);
        put32(&mut f, loader + 0x295, 0x10);
        for (at, v) in [(0, 0x1000), (4, 0), (8, stream.len() as u32 / 4), (12, stream.len() as u32 - 4)] {
            put32(&mut f, loader + TABLE + at, v);
        }
        f
    }

    #[test]
    fn a_packed_executable_is_rebuilt_with_its_sections_decoded() {
        let mut w = Writer::new();
        let text = b"WWPack32 test section: ";
        for &c in text {
            w.literal(c);
        }
        w.copy(text.len() as u32, 200);
        let mut stream = w.end();
        stream.resize(stream.len().next_multiple_of(4), 0);
        let exe = packed(&stream);
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
            std::fs::write(std::path::Path::new(&dir).join("seed-exe-wwpack"), [&[0][..], &exe].concat()).unwrap();
        }
        let image = unpack(&exe, &mut Budget::new(crate::limits::Limits::default())).unwrap().unwrap();
        let mut want = text.to_vec();
        for _ in 0..200 {
            want.push(want[want.len() - text.len()]);
        }
        assert_eq!(&image[0x1000..0x1000 + want.len()], &want[..]);
        // one section left, laid out in the file as in memory; the entry point where the loader jumps
        let (secs, _) = sections(&image, 0x40, 96).unwrap();
        assert_eq!(secs.len(), 1);
        assert_eq!((secs[0].rva, secs[0].raw, secs[0].rsize), (0x1000, 0x1000, 0x1000));
        assert_eq!(le32(&image, 0x40 + 0x28), Some(0x10 + 0x2000 + 0x299));
        // what the blocks decode is charged: a budget that holds the image but not the
        // decoded bytes as well is exceeded
        let tight = crate::limits::Limits { max_expanded: 0x2000 + 10, ..Default::default() };
        assert!(matches!(unpack(&exe, &mut Budget::new(tight)), Err(UnpackError::Limit(_))));
        // not WWPack's loader: not unpacked
        let mut other = exe.clone();
        other[0x400] = 0x90;
        assert!(unpack(&other, &mut Budget::new(crate::limits::Limits::default())).unwrap().is_none());
    }

    #[test]
    fn garbage_and_damaged_files_end_in_bounded_time() {
        let junk = testkit::pseudo_random(7, 100_000);
        let mut out = vec![0; 1 << 20];
        let _ = decode(&junk, &mut out, 0);
        // all ones is the end marker at once; all zeros, literals until the stream runs out
        assert!(decode(&[0xff; 64], &mut out, 0).is_some());
        assert!(decode(&[0; 64], &mut out, 0).is_none());
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-wwpack.exe").expect("clamav-testfiles");
        let mut budget = Budget::new(crate::limits::Limits::default());
        assert!(unpack(&real, &mut budget).unwrap().is_some());
        // every byte of the file changed in turn: never a panic
        for at in 0..real.len() {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut Budget::new(crate::limits::Limits::default()));
        }
        for cut in (0..real.len()).step_by(97) {
            let _ = unpack(&real[..cut], &mut Budget::new(crate::limits::Limits::default()));
        }
    }
}
