//! Mach-O universal ("fat") files: the executable of each architecture, as libclamav's
//! `cli_scanmacho_unibin` takes them — the table of `(offset, size)` after the header, read in
//! order; an entry that cannot be read, or whose executable starts within the table itself, ends
//! the table (the executables before it are scanned); an executable is cut at the end of the file.

use super::{Entry, UnpackError};
use crate::limits::Budget;

/// The architectures' executables of a universal file.
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let be32 = |at: usize| -> Option<u32> { Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?)) };
    let Some(count) = be32(4) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut at = 8usize;
    for i in 0..count.min(32) {
        let (Some(offset), Some(size)) = (be32(at + 8), be32(at + 12)) else { break };
        at += 20;
        let offset = offset as usize;
        if offset < at {
            break;
        }
        let Some(bytes) = data.get(offset..) else { continue };
        let bytes = &bytes[..bytes.len().min(size as usize)];
        budget.entry()?;
        budget.spend(bytes.len() as u64)?;
        out.push(Entry::File { name: format!("architecture {}", i + 1), data: bytes.to_vec() });
    }
    Ok(out)
}
