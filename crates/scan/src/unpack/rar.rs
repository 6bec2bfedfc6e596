//! RAR: the headers of RAR 1.5–4.x and RAR 5 are read to list members and detect encryption
//! (encrypted headers or members → `Encrypted.RAR`). Stored members are extracted; compressed
//! members are reported as not unpacked, because the only RAR decompressor is the UnRAR code,
//! which is not open source.

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

const NOT_UNPACKED: &str = "compressed RAR members are not unpacked (UnRAR is not open source)";

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    if data.starts_with(b"Rar!\x1a\x07\x01\x00") {
        rar5(data, budget)
    } else if data.starts_with(b"Rar!\x1a\x07\x00") {
        rar4(data, budget)
    } else {
        Err(UnpackError::Broken(Unreadable::damaged("RAR", "unknown RAR version")))
    }
}

fn u16le(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32le(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn stored(name: String, data: &[u8], start: usize, len: u64, budget: &mut Budget) -> Result<Entry, UnpackError> {
    let end = start.checked_add(len as usize).filter(|&e| e <= data.len());
    let Some(end) = end else {
        return Ok(Entry::Broken { name, why: Unreadable::damaged("RAR", "member runs past the end") });
    };
    budget.spend(len)?;
    Ok(Entry::File { name, data: data[start..end].to_vec() })
}

fn rar4(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("RAR", why));
    let mut out = Vec::new();
    let mut pos = 7;
    while pos + 7 <= data.len() {
        let kind = data[pos + 2];
        let flags = u16le(data, pos + 3).ok_or_else(|| broken("truncated header"))?;
        let head_size = usize::from(u16le(data, pos + 5).ok_or_else(|| broken("truncated header"))?);
        if head_size < 7 {
            return Err(broken("bad header size"));
        }
        let add_size = if flags & 0x8000 != 0 { u64::from(u32le(data, pos + 7).unwrap_or(0)) } else { 0 };
        match kind {
            0x73 if flags & 0x0080 != 0 => return Err(UnpackError::Encrypted("Encrypted.RAR")),
            0x74 => {
                budget.entry()?;
                let h = pos + 7;
                let mut pack = u64::from(u32le(data, h).ok_or_else(|| broken("truncated file header"))?);
                let method = *data.get(h + 18).ok_or_else(|| broken("truncated file header"))?;
                let name_len = usize::from(u16le(data, h + 19).ok_or_else(|| broken("truncated file header"))?);
                let mut name_at = h + 25;
                if flags & 0x0100 != 0 {
                    pack |= u64::from(u32le(data, h + 25).unwrap_or(0)) << 32;
                    name_at += 8;
                }
                let raw_name = data.get(name_at..name_at + name_len).unwrap_or_default();
                let raw_name = raw_name.split(|&b| b == 0).next().unwrap_or_default();
                let name = String::from_utf8_lossy(raw_name).into_owned();
                let is_dir = flags & 0x00e0 == 0x00e0;
                let data_start = pos + head_size;
                if flags & 0x0004 != 0 {
                    out.push(Entry::Encrypted { name, kind: "Encrypted.RAR" });
                } else if !is_dir && method == 0x30 {
                    out.push(stored(name, data, data_start, pack, budget)?);
                } else if !is_dir {
                    out.push(Entry::Broken { name, why: Unreadable::unsupported("RAR", NOT_UNPACKED) });
                }
                pos = data_start.checked_add(pack as usize).ok_or_else(|| broken("bad size"))?;
                continue;
            }
            0x7b => break,
            _ => {}
        }
        pos = pos
            .checked_add(head_size)
            .and_then(|p| p.checked_add(add_size as usize))
            .ok_or_else(|| broken("bad size"))?;
    }
    Ok(out)
}

/// Reads a RAR5 variable-length integer.
fn vint(d: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *d.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn rar5(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = || UnpackError::Broken(Unreadable::damaged("RAR", "bad RAR5 header"));
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 4 < data.len() {
        let mut p = pos + 4;
        let head_size = vint(data, &mut p).ok_or_else(broken)? as usize;
        let header_start = p;
        let header_end = header_start.checked_add(head_size).ok_or_else(broken)?;
        let kind = vint(data, &mut p).ok_or_else(broken)?;
        let flags = vint(data, &mut p).ok_or_else(broken)?;
        let extra_size = if flags & 1 != 0 { vint(data, &mut p).ok_or_else(broken)? } else { 0 };
        let data_size = if flags & 2 != 0 { vint(data, &mut p).ok_or_else(broken)? } else { 0 };
        match kind {
            4 => return Err(UnpackError::Encrypted("Encrypted.RAR")),
            2 => {
                budget.entry()?;
                let file_flags = vint(data, &mut p).ok_or_else(broken)?;
                let _unpacked = vint(data, &mut p).ok_or_else(broken)?;
                let _attrs = vint(data, &mut p).ok_or_else(broken)?;
                if file_flags & 2 != 0 {
                    p += 4;
                }
                if file_flags & 4 != 0 {
                    p += 4;
                }
                let compression = vint(data, &mut p).ok_or_else(broken)?;
                let _host = vint(data, &mut p).ok_or_else(broken)?;
                let name_len = vint(data, &mut p).ok_or_else(broken)? as usize;
                let name_bytes = p.checked_add(name_len).and_then(|e| data.get(p..e)).unwrap_or_default();
                let name = String::from_utf8_lossy(name_bytes).into_owned();
                let extra_start = header_end.checked_sub(extra_size as usize).ok_or_else(broken)?;
                let encrypted = has_extra_record(data, extra_start, header_end, 1);
                let is_dir = file_flags & 1 != 0;
                let method = (compression >> 7) & 7;
                if encrypted {
                    out.push(Entry::Encrypted { name, kind: "Encrypted.RAR" });
                } else if !is_dir && method == 0 {
                    out.push(stored(name, data, header_end, data_size, budget)?);
                } else if !is_dir {
                    out.push(Entry::Broken { name, why: Unreadable::unsupported("RAR", NOT_UNPACKED) });
                }
            }
            5 => break,
            _ => {}
        }
        pos = header_end.checked_add(data_size as usize).ok_or_else(broken)?;
    }
    Ok(out)
}

/// Whether the extra area between `start` and `end` holds a record of type `wanted`. Nothing
/// is kept per record: an extra area of millions of empty records costs no memory.
fn has_extra_record(d: &[u8], start: usize, end: usize, wanted: u64) -> bool {
    let mut p = start;
    while p < end {
        let Some(size) = vint(d, &mut p) else { break };
        let rec_start = p;
        let Some(t) = vint(d, &mut p) else { break };
        if t == wanted {
            return true;
        }
        p = rec_start.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
    }
    false
}
