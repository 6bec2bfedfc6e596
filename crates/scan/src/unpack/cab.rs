//! Microsoft Cabinet files (`.cab`, MS-CAB): folders of data blocks, stored or compressed with
//! MSZIP (each block `CK` and a deflate stream that may refer back to the 32 KiB before it in
//! the folder), holding files as slices of their folder. A block is inflated as one deflate
//! stream made of a stored block with the folder's last 32 KiB, then the block's own data, so
//! that its references back resolve. LZX folders are decoded by the `lzxd` crate (each
//! block one chunk of the folder's window); Quantum folders are not opened (their files are
//! reported unsupported, never clean); files continued from or into another cabinet are
//! reported as such. Every block's output is charged to the budget.

use std::io::Read;

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// How a cabinet starts.
pub const MAGIC: &[u8; 4] = b"MSCF";

fn le16(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn le32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A folder: where its first data block is, how many, how compressed.
struct Folder {
    data_at: usize,
    blocks: u16,
    compression: u16,
}

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("CAB", why.to_string()));
    let header = (|| {
        let files_at = le32(data, 16)? as usize;
        let folders = le16(data, 26)?;
        let files = le16(data, 28)?;
        let flags = le16(data, 30)?;
        Some((files_at, folders, files, flags))
    })();
    let Some((files_at, n_folders, n_files, flags)) = header.filter(|_| data.starts_with(MAGIC)) else {
        return Err(broken("no cabinet header"));
    };
    let mut at = 36;
    let (mut folder_reserve, mut data_reserve) = (0usize, 0usize);
    if flags & 0x0004 != 0 {
        let header_reserve = usize::from(le16(data, 36).ok_or_else(|| broken("cut short"))?);
        folder_reserve = usize::from(*data.get(38).ok_or_else(|| broken("cut short"))?);
        data_reserve = usize::from(*data.get(39).ok_or_else(|| broken("cut short"))?);
        at = 40 + header_reserve;
    }
    // the names of the previous and next cabinets
    for flag in [0x0001, 0x0002] {
        if flags & flag != 0 {
            for _ in 0..2 {
                let n = memchr::memchr(0, data.get(at..).unwrap_or_default()).ok_or_else(|| broken("cut short"))?;
                at += n + 1;
            }
        }
    }
    let mut folders = Vec::new();
    for _ in 0..n_folders {
        let f = (|| {
            Some(Folder {
                data_at: le32(data, at)? as usize,
                blocks: le16(data, at + 4)?,
                compression: le16(data, at + 6)?,
            })
        })();
        let Some(f) = f else { break };
        folders.push(f);
        at += 8 + folder_reserve;
    }
    // each folder's data, unpacked when a file first needs it
    let mut unpacked: Vec<Option<Result<Vec<u8>, String>>> = (0..folders.len()).map(|_| None).collect();
    let mut entries = Vec::new();
    let mut at = files_at;
    for _ in 0..n_files {
        let Some((size, offset, folder)) =
            (|| Some((le32(data, at)? as usize, le32(data, at + 4)? as usize, le16(data, at + 8)?)))()
        else {
            break;
        };
        let name_at = at + 16;
        let Some(len) = data.get(name_at..).and_then(|r| memchr::memchr(0, r)) else { break };
        let name = super::text_name(&data[name_at..name_at + len]);
        at = name_at + len + 1;
        budget.entry()?;
        let f = usize::from(folder);
        if folder >= 0xfffd {
            entries.push(Entry::Broken { name, why: Unreadable::unsupported("CAB", "continued in another cabinet") });
            continue;
        }
        let Some(fd) = folders.get(f) else {
            entries.push(Entry::Broken { name, why: Unreadable::damaged("CAB", "no such folder") });
            continue;
        };
        if unpacked[f].is_none() {
            unpacked[f] = Some(folder_data(data, fd, data_reserve, budget)?);
        }
        match unpacked[f].as_ref().expect("just unpacked") {
            Err(why) if why.starts_with("compression") => {
                entries.push(Entry::Broken { name, why: Unreadable::unsupported("CAB", why.clone()) });
            }
            Err(why) => entries.push(Entry::Broken { name, why: Unreadable::damaged("CAB", why.clone()) }),
            Ok(bytes) => {
                let end = offset.saturating_add(size).min(bytes.len());
                let slice = bytes.get(offset.min(end)..end).unwrap_or_default().to_vec();
                entries.push(if slice.len() < size {
                    let why = format!("the file ends after {} of {size} bytes", slice.len());
                    if slice.is_empty() {
                        Entry::Broken { name, why: Unreadable::damaged("CAB", why) }
                    } else {
                        Entry::Damaged { name, data: slice, why: Unreadable::damaged("CAB", why).to_string() }
                    }
                } else {
                    Entry::File { name, data: slice }
                });
            }
        }
    }
    Ok(entries)
}

/// A folder's data: its blocks, stored or inflated, in order (`Err` with why when the folder
/// cannot be read at all; what was read before a damaged block is kept).
fn folder_data(
    data: &[u8],
    f: &Folder,
    data_reserve: usize,
    budget: &mut Budget,
) -> Result<Result<Vec<u8>, String>, UnpackError> {
    let mut lzx = match f.compression & 0x000f {
        0 | 1 => None,
        2 => return Ok(Err("compression Quantum is not built".into())),
        3 => match lzx_window(f.compression) {
            Some(w) => Some(lzxd::Lzxd::new(w)),
            None => {
                return Ok(Err(format!("compression LZX with a window of 2^{} bytes", (f.compression >> 8) & 0x1f)));
            }
        },
        other => return Ok(Err(format!("compression {other} is unknown"))),
    };
    let mszip = f.compression & 0x000f == 1;
    let mut out = Vec::new();
    let mut at = f.data_at;
    for _ in 0..f.blocks {
        let Some((packed, unpacked)) =
            (|| Some((usize::from(le16(data, at + 4)?), usize::from(le16(data, at + 6)?))))()
        else {
            break;
        };
        let start = at + 8 + data_reserve;
        let Some(block) = data.get(start..start + packed) else { break };
        at = start + packed;
        let bytes = if let Some(lzx) = lzx.as_mut() {
            // each block one LZX chunk, decoded with the folder's window
            match lzx.decompress_next(block, unpacked) {
                Ok(b) => b.to_vec(),
                Err(_) => break,
            }
        } else if !mszip {
            block.to_vec()
        } else {
            let Some(deflated) = block.strip_prefix(b"CK") else { break };
            let history = &out[out.len().saturating_sub(32 * 1024)..];
            let mut stream = Vec::with_capacity(history.len() + 5 + deflated.len());
            // a stored block (not the last) holding the history: the block's references reach it
            stream.push(0);
            stream.extend_from_slice(&(history.len() as u16).to_le_bytes());
            stream.extend_from_slice(&(!(history.len() as u16)).to_le_bytes());
            stream.extend_from_slice(history);
            stream.extend_from_slice(deflated);
            let mut inflated = Vec::new();
            let most = (history.len() + 32 * 1024 + 1) as u64;
            if flate2::read::DeflateDecoder::new(&stream[..]).take(most).read_to_end(&mut inflated).is_err() {
                break;
            }
            inflated.split_off(history.len().min(inflated.len()))
        };
        budget.spend(bytes.len() as u64)?;
        let stop = bytes.len() != unpacked;
        out.extend_from_slice(&bytes);
        if stop {
            break;
        }
    }
    Ok(Ok(out))
}

/// The LZX window a folder's compression field names (2^15 to 2^21 bytes).
fn lzx_window(compression: u16) -> Option<lzxd::WindowSize> {
    use lzxd::WindowSize as W;
    Some(match (compression >> 8) & 0x1f {
        15 => W::KB32,
        16 => W::KB64,
        17 => W::KB128,
        18 => W::KB256,
        19 => W::KB512,
        20 => W::MB1,
        21 => W::MB2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Limit, Limits};

    /// A cabinet of `files` in one folder, its data cut in blocks of `block` bytes, stored or
    /// MSZIP-compressed (each block deflated with the folder's history as its dictionary).
    fn cabinet(files: &[(&str, &[u8])], mszip: bool, block: usize) -> Vec<u8> {
        let folder: Vec<u8> = files.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let mut blocks = Vec::new();
        for (i, chunk) in folder.chunks(block).enumerate() {
            let payload = if mszip {
                let mut c = flate2::Compress::new(flate2::Compression::default(), false);
                let history = &folder[(i * block).saturating_sub(32 * 1024)..i * block];
                if !history.is_empty() {
                    c.set_dictionary(history).unwrap();
                }
                let mut out = Vec::with_capacity(chunk.len() * 2 + 64);
                c.compress_vec(chunk, &mut out, flate2::FlushCompress::Finish).unwrap();
                [b"CK".to_vec(), out].concat()
            } else {
                chunk.to_vec()
            };
            blocks.push((payload, chunk.len()));
        }
        let files_at = 36 + 8;
        let names_len: usize = files.iter().map(|(n, _)| 16 + n.len() + 1).sum();
        let data_at = files_at + names_len;
        let mut v = b"MSCF".to_vec();
        v.extend_from_slice(&[0; 12]);
        v.extend_from_slice(&(files_at as u32).to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 3, 1]);
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&(files.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&(data_at as u32).to_le_bytes());
        v.extend_from_slice(&(blocks.len() as u16).to_le_bytes());
        v.extend_from_slice(&u16::from(mszip).to_le_bytes());
        let mut offset = 0u32;
        for (name, d) in files {
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(&offset.to_le_bytes());
            v.extend_from_slice(&[0; 8]);
            v.extend_from_slice(name.as_bytes());
            v.push(0);
            offset += d.len() as u32;
        }
        for (payload, unpacked) in blocks {
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(&(payload.len() as u16).to_le_bytes());
            v.extend_from_slice(&(unpacked as u16).to_le_bytes());
            v.extend_from_slice(&payload);
        }
        v
    }

    #[test]
    fn stored_and_mszip_cabinets_give_their_files() {
        let a: Vec<u8> = b"the first file, ".repeat(3000);
        let b: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for mszip in [false, true] {
            let cab = cabinet(&[("a.txt", &a), ("dir\\b.bin", &b)], mszip, 32 * 1024);
            let e = unpack(&cab, &mut Budget::new(Limits::default())).unwrap();
            let got: Vec<(&str, &[u8])> = e
                .iter()
                .map(|e| match e {
                    Entry::File { name, data } => (name.as_str(), data.as_slice()),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(got, vec![("a.txt", &a[..]), ("dir\\b.bin", &b[..])], "mszip {mszip}");
        }
    }

    /// Bombs: a file declaring 4 GiB in a folder of a few bytes is read as far as the folder
    /// goes (nothing of the declared size is set aside); a folder of 60,000 MSZIP blocks, each
    /// 32 KiB of zeros from a few bytes (about 2 GB declared), stops at the budget.
    #[test]
    fn huge_declared_sizes_are_bounded() {
        let mut cab = cabinet(&[("big.exe", b"MZ tiny")], true, 1024);
        let files_at = 36 + 8;
        cab[files_at..files_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let started = std::time::Instant::now();
        let e = unpack(&cab, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::Damaged { data, .. } if data == b"MZ tiny"), "{e:?}");
        let zeros = vec![0u8; 32 * 1024];
        let one = cabinet(&[("zeros.bin", &zeros)], true, 32 * 1024);
        let block = &one[files_at + 16 + "zeros.bin".len() + 1..];
        let mut bomb = one[..files_at + 16 + "zeros.bin".len() + 1].to_vec();
        let n = 60_000u32;
        bomb[files_at..files_at + 4].copy_from_slice(&(n * 32 * 1024).to_le_bytes());
        bomb[36 + 4..36 + 6].copy_from_slice(&(n as u16).to_le_bytes()); // the folder's block count
        for _ in 0..n {
            bomb.extend_from_slice(block);
        }
        let r = unpack(&bomb, &mut Budget::new(Limits { max_expanded: 50_000_000, ..Limits::default() }));
        assert!(matches!(r, Err(UnpackError::Limit(Limit::Expanded { .. }))), "{r:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn other_compressions_are_unsupported_and_a_cut_file_is_damaged() {
        let mut cab = cabinet(&[("x.exe", b"MZ hello")], false, 1024);
        let kind = 36 + 6;
        cab[kind] = 3; // LZX
        let e = unpack(&cab, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::Broken { why, .. } if why.to_string().contains("LZX")), "{e:?}");
        let whole = cabinet(&[("x.exe", b"MZ hello world")], false, 1024);
        let e = unpack(&whole[..whole.len() - 4], &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::Broken { .. } | Entry::Damaged { .. }), "{e:?}");
    }
}
