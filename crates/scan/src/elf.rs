//! What ELF-aware signatures (target type 6) need of an ELF file, computed as libclamav's
//! `cli_elfheader` computes it: the entry point's file offset (through the first program
//! header whose memory holds it) and each section's file offset and size, as the section
//! headers give them. A file whose headers libclamav would refuse (an unknown class, more than
//! 128 program headers or 256 sections, a header entry of the wrong size, a header beyond the
//! end of the file, an entry point in no segment) gives `None`: then, as in libclamav, no
//! offset relative to its layout matches, not even `EOF-n`.

use crate::pe::{PeInfo, Section};

/// Reads `n` bytes at `at` as an unsigned number of the file's byte order.
fn num(data: &[u8], at: usize, n: usize, big: bool) -> Option<u64> {
    let b = data.get(at..at.checked_add(n)?)?;
    Some(if big {
        b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x))
    } else {
        b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x))
    })
}

/// Parses `data` as an ELF file (32 or 64 bits, either byte order).
pub fn parse(data: &[u8]) -> Option<PeInfo> {
    if !data.starts_with(b"\x7fELF") || data.len() < 52 {
        return None;
    }
    let wide = match data[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = data[5] != 1;
    let n = |at: usize, size: usize| num(data, at, size, big);
    // a field `off` bytes into the header entry at `at`
    let field = |at: usize, off: usize, size: usize| num(data, at.checked_add(off)?, size, big);
    // field offsets of the file header: entry, phoff, shoff, phentsize, phnum, shentsize, shnum
    let (entry, phoff, shoff, phentsize, phnum, shentsize, shnum, addr) = if wide {
        (n(24, 8)?, n(32, 8)?, n(40, 8)?, n(54, 2)?, n(56, 2)?, n(58, 2)?, n(60, 2)?, 8)
    } else {
        (n(24, 4)?, n(28, 4)?, n(32, 4)?, n(42, 2)?, n(44, 2)?, n(46, 2)?, n(48, 2)?, 4)
    };
    let (ph_size, sh_size) = if wide { (56, 64) } else { (32, 40) };
    if phnum > 128 {
        return None;
    }
    let mut ep = 0u64;
    if phnum != 0 && entry != 0 {
        if phentsize != ph_size {
            return None;
        }
        // (p_offset, p_vaddr, p_memsz) of each program header
        let headers: Vec<(u64, u64, u64)> = (0..phnum)
            .map(|i| {
                let at = usize::try_from(phoff.checked_add(i * ph_size)?).ok()?;
                if wide {
                    Some((field(at, 8, 8)?, field(at, 16, 8)?, field(at, 40, 8)?))
                } else {
                    Some((field(at, 4, 4)?, field(at, 8, 4)?, field(at, 20, 4)?))
                }
            })
            .collect::<Option<_>>()?;
        let &(offset, vaddr, _) = headers.iter().find(|&&(_, v, m)| v <= entry && v.wrapping_add(m) > entry)?;
        ep = (entry - vaddr).wrapping_add(offset);
        if !wide {
            ep &= 0xffff_ffff;
        }
    }
    if shnum > 256 || shentsize != sh_size {
        return None;
    }
    let sections = (0..shnum)
        .map(|i| {
            let at = usize::try_from(shoff.checked_add(i * sh_size)?).ok()?;
            // sh_addr, sh_offset, sh_size
            let (rva, raw, size) =
                (field(at, 8 + addr, addr)?, field(at, 8 + 2 * addr, addr)?, field(at, 8 + 3 * addr, addr)?);
            let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            Some(Section { rva: clamp(rva), raw: clamp(raw), rsz: clamp(size) })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(PeInfo::from_layout(u32::try_from(ep).unwrap_or(u32::MAX), sections))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header offsets near the top of the address space are no ELF, not an overflow (found by
    /// the pe_parse fuzzer).
    #[test]
    fn offsets_at_the_top_are_refused() {
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[40..48].copy_from_slice(&(u64::MAX - 4).to_le_bytes()); // e_shoff
        h[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        h[60..62].copy_from_slice(&1u16.to_le_bytes()); // e_shnum
        assert_eq!(parse(&h), None);
        h[24..32].copy_from_slice(&0x1000u64.to_le_bytes()); // e_entry
        h[32..40].copy_from_slice(&(u64::MAX - 4).to_le_bytes()); // e_phoff
        h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        h[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        assert_eq!(parse(&h), None);
    }

    #[test]
    fn not_elf() {
        assert_eq!(parse(b"\x7fELF"), None);
        let mut bad_class = vec![0u8; 64];
        bad_class[..4].copy_from_slice(b"\x7fELF");
        bad_class[4] = 3;
        assert_eq!(parse(&bad_class), None);
    }
}
