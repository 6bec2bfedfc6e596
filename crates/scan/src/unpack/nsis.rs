//! Nullsoft (NSIS) installers (issue 17): the data a `makensis` installer carries after its
//! stub — its script's header block and each file it installs — compressed with zlib
//! (deflate), NSIS's own bzip2 (`nsis_bzip2`) or LZMA, each block on its own or all in one solid stream. Found where
//! libclamav finds it: the first header (`…\xEF\xBE\xAD\xDENullsoftInst`) inside an executable.
//! Every byte produced is charged to the budget; a block that breaks off is scanned as far as
//! it decodes and reported damaged.

use super::{Entry, UnpackError, read_bounded};
use crate::limits::Budget;
use crate::unpack::ReadError;
use crate::verdict::Unreadable;

/// What follows the first header's flags.
const MAGIC: &[u8; 16] = b"\xEF\xBE\xAD\xDENullsoftInst";

/// The first header's size: flags, signature, magic, header size, archive size.
const FIRST_HEADER: usize = 0x1c;

/// Where an installer's first header starts in an executable (its flags, 4 bytes before the
/// magic), if it has one after its first bytes.
pub fn find(data: &[u8]) -> Option<usize> {
    memchr::memmem::find(data, MAGIC).filter(|&at| at > 4).map(|at| at - 4)
}

/// How a block is compressed, from its first bytes (libclamav's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Bzip2,
    Lzma,
    Zlib,
}

fn method_of(b: &[u8]) -> Method {
    match b {
        [b'1', ..] => Method::Bzip2,
        [a, b, c, d, ..] if u32::from_le_bytes([*a, *b, *c, *d]) & !0x8000_0000 == 0x5d => Method::Lzma,
        _ => Method::Zlib,
    }
}

fn le32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes one compressed block (or a solid stream) within the budget.
fn decode(method: Method, input: &[u8], budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
    let ratio = Some(input.len() as u64);
    match method {
        Method::Zlib => read_bounded(flate2::read::DeflateDecoder::new(input), budget, ratio),
        // NSIS's own bzip2: no stream header, a byte for each block magic, no CRCs
        Method::Bzip2 => read_bounded(super::nsis_bzip2::Reader::new(input), budget, ratio),
        Method::Lzma => {
            let (Some(&props), Some(dict)) = (input.first(), le32(input, 1)) else {
                return Err(ReadError::Io { why: "LZMA header cut short".into(), partial: Vec::new() });
            };
            let dict = dict.clamp(4096, 64 << 20);
            match lzma_rust2::LzmaReader::new_with_props(&input[5..], u64::MAX, props, dict, None) {
                Ok(r) => read_bounded(r, budget, ratio),
                Err(e) => Err(ReadError::Io { why: format!("LZMA: {e}"), partial: Vec::new() }),
            }
        }
    }
}

/// A block as an entry: whole, damaged (what decoded before the damage) or unreadable —
/// never left out.
fn entry(name: String, decoded: Result<Vec<u8>, ReadError>) -> Result<Entry, UnpackError> {
    Ok(match decoded {
        Ok(data) => Entry::File { name, data },
        Err(ReadError::Limit(l)) => return Err(UnpackError::Limit(l)),
        Err(ReadError::Io { why, partial }) if partial.is_empty() => {
            Entry::Broken { name, why: Unreadable::damaged("NSIS", why) }
        }
        Err(ReadError::Io { why, partial }) => {
            Entry::Damaged { name, data: partial, why: Unreadable::damaged("NSIS", why).to_string() }
        }
    })
}

/// The blocks of the installer whose first header starts at `data[0]`: `headers`, then
/// `content.001` and on, as libclamav names them.
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("NSIS", why.to_string()));
    if data.get(4..20) != Some(MAGIC) {
        return Err(broken("no first header"));
    }
    let declared = le32(data, 0x18).ok_or_else(|| broken("cut short"))? as usize;
    let archive = &data[..declared.clamp(FIRST_HEADER, data.len())];
    let blocks = &archive[FIRST_HEADER..];
    let name = |i: usize| if i == 0 { "headers".to_string() } else { format!("content.{i:03}") };
    // solid when the block sizes do not add up to the archive (libclamav's guess; the last 4
    // bytes may be the installer's CRC)
    let mut at = 0;
    let mut solid = false;
    let mut votes = [0usize; 3];
    while at + 4 < blocks.len().saturating_sub(4).max(1) {
        let size = le32(blocks, at).unwrap_or(0);
        let len = (size & !0x8000_0000) as usize;
        if size & 0x8000_0000 != 0
            && let Some(head) = blocks.get(at + 4..)
        {
            votes[method_of(head) as usize] += 1;
        }
        at = match (at + 4).checked_add(len) {
            Some(next) if next <= blocks.len() => next,
            _ => {
                solid = true;
                break;
            }
        };
    }
    let mut entries = Vec::new();
    if solid {
        // one stream: its output is the blocks, each a size then its bytes
        let method = method_of(blocks);
        let whole = match decode(method, blocks, budget) {
            Ok(d) => d,
            Err(ReadError::Limit(l)) => return Err(UnpackError::Limit(l)),
            Err(ReadError::Io { partial, .. }) if !partial.is_empty() => partial,
            Err(e) => return Ok(vec![entry("solid stream".into(), Err(e))?]),
        };
        let mut at = 0;
        while let Some(size) = le32(&whole, at) {
            budget.entry()?;
            let len = (size & !0x8000_0000) as usize;
            let end = (at + 4).saturating_add(len).min(whole.len());
            let bytes = whole[at + 4..end].to_vec();
            let i = entries.len();
            entries.push(if bytes.len() == len {
                Entry::File { name: name(i), data: bytes }
            } else {
                let why = Unreadable::damaged("NSIS", format!("{} of {len} bytes", bytes.len())).to_string();
                Entry::Damaged { name: name(i), data: bytes, why }
            });
            at = end;
        }
        return Ok(entries);
    }
    // each block on its own, compressed by the method most of them look like
    let method = if votes[Method::Lzma as usize] >= votes[Method::Zlib as usize].max(votes[Method::Bzip2 as usize]) {
        Method::Lzma
    } else if votes[Method::Bzip2 as usize] > votes[Method::Zlib as usize] {
        Method::Bzip2
    } else {
        Method::Zlib
    };
    let mut at = 0;
    let mut i = 0;
    while let Some(size) = le32(blocks, at).filter(|_| blocks.len() - at != 4) {
        let len = (size & !0x8000_0000) as usize;
        let Some(body) = blocks.get(at + 4..at + 4 + len) else { break };
        at += 4 + len;
        if len == 0 {
            continue;
        }
        budget.entry()?;
        let decoded = if size & 0x8000_0000 != 0 {
            decode(method, body, budget)
        } else {
            budget.spend(body.len() as u64)?;
            Ok(body.to_vec())
        };
        entries.push(entry(name(i), decoded)?);
        i += 1;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::io::Write;

    fn installer(blocks: &[(bool, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (compressed, b) in blocks {
            let flag = if *compressed { 0x8000_0000u32 } else { 0 };
            body.extend((b.len() as u32 | flag).to_le_bytes());
            body.extend(b);
        }
        let mut d = 0u32.to_le_bytes().to_vec();
        d.extend(MAGIC);
        d.extend(100u32.to_le_bytes());
        d.extend(((FIRST_HEADER + body.len()) as u32).to_le_bytes());
        d.extend(body);
        d
    }

    fn deflate(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn blocks_stored_and_deflated_each_on_its_own() {
        let d = installer(&[
            (true, deflate(b"the script header")),
            (false, b"stored file".to_vec()),
            (true, deflate(b"file")),
        ]);
        let e = unpack(&d, &mut Budget::new(Limits::default())).unwrap();
        let got = super::super::whole_files(e);
        assert_eq!(
            got,
            vec![
                ("headers".into(), b"the script header".to_vec()),
                ("content.001".into(), b"stored file".to_vec()),
                ("content.002".into(), b"file".to_vec())
            ]
        );
        assert_eq!(find(&[b"MZ stub".to_vec(), d.clone()].concat()), Some(7));
    }

    #[test]
    fn a_bomb_reaches_the_budget_and_garbage_is_not_a_panic() {
        let d = installer(&[(true, deflate(&vec![0u8; 50_000_000]))]);
        let r = unpack(&d, &mut Budget::new(Limits { max_expanded: 1_000_000, ..Limits::default() }));
        assert!(matches!(r, Err(UnpackError::Limit(_))), "{r:?}");
        let mut junk = installer(&[(true, vec![0x5d, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7])]);
        junk.extend(vec![0xff; 100]);
        let _ = unpack(&junk, &mut Budget::new(Limits::default()));
        assert!(unpack(b"not an installer", &mut Budget::new(Limits::default())).is_err());
    }
}
