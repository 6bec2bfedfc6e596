//! UDF disk images without an ISO 9660 volume (issue 17): Windows writes UDF-only images, and
//! a hybrid image's UDF tree is the one its ISO 9660 volume mirrors. Read as ECMA-167 and UDF
//! 1.02–2.01 describe them: the Anchor Volume Descriptor Pointer at sector 256 names the Volume
//! Descriptor Sequence, whose Partition Descriptor and Logical Volume Descriptor (with type 1
//! partition maps) lead to the File Set Descriptor and the root directory's File Entry; each
//! File Entry (or Extended File Entry) lists its data in short or long allocation descriptors,
//! or holds it embedded; each directory is a run of File Identifier Descriptors.
//!
//! Every descriptor's tag is checked (its checksum and identifier), every directory read once
//! (a directory listing itself or an ancestor cannot loop), every file once, every byte read
//! charged to the budget and every file and directory an entry. Logical blocks other than
//! 2,048 bytes, virtual, sparable and metadata partitions (UDF 2.5 and later) and extended
//! allocation descriptors are reported as unsupported, not guessed at.

use std::collections::{HashSet, VecDeque};

use super::peimage::{le16, le32};
use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// The size of a sector and of a logical block.
const BLOCK: usize = 2048;
/// Where the Volume Recognition Sequence starts (sector 16).
const RECOGNITION: usize = 16 * BLOCK;
/// Volume descriptors read at most from a sequence.
const MAX_DESCRIPTORS: usize = 64;
/// Allocation descriptors followed at most for one file (continuations included).
const MAX_EXTENTS: usize = 4096;

/// Whether `d` starts a UDF volume: a Volume Recognition Sequence at sector 16 (`BEA01`, then
/// `NSR02` or `NSR03` before `TEA01`).
pub fn is_udf(d: &[u8]) -> bool {
    if identifier(d, 0) != Some(*b"BEA01") {
        return false;
    }
    for i in 1..MAX_DESCRIPTORS {
        match identifier(d, i) {
            Some(id) if &id == b"NSR02" || &id == b"NSR03" => return true,
            Some(id) if &id == b"TEA01" => return false,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

fn identifier(d: &[u8], i: usize) -> Option<[u8; 5]> {
    let at = RECOGNITION + i * BLOCK;
    d.get(at + 1..at + 6)?.try_into().ok()
}

fn le64(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// A descriptor tag's checksum: the sum of its 16 bytes but the checksum's own (byte 4).
fn tag_checksum(tag: &[u8]) -> u8 {
    tag[..16].iter().enumerate().filter(|&(i, _)| i != 4).fold(0u8, |s, (_, &b)| s.wrapping_add(b))
}

/// Whether `d` starts with a sound tag (its checksum right) saying `id`.
fn tagged(d: &[u8], id: usize) -> bool {
    d.len() >= 16 && tag_checksum(d) == d[4] && le16(d, 0) == Some(id)
}

/// The descriptor at byte `at` if its tag is sound and says `id`; the block from there.
fn descriptor(data: &[u8], at: usize, id: usize) -> Option<&[u8]> {
    let d = data.get(at..at.checked_add(BLOCK)?.min(data.len()))?;
    tagged(d, id).then_some(d)
}

/// The one partition a volume of type 1 maps: where its blocks start in the image.
struct Volume {
    partition_start: usize,
    /// The File Set Descriptor's logical block.
    file_set: usize,
}

fn unsupported(why: &str) -> UnpackError {
    UnpackError::Broken(Unreadable::unsupported("UDF", why))
}

fn damaged(why: &str) -> UnpackError {
    UnpackError::Broken(Unreadable::damaged("UDF", why.to_string()))
}

/// The volume, from the anchor at sector 256 through its descriptor sequence.
fn volume(data: &[u8]) -> Result<Volume, UnpackError> {
    let anchor = descriptor(data, 256 * BLOCK, 2).ok_or_else(|| damaged("no anchor volume descriptor pointer"))?;
    let (length, location) = (le32(anchor, 16).unwrap_or(0), le32(anchor, 20).unwrap_or(0));
    let mut partition = None;
    let mut logical = None;
    for i in 0..(length / BLOCK).min(MAX_DESCRIPTORS) {
        let at = location.saturating_add(i).saturating_mul(BLOCK);
        let Some(tag) = data.get(at..at + 2) else { break };
        match le16(tag, 0) {
            Some(5) => partition = descriptor(data, at, 5).or(partition),
            Some(6) => logical = descriptor(data, at, 6).or(logical),
            Some(8) => break,
            _ => {}
        }
    }
    let partition = partition.ok_or_else(|| damaged("no partition descriptor"))?;
    let logical = logical.ok_or_else(|| damaged("no logical volume descriptor"))?;
    if le32(logical, 212) != Some(BLOCK) {
        return Err(unsupported("a logical block size other than 2,048 bytes is not read"));
    }
    // the partition maps: one of type 1 (a physical partition) is read
    let maps = le32(logical, 268).unwrap_or(0);
    let first_map = logical.get(440..442).ok_or_else(|| damaged("logical volume descriptor cut short"))?;
    if maps != 1 || first_map[0] != 1 {
        return Err(unsupported("virtual, sparable and metadata partitions are not read"));
    }
    let file_set = le32(logical, 248 + 4).ok_or_else(|| damaged("no file set"))?;
    let partition_start = le32(partition, 188).ok_or_else(|| damaged("partition descriptor cut short"))?;
    Ok(Volume { partition_start, file_set })
}

/// A file or directory as its File Entry describes it.
struct Node {
    /// Its bytes, and how many it should have had when the image holds fewer.
    data: Vec<u8>,
    short_of: Option<u64>,
}

impl Volume {
    /// Byte offset of a logical block of the partition.
    fn offset(&self, block: usize) -> usize {
        self.partition_start.saturating_add(block).saturating_mul(BLOCK)
    }

    /// The file or directory whose (Extended) File Entry is at logical block `block`.
    fn node(&self, data: &[u8], block: usize, budget: &mut Budget) -> Result<Option<Node>, UnpackError> {
        let at = self.offset(block);
        let (entry, ad_start) = if let Some(e) = descriptor(data, at, 261) {
            (e, 176)
        } else if let Some(e) = descriptor(data, at, 266) {
            (e, 216)
        } else {
            return Ok(None);
        };
        let flags = le16(entry, 34).unwrap_or(0);
        let size = le64(entry, 56).unwrap_or(0);
        let ea_len = le32(entry, ad_start - 8).unwrap_or(0);
        let ad_len = le32(entry, ad_start - 4).unwrap_or(0);
        let ads_from = ad_start.saturating_add(ea_len);
        let Some(ads) = entry.get(ads_from..ads_from.saturating_add(ad_len)) else { return Ok(None) };
        let mut out = Vec::new();
        let wanted = usize::try_from(size).unwrap_or(usize::MAX);
        match flags & 7 {
            // embedded: the descriptors' place holds the data
            3 => out.extend_from_slice(&ads[..ads.len().min(wanted)]),
            kind @ (0 | 1) => {
                let step = if kind == 0 { 8 } else { 16 };
                let mut list = ads.to_vec();
                let mut followed = 0;
                let mut i = 0;
                while i + step <= list.len() && out.len() < wanted && followed < MAX_EXTENTS {
                    followed += 1;
                    let raw_len = le32(&list, i).unwrap_or(0);
                    let (len, kind_of_extent) = (raw_len & 0x3fff_ffff, raw_len >> 30);
                    let position = le32(&list, i + 4).unwrap_or(0);
                    i += step;
                    if len == 0 {
                        break;
                    }
                    match kind_of_extent {
                        // recorded
                        0 => {
                            let from = self.offset(position);
                            let take = len.min(wanted - out.len());
                            let bytes = data.get(from..from.saturating_add(take).min(data.len())).unwrap_or_default();
                            budget.spend(bytes.len() as u64)?;
                            out.extend_from_slice(bytes);
                            if bytes.len() < take {
                                break;
                            }
                        }
                        // allocated or not, but not recorded: zeros
                        1 | 2 => {
                            let take = len.min(wanted - out.len());
                            budget.spend(take as u64)?;
                            out.resize(out.len() + take, 0);
                        }
                        // the next extent of allocation descriptors
                        _ => {
                            let from = self.offset(position);
                            let Some(more) = data.get(from..from.saturating_add(len.min(BLOCK))) else { break };
                            list = more.to_vec();
                            i = 0;
                        }
                    }
                }
            }
            _ => return Err(unsupported("extended allocation descriptors are not read")),
        }
        let short_of = (out.len() as u64) < size;
        Ok(Some(Node { data: out, short_of: short_of.then_some(size) }))
    }
}

/// The files of a UDF image, named by their paths.
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    if !is_udf(data) {
        return Err(damaged("no volume recognition sequence"));
    }
    let volume = volume(data)?;
    let file_set = descriptor(data, volume.offset(volume.file_set), 256).ok_or_else(|| damaged("no file set"))?;
    let root = le32(file_set, 400 + 4).ok_or_else(|| damaged("no root directory"))?;
    let mut queue = VecDeque::from([(root, String::new())]);
    let mut seen_dirs = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut entries = Vec::new();
    while let Some((block, path)) = queue.pop_front() {
        if !seen_dirs.insert(block) {
            continue;
        }
        let Some(dir) = volume.node(data, block, budget)? else { continue };
        let listing = dir.data;
        let mut at = 0;
        while let Some(fid) = listing.get(at..at + 38) {
            if !tagged(fid, 257) {
                break;
            }
            let characteristics = fid[18];
            let name_len = usize::from(fid[19]);
            let icb = le32(fid, 24).unwrap_or(0);
            let use_len = le16(fid, 36).unwrap_or(0);
            let name_at = at + 38 + use_len;
            let raw_name = listing.get(name_at..name_at + name_len).unwrap_or_default();
            at += (38 + use_len + name_len).div_ceil(4) * 4;
            // deleted entries and the parent
            if characteristics & 0x0c != 0 {
                continue;
            }
            let name = osta_name(raw_name);
            let path = if path.is_empty() { name } else { format!("{path}/{name}") };
            budget.entry()?;
            if characteristics & 0x02 != 0 {
                queue.push_back((icb, path));
                continue;
            }
            if !seen_files.insert(icb) {
                continue;
            }
            match volume.node(data, icb, budget)? {
                Some(Node { data, short_of: None }) => entries.push(Entry::File { name: path, data }),
                Some(Node { data, short_of: Some(size) }) => {
                    let why = format!("{} of {size} bytes in the image", data.len());
                    entries.push(Entry::Damaged { name: path, data, why });
                }
                None => entries.push(Entry::Broken {
                    name: path,
                    why: Unreadable::damaged("UDF", "no file entry where the directory points".to_string()),
                }),
            }
        }
    }
    Ok(entries)
}

/// A file identifier in OSTA compressed Unicode: a byte giving 8 (one byte per character) or
/// 16 (UTF-16, big-endian), then the characters.
fn osta_name(raw: &[u8]) -> String {
    match raw.split_first() {
        Some((16, rest)) => {
            let units: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        Some((_, rest)) => rest.iter().map(|&b| char::from(b)).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Limit, Limits};

    /// Where the partition starts, in sectors: right after the anchor.
    const PARTITION: usize = 257;

    fn put16(d: &mut [u8], at: usize, v: usize) {
        d[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
    }

    fn put32(d: &mut [u8], at: usize, v: usize) {
        d[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
    }

    /// A descriptor tag with its checksum.
    fn tag(d: &mut [u8], id: usize) {
        put16(d, 0, id);
        put16(d, 2, 2);
        d[4] = tag_checksum(d);
    }

    /// A UDF image: recognition sequence, anchor, partition and logical volume descriptors,
    /// the file set (root at partition block 1), and `blocks` placed from partition block 1.
    fn image(blocks: &[Vec<u8>], map_type: u8) -> Vec<u8> {
        let mut d = vec![0u8; (PARTITION + 1 + blocks.len()) * BLOCK];
        for (i, id) in [b"BEA01", b"NSR02", b"TEA01"].iter().enumerate() {
            d[(16 + i) * BLOCK + 1..(16 + i) * BLOCK + 6].copy_from_slice(*id);
        }
        let anchor = &mut d[256 * BLOCK..257 * BLOCK];
        put32(anchor, 16, 16 * BLOCK);
        put32(anchor, 20, 32);
        tag(anchor, 2);
        let pd = &mut d[32 * BLOCK..33 * BLOCK];
        put32(pd, 188, PARTITION);
        tag(pd, 5);
        let lvd = &mut d[33 * BLOCK..34 * BLOCK];
        put32(lvd, 212, BLOCK);
        put32(lvd, 248, BLOCK);
        put32(lvd, 268, 1);
        lvd[440] = map_type;
        lvd[441] = 6;
        tag(lvd, 6);
        tag(&mut d[34 * BLOCK..35 * BLOCK], 8);
        let fsd = &mut d[PARTITION * BLOCK..(PARTITION + 1) * BLOCK];
        put32(fsd, 400, BLOCK);
        put32(fsd, 404, 1);
        tag(fsd, 256);
        for (i, b) in blocks.iter().enumerate() {
            let at = (PARTITION + 1 + i) * BLOCK;
            d[at..at + b.len()].copy_from_slice(b);
        }
        d
    }

    /// A File Entry: a directory or a file, its data in short allocation descriptors
    /// (`(length with its type bits, block)`) or embedded.
    fn entry(directory: bool, size: usize, extents: &[(usize, usize)], embedded: Option<&[u8]>) -> Vec<u8> {
        let mut e = vec![0u8; BLOCK];
        e[27] = if directory { 4 } else { 5 };
        put64(&mut e, 56, size as u64);
        match embedded {
            Some(data) => {
                put16(&mut e, 34, 3);
                put32(&mut e, 172, data.len());
                e[176..176 + data.len()].copy_from_slice(data);
            }
            None => {
                put32(&mut e, 172, extents.len() * 8);
                for (i, &(len, block)) in extents.iter().enumerate() {
                    put32(&mut e, 176 + i * 8, len);
                    put32(&mut e, 180 + i * 8, block);
                }
            }
        }
        tag(&mut e, 261);
        e
    }

    fn put64(d: &mut [u8], at: usize, v: u64) {
        d[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A directory's listing: File Identifier Descriptors (characteristics, name, entry block).
    fn listing(items: &[(u8, &str, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(characteristics, name, block) in items {
            let mut fid = vec![0u8; 38];
            fid[18] = characteristics;
            fid[19] = (name.len() + 1) as u8;
            put32(&mut fid, 20, BLOCK);
            put32(&mut fid, 24, block);
            fid.push(8);
            fid.extend_from_slice(name.as_bytes());
            fid.resize(fid.len().div_ceil(4) * 4, 0);
            tag(&mut fid, 257);
            out.extend(fid);
        }
        out
    }

    fn names(entries: &[Entry]) -> Vec<(String, Vec<u8>)> {
        entries
            .iter()
            .map(|e| match e {
                Entry::File { name, data } => (name.clone(), data.clone()),
                Entry::Damaged { name, data, .. } => (format!("{name} (damaged)"), data.clone()),
                Entry::Broken { name, .. } => (format!("{name} (broken)"), Vec::new()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn unpacked(d: &[u8]) -> Result<Vec<Entry>, UnpackError> {
        unpack(d, &mut Budget::new(Limits::default()))
    }

    /// Blocks 1–7 (each at most a block long): the root (entry 1, listing 2) with a file (entry 3, data 4), a directory
    /// (entry 5, listing 6) holding an embedded file (entry 7), the parent, a deleted entry,
    /// itself again, the root again and the first file again.
    fn tree() -> Vec<Vec<u8>> {
        let root = listing(&[(0x08, "", 1), (0, "a.bin", 3), (0x02, "sub", 5), (0x04, "gone.exe", 3)]);
        let sub = listing(&[(0x08, "", 1), (0, "x.txt", 7), (0x02, "loop", 5), (0x02, "up", 1), (0, "again", 3)]);
        vec![
            entry(true, root.len(), &[(root.len(), 2)], None),
            root,
            entry(false, 2000, &[(2000, 4)], None),
            vec![b'a'; 2000],
            entry(true, sub.len(), &[(sub.len(), 6)], None),
            sub,
            entry(false, 5, &[], Some(b"hello")),
        ]
    }

    #[test]
    fn files_directories_and_embedded_data_each_once() {
        let d = image(&tree(), 1);
        assert!(is_udf(&d));
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker (here: disk images)
            let at = crate::unpack::UNPACKABLE.iter().position(|&t| t == crate::FileType::Iso).unwrap() as u8;
            std::fs::write(std::path::Path::new(&dir).join("seed-udf"), [&[at][..], &d].concat()).unwrap();
        }
        assert_eq!(
            names(&unpacked(&d).unwrap()),
            vec![("a.bin".to_string(), vec![b'a'; 2000]), ("sub/x.txt".to_string(), b"hello".to_vec())]
        );
    }

    #[test]
    fn damage_and_what_is_not_read_are_reported() {
        // a file running past the end of the image
        let mut blocks = tree();
        blocks[2] = entry(false, 2000, &[(2000, 40)], None);
        assert_eq!(names(&unpacked(&image(&blocks, 1)).unwrap())[0], ("a.bin (damaged)".to_string(), Vec::new()));
        // a directory pointing at no file entry
        let mut blocks = tree();
        blocks[2] = vec![0; 16];
        assert_eq!(names(&unpacked(&image(&blocks, 1)).unwrap())[0].0, "a.bin (broken)");
        // a metadata partition (UDF 2.5), a bad anchor, no recognition sequence
        assert!(matches!(unpacked(&image(&tree(), 2)), Err(UnpackError::Broken(_))));
        let mut d = image(&tree(), 1);
        d[256 * BLOCK + 4] ^= 1;
        assert!(matches!(unpacked(&d), Err(UnpackError::Broken(_))));
        assert!(!is_udf(&d[..17 * BLOCK]));
        assert!(!is_udf(b"not an image"));
    }

    /// A file in long allocation descriptors (UDF's form with a partition reference): a
    /// recorded extent, an unrecorded one (zeros), then a continuation to a block holding one
    /// more recorded extent; read as one file of the declared size.
    #[test]
    fn long_descriptors_unrecorded_extents_and_continuations() {
        let mut blocks = tree();
        // the file's entry in long_ads: 100 bytes at block 4, 50 unrecorded, continue at block 8
        let mut e = vec![0u8; BLOCK];
        e[27] = 5;
        put16(&mut e, 34, 1);
        put64(&mut e, 56, 100 + 50 + 30);
        put32(&mut e, 172, 3 * 16);
        for (i, (len, block)) in [(100, 4), (1 << 30 | 50, 0), (3 << 30 | 16, 8)].into_iter().enumerate() {
            put32(&mut e, 176 + i * 16, len);
            put32(&mut e, 180 + i * 16, block);
        }
        tag(&mut e, 261);
        blocks[2] = e;
        blocks[3] = (0..100u8).collect();
        // block 8: the continued list, one recorded extent of 30 bytes at block 9
        let mut more = vec![0u8; 16];
        put32(&mut more, 0, 30);
        put32(&mut more, 4, 9);
        blocks.push(more);
        blocks.push(vec![b'z'; 30]);
        let got = names(&unpacked(&image(&blocks, 1)).unwrap());
        let want: Vec<u8> = (0..100u8).chain(std::iter::repeat_n(0, 50)).chain(std::iter::repeat_n(b'z', 30)).collect();
        assert_eq!(got[0].0, "a.bin");
        assert!(got[0].1 == want, "{} bytes", got[0].1.len());
    }

    /// Extents "allocated, not recorded" are zeros charged to the budget: a gigabyte each,
    /// many times over, ends at the limit.
    #[test]
    fn unrecorded_extents_reach_the_budget() {
        let mut blocks = tree();
        let huge = (1 << 30) - BLOCK;
        blocks[2] = entry(false, usize::MAX >> 2, &[(1 << 30 | huge, 0); 200], None);
        let r = unpack(&image(&blocks, 1), &mut Budget::new(Limits { max_expanded: 50_000_000, ..Limits::default() }));
        assert!(matches!(r, Err(UnpackError::Limit(Limit::Expanded { .. }))), "{r:?}");
    }

    /// Every byte of the image flipped and every cut: an answer, never a panic.
    #[test]
    fn flips_and_cuts_are_bounded() {
        let d = image(&tree(), 1);
        let interesting: Vec<usize> =
            (16 * BLOCK..35 * BLOCK).chain(256 * BLOCK..257 * BLOCK).chain(PARTITION * BLOCK..d.len()).collect();
        for &at in interesting.iter().step_by(3) {
            let mut bad = d.clone();
            bad[at] ^= 0x41;
            let _ = unpacked(&bad);
        }
        for cut in (0..d.len()).step_by(509) {
            let _ = unpacked(&d[..cut]);
        }
    }
}
