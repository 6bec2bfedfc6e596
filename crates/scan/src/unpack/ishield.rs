//! InstallShield setups that carry an MSI package (issue 17): after the stub, a header
//! (`InstallShield\0`, a count of files) and each file's record — its name in a 260-byte
//! field, its compressed size — then its bytes, obfuscated (each byte's nibbles swapped and
//! XORed with a key made from the file's name) and zlib-compressed. Found where libclamav finds
//! it; every byte produced is charged to the budget.

use super::{Entry, ReadError, UnpackError, read_bounded};
use crate::limits::Budget;
use crate::verdict::Unreadable;

const MAGIC: &[u8; 14] = b"InstallShield\0";
/// A file's record: its name (`MAX_PATH`), two words (the first 6), the compressed size, nine
/// more words (the second 1).
const RECORD: usize = 0x104 + 4 + 4 + 8 + 9 * 4;
/// What the name is XORed with before it is the key.
const NAME_KEY: [u8; 4] = [0xec, 0xca, 0x79, 0xf8];
/// Files read from one setup at most.
const MAX_FILES: usize = 4096;

fn le32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Where the MSI setup's header (after `InstallShield\0`) starts in an executable: the first
/// place whose first record looks as libclamav's type signature says.
pub fn find_msi(data: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(data, MAGIC).map(|at| at + MAGIC.len()).find(|&h| {
        let first = h + 0x20;
        data.get(first + 0x104..first + 0x10c) == Some(&[6, 0, 0, 0, 0, 0, 0, 0])
            && data.get(first + 0x114..first + 0x119) == Some(&[0, 0, 0, 0, 1])
    })
}

/// The files of the setup whose header starts at `at`.
pub fn msi_files(data: &[u8], at: usize, budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let Some(count) = le32(data, at) else { return Ok(Vec::new()) };
    // the rest of the header is zero
    if data.get(at + 8..at + 0x20).is_none_or(|z| z.iter().any(|&b| b != 0)) {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    let mut at = at + 0x20;
    for _ in 0..(count as usize).min(MAX_FILES) {
        let Some(record) = data.get(at..at + RECORD) else { break };
        at += RECORD;
        let name_field = &record[..0x104];
        let name_raw = &name_field[..name_field.iter().position(|&b| b == 0).unwrap_or(0x103)];
        let Some(size) = record.get(0x10c..0x114).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())) else {
            break;
        };
        if name_raw.is_empty() {
            break;
        }
        let Some(stored) = usize::try_from(size).ok().and_then(|s| data.get(at..at.checked_add(s)?)) else { break };
        at += stored.len();
        budget.entry()?;
        let key: Vec<u8> = name_raw.iter().enumerate().map(|(i, &b)| b ^ NAME_KEY[i & 3]).collect();
        let clear: Vec<u8> =
            stored.iter().enumerate().map(|(i, &c)| c.rotate_left(4) ^ key[(i & 0x3ff) % key.len()]).collect();
        let name = super::text_name(name_raw);
        entries.push(match read_bounded(flate2::read::ZlibDecoder::new(&clear[..]), budget, Some(size)) {
            Ok(d) => Entry::File { name, data: d },
            Err(ReadError::Limit(l)) => return Err(UnpackError::Limit(l)),
            Err(ReadError::Io { partial, .. }) if partial.is_empty() => {
                Entry::Broken { name, why: Unreadable::damaged("InstallShield", "a file does not decompress") }
            }
            Err(ReadError::Io { why, partial }) => {
                Entry::Damaged { name, data: partial, why: Unreadable::damaged("InstallShield", why).to_string() }
            }
        });
    }
    Ok(entries)
}

/// The magic of an InstallShield cabinet header (`data1.hdr`): `ISc(`.
const CAB_MAGIC: u32 = 0x2863_5349;
/// A file's entry in the header's file table.
const FILE_ITEM: usize = 87;

fn le64(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// The files of an InstallShield cabinet set (older, non-MSI setups): `hdr` is its
/// `data1.hdr` (the file table), `cabs` its `dataN.cab` files by number. Each file the table
/// marks as inside a cabinet is read at its offset there, as chunks of a 16-bit size and a raw
/// deflate stream each, and checked against the table's size and MD5.
pub fn cab_files(hdr: &[u8], cabs: &[(u16, &[u8])], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    use md5::Digest;
    let mut entries = Vec::new();
    if le32(hdr, 0) != Some(CAB_MAGIC) {
        return Ok(entries);
    }
    let Some(data_off) = le32(hdr, 12).map(|v| v as usize) else { return Ok(entries) };
    let (Some(dirs_off), Some(count), Some(dir_sz2)) =
        (le32(hdr, data_off + 0x0c), le32(hdr, data_off + 0x28), le32(hdr, data_off + 0x2c))
    else {
        return Ok(entries);
    };
    let strings = data_off + dirs_off as usize;
    let table = strings + dir_sz2 as usize;
    for i in 0..(count as usize).min(MAX_FILES * 4) {
        let Some(item) = hdr.get(table + i * FILE_ITEM..table + (i + 1) * FILE_ITEM) else { break };
        let flags = u16::from_le_bytes([item[0], item[1]]);
        let (Some(size), Some(csize), Some(at)) = (le64(item, 2), le64(item, 10), le64(item, 18)) else { break };
        let md5 = &item[26..42];
        let name_at = strings + le32(item, 58).unwrap_or(0) as usize;
        let cab_no = u16::from_le_bytes([item[85], item[86]]);
        // inside a cabinet, not a duplicate of the previous entry, not empty
        if flags != 4 || item[84] & 1 != 0 || size == 0 {
            continue;
        }
        budget.entry()?;
        let name_field = hdr.get(name_at..).unwrap_or_default();
        let name = super::text_name(&name_field[..name_field.iter().position(|&b| b == 0).unwrap_or(0).min(260)]);
        let name = if name.is_empty() { format!("file {}", i + 1) } else { name };
        let Some(stream) = cabs
            .iter()
            .find(|(n, _)| *n == cab_no)
            .and_then(|(_, cab)| cab.get(usize::try_from(at).ok()?..usize::try_from(at.checked_add(csize)?).ok()?))
        else {
            entries.push(Entry::Broken {
                name,
                why: Unreadable::damaged("InstallShield", format!("not in data{cab_no}.cab")),
            });
            continue;
        };
        let mut out = Vec::new();
        let mut rest = stream;
        let mut failed = None;
        while rest.len() >= 2 && (out.len() as u64) < size {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            let Some(chunk) = rest.get(2..2 + n) else {
                failed = Some("a chunk runs past the file".to_string());
                break;
            };
            rest = &rest[2 + n..];
            match read_bounded(flate2::read::DeflateDecoder::new(chunk), budget, Some(n as u64)) {
                Ok(d) => out.extend(d),
                Err(ReadError::Limit(l)) => return Err(UnpackError::Limit(l)),
                Err(ReadError::Io { why, partial }) => {
                    out.extend(partial);
                    failed = Some(why);
                    break;
                }
            }
        }
        let intact = out.len() as u64 == size && md5::Md5::digest(&out)[..] == *md5;
        entries.push(match (intact, failed) {
            (true, None) => Entry::File { name, data: out },
            (_, _) if out.is_empty() => {
                Entry::Broken { name, why: Unreadable::damaged("InstallShield", "the file does not decompress") }
            }
            (_, why) => {
                let why = why.unwrap_or_else(|| format!("{} of {size} bytes, MD5 mismatch", out.len()));
                Entry::Damaged { name, data: out, why: Unreadable::damaged("InstallShield", why).to_string() }
            }
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::io::Write;

    /// A setup of one file, obfuscated as InstallShield does.
    fn setup(name: &str, body: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(body).unwrap();
        let packed = z.finish().unwrap();
        let key: Vec<u8> = name.bytes().enumerate().map(|(i, b)| b ^ NAME_KEY[i & 3]).collect();
        let stored: Vec<u8> =
            packed.iter().enumerate().map(|(i, &c)| (c ^ key[(i & 0x3ff) % key.len()]).rotate_left(4)).collect();
        let mut d = b"MZ stub ".to_vec();
        d.extend(MAGIC);
        let mut header = vec![0u8; 0x20];
        header[..4].copy_from_slice(&1u32.to_le_bytes());
        d.extend(header);
        let mut record = vec![0u8; RECORD];
        record[..name.len()].copy_from_slice(name.as_bytes());
        record[0x104] = 6;
        record[0x10c..0x114].copy_from_slice(&(stored.len() as u64).to_le_bytes());
        record[0x118] = 1;
        d.extend(record);
        d.extend(stored);
        d
    }

    #[test]
    fn a_file_is_recovered() {
        let d = setup("clam.exe409.bmp", b"the file's bytes, compressed and obfuscated");
        let at = find_msi(&d).unwrap();
        let e = msi_files(&d, at, &mut Budget::new(Limits::default())).unwrap();
        assert!(
            matches!(&e[..], [Entry::File { name, data }] if name == "clam.exe409.bmp" && data.starts_with(b"the file's"))
        );
        // the name is the key: another name gives garbage, reported not silently dropped
        let mut wrong = d.clone();
        wrong[at + 0x20] ^= 1;
        assert!(matches!(
            &msi_files(&wrong, at, &mut Budget::new(Limits::default())).unwrap()[..],
            [Entry::Broken { .. }]
        ));
        assert!(find_msi(b"InstallShield\0 but nothing after").is_none());
    }
}
