//! Compiled HTML Help (`.chm`, ITSF; issue 17): the files listed in its directory (`ITSP`,
//! `PMGL` chunks), stored in section 0 or LZX-compressed in section 1 (`MSCompressed`): the
//! content is cut into 32 KiB frames at the offsets its reset table gives, each decoded by the
//! `lzxd` crate with the window of its control data, the decoder reset every reset interval.
//! Every byte produced is charged to the budget; a file that cannot be read is reported.

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// How a help file starts.
pub const MAGIC: &[u8; 4] = b"ITSF";

/// The uncompressed size of an LZX frame.
const FRAME: usize = 0x8000;

const CONTENT: &str = "::DataSpace/Storage/MSCompressed/Content";
const CONTROL: &str = "::DataSpace/Storage/MSCompressed/ControlData";
const RESET_TABLE: &str =
    "::DataSpace/Storage/MSCompressed/Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable";

fn le32(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn le64(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at.checked_add(8)?).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
}

/// A variable-length integer of the directory: 7 bits a byte, most significant first.
fn encint(d: &[u8], at: &mut usize) -> Option<usize> {
    let mut v: usize = 0;
    for _ in 0..9 {
        let b = *d.get(*at)?;
        *at += 1;
        v = v.checked_mul(128)? | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A directory entry: name, section, offset in it, length.
struct File {
    name: String,
    section: usize,
    offset: usize,
    length: usize,
}

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("CHM", why.to_string()));
    if !data.starts_with(MAGIC) {
        return Err(broken("no ITSF header"));
    }
    let (Some(dir_at), Some(dir_len)) = (le64(data, 0x48), le64(data, 0x50)) else {
        return Err(broken("header cut short"));
    };
    let content_at = if le32(data, 4) == Some(3) { le64(data, 0x58) } else { dir_at.checked_add(dir_len) };
    let Some(content_at) = content_at else { return Err(broken("header cut short")) };
    let dir = data.get(dir_at..dir_at.saturating_add(dir_len).min(data.len())).unwrap_or_default();
    if !dir.starts_with(b"ITSP") {
        return Err(broken("no directory"));
    }
    let (Some(header_len), Some(chunk)) = (le32(dir, 8), le32(dir, 0x10)) else {
        return Err(broken("directory cut short"));
    };
    if !(512..=1 << 20).contains(&chunk) {
        return Err(broken("bad chunk size"));
    }
    let mut files = Vec::new();
    for c in dir.get(header_len..).unwrap_or_default().chunks(chunk) {
        if !c.starts_with(b"PMGL") {
            continue;
        }
        let end = chunk.saturating_sub(le32(c, 4).unwrap_or(chunk)).min(c.len());
        let mut at = 20;
        while at < end {
            let Some(n) = encint(c, &mut at) else { break };
            let Some(name) = c.get(at..at + n) else { break };
            at += n;
            let (Some(section), Some(offset), Some(length)) =
                (encint(c, &mut at), encint(c, &mut at), encint(c, &mut at))
            else {
                break;
            };
            budget.entry()?;
            files.push(File { name: String::from_utf8_lossy(name).into_owned(), section, offset, length });
        }
    }
    let section0 = |f: &File| {
        data.get(content_at.checked_add(f.offset)?..content_at.checked_add(f.offset)?.checked_add(f.length)?)
    };
    let find = |name: &str| files.iter().find(|f| f.name == name && f.section == 0).and_then(section0);
    // section 1, decompressed when a file in it is first wanted
    let mut section1: Option<Result<Vec<u8>, String>> = None;
    let mut entries = Vec::new();
    for f in &files {
        // directories, and the internal files that hold section 1 itself
        if f.name.ends_with('/') || f.length == 0 || f.name.starts_with("::DataSpace") {
            continue;
        }
        let name = f.name.trim_start_matches('/').to_string();
        match f.section {
            0 => match section0(f) {
                Some(bytes) => {
                    budget.spend(bytes.len() as u64)?;
                    entries.push(Entry::File { name, data: bytes.to_vec() });
                }
                None => {
                    entries.push(Entry::Broken { name, why: Unreadable::damaged("CHM", "past the end of the file") })
                }
            },
            1 => {
                if section1.is_none() {
                    let (content, control, table) = (find(CONTENT), find(CONTROL), find(RESET_TABLE));
                    section1 = Some(match (content, control, table) {
                        (Some(c), Some(k), Some(t)) => decompress(c, k, t, budget)?,
                        _ => Err("the compressed section's files are missing".into()),
                    });
                }
                match section1.as_ref().expect("just set") {
                    Ok(s) => match s.get(f.offset..f.offset.saturating_add(f.length)) {
                        Some(bytes) => entries.push(Entry::File { name, data: bytes.to_vec() }),
                        None => {
                            let bytes = s.get(f.offset.min(s.len())..).unwrap_or_default().to_vec();
                            let why = format!("{} of {} bytes decompressed", bytes.len(), f.length);
                            entries.push(if bytes.is_empty() {
                                Entry::Broken { name, why: Unreadable::damaged("CHM", why) }
                            } else {
                                Entry::Damaged { name, data: bytes, why: Unreadable::damaged("CHM", why).to_string() }
                            });
                        }
                    },
                    Err(why) => entries.push(Entry::Broken { name, why: Unreadable::damaged("CHM", why.clone()) }),
                }
            }
            _ => entries
                .push(Entry::Broken { name, why: Unreadable::unsupported("CHM", format!("section {}", f.section)) }),
        }
    }
    Ok(entries)
}

/// Section 1: the LZX content decoded frame by frame at the reset table's offsets. What
/// decodes before damage is kept; `Err` when nothing does.
fn decompress(
    content: &[u8],
    control: &[u8],
    table: &[u8],
    budget: &mut Budget,
) -> Result<Result<Vec<u8>, String>, UnpackError> {
    if control.get(4..8) != Some(b"LZXC") {
        return Ok(Err("no LZX control data".into()));
    }
    let (Some(version), Some(mut reset), Some(mut window)) = (le32(control, 8), le32(control, 12), le32(control, 16))
    else {
        return Ok(Err("control data cut short".into()));
    };
    if version == 2 {
        reset = reset.saturating_mul(FRAME);
        window = window.saturating_mul(FRAME);
    }
    let window = match window {
        0x8000 => lzxd::WindowSize::KB32,
        0x10000 => lzxd::WindowSize::KB64,
        0x20000 => lzxd::WindowSize::KB128,
        0x40000 => lzxd::WindowSize::KB256,
        0x80000 => lzxd::WindowSize::KB512,
        0x10_0000 => lzxd::WindowSize::MB1,
        0x20_0000 => lzxd::WindowSize::MB2,
        w => return Ok(Err(format!("LZX window of {w} bytes"))),
    };
    let frames_per_reset = (reset / FRAME).max(1);
    let (Some(entries), Some(header), Some(total)) = (le32(table, 4), le32(table, 12), le64(table, 16)) else {
        return Ok(Err("reset table cut short".into()));
    };
    let offsets: Vec<usize> = (0..entries).map_while(|i| le64(table, header + 8 * i)).collect();
    let mut lzx = lzxd::Lzxd::new(window);
    let mut out = Vec::new();
    for (i, &start) in offsets.iter().enumerate() {
        if out.len() >= total {
            break;
        }
        let end = offsets.get(i + 1).copied().unwrap_or(content.len()).min(content.len());
        let Some(frame) = content.get(start..end) else { break };
        if i % frames_per_reset == 0 && i > 0 {
            lzx.reset();
        }
        let want = FRAME.min(total - out.len());
        match lzx.decompress_next(frame, want) {
            Ok(bytes) => {
                budget.spend(bytes.len() as u64)?;
                out.extend_from_slice(bytes);
            }
            Err(_) => break,
        }
    }
    Ok(if out.is_empty() { Err("the LZX content does not decode".into()) } else { Ok(out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn encints_and_a_damaged_file() {
        let mut at = 0;
        assert_eq!(encint(&[0x81, 0x00, 0x05], &mut at), Some(128));
        assert_eq!(encint(&[0x81, 0x00, 0x05], &mut at), Some(5));
        assert_eq!(encint(&[0xff; 12], &mut 0), None);
        let mut d = b"ITSF".to_vec();
        d.extend([0u8; 200]);
        assert!(unpack(&d, &mut Budget::new(Limits::default())).is_err());
    }
}
