//! ZIP (stored, deflate, deflate64, bzip2, lzma, xz, zstd), with ZipCrypto and AES members
//! reported as encrypted without a password.

use std::io::Cursor;

use zip::ZipArchive;

use super::{Entry, UnpackError, member, read_bounded};
use crate::limits::Budget;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut archive =
        ZipArchive::new(Cursor::new(data)).map_err(|e| UnpackError::Broken(format!("Broken.Zip: {e}")))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        budget.entry()?;
        let (name, encrypted, is_dir, packed) = match archive.by_index_raw(i) {
            Ok(f) => (
                f.name().map(|n| n.to_string()).unwrap_or_else(|_| format!("member {}", i + 1)),
                f.encrypted(),
                f.is_dir(),
                f.compressed_size(),
            ),
            Err(e) => {
                out.push(Entry::Broken { name: format!("member {}", i + 1), why: format!("Broken.Zip: {e}") });
                continue;
            }
        };
        if is_dir {
            continue;
        }
        if encrypted {
            out.push(Entry::Encrypted { name, kind: "Encrypted.Zip" });
            continue;
        }
        let read = match archive.by_index(i) {
            Ok(f) => read_bounded(f, budget, Some(packed)),
            Err(e) => {
                out.push(Entry::Broken { name, why: format!("Broken.Zip: {e}") });
                continue;
            }
        };
        out.push(member(name, "Broken.Zip", read)?);
    }
    Ok(out)
}
