//! UPX-packed Windows executables (issue 17), the packer most malware is seen with. UPX keeps
//! the original sections compressed at the start of its second section (`UPX1`) and says how in
//! its pack header (`UPX!`: the method, the sizes); the image decompresses to where its first
//! section (`UPX0`) is loaded, followed by what UPX keeps of the original imports and the
//! original PE header. The executable is rebuilt as libclamav rebuilds it: a PE header, then
//! each original section as it is in memory, so that what the original file held (an embedded
//! executable, a zip) is where it was relative to its section's end.
//!
//! NRV2B, NRV2D and NRV2E (the methods UPX uses by default) are decoded here from their
//! description (a bit stream of 32-bit little-endian words read from the top bit, literals and
//! copies with Elias-gamma-like lengths and offsets); LZMA (`--lzma`) by `lzma-rust2` after
//! UPX's two bytes of properties. Without a valid pack header (scramblers wipe it), the three
//! NRV methods are tried in turn. The stream starts where the loader's `mov esi` says (UPX 3
//! puts the end of its pack header first), else at UPX1's start. Output is bounded by the
//! declared size and the budget.

use super::UnpackError;
use super::peimage::{le16, le32, put32, sections};
use crate::limits::Budget;

/// The NRV variant of a pack header's method (UPX numbers them 2, 5 and 8 in their 32-bit
/// little-endian form, the one its PE stubs use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nrv {
    B,
    D,
    E,
}

/// The unpacked and rebuilt executable, if `data` is a UPX-packed PE file whose image
/// decodes; `Ok(None)` when it is not one.
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some(pe) = le32(data, 0x3c).filter(|&p| data.get(p..p + 4) == Some(b"PE\0\0")) else { return Ok(None) };
    let Some((secs, _)) = sections(data, pe, 96) else { return Ok(None) };
    // UPX0 (empty in the file, the image's place in memory) and UPX1 (the compressed image)
    let [upx0, upx1, ..] = secs[..] else { return Ok(None) };
    if upx0.rsize != 0 || upx1.rsize == 0 {
        return Ok(None);
    }
    let Some(packed) = data.get(upx1.raw..upx1.raw.saturating_add(upx1.rsize).min(data.len())) else {
        return Ok(None);
    };
    // where the loader's `mov esi, imm32` says the stream starts: UPX 3 leaves some bytes of
    // UPX1 before it (libclamav's "skew", 21 bytes in UPX 3.94's executables)
    let skew = stream_skew(data, pe, &secs).filter(|&k| k < packed.len());
    // what the pack header says, in the file's first 4 KiB
    let head = &data[..data.len().min(upx1.raw.max(0x400)).min(4096)];
    let pack_header = memchr::memmem::find(head, b"UPX!").and_then(|at| head.get(at..at + 24));
    let most = (upx0.vsize.saturating_add(upx1.vsize)).min(budget.remaining() as usize);
    // LZMA (method 14): UPX's two bytes of properties, then a raw LZMA stream
    if let Some(h) = pack_header.filter(|h| h[6] == 14) {
        let u_len = le32(h, 16).unwrap_or(0).min(most);
        for start in skew.into_iter().chain([0]) {
            if let Some(image) = decode_lzma(&packed[start..], u_len)
                && let Some(rebuilt) = charged_rebuild(&image, upx0.rva, budget)?
            {
                return Ok(Some(rebuilt));
            }
        }
        return Ok(None);
    }
    let header = pack_header.and_then(|h| {
        let method = match h[6] {
            2 => Nrv::B,
            5 => Nrv::D,
            8 => Nrv::E,
            _ => return None,
        };
        Some((method, le32(h, 16)?))
    });
    let tries: Vec<(Nrv, usize)> = match header {
        Some((m, u_len)) => vec![(m, u_len.min(most))],
        None => [Nrv::B, Nrv::D, Nrv::E].into_iter().map(|m| (m, most)).collect(),
    };
    // skewed first, as libclamav tries it, then from the section's start
    for start in skew.into_iter().chain([0]) {
        for &(method, limit) in &tries {
            if let Some(image) = decode(method, &packed[start..], limit)
                && let Some(rebuilt) = charged_rebuild(&image, upx0.rva, budget)?
            {
                return Ok(Some(rebuilt));
            }
        }
    }
    Ok(None)
}

/// [`rebuild`], the decoded image and the rebuilt file both charged to the budget.
fn charged_rebuild(image: &[u8], base: usize, budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    budget.spend(image.len() as u64)?;
    let Some(rebuilt) = rebuild(image, base) else { return Ok(None) };
    budget.spend(rebuilt.len() as u64)?;
    Ok(Some(rebuilt))
}

/// How far into UPX1 the compressed stream starts, from the loader's `pusha; mov esi, imm32`
/// (`60 BE imm32`) at the entry point: `imm32` less the image base and UPX1's address. libclamav
/// reads it right at the entry point and takes it when it is 1 to 0xfff; a DLL's loader first
/// checks why it is called (`cmp byte [esp+8], 1; jnz …`), so the instruction is looked for in
/// the entry point's first 16 bytes.
fn stream_skew(data: &[u8], pe: usize, secs: &[super::peimage::Section]) -> Option<usize> {
    let entry = le32(data, pe + 24 + 16)?;
    let image_base = le32(data, pe + 24 + 28)?;
    let upx1 = secs.get(1)?;
    let s = secs.iter().find(|s| s.rva <= entry && entry < s.rva.saturating_add(s.vsize.max(s.rsize)))?;
    let at = s.raw.checked_add(entry - s.rva)?;
    let code = data.get(at..at.saturating_add(22).min(data.len()))?;
    let i = code[..code.len().min(16)].windows(2).position(|w| w == [0x60, 0xbe])?;
    let target = le32(code, i + 2)?;
    let skew = target.checked_sub(image_base)?.checked_sub(upx1.rva)?;
    (1..=0xfff).contains(&skew).then_some(skew)
}

/// The executable rebuilt from a decompressed image loaded at `base`: the original PE header
/// (the last valid one in the image, after what UPX keeps of the imports), each of its
/// sections laid out in the file as it is in memory.
fn rebuild(image: &[u8], base: usize) -> Option<Vec<u8>> {
    let pe = memchr::memmem::rfind_iter(image, b"PE\0\0").find(|&at| {
        matches!(le16(image, at + 4), Some(0x14c | 0x8664))
            && sections(image, at, 96).is_some_and(|(s, _)| {
                // every section inside the image before the header
                s.iter().all(|s| s.rva >= base && s.rva - base <= at)
            })
    })?;
    let (secs, opt) = sections(image, pe, 96)?;
    let align = le32(image, pe + 24 + 32).filter(|a| a.is_power_of_two() && *a <= 0x10000).unwrap_or(0x1000);
    let up = |v: usize| v.div_ceil(align) * align;
    let nt = 24 + opt;
    let first = up(0x40 + nt + secs.len() * 40);
    let mut out = vec![0u8; first];
    out[..2].copy_from_slice(b"MZ");
    out[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    out[0x40..0x40 + nt].copy_from_slice(image.get(pe..pe + nt)?);
    let mut at = first;
    for (i, s) in secs.iter().enumerate() {
        let from = (s.rva / align * align).saturating_sub(base);
        let bytes = image.get(from.min(pe)..from.saturating_add(up(s.vsize)).min(pe)).unwrap_or_default();
        let h = 0x40 + nt + i * 40;
        out[h..h + 40].copy_from_slice(image.get(pe + nt + i * 40..pe + nt + i * 40 + 40)?);
        for (field, v) in [(8, bytes.len()), (12, from + base), (16, bytes.len()), (20, at)] {
            put32(&mut out, h + field, v)?;
        }
        out.extend_from_slice(bytes);
        at += bytes.len();
    }
    Some(out)
}

/// Decodes UPX's LZMA stream of an image of `u_len` bytes: first its properties in two bytes
/// — `(lc + lp) << 3 | pb`, then `lp << 4 | lc` — then the range-coded data; `None` when the
/// properties disagree or the stream breaks off before `u_len` bytes.
fn decode_lzma(data: &[u8], u_len: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let [b0, b1, ..] = *data else { return None };
    let (lc, lp, pb) = (u32::from(b1 & 0x0f), u32::from(b1 >> 4), u32::from(b0 & 7));
    if u32::from(b0 >> 3) != lc + lp || lc > 8 || lp > 4 || pb > 4 || u_len == 0 {
        return None;
    }
    // the dictionary need not be larger than the image (which the caller bounds by the budget)
    let dict = u32::try_from(u_len.max(4096)).ok()?;
    let mut reader = lzma_rust2::LzmaReader::new(&data[2..], u_len as u64, lc, lp, pb, dict, None).ok()?;
    let mut image = Vec::new();
    reader.read_to_end(&mut image).ok()?;
    (image.len() == u_len).then_some(image)
}

/// Bits of an NRV stream: 32-bit little-endian words, each read from its top bit; bytes in
/// between for literals and offsets.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    word: u32,
    left: u32,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        if self.left == 0 {
            self.word = le32(self.data, self.at)? as u32;
            self.at += 4;
            self.left = 32;
        }
        self.left -= 1;
        Some((self.word >> self.left) & 1)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// `1`, then a bit per step until a stop bit (NRV2B's and the lengths' form).
    fn gamma(&mut self, start: u32) -> Option<u32> {
        let mut v = start;
        loop {
            v = v.checked_mul(2)? + self.bit()?;
            if self.bit()? == 1 {
                return Some(v);
            }
        }
    }

    /// NRV2D's and NRV2E's form for offsets: two bits per step.
    fn gamma2(&mut self) -> Option<u32> {
        let mut v = 1u32;
        loop {
            v = v.checked_mul(2)? + self.bit()?;
            if self.bit()? == 1 {
                return Some(v);
            }
            v = (v - 1).checked_mul(2)? + self.bit()?;
        }
    }
}

/// Decodes an NRV stream up to its end marker, at most `limit` bytes; `None` when it breaks
/// off before the end marker, refers before its start or runs past `limit`.
fn decode(method: Nrv, data: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut b = Bits { data, at: 0, word: 0, left: 0 };
    let mut out: Vec<u8> = Vec::new();
    let mut last_off: usize = 1;
    loop {
        while b.bit()? == 1 {
            if out.len() >= limit {
                return None;
            }
            out.push(b.byte()?);
        }
        let (off, mut len);
        if method == Nrv::B {
            let m = b.gamma(1)?;
            if m == 2 {
                off = last_off;
            } else {
                let m = (m - 3).checked_mul(256)? | u32::from(b.byte()?);
                if m == u32::MAX {
                    return Some(out);
                }
                off = m as usize + 1;
                last_off = off;
            }
            len = (b.bit()? << 1) | b.bit()?;
            if len == 0 {
                len = b.gamma(1)? + 2;
            }
            len += u32::from(off > 0xd00);
        } else {
            let m = b.gamma2()?;
            let low;
            if m == 2 {
                off = last_off;
                low = b.bit()?;
            } else {
                let m = (m - 3).checked_mul(256)? | u32::from(b.byte()?);
                if m == u32::MAX {
                    return Some(out);
                }
                low = (m ^ 1) & 1;
                off = (m >> 1) as usize + 1;
                last_off = off;
            }
            if method == Nrv::D {
                len = (low << 1) | b.bit()?;
                if len == 0 {
                    len = b.gamma(1)? + 2;
                }
            } else if low == 1 {
                len = 1 + b.bit()?;
            } else if b.bit()? == 1 {
                len = 3 + b.bit()?;
            } else {
                len = b.gamma(1)? + 3;
            }
            len += u32::from(off > 0x500);
        }
        let count = len as usize + 1;
        if off > out.len() || out.len() + count > limit {
            return None;
        }
        for _ in 0..count {
            out.push(out[out.len() - off]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes NRV2B streams (literals and copies) to check the decoder against: the bits go
    /// into 32-bit words from the top, bytes in between in the order the decoder meets them.
    struct Writer {
        out: Vec<u8>,
        word_at: Option<usize>,
        word: u32,
        used: u32,
    }

    impl Writer {
        fn new() -> Self {
            Writer { out: Vec::new(), word_at: None, word: 0, used: 32 }
        }
        fn bit(&mut self, b: u32) {
            if self.used == 32 {
                self.flush();
                self.word_at = Some(self.out.len());
                self.out.extend([0; 4]);
                self.word = 0;
                self.used = 0;
            }
            self.used += 1;
            self.word |= b << (32 - self.used);
        }
        fn flush(&mut self) {
            if let Some(at) = self.word_at {
                self.out[at..at + 4].copy_from_slice(&self.word.to_le_bytes());
            }
        }
        fn gamma(&mut self, v: u32) {
            // v >= 2: its bits after the leading 1, each followed by a stop flag
            let n = 32 - v.leading_zeros();
            for i in (0..n - 1).rev() {
                self.bit((v >> i) & 1);
                self.bit(u32::from(i == 0));
            }
        }
        fn literal(&mut self, c: u8) {
            self.bit(1);
            self.out.push(c);
        }
        /// A copy of `len` (>= 3) bytes from `off` back (a new offset, NRV2B).
        fn copy(&mut self, off: u32, len: u32) {
            self.bit(0);
            let m = off - 1;
            self.gamma((m >> 8) + 3);
            self.out.push((m & 0xff) as u8);
            let l = len - 1 - u32::from(off > 0xd00);
            if l <= 3 {
                self.bit(l >> 1);
                self.bit(l & 1);
            } else {
                self.bit(0);
                self.bit(0);
                self.gamma(l - 2);
            }
        }
        fn end(mut self) -> Vec<u8> {
            self.bit(0);
            self.gamma(0x100_0002);
            self.out.push(0xff);
            self.flush();
            self.out
        }
    }

    #[test]
    fn an_nrv2b_stream_of_literals_and_copies_decodes() {
        let mut w = Writer::new();
        for c in b"abcabc" {
            w.literal(*c);
        }
        w.copy(3, 9); // abcabcabc
        w.literal(b'!');
        w.copy(10, 4); // "abca"
        let stream = w.end();
        assert_eq!(decode(Nrv::B, &stream, 1000).unwrap(), b"abcabcabcabcabc!abca");
        // the declared size bounds it; a stream cut short or referring before its start is refused
        assert!(decode(Nrv::B, &stream, 10).is_none());
        assert!(decode(Nrv::B, &stream[..stream.len() - 3], 1000).is_none());
        let mut w = Writer::new();
        w.literal(b'a');
        w.copy(5, 3);
        assert!(decode(Nrv::B, &w.end(), 1000).is_none());
    }

    /// UPX's LZMA: its two bytes of properties (for lc 3, lp 1, pb 2: `0x22`, `0x13`) before a
    /// raw stream; properties that disagree with themselves, a stream cut short and a declared
    /// size longer than the stream give nothing.
    #[test]
    fn an_lzma_stream_with_upx_properties_decodes() {
        use std::io::Write;
        let image: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8 ^ (i >> 9) as u8).collect();
        let mut options = lzma_rust2::LzmaOptions::with_preset(6);
        (options.lc, options.lp, options.pb) = (3, 1, 2);
        let mut w = lzma_rust2::LzmaWriter::new_no_header(Vec::new(), &options, false).unwrap();
        w.write_all(&image).unwrap();
        let raw = w.finish().unwrap();
        let mut stream = vec![(3 + 1) << 3 | 2, 1 << 4 | 3];
        stream.extend_from_slice(&raw);
        assert_eq!(decode_lzma(&stream, image.len()).as_deref(), Some(&image[..]));
        let mut wrong = stream.clone();
        wrong[0] = 3 << 3 | 2; // lc + lp says 3, the second byte 4
        assert!(decode_lzma(&wrong, image.len()).is_none());
        assert!(decode_lzma(&stream[..stream.len() / 2], image.len()).is_none());
        assert!(decode_lzma(&stream, image.len() + 1).is_none());
        assert!(decode_lzma(&stream[..1], 10).is_none());
    }

    #[test]
    fn garbage_ends_in_bounded_time_for_every_method() {
        let junk = testkit::pseudo_random(7, 100_000);
        for m in [Nrv::B, Nrv::D, Nrv::E] {
            let _ = decode(m, &junk, 1 << 20);
            assert!(decode(m, &[0xff; 64], 1 << 20).is_none());
        }
    }
}
