//! tar (ustar, GNU, pax): regular files only.

use std::io::Read;

use super::{Entry, UnpackError, member, read_bounded};
use crate::limits::Budget;
use crate::verdict::Unreadable;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut archive = tar::Archive::new(data);
    let entries = archive.entries().map_err(|e| UnpackError::Broken(Unreadable::damaged("Tar", e.to_string())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.push(Entry::Broken { name: "tar member".into(), why: Unreadable::damaged("Tar", e.to_string()) });
                break;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        budget.entry()?;
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "tar member".into());
        let size = entry.header().size().unwrap_or(0);
        let read = read_bounded(entry.take(size), budget, None);
        out.push(member(name, "Tar", read)?);
    }
    Ok(out)
}
