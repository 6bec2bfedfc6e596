//! Disinfecting a zip archive: the archive is rebuilt without its infected members, and zips
//! nested in it are rebuilt the same way. Clean members are copied as they are (compressed data,
//! names, times and flags byte-identical); only a nested zip that had to change is stored anew.
//! The members removed are the ones the scan report named ([`Infected::Named`]), or, for an
//! engine that reports no members (clamd), the ones a scanner flags when asked about each.

use std::io::{Cursor, Read, Write};

use crate::FileType;
use crate::Limits;
use crate::unpack::{ZIP_CENTRAL_VIEW, zip_member_name};
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

/// Which members of an archive are infected.
pub enum Infected<'a> {
    /// The members a scan report named, as paths inside the archive (`inner.zip › bad.exe`,
    /// the names of [`crate::Layer`]s under the archive's layer).
    Named(&'a [String]),
    /// Ask a scanner about each member's bytes (for an engine that reports no members).
    Ask(&'a mut dyn FnMut(&[u8]) -> Result<bool, String>),
}

/// A reported name as the archive spells it: the scanner marks the second view of a member
/// whose central directory disagrees with its local header; both are the same member here.
fn named(reported: &str) -> &str {
    reported.strip_suffix(ZIP_CENTRAL_VIEW).unwrap_or(reported)
}

/// Rebuilds the zip `data` without its `infected` members, reading no more than the configured
/// scan `limits` allow. Member names are decoded as the scanner decodes them (UTF-8,
/// Shift_JIS from Japanese Windows, CP437), so the names the report gives are the names
/// removed. Returns the archive unchanged (and nothing removed) if no member is infected.
pub fn rebuild_zip(data: &[u8], limits: Limits, mut infected: Infected<'_>) -> Result<Rebuilt, DisinfectError> {
    // the scan bounded what it read; a member this one reads again is bounded the same way
    // (an engine that reports no members, clamd, had its own limits only)
    let mut left = limits.max_expanded;
    rebuild(data, &limits, &mut infected, 0, &mut left)
}

/// What happens to one member.
enum Fate {
    /// Copied as it is.
    Keep,
    /// Left out (its path).
    Remove,
    /// A nested zip rebuilt: what came of it.
    Rebuilt(Rebuilt),
}

fn rebuild(
    data: &[u8],
    limits: &Limits,
    infected: &mut Infected<'_>,
    depth: usize,
    left: &mut u64,
) -> Result<Rebuilt, DisinfectError> {
    if depth > MAX_NESTING {
        return Err(DisinfectError::TooDeep);
    }
    let mut archive = ZipArchive::new(Cursor::new(data))?;
    if archive.len() > limits.max_entries {
        return Err(DisinfectError::TooMany(limits.max_entries));
    }
    let mut writer = ZipWriter::new(Cursor::new(Vec::with_capacity(data.len())));
    let mut removed = Vec::new();
    let mut kept = 0;
    let comment = archive.comment().to_vec();
    for i in 0..archive.len() {
        let (name, is_dir, encrypted) = {
            let f = archive.by_index_raw(i)?;
            let name = zip_member_name(f.name_raw()).unwrap_or_else(|| format!("member {}", i + 1));
            (name, f.is_dir(), f.encrypted())
        };
        let fate = if is_dir || encrypted {
            // directories and password-protected members (unscannable) are kept as they are
            Fate::Keep
        } else {
            let mut read = || -> Result<Vec<u8>, DisinfectError> {
                let mut content = Vec::new();
                archive.by_index(i)?.take(*left + 1).read_to_end(&mut content)?;
                if content.len() as u64 > *left {
                    return Err(DisinfectError::TooBig(limits.max_expanded));
                }
                *left -= content.len() as u64;
                Ok(content)
            };
            match infected {
                Infected::Named(names) if names.iter().any(|n| named(n) == name) => Fate::Remove,
                Infected::Named(names) => {
                    let prefix = format!("{name} › ");
                    let inner: Vec<String> =
                        names.iter().filter_map(|n| named(n).strip_prefix(&prefix)).map(str::to_string).collect();
                    if inner.is_empty() {
                        Fate::Keep
                    } else {
                        // something inside was named: rebuild it, or remove it whole if it
                        // cannot be rebuilt
                        let content = read()?;
                        rebuild(&content, limits, &mut Infected::Named(&inner), depth + 1, left)
                            .map_or(Fate::Remove, Fate::Rebuilt)
                    }
                }
                Infected::Ask(ask) => {
                    let content = read()?;
                    let nested = (FileType::detect(&content) == FileType::Zip)
                        .then(|| rebuild(&content, limits, &mut Infected::Ask(&mut **ask), depth + 1, left).ok())
                        .flatten();
                    match nested {
                        Some(inner) => Fate::Rebuilt(inner),
                        None if ask(&content).map_err(DisinfectError::Scan)? => Fate::Remove,
                        None => Fate::Keep,
                    }
                }
            }
        };
        match fate {
            Fate::Remove => removed.push(name),
            Fate::Rebuilt(inner) if inner.removed.is_empty() => {
                kept += 1;
                writer.raw_copy_file(archive.by_index_raw(i)?)?;
            }
            Fate::Rebuilt(inner) => {
                if inner.kept > 0 {
                    kept += 1;
                    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
                    writer.start_file(name.clone(), options)?;
                    writer.write_all(&inner.data)?;
                }
                // a nested archive left empty goes as a whole
                removed.extend(inner.removed.into_iter().map(|r| format!("{name} › {r}")));
            }
            Fate::Keep => {
                kept += usize::from(!is_dir);
                writer.raw_copy_file(archive.by_index_raw(i)?)?;
            }
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
        let out = rebuild_zip(&original, Limits::default(), Infected::Ask(&mut flag)).unwrap();
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
        let out = rebuild_zip(&outer, Limits::default(), Infected::Ask(&mut flag)).unwrap();
        assert_eq!(out.removed, vec!["inner.zip › worse.exe", "bad.exe"]);
        let after = members(&out.data);
        assert_eq!(after.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["inner.zip", "ok.txt"]);
        let inner_after = members(&after[0].2);
        assert_eq!(inner_after.len(), 1);
        assert_eq!(inner_after[0].2, b"keep");
    }

    /// The members a report named are removed, nested paths included, without asking a
    /// scanner (the flag function is never called); a member the scanner saw a second time
    /// through the central directory is the same member.
    #[test]
    fn the_members_a_report_named_are_removed() {
        let inner = zip_of(&[("keep.txt", b"keep"), ("worse.exe", BAD)]);
        let outer = zip_of(&[("inner.zip", &inner), ("bad.exe", BAD), ("ok.txt", b"ok")]);
        let named = ["inner.zip › worse.exe".to_string(), format!("bad.exe{ZIP_CENTRAL_VIEW}")];
        let out = rebuild_zip(&outer, Limits::default(), Infected::Named(&named)).unwrap();
        assert_eq!(out.removed, vec!["inner.zip › worse.exe", "bad.exe"]);
        let after = members(&out.data);
        assert_eq!(after.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["inner.zip", "ok.txt"]);
        assert_eq!(members(&after[0].2).iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["keep.txt"]);
        // a nested zip whose only member was named goes as a whole
        let named = ["inner.zip › worse.exe".to_string(), "inner.zip › keep.txt".to_string()];
        let out = rebuild_zip(&outer, Limits::default(), Infected::Named(&named)).unwrap();
        assert_eq!(out.removed, vec!["inner.zip › keep.txt", "inner.zip › worse.exe"]);
        assert_eq!(members(&out.data).iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["bad.exe", "ok.txt"]);
    }

    #[test]
    fn clean_archive_is_returned_unchanged() {
        let original = zip_of(&[("a.txt", b"fine")]);
        let out = rebuild_zip(&original, Limits::default(), Infected::Ask(&mut flag)).unwrap();
        assert!(out.removed.is_empty());
        assert_eq!(out.data, original);
    }

    #[test]
    fn a_bomb_is_not_read_past_the_expansion_limit() {
        let zeros = vec![0u8; 70_000_000];
        let bomb = zip_of(&[("bad.exe", BAD), ("zeros.bin", &zeros)]);
        assert!(bomb.len() < 1_000_000);
        assert!(matches!(
            rebuild_zip(&bomb, Limits::default(), Infected::Ask(&mut flag)),
            Err(DisinfectError::TooBig(_))
        ));
    }

    #[test]
    fn broken_archive_is_an_error() {
        assert!(rebuild_zip(b"PK\x03\x04 not really", Limits::default(), Infected::Ask(&mut flag)).is_err());
    }

    /// ClamAV's own zip carriers of its test file (Debian's clamav-testfiles, installed by
    /// scripts/test.sh), with the real engine deciding what is infected.
    #[test]
    fn clamav_test_zips_are_disinfected_by_the_engine() {
        let engine = crate::Engine::new(std::sync::Arc::new(crate::Signatures::builtin()), Limits::default());
        let mut infected = |d: &[u8]| Ok(matches!(engine.scan_bytes("m", d).verdict(), crate::Verdict::Infected(_)));
        for name in ["clam.zip", "clam.d64.zip", "clam.bz2.zip"] {
            let path = std::path::Path::new("/usr/share/clamav-testfiles").join(name);
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/test.sh)", path.display()));
            let out = rebuild_zip(&data, Limits::default(), Infected::Ask(&mut infected)).unwrap();
            assert_eq!(out.removed, ["clam.exe"], "{name}");
            assert_eq!(ZipArchive::new(Cursor::new(&out.data)).unwrap().len(), 0, "{name}");
            assert!(!matches!(engine.scan_bytes(name, &out.data).verdict(), crate::Verdict::Infected(_)));
        }
    }
}
