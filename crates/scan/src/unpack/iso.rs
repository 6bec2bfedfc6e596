//! ISO 9660 disk images (`.iso`, `.img`; issue 17): the files of the primary volume's
//! directory tree and of a Joliet volume's (its Unicode names), each file once. Directories
//! are read once each (a directory listing itself or an ancestor cannot loop), every
//! directory's and file's bytes are charged to the budget, and every file counts as an entry
//! (thousands of records pointing at one large extent reach the limits, not the memory).
//! An image with no ISO 9660 volume but a UDF one (Windows writes such) is read by
//! [`super::udf`].

use std::collections::{HashSet, VecDeque};

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// The size of a logical sector.
const SECTOR: usize = 2048;
/// Where the volume descriptors start (sector 16).
const DESCRIPTORS: usize = 16 * SECTOR;
/// Volume descriptors read at most (a set ends with type 255 long before).
const MAX_DESCRIPTORS: usize = 64;

/// Whether `d` is a disk image: an ISO 9660 volume (the first volume descriptor's
/// identifier) or a UDF one.
pub fn is_iso(d: &[u8]) -> bool {
    is_iso9660(d) || super::udf::is_udf(d)
}

fn is_iso9660(d: &[u8]) -> bool {
    d.get(DESCRIPTORS + 1..DESCRIPTORS + 6) == Some(b"CD001")
}

fn le32(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// A directory to read: its extent, size, path, and whether names are Joliet's UCS-2.
struct Dir {
    extent: usize,
    size: usize,
    path: String,
    joliet: bool,
}

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    if !is_iso9660(data) {
        if super::udf::is_udf(data) {
            return super::udf::unpack(data, budget);
        }
        return Err(UnpackError::Broken(Unreadable::damaged("ISO", "no volume descriptor")));
    }
    // the root directories of the primary and Joliet volumes
    let mut queue = VecDeque::new();
    for i in 0..MAX_DESCRIPTORS {
        let at = DESCRIPTORS + i * SECTOR;
        let Some(vd) = data.get(at..at + SECTOR) else { break };
        if &vd[1..6] != b"CD001" || vd[0] == 255 {
            break;
        }
        // Joliet: a supplementary descriptor with a UCS-2 escape sequence
        let joliet = vd[0] == 2 && vd[88] == b'%' && vd[89] == b'/' && matches!(vd[90], b'@' | b'C' | b'E');
        if vd[0] == 1 || joliet {
            let root = &vd[156..190];
            if let (Some(extent), Some(size)) = (le32(root, 2), le32(root, 10)) {
                // Joliet's tree first: its names are the ones the files were given
                let root = Dir { extent, size, path: String::new(), joliet };
                if joliet { queue.push_front(root) } else { queue.push_back(root) }
            }
        }
    }
    let mut seen_dirs = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut entries = Vec::new();
    while let Some(dir) = queue.pop_front() {
        if !seen_dirs.insert((dir.extent, dir.joliet)) {
            continue;
        }
        let start = dir.extent.saturating_mul(SECTOR);
        let Some(listing) = data.get(start..start.saturating_add(dir.size).min(data.len())) else { continue };
        budget.spend(listing.len() as u64)?;
        let mut at = 0;
        while at < listing.len() {
            let len = usize::from(listing[at]);
            if len == 0 {
                // records do not cross sectors: the rest of this one is padding
                at = (at / SECTOR + 1) * SECTOR;
                continue;
            }
            let Some(rec) = listing.get(at..at + len).filter(|r| r.len() >= 34) else { break };
            at += len;
            let name_len = usize::from(rec[32]);
            let Some(raw_name) = rec.get(33..33 + name_len) else { continue };
            if raw_name == [0] || raw_name == [1] {
                continue; // "." and ".."
            }
            let (Some(extent), Some(size)) = (le32(rec, 2), le32(rec, 10)) else { continue };
            let name = if dir.joliet { ucs2(raw_name) } else { plain(raw_name) };
            let path = if dir.path.is_empty() { name } else { format!("{}/{name}", dir.path) };
            if rec[25] & 0x02 != 0 {
                budget.entry()?;
                queue.push_back(Dir { extent, size, path, joliet: dir.joliet });
                continue;
            }
            if !seen_files.insert((extent, size)) {
                continue;
            }
            budget.entry()?;
            let from = extent.saturating_mul(SECTOR);
            let bytes = data.get(from..from.saturating_add(size).min(data.len())).unwrap_or_default();
            budget.spend(bytes.len() as u64)?;
            if bytes.len() == size {
                entries.push(Entry::File { name: path, data: bytes.to_vec() });
            } else {
                let why = format!("{} of {size} bytes in the image", bytes.len());
                entries.push(Entry::Damaged { name: path, data: bytes.to_vec(), why });
            }
        }
    }
    Ok(entries)
}

/// A primary volume's name, without its version (`;1`).
fn plain(raw: &[u8]) -> String {
    let name = super::text_name(raw);
    match name.rsplit_once(';') {
        Some((base, v)) if v.chars().all(|c| c.is_ascii_digit()) => base.trim_end_matches('.').to_string(),
        _ => name,
    }
}

/// A Joliet name (UCS-2, big-endian), without its version.
fn ucs2(raw: &[u8]) -> String {
    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    let name = String::from_utf16_lossy(&units);
    match name.rsplit_once(';') {
        Some((base, v)) if v.chars().all(|c| c.is_ascii_digit()) => base.to_string(),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// An image whose root directory holds `records` (each: name, extent, size, is a directory).
    fn image(records: &[(&[u8], u32, u32, bool)], sectors: usize) -> Vec<u8> {
        let mut d = vec![0u8; sectors * SECTOR];
        let pvd = DESCRIPTORS;
        d[pvd] = 1;
        d[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        let root = pvd + 156;
        d[root] = 34;
        d[root + 2..root + 6].copy_from_slice(&20u32.to_le_bytes());
        d[root + 10..root + 14].copy_from_slice(&(3 * SECTOR as u32).to_le_bytes());
        d[root + 25] = 2;
        let end = DESCRIPTORS + SECTOR;
        d[end] = 255;
        d[end + 1..end + 6].copy_from_slice(b"CD001");
        let mut at = 20 * SECTOR;
        for (name, extent, size, is_dir) in records {
            let len = 33 + name.len() + (name.len() + 1) % 2;
            d[at] = len as u8;
            d[at + 2..at + 6].copy_from_slice(&extent.to_le_bytes());
            d[at + 10..at + 14].copy_from_slice(&size.to_le_bytes());
            d[at + 25] = if *is_dir { 2 } else { 0 };
            d[at + 32] = name.len() as u8;
            d[at + 33..at + 33 + name.len()].copy_from_slice(name);
            at += len;
        }
        d
    }

    #[test]
    fn files_are_read_once_and_a_looping_directory_ends() {
        let mut d = image(&[(b"A.TXT;1", 23, 5, false), (b"SELF", 20, 3 * 2048, true), (b"B.TXT;1", 23, 5, false)], 26);
        d[23 * SECTOR..23 * SECTOR + 5].copy_from_slice(b"hello");
        let mut budget = Budget::new(Limits::default());
        let entries = unpack(&d, &mut budget).unwrap();
        let names: Vec<String> = entries
            .iter()
            .map(|e| match e {
                Entry::File { name, data } => format!("{name}={}", String::from_utf8_lossy(data)),
                _ => "?".into(),
            })
            .collect();
        assert_eq!(names, ["A.TXT=hello"]);
    }

    #[test]
    fn a_file_past_the_end_is_damaged_and_records_pointing_at_one_extent_reach_the_limit() {
        let d = image(&[(b"BIG;1", 23, 10_000_000, false)], 25);
        let entries = unpack(&d, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&entries[0], Entry::Damaged { data, .. } if data.len() == 2 * SECTOR));
        // sixty records of one 4 KiB extent under different sizes: each charged
        let records: Vec<(Vec<u8>, u32, u32, bool)> =
            (0..60).map(|i| (format!("F{i};1").into_bytes(), 23, 4096 - i, false)).collect();
        let refs: Vec<(&[u8], u32, u32, bool)> =
            records.iter().map(|(n, e, s, d)| (n.as_slice(), *e, *s, *d)).collect();
        let d = image(&refs, 26);
        let mut budget = Budget::new(Limits { max_expanded: 100_000, ..Limits::default() });
        assert!(matches!(unpack(&d, &mut budget), Err(UnpackError::Limit(_))));
    }

    #[test]
    fn not_an_image() {
        assert!(unpack(b"CD001", &mut Budget::new(Limits::default())).is_err());
    }
}
