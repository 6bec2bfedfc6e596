//! Disinfecting a zip archive: the archive is rebuilt without its infected members, and zips
//! nested in it are rebuilt the same way. Clean members are copied as they are (compressed data,
//! names, times and flags byte-identical); only a nested zip that had to change is stored anew.

use std::io::{Cursor, Read, Write};

use scan::FileType;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Deepest zip-in-zip nesting rebuilt (the scan limits refuse deeper content before this).
const MAX_NESTING: usize = 16;

/// Why an archive could not be disinfected (the attachment is then removed instead).
#[derive(Debug, thiserror::Error)]
pub enum DisinfectError {
    /// The archive could not be read or written.
    #[error("zip archive unreadable: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A member could not be read.
    #[error("reading a member: {0}")]
    Io(#[from] std::io::Error),
    /// A member could not be scanned.
    #[error("scanning a member: {0}")]
    Scan(String),
    /// Zips nested too deep.
    #[error("zip archives nested deeper than {MAX_NESTING}")]
    TooDeep,
    /// Members expand beyond the limit.
    #[error("members expand to more than {0} bytes")]
    TooBig(u64),
    /// Too many members.
    #[error("more than {0} members")]
    TooMany(usize),
}

/// A rebuilt archive.
#[derive(Debug)]
pub struct Rebuilt {
    /// The rebuilt archive.
    pub data: Vec<u8>,
    /// Paths of the members removed (`inner.zip › bad.exe`).
    pub removed: Vec<String>,
    /// Files left in the archive (directories not counted): none means nothing is worth
    /// delivering, and the attachment is better replaced by a notice.
    pub kept: usize,
}

/// Rebuilds the zip `data` without the members `is_infected` flags (given a member's bytes),
/// reading no more than the configured scan `limits` allow. Member names are decoded as the
/// scanner decodes them (UTF-8, Shift_JIS from Japanese Windows, CP437), so the names removed
/// are the names the report and the warning give. Returns the archive unchanged (and nothing
/// removed) if no member is infected.
pub fn rebuild_zip(
    data: &[u8],
    limits: scan::Limits,
    is_infected: &mut dyn FnMut(&[u8]) -> Result<bool, String>,
) -> Result<Rebuilt, DisinfectError> {
    // the scan bounded what it read; a member this one reads again is bounded the same way
    // (an engine that reports no members, clamd, had its own limits only)
    let mut left = limits.max_expanded;
    rebuild(data, &limits, is_infected, 0, &mut left)
}

fn rebuild(
    data: &[u8],
    limits: &scan::Limits,
    is_infected: &mut dyn FnMut(&[u8]) -> Result<bool, String>,
    depth: usize,
    left: &mut u64,
) -> Result<Rebuilt, DisinfectError> {
    if depth > MAX_NESTING {
        return Err(DisinfectError::TooDeep);
    }
    let mut archive = ZipArchive::new(Cursor::new(data))?;
    let max_entries = limits.max_entries;
    if archive.len() > max_entries {
        return Err(DisinfectError::TooMany(max_entries));
    }
    let mut writer = ZipWriter::new(Cursor::new(Vec::with_capacity(data.len())));
    let mut removed = Vec::new();
    let mut kept = 0;
    let comment = archive.comment().to_vec();
    for i in 0..archive.len() {
        let (name, skip_content) = {
            let f = archive.by_index_raw(i)?;
            (
                scan::unpack::zip_member_name(f.name_raw()).unwrap_or_else(|| format!("member {}", i + 1)),
                f.is_dir() || f.encrypted(),
            )
        };
        if skip_content {
            // directories and password-protected members (unscannable) are kept as they are
            kept += usize::from(!archive.by_index_raw(i)?.is_dir());
            writer.raw_copy_file(archive.by_index_raw(i)?)?;
            continue;
        }
        let mut content = Vec::new();
        archive.by_index(i)?.take(*left + 1).read_to_end(&mut content)?;
        if content.len() as u64 > *left {
            return Err(DisinfectError::TooBig(limits.max_expanded));
        }
        *left -= content.len() as u64;
        if FileType::detect(&content) == FileType::Zip
            && let Ok(inner) = rebuild(&content, limits, is_infected, depth + 1, left)
        {
            if inner.removed.is_empty() {
                kept += 1;
                writer.raw_copy_file(archive.by_index_raw(i)?)?;
            } else if inner.kept == 0 {
                // a nested archive left empty goes as a whole
                removed.extend(inner.removed.into_iter().map(|r| format!("{name} › {r}")));
            } else {
                kept += 1;
                let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
                writer.start_file(name.clone(), options)?;
                writer.write_all(&inner.data)?;
                removed.extend(inner.removed.into_iter().map(|r| format!("{name} › {r}")));
            }
            continue;
        }
        if is_infected(&content).map_err(DisinfectError::Scan)? {
            removed.push(name);
        } else {
            kept += 1;
            writer.raw_copy_file(archive.by_index_raw(i)?)?;
        }
    }
    if removed.is_empty() {
        return Ok(Rebuilt { data: data.to_vec(), removed, kept });
    }
    writer.set_raw_comment(comment.into_boxed_slice())?;
    Ok(Rebuilt { data: writer.finish()?.into_inner(), removed, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &[u8] = b"BAD-MEMBER-CONTENT";

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in members {
            w.start_file(*name, SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn flag(d: &[u8]) -> Result<bool, String> {
        Ok(d == BAD)
    }

    fn members(data: &[u8]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut a = ZipArchive::new(Cursor::new(data)).unwrap();
        (0..a.len())
            .map(|i| {
                let mut raw = Vec::new();
                a.by_index_raw(i).unwrap().read_to_end(&mut raw).unwrap();
                let mut plain = Vec::new();
                let mut f = a.by_index(i).unwrap();
                let name = f.name().unwrap().to_string();
                f.read_to_end(&mut plain).unwrap();
                (name, raw, plain)
            })
            .collect()
    }

    #[test]
    fn removes_infected_members_and_keeps_the_rest_byte_identical() {
        let original = zip_of(&[("a.txt", b"hello hello hello"), ("bad.exe", BAD), ("b.txt", b"world")]);
        let out = rebuild_zip(&original, scan::Limits::default(), &mut flag).unwrap();
        assert_eq!(out.removed, vec!["bad.exe"]);
        let before = members(&original);
        let after = members(&out.data);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0], before[0], "compressed bytes of a.txt unchanged");
        assert_eq!(after[1], before[2]);
    }

    #[test]
    fn nested_zips_are_rebuilt() {
        let inner = zip_of(&[("keep.txt", b"keep"), ("worse.exe", BAD)]);
        let outer = zip_of(&[("inner.zip", &inner), ("bad.exe", BAD), ("ok.txt", b"ok")]);
        let out = rebuild_zip(&outer, scan::Limits::default(), &mut flag).unwrap();
        assert_eq!(out.removed, vec!["inner.zip › worse.exe", "bad.exe"]);
        let after = members(&out.data);
        assert_eq!(after.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["inner.zip", "ok.txt"]);
        let inner_after = members(&after[0].2);
        assert_eq!(inner_after.len(), 1);
        assert_eq!(inner_after[0].2, b"keep");
    }

    #[test]
    fn clean_archive_is_returned_unchanged() {
        let original = zip_of(&[("a.txt", b"fine")]);
        let out = rebuild_zip(&original, scan::Limits::default(), &mut flag).unwrap();
        assert!(out.removed.is_empty());
        assert_eq!(out.data, original);
    }

    #[test]
    fn a_bomb_is_not_read_past_the_expansion_limit() {
        let zeros = vec![0u8; 70_000_000];
        let bomb = zip_of(&[("bad.exe", BAD), ("zeros.bin", &zeros)]);
        assert!(bomb.len() < 1_000_000);
        assert!(matches!(rebuild_zip(&bomb, scan::Limits::default(), &mut flag), Err(DisinfectError::TooBig(_))));
    }

    #[test]
    fn broken_archive_is_an_error() {
        assert!(rebuild_zip(b"PK\x03\x04 not really", scan::Limits::default(), &mut flag).is_err());
    }

    /// ClamAV's own zip carriers of its test file (Debian's clamav-testfiles, installed by
    /// scripts/test.sh), with the real engine deciding what is infected.
    #[test]
    fn clamav_test_zips_are_disinfected_by_the_engine() {
        let engine = scan::Engine::new(std::sync::Arc::new(scan::Signatures::builtin()), scan::Limits::default());
        let mut infected = |d: &[u8]| Ok(matches!(engine.scan_bytes("m", d).verdict(), scan::Verdict::Infected(_)));
        for name in ["clam.zip", "clam.d64.zip", "clam.bz2.zip"] {
            let path = std::path::Path::new("/usr/share/clamav-testfiles").join(name);
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/test.sh)", path.display()));
            let out = rebuild_zip(&data, scan::Limits::default(), &mut infected).unwrap();
            assert_eq!(out.removed, ["clam.exe"], "{name}");
            assert_eq!(ZipArchive::new(Cursor::new(&out.data)).unwrap().len(), 0, "{name}");
            assert!(!matches!(engine.scan_bytes(name, &out.data).verdict(), scan::Verdict::Infected(_)));
        }
    }
}
