//! Unpackers, one module per format, all returning members for the recursion driver
//! ([`crate::walk`]). Every read is bounded by the scan's [`Budget`]: nothing is allocated
//! beyond the remaining expanded-bytes allowance, and a member that expands faster than the
//! ratio limit stops early.

mod aplib;
mod arj;
pub mod aspack;
pub mod autoit;
mod binhex;
mod cab;
mod chm;
mod cpio;
pub mod exe;
pub mod ishield;
mod iso;
mod macho_fat;
pub mod mew;
pub mod nsis;
mod nsis_bzip2;
mod ole2;
mod onenote;
mod pdf;
mod peimage;
pub mod pespin;
pub mod petite;
mod rar;
mod rtf;
mod sevenz;
mod single;
mod sis;
mod szdd;
mod tar;
mod tnef;
mod udf;
pub mod upack;
pub mod upx;
mod vba;
pub mod wwpack;
pub mod yc;
mod zip;

pub use arj::is_arj;
pub use binhex::INTRO as BINHEX_INTRO;
pub use cab::MAGIC as CAB_MAGIC;
pub use chm::MAGIC as CHM_MAGIC;
pub use iso::is_iso;
pub use onenote::MAGIC as ONENOTE_MAGIC;
pub use rtf::MAGIC as RTF_MAGIC;
pub use sis::is_sis;
pub use szdd::MAGIC as SZDD_MAGIC;
pub use zip::CENTRAL_VIEW as ZIP_CENTRAL_VIEW;
pub use zip::has_signature as has_zip_signature;
pub use zip::member_name as zip_member_name;

use std::io::Read;

use crate::filetype::FileType;
use crate::limits::{Budget, Limit};
use crate::verdict::Unreadable;

/// One member of a container.
#[derive(Debug)]
pub enum Entry {
    /// A readable member.
    File {
        /// Its name.
        name: String,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A member read in full or in part although the container says it is damaged (a checksum
    /// failure, a stream that breaks off): the bytes are scanned, and `why` is reported.
    Damaged {
        /// Its name.
        name: String,
        /// What could be read.
        data: Vec<u8>,
        /// What is wrong.
        why: String,
    },
    /// A password-protected member (`kind` like `Encrypted.Zip`).
    Encrypted {
        /// Its name.
        name: String,
        /// `Encrypted.Zip` and the like.
        kind: &'static str,
    },
    /// The decompressed source of a VBA macro module: matched as libclamav matches it, with the
    /// signatures for OLE2 files (target type 2), and not opened further.
    Macro {
        /// Its module's stream and `(VBA source)`.
        name: String,
        /// The source text.
        data: Vec<u8>,
    },
    /// A text an unpacker made (a VBA project's normalised listing): matched as libclamav
    /// matches a script — as text, raw and normalised — and not opened further.
    Script {
        /// What it lists and what it is, e.g. `VBA/dir (VBA project, normalised)`.
        name: String,
        /// The text.
        data: Vec<u8>,
    },
    /// A member that could not be read, and why.
    Broken {
        /// Its name.
        name: String,
        /// Why.
        why: Unreadable,
    },
}

/// Why a whole container could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A scan limit was reached.
    #[error("{0}")]
    Limit(#[from] Limit),
    /// The whole container is encrypted (e.g. 7z with encrypted headers).
    #[error("{0}")]
    Encrypted(&'static str),
    /// Not a valid container (`Broken.Zip: …`).
    #[error("{0}")]
    Broken(Unreadable),
}

/// Every type [`unpack`] opens (fuzzers pick one by index).
pub const UNPACKABLE: [FileType; 21] = [
    FileType::Zip,
    FileType::Gzip,
    FileType::Bzip2,
    FileType::Xz,
    FileType::Tar,
    FileType::Cpio,
    FileType::SevenZip,
    FileType::Rar,
    FileType::Tnef,
    FileType::MachOUniversal,
    FileType::Szdd,
    FileType::BinHex,
    FileType::Rtf,
    FileType::Ole2,
    FileType::Pdf,
    FileType::Cab,
    FileType::Iso,
    FileType::OneNote,
    FileType::Sis,
    FileType::Arj,
    FileType::Chm,
];

/// Unpacks a container of type `ft`.
pub fn unpack(ft: FileType, data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    match ft {
        FileType::Zip => zip::unpack(data, budget),
        FileType::Gzip => single::gzip(data, budget),
        FileType::Bzip2 => single::bzip2(data, budget),
        FileType::Xz => single::xz(data, budget),
        FileType::Tar => tar::unpack(data, budget),
        FileType::SevenZip => sevenz::unpack(data, budget),
        FileType::Rar => rar::unpack(data, budget),
        FileType::Cpio => cpio::unpack(data, budget),
        FileType::Tnef => tnef::unpack(data, budget),
        FileType::MachOUniversal => macho_fat::unpack(data, budget),
        FileType::Szdd => szdd::unpack(data, budget),
        FileType::BinHex => binhex::unpack(data, budget),
        FileType::Rtf => rtf::unpack(data, budget),
        FileType::Ole2 => ole2::unpack(data, budget),
        FileType::Pdf => pdf::unpack(data, budget),
        FileType::Cab => cab::unpack(data, budget),
        FileType::Iso => iso::unpack(data, budget),
        FileType::OneNote => onenote::unpack(data, budget),
        FileType::Sis => sis::unpack(data, budget),
        FileType::Arj => arj::unpack(data, budget),
        FileType::Chm => chm::unpack(data, budget),
        _ => Ok(Vec::new()),
    }
}

/// Each entry's name and bytes, for tests of unpackers that must give whole files only.
#[cfg(test)]
pub(crate) fn whole_files(entries: Vec<Entry>) -> Vec<(String, Vec<u8>)> {
    entries
        .into_iter()
        .map(|e| match e {
            Entry::File { name, data } => (name, data),
            other => panic!("not a whole file: {other:?}"),
        })
        .collect()
}

/// A member name from bytes in an unknown 8-bit charset.
pub(crate) fn text_name(raw: &[u8]) -> String {
    mime::charset::guess(raw)
}

/// Reads a member into memory within the budget. `packed` (the compressed size, if known)
/// enables the ratio check.
pub fn read_bounded(mut r: impl Read, budget: &mut Budget, packed: Option<u64>) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut reads = 0u32;
    loop {
        // the clock, every few reads as well as every 4 MiB: a decoder may work hard for few
        // bytes (NSIS's bzip2 returns after each block, however small)
        reads = reads.wrapping_add(1);
        if reads.is_multiple_of(16) {
            budget.check_time()?;
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io { why: e.to_string(), partial: out }),
        };
        budget.spend(n as u64)?;
        out.extend_from_slice(&buf[..n]);
        if let Some(p) = packed {
            let len = out.len() as u64;
            if len > 1024 * 1024 && len > p.max(1).saturating_mul(budget.limits.max_ratio) {
                return Err(ReadError::Limit(Limit::Ratio { max: budget.limits.max_ratio, produced: len, packed: p }));
            }
        }
        if out.len() % (4 * 1024 * 1024) < n {
            budget.check_time()?;
        }
    }
    Ok(out)
}

/// Why reading a member stopped.
#[derive(Debug)]
pub enum ReadError {
    /// A scan limit was reached.
    Limit(Limit),
    /// The stream broke off; `partial` is what was read before (scanned all the same).
    Io {
        /// Why.
        why: String,
        /// What was read before.
        partial: Vec<u8>,
    },
}

impl From<Limit> for ReadError {
    fn from(l: Limit) -> Self {
        ReadError::Limit(l)
    }
}

/// Turns a member read result into an entry (or a whole-scan limit error); `format` names the
/// format in the reason (`Broken.Gzip: …`).
fn member(name: String, format: &'static str, r: Result<Vec<u8>, ReadError>) -> Result<Entry, UnpackError> {
    match r {
        Ok(data) => Ok(Entry::File { name, data }),
        Err(ReadError::Limit(l)) => Err(UnpackError::Limit(l)),
        Err(ReadError::Io { why, partial }) if partial.is_empty() => {
            Ok(Entry::Broken { name, why: Unreadable::damaged(format, why) })
        }
        Err(ReadError::Io { why, partial }) => {
            Ok(Entry::Damaged { name, data: partial, why: Unreadable::damaged(format, why).to_string() })
        }
    }
}
