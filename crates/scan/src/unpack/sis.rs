//! Symbian installation files (`.sis`, the format before Symbian 9; issue 17): the files an
//! installer carries, one per language, zlib-compressed unless the header says otherwise.
//! Records it does not know end the walk; every byte produced is charged to the budget.

use super::{Entry, ReadError, UnpackError, read_bounded};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// The third UID of an installation file (offset 8).
pub const UID3: [u8; 4] = 0x1000_0419u32.to_le_bytes();

fn le16(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le32(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Whether `d` is an installation file: its third UID and a header that holds together.
pub fn is_sis(d: &[u8]) -> bool {
    d.get(8..12) == Some(&UID3)
        && le16(d, 18).is_some_and(|l| (1..=100).contains(&l))
        && le32(d, 52).is_some_and(|f| f >= 84 && f < d.len())
}

/// Records read at most (a file record, an option list, a condition …).
const MAX_RECORDS: usize = 4096;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("SIS", why.to_string()));
    if data.get(8..12) != Some(&UID3) {
        return Err(broken("not an installation file"));
    }
    let (Some(langs), Some(records), Some(flags), Some(files_at)) =
        (le16(data, 18), le16(data, 20), le16(data, 36), le32(data, 52))
    else {
        return Err(broken("header cut short"));
    };
    if langs == 0 || langs > 100 || files_at < 84 {
        return Err(broken("bad header"));
    }
    let compressed = flags & 0x0008 == 0;
    let mut entries = Vec::new();
    let mut at = files_at;
    for _ in 0..records.min(MAX_RECORDS) {
        let Some(kind) = le32(data, at) else { break };
        at += 4;
        match kind {
            // a file (one copy per language)
            0 | 1 => {
                let field = |k: usize| le32(data, at + 4 * k);
                let (Some(ftype), Some(name_len), Some(name_at)) = (field(0), field(2), field(3)) else { break };
                let table = at + 24;
                at = table + 12 * langs + 8;
                if ftype == 4 {
                    continue; // "null": nothing in the file
                }
                let name = original_name(data, name_at, name_len).unwrap_or_else(|| "file".into());
                for j in 0..langs {
                    let (Some(len), Some(ptr), Some(unpacked)) = (
                        le32(data, table + 4 * j),
                        le32(data, table + 4 * (langs + j)),
                        le32(data, table + 4 * (2 * langs + j)),
                    ) else {
                        break;
                    };
                    if len == 0 {
                        continue;
                    }
                    budget.entry()?;
                    let name = if langs > 1 { format!("{name} (language {})", j + 1) } else { name.clone() };
                    let raw =
                        data.get(ptr.min(data.len())..ptr.saturating_add(len).min(data.len())).unwrap_or_default();
                    let decoded = if compressed {
                        read_bounded(flate2::read::ZlibDecoder::new(raw), budget, Some(raw.len() as u64))
                    } else {
                        budget.spend(raw.len() as u64)?;
                        Ok(raw.to_vec())
                    };
                    entries.push(match decoded {
                        Ok(d) if raw.len() == len && (!compressed || d.len() == unpacked) => {
                            Entry::File { name, data: d }
                        }
                        Ok(d) | Err(ReadError::Io { partial: d, .. }) if !d.is_empty() => {
                            let why = format!("{} bytes of {len} in the file", raw.len());
                            Entry::Damaged { name, data: d, why: Unreadable::damaged("SIS", why).to_string() }
                        }
                        Err(ReadError::Limit(l)) => return Err(UnpackError::Limit(l)),
                        _ => Entry::Broken { name, why: Unreadable::damaged("SIS", "the file does not decompress") },
                    });
                }
            }
            // options: a count, then a length and a pointer per language for each
            2 => {
                let Some(n) = le32(data, at) else { break };
                at = at.saturating_add(4).saturating_add(n.saturating_mul(langs * 8));
            }
            // a condition (#IF, #ELSIF): its size, then the expression
            3 | 4 => {
                let Some(n) = le32(data, at) else { break };
                at = at.saturating_add(4).saturating_add(n);
            }
            5 | 6 => {}
            _ => break,
        }
    }
    Ok(entries)
}

/// A name stored as UTF-16 (`len` bytes at `at`), at most 400 bytes read.
fn original_name(data: &[u8], at: usize, len: usize) -> Option<String> {
    let raw = data.get(at..at.checked_add(len.min(400))?)?;
    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let name = String::from_utf16_lossy(&units);
    let base = name.rsplit(['\\', '/']).next().unwrap_or(&name).to_string();
    (!base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::io::Write;

    /// An installation file of one language holding `files` (name, bytes), compressed or not.
    fn sis(files: &[(&str, &[u8])], compressed: bool, declared: Option<usize>) -> Vec<u8> {
        let mut d = vec![0u8; 84];
        d[8..12].copy_from_slice(&UID3);
        d[18..20].copy_from_slice(&1u16.to_le_bytes());
        d[20..22].copy_from_slice(&(files.len() as u16).to_le_bytes());
        d[36..38].copy_from_slice(&(if compressed { 0u16 } else { 8 }).to_le_bytes());
        d[52..56].copy_from_slice(&84u32.to_le_bytes());
        let records_len = files.len() * (4 + 24 + 12 + 8);
        let mut blobs: Vec<u8> = Vec::new();
        let mut records = Vec::new();
        for (name, body) in files {
            let stored = if compressed {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(body).unwrap();
                e.finish().unwrap()
            } else {
                body.to_vec()
            };
            let name16: Vec<u8> =
                format!("C:\\system\\apps\\{name}").encode_utf16().flat_map(u16::to_le_bytes).collect();
            let name_at = 84 + records_len + blobs.len();
            blobs.extend(&name16);
            let data_at = 84 + records_len + blobs.len();
            blobs.extend(&stored);
            let mut r = Vec::new();
            for v in [0, 0, 0, name16.len(), name_at, 0, 0, stored.len(), data_at, declared.unwrap_or(body.len()), 0, 0]
            {
                r.extend((v as u32).to_le_bytes());
            }
            records.extend(r);
        }
        d.extend(records);
        d.extend(blobs);
        d
    }

    #[test]
    fn files_compressed_or_stored_are_read() {
        for compressed in [true, false] {
            let d = sis(&[("app.app", b"MZ the program"), ("readme.txt", b"read me")], compressed, None);
            let e = unpack(&d, &mut Budget::new(Limits::default())).unwrap();
            let got = super::super::whole_files(e);
            assert_eq!(
                got,
                vec![("app.app".into(), b"MZ the program".to_vec()), ("readme.txt".into(), b"read me".to_vec())]
            );
        }
    }

    #[test]
    fn a_bomb_and_a_lie_are_bounded_and_reported() {
        let big = vec![0u8; 20_000_000];
        let d = sis(&[("bomb", &big)], true, None);
        let r = unpack(&d, &mut Budget::new(Limits { max_expanded: 1_000_000, ..Limits::default() }));
        assert!(matches!(r, Err(UnpackError::Limit(_))), "{r:?}");
        let d = sis(&[("lie", b"twelve bytes")], true, Some(5));
        assert!(matches!(&unpack(&d, &mut Budget::new(Limits::default())).unwrap()[0], Entry::Damaged { .. }));
        assert!(unpack(b"short", &mut Budget::new(Limits::default())).is_err());
    }
}
