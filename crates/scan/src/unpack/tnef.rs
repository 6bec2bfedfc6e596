//! TNEF (`winmail.dat`, `application/ms-tnef`): the attachments Outlook wraps in it.
//!
//! A TNEF stream is a signature, a key, then attributes: level (1 byte), id (4), length (4),
//! data, checksum (2). An attachment starts with `attAttachRendData`; its name is
//! `attAttachTitle` and its bytes are `attAttachData`.

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800f;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut out: Vec<Entry> = Vec::new();
    let mut name: Option<String> = None;
    // index in `out` of the current attachment's data, if it came before its title
    let mut current: Option<usize> = None;
    let mut pos = 6;
    while pos + 9 <= data.len() {
        let id = u32::from_le_bytes(data[pos + 1..pos + 5].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(data[pos + 5..pos + 9].try_into().expect("4 bytes")) as usize;
        let start = pos + 9;
        let Some(end) = start.checked_add(len).filter(|&e| e <= data.len()) else {
            out.push(Entry::Broken {
                name: "TNEF attribute".into(),
                why: Unreadable::damaged("TNEF", "attribute runs past the end"),
            });
            break;
        };
        let value = &data[start..end];
        match id {
            ATT_ATTACH_REND_DATA => {
                name = None;
                current = None;
            }
            ATT_ATTACH_TITLE => {
                let raw = value.split(|&b| b == 0).next().unwrap_or_default();
                let title = crate::unpack::text_name(raw);
                if let Some(Entry::File { name: n, .. }) = current.and_then(|i| out.get_mut(i)) {
                    *n = title.clone();
                }
                name = Some(title);
            }
            ATT_ATTACH_DATA => {
                budget.entry()?;
                budget.spend(len as u64)?;
                let n = name.clone().unwrap_or_else(|| format!("attachment {}", out.len() + 1));
                out.push(Entry::File { name: n, data: value.to_vec() });
                current = Some(out.len() - 1);
            }
            _ => {}
        }
        pos = end + 2;
    }
    Ok(out)
}
