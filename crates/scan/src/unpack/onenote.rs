//! OneNote notebooks (`.one`, MS-ONESTORE; issue 17): the files embedded in a notebook — the
//! attachments the Qakbot and Emotet waves of 2023 hid behind a "double-click to view" picture.
//! Each is a `FileDataStoreObject`: a header GUID, the length, then the file's bytes; they are
//! found wherever they are in the notebook (as libclamav finds them, so a notebook whose
//! structures are damaged still gives up its files), each charged to the budget.

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
    Ok(entries)
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
