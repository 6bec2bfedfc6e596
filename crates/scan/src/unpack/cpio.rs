//! cpio archives: "newc"/"crc" (`070701`/`070702`), portable ASCII "odc" (`070707`) and old
//! binary (either byte order).

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

struct Header {
    name: String,
    size: usize,
    is_file: bool,
    data_at: usize,
}

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let Some(h) = header(data, pos) else {
            if out.is_empty() {
                return Err(UnpackError::Broken(Unreadable::damaged("Cpio", "bad header")));
            }
            break;
        };
        if h.name == "TRAILER!!!" {
            break;
        }
        let end = h.data_at.checked_add(h.size).filter(|&e| e <= data.len());
        let Some(end) = end else {
            out.push(Entry::Broken { name: h.name, why: Unreadable::damaged("Cpio", "member runs past the end") });
            break;
        };
        if h.is_file {
            budget.entry()?;
            budget.spend(h.size as u64)?;
            out.push(Entry::File { name: h.name, data: data[h.data_at..end].to_vec() });
        }
        pos =
            if data[pos..].starts_with(b"07070") && !data[pos..].starts_with(b"070707") { align(end, 4) } else { end };
        if is_binary(data, pos) {
            pos = align(pos, 2);
        }
    }
    Ok(out)
}

fn align(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

fn num(d: &[u8], radix: u32) -> Option<usize> {
    usize::from_str_radix(std::str::from_utf8(d).ok()?, radix).ok()
}

fn name_at(data: &[u8], at: usize, len: usize) -> Option<String> {
    let raw = data.get(at..at + len)?;
    let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
    Some(String::from_utf8_lossy(raw).into_owned())
}

fn is_binary(data: &[u8], pos: usize) -> bool {
    matches!(data.get(pos..pos + 2), Some([0xc7, 0x71]) | Some([0x71, 0xc7]))
}

fn header(data: &[u8], pos: usize) -> Option<Header> {
    let d = &data[pos..];
    if d.starts_with(b"070701") || d.starts_with(b"070702") {
        let f = |i: usize| num(d.get(6 + i * 8..14 + i * 8)?, 16);
        let mode = f(1)?;
        let size = f(6)?;
        let name_len = f(11)?;
        let name = name_at(d, 110, name_len)?;
        let data_at = pos + align(110 + name_len, 4);
        return Some(Header { name, size, is_file: mode & 0o170000 == 0o100000, data_at });
    }
    if d.starts_with(b"070707") {
        let mode = num(d.get(18..24)?, 8)?;
        let name_len = num(d.get(59..65)?, 8)?;
        let size = num(d.get(65..76)?, 8)?;
        let name = name_at(d, 76, name_len)?;
        return Some(Header { name, size, is_file: mode & 0o170000 == 0o100000, data_at: pos + 76 + name_len });
    }
    if is_binary(data, pos) {
        let le = d[0] == 0xc7;
        let w = |i: usize| -> Option<usize> {
            let b = d.get(i..i + 2)?;
            Some(usize::from(if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) }))
        };
        let mode = w(6)?;
        let name_len = w(20)?;
        let size = (w(22)? << 16) | w(24)?;
        let name = name_at(d, 26, name_len)?;
        let data_at = pos + align(26 + name_len, 2);
        return Some(Header { name, size, is_file: mode & 0o170000 == 0o100000, data_at });
    }
    None
}
