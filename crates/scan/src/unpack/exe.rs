//! What a Windows executable carries besides its own code, found where libclamav finds it:
//! other executables embedded in it (a dropper's or a self-extractor's payload), and the files
//! of an InstallShield setup stream appended after its sections.
//!
//! Both are slices of the executable: nothing is copied or expanded, so they are charged as
//! entries, not bytes.

use std::ops::Range;

/// Longest rest of a file scanned as an embedded executable (libclamav's `MaxEmbeddedPE`
/// default, 40 MB).
pub const MAX_EMBEDDED_PE: usize = 40 * 1024 * 1024;

/// Longest name, path, version or size field of an InstallShield record (libclamav's).
const MAX_FIELD: usize = 2048;

/// Whether an executable with a valid PE header starts at `at` (after the first byte): its
/// extent is the rest of the file, as libclamav scans it (a PE header does not give the
/// file's length). Candidates are checked cheaply (`MZ`, `e_lfanew`, `PE\0\0`) before the
/// header is parsed.
pub fn embedded_pe_at(data: &[u8], at: usize) -> bool {
    if at == 0 || at >= data.len() || data.len() - at > MAX_EMBEDDED_PE {
        return false;
    }
    let rest = &data[at..];
    let Some(lfanew) = rest.get(0x3c..0x40).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
        return false;
    };
    if lfanew == 0 || rest.get(lfanew..lfanew.saturating_add(4)) != Some(b"PE\0\0") {
        return false;
    }
    crate::pe::parse(rest).is_some()
}

/// Candidate offsets of embedded executables: every `MZ` after the first byte.
pub fn mz_offsets(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memmem::find_iter(data, b"MZ").filter(|&at| at > 0)
}

/// The files of an InstallShield setup stream in the overlay (from `start`): records of
/// `name\0 path\0 version\0 size\0` (the size in decimal) followed by that many bytes, read
/// until one does not parse or does not fit. Each file's path and its bytes' range in `data`.
pub fn installshield_files(data: &[u8], start: usize) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    let mut at = start;
    loop {
        let record = at;
        let mut fields: [&[u8]; 4] = [&[]; 4];
        for f in &mut fields {
            let Some(rest) = data.get(at..) else { return out };
            let window = &rest[..rest.len().min(MAX_FIELD)];
            let Some(nul) = memchr::memchr(0, window) else { return out };
            *f = &window[..nul];
            at += nul + 1;
        }
        let [name, path, _version, size] = fields;
        if name.is_empty() || size.is_empty() || !size.iter().all(u8::is_ascii_digit) || size.len() > 18 {
            return out;
        }
        let size: usize = match std::str::from_utf8(size).ok().and_then(|s| s.parse().ok()) {
            Some(n) => n,
            None => return out,
        };
        // the record and its data within what is left of the overlay
        let left = data.len() - record;
        if size >= left || at - record >= left - size {
            return out;
        }
        // the path field is the name with its folder (`Disk1\clam.exe`)
        let name = super::text_name(if path.is_empty() { name } else { path });
        out.push((name, at..at + size));
        at += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!("{name}\0{path}\0{}\0{}\0", "1.0.0.0", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn the_records_of_a_setup_stream_are_read_until_one_does_not_parse() {
        let mut data = b"code".to_vec();
        data.extend(record("setup.ini", "Disk1\\setup.ini", b"[Startup]\r\n"));
        data.extend(record("clam.exe", "", b"MZ payload"));
        data.extend(b"trailing garbage\0\0\0x\0");
        let files = installshield_files(&data, 4);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Disk1\\setup.ini", "clam.exe"]);
        assert_eq!(&data[files[1].1.clone()], b"MZ payload");
    }

    #[test]
    fn a_size_past_the_end_or_not_a_number_ends_the_stream() {
        let mut data = format!("a\0p\0v\0{}\0", 1_000_000).into_bytes();
        data.extend(b"short");
        assert!(installshield_files(&data, 0).is_empty());
        assert!(installshield_files(b"a\0p\0v\x0012x\0abcdefghijklmnop", 0).is_empty());
        assert!(installshield_files(b"a\0p\0v\0-1\0abcdefghijklmnop", 0).is_empty());
        assert!(installshield_files(b"a\0p\0v\x0099999999999999999999999\0abc", 0).is_empty());
        assert!(installshield_files(b"", 0).is_empty());
        // a field longer than 2048 bytes
        let mut long = vec![b'x'; 3000];
        long.extend(b"\0p\0v\x001\0a");
        assert!(installshield_files(&long, 0).is_empty());
    }

    #[test]
    fn an_mz_without_a_pe_header_is_not_an_executable() {
        let mut data = b"xxMZ".to_vec();
        data.extend(vec![0u8; 100]);
        assert!(mz_offsets(&data).all(|at| !embedded_pe_at(&data, at)));
        assert!(!embedded_pe_at(b"MZ", 0));
    }
}
