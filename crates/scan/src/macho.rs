//! What Mach-O-aware signatures (target type 9) need of a Mach-O file, computed as libclamav's
//! `cli_machoheader` computes it (read as a reference): the sections of its segment commands
//! (file offset, and size rounded up to the section's alignment) and the entry point, which
//! libclamav takes only from the thread state of a PowerPC file (`LC_THREAD`/`LC_UNIXTHREAD`)
//! and turns into a file offset through the section holding it; other files have entry point
//! 0, so `EP+n` is offset `n`. A header libclamav refuses (no load command or more than 1,024,
//! more than 255 sections in a segment, a section aligned to 2^32 or more, a command
//! beyond the end of the file, an entry point in no section) gives `None`: then no offset
//! relative to its layout matches. The section checks are those clamscan 1.4.6 (Debian's)
//! applies, measured: stricter than the source read (an alignment of 2^32 or more, or a size
//! that does not fit 32 bits once rounded up, is refused for 64-bit files too). Universal (fat)
//! files are unpacked by `unpack::macho_fat`, each executable a file of its own.

use crate::pe::{PeInfo, Section};

/// Parses `data` as a Mach-O file (32 or 64 bits, either byte order).
pub fn parse(data: &[u8]) -> Option<PeInfo> {
    let magic = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let (swap, wide) = match magic {
        0xfeed_face => (false, false),
        0xcefa_edfe => (true, false),
        0xfeed_facf => (false, true),
        0xcffa_edfe => (true, true),
        _ => return None,
    };
    // the file's numbers as libclamav reads them: its own byte order, swapped for the other
    let u32_at = |at: usize| -> Option<u32> {
        let v = u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?);
        Some(if swap { v.swap_bytes() } else { v })
    };
    let u64_at = |at: usize| -> Option<u64> {
        let v = u64::from_le_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?);
        Some(if swap { v.swap_bytes() } else { v })
    };
    let have = |at: usize, len: usize| at.checked_add(len).is_some_and(|end| end <= data.len());
    if !have(0, 28) {
        return None;
    }
    // PowerPC (32 and 64 bits) gives the entry point; x86's thread state is read but not used
    let thread_state = match u32_at(4)? {
        7 => Some(64),
        18 => Some(160),
        0x0100_0012 => Some(312),
        _ => None,
    };
    let ncmds = u32_at(16)?;
    if ncmds == 0 || ncmds > 1024 {
        return None;
    }
    let mut at = if wide { 32 } else { 28 };
    let mut sections = Vec::new();
    let mut ep: u32 = 0;
    for _ in 0..ncmds {
        let (cmd, cmdsize) = (u32_at(at)?, u32_at(at + 4)?);
        at += 8;
        if cmd == if wide { 0x19 } else { 0x01 } {
            let (segment, section) = if wide { (64, 80) } else { (48, 68) };
            if !have(at, segment) {
                return None;
            }
            let nsects = u32_at(at + segment - 8)?;
            at += segment;
            if nsects > 255 {
                return None;
            }
            for _ in 0..nsects {
                if !have(at, section) {
                    return None;
                }
                // the address is cut to 32 bits; a size past 32 bits is refused
                let (rva, vsz, raw, align) = if wide {
                    (u64_at(at + 32)? as u32, u64_at(at + 40)?, u32_at(at + 48)?, u32_at(at + 52)?)
                } else {
                    (u32_at(at + 32)?, u64::from(u32_at(at + 36)?), u32_at(at + 40)?, u32_at(at + 44)?)
                };
                at += section;
                if align >= 32 {
                    return None;
                }
                let vsz = u32::try_from(vsz).ok()?;
                let align = 1u32 << align;
                // the size rounded up to the alignment, refused past 32 bits
                let rsz = u32::try_from(u64::from(vsz) + u64::from((align - vsz % align) % align)).ok()?;
                sections.push((rva, vsz, Section { rva, raw, rsz }));
            }
        } else if let (Some(size), 4 | 5) = (thread_state, cmd) {
            at += 8;
            if !have(at, size) {
                return None;
            }
            match size {
                160 => ep = u32_at(at)?,
                312 => ep = u64_at(at)? as u32,
                _ => {}
            }
            at += size;
        } else if cmdsize > 8 {
            at += cmdsize as usize - 8;
        }
    }
    if ep != 0 && !sections.is_empty() {
        let &(rva, _, ref s) = sections.iter().find(|&&(rva, vsz, _)| rva <= ep && rva.wrapping_add(vsz) > ep)?;
        ep = (ep - rva).wrapping_add(s.raw);
    }
    Some(PeInfo::from_layout(ep, sections.into_iter().map(|(_, _, s)| s).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_macho() {
        assert_eq!(parse(b"\xfe\xed\xfa\xce"), None);
        let mut no_commands = vec![0u8; 28];
        no_commands[..4].copy_from_slice(&0xfeed_faceu32.to_le_bytes());
        assert_eq!(parse(&no_commands), None);
    }
}
