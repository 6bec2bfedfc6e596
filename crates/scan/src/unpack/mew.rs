//! MEW 11-packed Windows executables (issue 17). MEW leaves the first section empty in the file
//! (its size in memory is the unpacked image's) and puts its loader and the packed data in the
//! second; the entry point jumps to a stub at file offset 0x154 (0x158 without Win9x
//! compatibility) whose first instruction loads the packed data's address. There, after the
//! original entry point and the first output address, the data is a chain of aPLib streams,
//! each followed by the address where the next one goes (0 ends the chain); libclamav makes each
//! stream's output, rounded up to 4 KiB, a section and rebuilds the executable from them. MEW's
//! LZMA mode (the stub calls an LZMA decoder) is not read. Decoded from that description;
//! bounded by the sections' sizes in memory and the budget.

use super::peimage::{Built, build, clam_sections, le32};
use super::{UnpackError, aplib};
use crate::limits::Budget;

/// Most streams in the chain.
const MAX_STREAMS: usize = 96;

/// The unpacked executable, if `data` is packed by MEW 11 (without LZMA) and unpacks;
/// `Ok(None)` when it is not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some((info, secs)) = clam_sections(data) else { return Ok(None) };
    let Some(pe) = le32(data, 0x3c) else { return Ok(None) };
    let (Some(entry), Some(base)) = (le32(data, pe + 0x28), le32(data, pe + 0x34)) else { return Ok(None) };
    // the first section empty in the file, the next one not (as libclamav looks for them)
    let Some(i) = (0..secs.len().saturating_sub(1))
        .find(|&i| secs[i].rsize == 0 && secs[i].vsize != 0 && secs[i + 1].rsize != 0 && secs[i + 1].vsize != 0)
    else {
        return Ok(None);
    };
    let ep = info.ep as usize;
    let Some(jump) = data.get(ep..ep + 16).filter(|c| c[0] == 0xe9).and_then(|c| le32(c, 1)) else { return Ok(None) };
    let stub = (entry as u32).wrapping_add(jump as u32).wrapping_add(5) as usize;
    if stub != 0x154 && stub != 0x158 {
        return Ok(None);
    }
    let Some(code) = data.get(stub..stub + 0xb0) else { return Ok(None) };
    // MEW's LZMA mode: the stub calls its decoder
    if code[0x7b] == 0xe8 {
        return Ok(None);
    }
    let (packed, image) = (secs[i + 1], secs[i]);
    let Some(at) = le32(code, 1).map(|v| v.wrapping_sub(base) & 0xffff_ffff) else { return Ok(None) };
    if at <= packed.rva || at >= (packed.rva + packed.raw).saturating_sub(4) {
        return Ok(None);
    }
    let off = at - packed.rva;
    let (ssize, dsize) = (packed.vsize, image.vsize);
    let total = ssize.saturating_add(dsize);
    if off >= total || packed.rsize < off + 12 || packed.rsize > ssize {
        return Ok(None);
    }
    if total as u64 > budget.remaining() {
        return Ok(None);
    }
    budget.spend(total as u64)?;
    // the image's space, then the packed section as in memory
    let mut buf = vec![0u8; total];
    let Some(bytes) = data.get(packed.raw..packed.raw + packed.rsize) else { return Ok(None) };
    buf[dsize..dsize + bytes.len()].copy_from_slice(bytes);
    unmew(&mut buf, off, ssize, dsize, base, secs[0].rva, budget)
}

/// Runs the chain of streams at `off` in the packed section (which starts at `dsize` in `buf`)
/// and rebuilds the executable from the sections they made.
fn unmew(
    buf: &mut [u8],
    off: usize,
    ssize: usize,
    dsize: usize,
    base: usize,
    vadd: usize,
    budget: &mut Budget,
) -> Result<Option<Vec<u8>>, UnpackError> {
    let total = buf.len();
    let vma = base.wrapping_add(vadd) & 0xffff_ffff;
    let head = dsize + off;
    let (Some(entry), Some(first)) = (le32(buf, head + 4), le32(buf, head + 8)) else { return Ok(None) };
    let mut src = head + 12;
    let Some(mut src_left) = ssize.checked_sub(12 + off) else { return Ok(None) };
    let Some(mut dst) = first.checked_sub(vma) else { return Ok(None) };
    // section ends (in `buf`, rounded up to 4 KiB)
    let mut ends: Vec<usize> = Vec::new();
    for _ in 0..MAX_STREAMS {
        budget.check_time()?;
        if src.checked_add(src_left).is_none_or(|e| e > total) || dst >= total {
            return Ok(None);
        }
        // the stream reads and writes the same buffer: decode from a copy of its input
        let input = buf[src..src + src_left].to_vec();
        let Some((used, written)) = aplib::decode(&input, &mut buf[dst..]) else { return Ok(None) };
        let next_at = src + used;
        let Some(next) = le32(buf, next_at) else { return Ok(None) };
        src_left = src_left.saturating_sub(used + 4);
        src = next_at + 4;
        let end = (dst + written).next_multiple_of(0x1000);
        if ends.last().is_some_and(|&last| end < last) || end > dsize {
            return Ok(None);
        }
        ends.push(end);
        if next == 0 {
            let mut parts = Vec::with_capacity(ends.len());
            let mut start = 0;
            for &e in &ends {
                parts.push(Built { rva: vadd + start, vsize: e - start, data: &buf[start..e] });
                start = e;
            }
            return Ok(build(&parts, entry.wrapping_sub(base) & 0xffff_ffff, base));
        }
        let Some(d) = next.checked_sub(vma) else { return Ok(None) };
        dst = d;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::unpack::aplib::tests::Packer;
    use crate::unpack::peimage::{put32, sections, test_exe};

    const BASE: usize = 0x40_0000;

    /// `text` then `len - text.len()` bytes copied from it, as one aPLib stream.
    fn stream(text: &[u8], len: usize) -> Vec<u8> {
        let mut p = Packer::new(text[0]);
        for &c in &text[1..] {
            p.literal(c);
        }
        let mut left = len - text.len();
        while left > 0 {
            let n = left.min(1000);
            p.copy(text.len(), n);
            left -= n;
        }
        p.finish()
    }

    /// A small MEW 11 executable: the image section empty in the file (0x3000 in memory), the
    /// packed section with the entry point's jump to the stub at 0x154 and a chain of two
    /// streams.
    fn packed(streams: &[(usize, Vec<u8>)], stub_0x7b: u8) -> Vec<u8> {
        let pe = 0xc;
        let mut f = test_exe(
            0x800,
            pe,
            &[(0x28, 0x4010), (0x34, BASE), (24 + 32, 0x1000), (24 + 36, 0x200), (0x50, 0x5000)],
            &[(b"", 0x3000, 0x1000, 0, 0), (b"", 0x1000, 0x4000, 0x400, 0x400)],
        );
        let table = pe + 24 + 0xe0;
        assert_eq!(table + 80, 0x154);
        // the stub: `mov esi, packed data`
        let off = 0x20;
        f[0x154] = 0xbe;
        put32(&mut f, 0x155, BASE + 0x4000 + off).unwrap();
        f[0x154 + 0x7b] = stub_0x7b;
        // the entry point jumps to the stub
        f[0x410] = 0xe9;
        put32(&mut f, 0x411, 0x154usize.wrapping_sub(0x4010 + 5) & 0xffff_ffff).unwrap();
        // the chain: entry point, first destination, then each stream and the next destination
        let mut d = 0x400 + off;
        put32(&mut f, d + 4, BASE + 0x1234).unwrap();
        put32(&mut f, d + 8, BASE + 0x1000 + streams[0].0).unwrap();
        d += 12;
        for (k, (_, s)) in streams.iter().enumerate() {
            f[d..d + s.len()].copy_from_slice(s);
            // (the stream ends before its last byte, the pad the decoder never takes a tag from)
            d += s.len() - 1;
            let next = streams.get(k + 1).map_or(0, |(at, _)| BASE + 0x1000 + at);
            put32(&mut f, d, next).unwrap();
            d += 4;
        }
        f
    }

    #[test]
    fn a_chain_of_streams_makes_the_sections() {
        let (a, b) = (b"MEW first section: ".as_slice(), b"and the second one".as_slice());
        let exe = packed(&[(0, stream(a, 0x1800)), (0x2000, stream(b, 0x300))], 0xad);
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
            std::fs::write(std::path::Path::new(&dir).join("seed-exe-mew"), [&[0][..], &exe].concat()).unwrap();
        }
        let out = unpack(&exe, &mut Budget::new(Limits::default())).unwrap().unwrap();
        let (secs, _) = sections(&out, 0x40, 96).unwrap();
        let got: Vec<(usize, usize)> = secs.iter().map(|s| (s.rva, s.rsize)).collect();
        assert_eq!(got, vec![(0x1000, 0x2000), (0x3000, 0x1000)]);
        let repeat = |t: &[u8], n: usize| (0..n).map(|k| t[k % t.len()]).collect::<Vec<u8>>();
        assert_eq!(&out[secs[0].raw..secs[0].raw + 0x1800], &repeat(a, 0x1800)[..]);
        assert_eq!(&out[secs[1].raw..secs[1].raw + 0x300], &repeat(b, 0x300)[..]);
        assert_eq!(le32(&out, 0x40 + 0x28), Some(0x1234));
        // MEW's LZMA mode is not read; a chain going back is refused; a budget that cannot
        // hold the image is not spent
        let lzma = packed(&[(0, stream(a, 0x1800)), (0x2000, stream(b, 0x300))], 0xe8);
        assert!(unpack(&lzma, &mut Budget::new(Limits::default())).unwrap().is_none());
        let back = packed(&[(0x2000, stream(a, 0x400)), (0, stream(b, 0x300))], 0xad);
        assert!(unpack(&back, &mut Budget::new(Limits::default())).unwrap().is_none());
        let tight = Limits { max_expanded: 0x3000, ..Default::default() };
        assert!(unpack(&exe, &mut Budget::new(tight)).unwrap().is_none());
    }

    #[test]
    fn the_real_test_file_and_its_damage_end_in_bounded_time() {
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-mew.exe").expect("clamav-testfiles");
        let out = unpack(&real, &mut Budget::new(Limits::default())).unwrap().unwrap();
        assert!(out.len() > real.len());
        for at in 0..real.len() {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut Budget::new(Limits::default()));
        }
        for cut in 0..real.len() {
            let _ = unpack(&real[..cut], &mut Budget::new(Limits::default()));
        }
    }
}
