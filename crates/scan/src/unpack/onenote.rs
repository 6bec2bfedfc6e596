//! OneNote notebooks (`.one`, MS-ONESTORE; issue 17): the files embedded in a notebook — the
//! attachments the Qakbot and Emotet waves of 2023 hid behind a "double-click to view" picture.
//! Each is a `FileDataStoreObject`: a header GUID, the length, then the file's bytes; they are
//! found wherever they are in the notebook (as libclamav finds them, so a notebook whose
//! structures are damaged still gives up its files), each charged to the budget. A notebook
//! exported by the OneNote web app (MS-ONESTORE's alternative packaging over MS-FSSHTTPB) keeps
//! its files in stream objects instead: each "Object Data BLOB" (a 32- or 16-bit stream object
//! header of type 2, then a compact length and the bytes) is a member too.

use super::{Entry, UnpackError};
use crate::limits::Budget;

/// How a notebook section file starts: `{7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}` as stored.
pub const MAGIC: [u8; 16] =
    [0xe4, 0x52, 0x5c, 0x7b, 0x8c, 0xd8, 0xa7, 0x4d, 0xae, 0xb1, 0x53, 0x78, 0xd0, 0x29, 0x96, 0xd3];

/// The header of an embedded file: `{BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC}` as stored.
const FILE_DATA: [u8; 16] =
    [0xe7, 0x16, 0xe3, 0xbd, 0x65, 0x26, 0x11, 0x45, 0xa4, 0xc4, 0x8d, 0x4d, 0x0b, 0x7a, 0x9e, 0xac];

/// Header GUID, `cbLength` (8 bytes), 4 unused and 8 reserved bytes, then the file.
const HEADER_LEN: usize = 16 + 8 + 4 + 8;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let finder = memchr::memmem::Finder::new(&FILE_DATA);
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(found) = finder.find(&data[at..]) {
        let start = at + found;
        let Some(len) = data.get(start + 16..start + 24).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        else {
            break;
        };
        budget.entry()?;
        let from = start + HEADER_LEN;
        let end = usize::try_from(len).ok().and_then(|l| from.checked_add(l)).unwrap_or(usize::MAX);
        let bytes = data.get(from.min(data.len())..end.min(data.len())).unwrap_or_default();
        budget.spend(bytes.len() as u64)?;
        let name = format!("embedded file {}", entries.len() + 1);
        if end <= data.len() {
            entries.push(Entry::File { name, data: bytes.to_vec() });
        } else {
            let why = format!("{} of {len} bytes in the notebook", bytes.len());
            entries.push(Entry::Damaged { name, data: bytes.to_vec(), why });
        }
        // the next one after this file (a notebook inside it is opened as its member)
        at = (from + bytes.len()).max(start + 16).min(data.len());
    }
    for (from, len) in blobs(data) {
        budget.entry()?;
        budget.spend(len as u64)?;
        entries.push(Entry::File {
            name: format!("data blob {}", entries.len() + 1),
            data: data[from..from + len].to_vec(),
        });
    }
    Ok(entries)
}

/// A compact unsigned 64-bit number (MS-FSSHTTPB 2.2.1.1) at the start of `d`: its value and
/// its size in bytes. The number of low zero bits before the first set one tells the size.
fn compact_u64(d: &[u8]) -> Option<(u64, usize)> {
    let first = *d.first()?;
    if first == 0 {
        return Some((0, 1));
    }
    if first == 0x80 {
        return Some((u64::from_le_bytes(d.get(1..9)?.try_into().ok()?), 9));
    }
    let size = first.trailing_zeros() as usize + 1;
    let mut raw = [0u8; 8];
    raw[..size].copy_from_slice(d.get(..size)?);
    Some((u64::from_le_bytes(raw) >> size, size))
}

/// Where the Object Data BLOBs of a web-app notebook are: (start, length) of each one's bytes,
/// for stream object headers (32-bit: header type 2, not compound, type 2, a length of up to
/// 32,766 or a compact large length; 16-bit: type 0, not compound, type 2, up to 127) whose
/// length is exactly the compact count and the bytes it announces.
fn blobs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    // a 32-bit header of type 2 starts with 0x12, a 16-bit one with 0x10
    while let Some(next) = memchr::memchr2(0x12, 0x10, &data[i.min(data.len())..]) {
        i += next;
        if i + 2 > data.len() {
            break;
        }
        let found = header32(data, i).or_else(|| header16(data, i));
        if let Some((payload, len)) = found
            && let Some((n, c)) = compact_u64(&data[payload..])
            && n > 0
            && (c as u64).checked_add(n) == Some(len as u64)
        {
            out.push((payload + c, n as usize));
            i = payload + len;
            continue;
        }
        i += 1;
    }
    out
}

/// A 32-bit Object Data BLOB header at `i`: (where its data starts, its length), in the file.
fn header32(data: &[u8], i: usize) -> Option<(usize, usize)> {
    let h = u32::from_le_bytes(data.get(i..i + 4)?.try_into().ok()?);
    if h & 0x7 != 0x2 || (h >> 3) & 0x3fff != 0x02 {
        return None;
    }
    let (mut payload, mut len) = (i + 4, (h >> 17) as usize);
    if len == 0x7fff {
        let (large, c) = compact_u64(&data[payload..])?;
        payload += c;
        len = usize::try_from(large).ok()?;
    }
    (payload.checked_add(len)? <= data.len()).then_some((payload, len))
}

/// A 16-bit Object Data BLOB header at `i`, as [`header32`].
fn header16(data: &[u8], i: usize) -> Option<(usize, usize)> {
    let h = u16::from_le_bytes(data.get(i..i + 2)?.try_into().ok()?);
    if h & 0x7 != 0 || (h >> 3) & 0x3f != 0x02 {
        return None;
    }
    let len = usize::from(h >> 9);
    (i + 2 + len <= data.len()).then_some((i + 2, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn object(body: &[u8], declared: u64) -> Vec<u8> {
        let mut o = FILE_DATA.to_vec();
        o.extend(declared.to_le_bytes());
        o.extend([0u8; 12]);
        o.extend(body);
        o
    }

    #[test]
    fn embedded_files_are_found_and_one_cut_short_is_damaged() {
        let mut d = MAGIC.to_vec();
        d.extend(b"structures");
        d.extend(object(b"first", 5));
        d.extend(b"more");
        d.extend(object(b"second", 1 << 40));
        let e = unpack(&d, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::File { data, .. } if data == b"first"));
        assert!(matches!(&e[1], Entry::Damaged { data, .. } if data == b"second"));
        assert_eq!(e.len(), 2);
    }

    /// A compact unsigned 64-bit number in the smallest form that holds `v`.
    fn compact(v: u64) -> Vec<u8> {
        if v == 0 {
            return vec![0];
        }
        for size in 1..=7usize {
            if v < 1u64 << (7 * size) {
                let raw = (v << size) | (1 << (size - 1));
                return raw.to_le_bytes()[..size].to_vec();
            }
        }
        [&[0x80][..], &v.to_le_bytes()].concat()
    }

    #[test]
    fn compact_numbers_of_every_size_read_back() {
        for v in
            [0, 1, 127, 128, 16383, 16384, 1 << 21, (1 << 28) + 5, 1 << 35, 1 << 42, (1 << 49) - 1, 1 << 49, u64::MAX]
        {
            let c = compact(v);
            assert_eq!(compact_u64(&c), Some((v, c.len())), "{v}");
        }
        assert_eq!(compact_u64(&[0x04, 0x01]), None, "cut short");
    }

    /// An Object Data BLOB: a 32-bit header (with a large length when it does not fit in 15
    /// bits) or a 16-bit one, the compact count, the bytes.
    fn blob(body: &[u8], short: bool) -> Vec<u8> {
        let payload = [compact(body.len() as u64), body.to_vec()].concat();
        if short {
            assert!(payload.len() < 128);
            let h = (0x02u16 << 3) | ((payload.len() as u16) << 9);
            return [h.to_le_bytes().to_vec(), payload].concat();
        }
        let len = payload.len().min(0x7fff) as u32;
        let mut o = (0x2 | (0x02 << 3) | (len << 17)).to_le_bytes().to_vec();
        if len == 0x7fff {
            o.extend(compact(payload.len() as u64));
        }
        o.extend(payload);
        o
    }

    #[test]
    fn web_app_notebooks_give_up_their_data_blobs() {
        let big = testkit::pseudo_random(4, 40_000);
        let mut nb = MAGIC.to_vec();
        nb.extend([0x11; 30]);
        nb.extend(blob(b"a small blob of text", true));
        nb.extend([0x22; 7]);
        nb.extend(blob(b"a blob with a 32-bit header", false));
        nb.extend(blob(&big, false));
        // a header whose count disagrees with its length: not a blob
        let mut bad = blob(b"disagreeing", false);
        bad[4] ^= 0x02;
        nb.extend(bad);
        // a count near 2^64 (the sum with its size overflowed; found in a desktop notebook)
        nb.extend((0x2u32 | (0x02 << 3) | (9 << 17)).to_le_bytes());
        nb.extend([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks the unpacker: OneNote's index in UNPACKABLE
            let k = crate::unpack::UNPACKABLE.iter().position(|&t| t == crate::filetype::FileType::OneNote).unwrap();
            std::fs::write(std::path::Path::new(&dir).join("seed-onenote-webapp"), [&[k as u8][..], &nb].concat())
                .unwrap();
        }
        let got: Vec<Vec<u8>> = unpack(&nb, &mut Budget::new(Limits::default()))
            .unwrap()
            .into_iter()
            .map(|e| match e {
                Entry::File { data, .. } => data,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec![b"a small blob of text".to_vec(), b"a blob with a 32-bit header".to_vec(), big]);
        // the real export from ClamAV's tests: its third blob is clam.exe
        let real =
            std::fs::read(testkit::corpus::dir().join("clamav-upstream-extra/clam.exe.webapp-export.one")).unwrap();
        let clam = std::fs::read("/usr/share/clamav-testfiles/clam.exe").expect("clamav-testfiles");
        let entries = unpack(&real, &mut Budget::new(Limits::default())).unwrap();
        assert!(entries.iter().any(|e| matches!(e, Entry::File { data, .. } if *data == clam)));
        // the bytes around each blob's header changed in turn, and every 257th elsewhere: never
        // a panic
        let heads: Vec<usize> = blobs(&real).into_iter().flat_map(|(from, _)| from.saturating_sub(12)..from).collect();
        for at in heads.into_iter().chain((0..real.len()).step_by(257)) {
            let mut damaged = real.clone();
            damaged[at] ^= 0x5a;
            let _ = unpack(&damaged, &mut Budget::new(Limits::default()));
        }
    }

    #[test]
    fn many_headers_reach_the_entry_limit() {
        let mut d = MAGIC.to_vec();
        for _ in 0..20_000 {
            d.extend(object(b"", 0));
        }
        assert!(matches!(unpack(&d, &mut Budget::new(Limits::default())), Err(UnpackError::Limit(_))));
        // a header at the very end, without its length
        let mut d = MAGIC.to_vec();
        d.extend(FILE_DATA);
        assert!(unpack(&d, &mut Budget::new(Limits::default())).unwrap().is_empty());
    }
}
