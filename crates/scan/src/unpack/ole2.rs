//! OLE2 compound files (MS-CFB: Word, Excel and PowerPoint 97–2003, MSI, Outlook `.msg`):
//! every stream is a member, named by its path in the storage tree; a `\x01Ole10Native`
//! stream (an object embedded with the Object Packager, as in `clam.ole.doc`) gives the
//! packaged file instead. Read leniently but bounded: sector chains end at a cycle or a bad
//! sector number (a cyclic FAT cannot loop), the directory tree is walked once per entry, and
//! each stream is charged to the scan's budget.

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// How an OLE2 file starts.
pub const MAGIC: &[u8; 8] = &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];

const FREE: u32 = 0xffff_ffff;
/// Past this, a number is no sector (DIFAT, FAT, end of chain, free).
const MAX_SECTOR: u32 = 0xffff_fffa;

struct Cfb<'a> {
    data: &'a [u8],
    sector: usize,
    fat: Vec<u32>,
}

impl Cfb<'_> {
    fn sector(&self, n: u32) -> Option<&[u8]> {
        let start = (n as usize).checked_add(1)?.checked_mul(self.sector)?;
        let end = start.checked_add(self.sector)?;
        // the last sector may be short in a truncated file
        self.data.get(start..end.min(self.data.len())).filter(|s| !s.is_empty())
    }

    /// The sectors of the chain from `start`, stopping at its end, a bad number, or — in a
    /// cycle — once it is longer than the table (no chain without one can be).
    fn chain(&self, start: u32, table: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut n = start;
        while n <= MAX_SECTOR && (n as usize) < table.len() && out.len() < table.len() {
            out.push(n);
            n = table[n as usize];
        }
        out
    }

    /// The bytes of a chain of big sectors, at most `limit`.
    fn read(&self, start: u32, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for s in self.chain(start, &self.fat) {
            let Some(bytes) = self.sector(s) else { break };
            out.extend_from_slice(bytes);
            if out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        out
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(FREE, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

/// One directory entry.
struct Dir {
    name: String,
    kind: u8,
    left: u32,
    right: u32,
    child: u32,
    start: u32,
    size: u64,
}

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("OLE2", why.to_string()));
    if data.len() < 512 || !data.starts_with(MAGIC) {
        return Err(broken("no OLE2 header"));
    }
    let shift = u16::from_le_bytes([data[0x1e], data[0x1f]]);
    let mini_shift = u16::from_le_bytes([data[0x20], data[0x21]]);
    if !(7..=16).contains(&shift) || mini_shift >= shift {
        return Err(broken("bad sector size"));
    }
    let sector = 1usize << shift;
    let mini = 1usize << mini_shift;
    let most_sectors = data.len() / sector + 1;
    let mut cfb = Cfb { data, sector, fat: Vec::new() };
    // the FAT's sectors: 109 in the header, the rest in the DIFAT chain
    let mut fat_sectors: Vec<u32> = (0..109).map(|i| le32(data, 0x4c + 4 * i)).filter(|&s| s <= MAX_SECTOR).collect();
    let mut difat = le32(data, 0x44);
    let mut hops = 0;
    while difat <= MAX_SECTOR && hops < most_sectors {
        hops += 1;
        let Some(s) = cfb.sector(difat) else { break };
        let per = sector / 4 - 1;
        fat_sectors.extend((0..per).map(|i| le32(s, 4 * i)).filter(|&n| n <= MAX_SECTOR));
        difat = le32(s, 4 * per);
    }
    fat_sectors.truncate(most_sectors);
    let mut fat = Vec::new();
    for s in fat_sectors {
        if let Some(bytes) = cfb.sector(s) {
            fat.extend(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
    }
    fat.truncate(most_sectors);
    cfb.fat = fat;
    let dir_bytes = cfb.read(le32(data, 0x30), data.len());
    let dirs: Vec<Dir> = dir_bytes
        .chunks_exact(128)
        .map(|e| {
            let len = usize::from(u16::from_le_bytes([e[64], e[65]])).min(64);
            let units: Vec<u16> =
                e[..len].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
            let size = u64::from_le_bytes(e[120..128].try_into().expect("8 bytes"));
            Dir {
                name: String::from_utf16_lossy(&units),
                kind: e[66],
                left: le32(e, 68),
                right: le32(e, 72),
                child: le32(e, 76),
                start: le32(e, 116),
                // version 3 files leave the high half undefined
                size: if sector == 512 { size & 0xffff_ffff } else { size },
            }
        })
        .collect();
    let Some(root) = dirs.first().filter(|d| d.kind == 5) else {
        return Err(broken("no root entry"));
    };
    let cutoff = u64::from(le32(data, 0x38)).min(1 << 20);
    let mini_stream = cfb.read(root.start, usize::try_from(root.size).unwrap_or(usize::MAX).min(data.len()));
    let mut mini_fat = Vec::new();
    for s in cfb.chain(le32(data, 0x3c), &cfb.fat) {
        if let Some(bytes) = cfb.sector(s) {
            mini_fat.extend(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
    }
    mini_fat.truncate(mini_stream.len() / mini + 1);
    // paths: the tree walked from the root's child, each entry at most once
    let mut paths: Vec<Option<String>> = vec![None; dirs.len()];
    let mut stack = vec![(root.child, String::new())];
    while let Some((i, parent)) = stack.pop() {
        let Some(d) = dirs.get(i as usize).filter(|_| paths[i as usize].is_none()) else { continue };
        let path = if parent.is_empty() { d.name.clone() } else { format!("{parent}/{}", d.name) };
        paths[i as usize] = Some(path.clone());
        stack.push((d.left, parent.clone()));
        stack.push((d.right, parent));
        if d.kind == 1 {
            stack.push((d.child, path));
        }
    }
    let mut entries = Vec::new();
    for (d, path) in dirs.iter().zip(paths) {
        let Some(path) = path.filter(|_| d.kind == 2 && d.size > 0) else { continue };
        budget.entry()?;
        let size = usize::try_from(d.size).unwrap_or(usize::MAX).min(data.len());
        let bytes = if d.size < cutoff {
            let mut out = Vec::with_capacity(size);
            for s in cfb.chain(d.start, &mini_fat) {
                let at = s as usize * mini;
                let Some(chunk) = mini_stream.get(at..(at + mini).min(mini_stream.len())) else { break };
                out.extend_from_slice(chunk);
                if out.len() >= size {
                    break;
                }
            }
            out.truncate(size);
            out
        } else {
            cfb.read(d.start, size)
        };
        budget.spend(bytes.len() as u64)?;
        // control characters (\x01Ole10Native, \x05SummaryInformation) written out
        let name: String =
            path.chars().map(|c| if c.is_control() { format!("\\x{:02x}", c as u32) } else { c.to_string() }).collect();
        if d.name == "\u{1}Ole10Native"
            && let Some((file, payload)) = super::rtf::ole10native(&bytes, true)
        {
            entries.push(Entry::File { name: format!("{name} › {file}"), data: payload.to_vec() });
            continue;
        }
        if d.name == "PowerPoint Document" {
            entries.extend(powerpoint_objects(&name, &bytes, budget)?);
        }
        entries.push(if bytes.len() < size {
            let why = Unreadable::damaged("OLE2", format!("the stream ends after {} of {size} bytes", bytes.len()));
            if bytes.is_empty() {
                Entry::Broken { name, why }
            } else {
                Entry::Damaged { name, data: bytes, why: why.to_string() }
            }
        } else {
            Entry::File { name, data: bytes }
        });
    }
    let macros = super::vba::sources(&entries, budget)?;
    entries.extend(macros);
    Ok(entries)
}

/// The objects embedded in a PowerPoint 97–2003 document stream (`ExOleObjStg` records,
/// zlib-compressed when their instance is 1): each an OLE2 file of its own, opened in turn.
/// Container records are descended into; the walk is bounded by the stream's length.
fn powerpoint_objects(stream_name: &str, s: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    const EX_OLE_OBJ_STG: u16 = 0x1011;
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = s.get(at..at + 8) {
        let ver_instance = u16::from_le_bytes([h[0], h[1]]);
        let kind = u16::from_le_bytes([h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let body = &s[at + 8..(at + 8).saturating_add(len).min(s.len())];
        if ver_instance & 0xf == 0xf {
            // a container: its records follow at once
            at += 8;
            continue;
        }
        if kind == EX_OLE_OBJ_STG {
            budget.entry()?;
            let name = format!("{stream_name} › embedded object {}", out.len() + 1);
            let read = if ver_instance >> 4 == 1 && body.len() > 4 {
                super::read_bounded(flate2::read::ZlibDecoder::new(&body[4..]), budget, Some(body.len() as u64))
            } else {
                budget.spend(body.len() as u64)?;
                Ok(body.to_vec())
            };
            out.push(super::member(name, "PowerPoint", read)?);
        }
        at = at.saturating_add(8).saturating_add(len);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    const END_OF_CHAIN: u32 = 0xffff_fffe;

    #[test]
    fn a_cyclic_fat_and_a_truncated_file_end_in_bounded_time() {
        // a header whose FAT is one sector (1) pointing to itself, directory at sector 0
        let mut f = vec![0u8; 512 * 3];
        f[..8].copy_from_slice(MAGIC);
        f[0x1e] = 9;
        f[0x20] = 6;
        f[0x30..0x34].copy_from_slice(&0u32.to_le_bytes());
        f[0x38..0x3c].copy_from_slice(&4096u32.to_le_bytes());
        f[0x3c..0x40].copy_from_slice(&END_OF_CHAIN.to_le_bytes());
        f[0x44..0x48].copy_from_slice(&END_OF_CHAIN.to_le_bytes());
        for i in 0..109 {
            f[0x4c + 4 * i..0x50 + 4 * i].copy_from_slice(&FREE.to_le_bytes());
        }
        f[0x4c..0x50].copy_from_slice(&1u32.to_le_bytes());
        // FAT (sector 1 at 1024): sector 0 → 0 (a cycle), sector 1 → itself
        f[1024..1028].copy_from_slice(&0u32.to_le_bytes());
        f[1028..1032].copy_from_slice(&1u32.to_le_bytes());
        // directory (sector 0 at 512): a root whose child is itself
        let root = &mut f[512..640];
        for (i, u) in "Root Entry".encode_utf16().enumerate() {
            root[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        root[64] = 22;
        root[66] = 5;
        root[68..80].copy_from_slice(&[0; 12]);
        root[116..120].copy_from_slice(&END_OF_CHAIN.to_le_bytes());
        let t = std::time::Instant::now();
        let r = unpack(&f, &mut Budget::new(Limits::default()));
        assert!(r.is_ok(), "{r:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        // cut before its FAT: no directory can be read
        assert!(matches!(unpack(&f[..700], &mut Budget::new(Limits::default())), Err(UnpackError::Broken(_))));
        assert!(unpack(&f[..100], &mut Budget::new(Limits::default())).is_err());
    }
}
