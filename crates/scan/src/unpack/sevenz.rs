//! 7z, with encrypted members (and encrypted headers) reported without a password.

use std::io::Cursor;

use sevenz_rust2::{Archive, ArchiveReader, Error, Password};

use super::{Entry, UnpackError, member, read_bounded};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// Memory allowed to parse the 7z headers, in KiB.
const HEADER_MEMORY_LIMIT_KB: usize = 64 * 1024;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let archive =
        match Archive::read_with_memory_limit(&mut Cursor::new(data), &Password::empty(), HEADER_MEMORY_LIMIT_KB) {
            Ok(a) => a,
            Err(Error::PasswordRequired) | Err(Error::MaybeBadPassword(_)) => {
                return Err(UnpackError::Encrypted("Encrypted.7z"));
            }
            Err(e) => return Err(UnpackError::Broken(Unreadable::damaged("7z", e.to_string()))),
        };
    let encrypted: Vec<bool> = (0..archive.files.len()).map(|i| archive.is_file_encrypted(i)).collect();
    let mut out = Vec::new();
    for (i, f) in archive.files.iter().enumerate() {
        if encrypted[i] && f.has_stream && !f.is_directory {
            budget.entry()?;
            out.push(Entry::Encrypted { name: f.name.clone(), kind: "Encrypted.7z" });
        }
    }
    if encrypted.iter().all(|&e| e) && !out.is_empty() {
        return Ok(out);
    }
    // One decoder thread: the multi-threaded LZMA2 reader decodes chunks ahead into buffers of
    // its own (2 GB of zeros took 2.4 GiB before the budget could stop it). LZMA dictionaries
    // are not allocated up front (the window grows with the output, which the budget bounds),
    // so a declared dictionary of 4 GiB costs nothing and the member is read, as 7-Zip reads it.
    let mut reader = ArchiveReader::from_archive(archive, Cursor::new(data), Password::empty());
    reader.set_thread_count(1);
    let mut failure: Option<UnpackError> = None;
    let mut index = 0usize;
    let result = reader.for_each_entries(|entry, r| {
        let i = index;
        index += 1;
        if entry.is_directory || !entry.has_stream || encrypted.get(i).copied().unwrap_or(false) {
            // still consume the stream so later members decode
            std::io::copy(r, &mut std::io::sink())?;
            return Ok(true);
        }
        if let Err(l) = budget.entry() {
            failure = Some(UnpackError::Limit(l));
            return Ok(false);
        }
        match member(entry.name.clone(), "7z", read_bounded(r, budget, None)) {
            Ok(e) => {
                out.push(e);
                Ok(true)
            }
            Err(e) => {
                failure = Some(e);
                Ok(false)
            }
        }
    });
    if let Some(f) = failure {
        return Err(f);
    }
    if let Err(e) = result {
        out.push(Entry::Broken { name: "7z stream".into(), why: Unreadable::damaged("7z", e.to_string()) });
    }
    Ok(out)
}
