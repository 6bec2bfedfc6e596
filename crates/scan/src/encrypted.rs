//! Password-protected documents (R11): PDF with `/Encrypt`, encrypted OOXML (an OLE2 file with
//! `EncryptionInfo`/`EncryptedPackage`), and legacy Word/Excel/PowerPoint with their
//! encryption flags.

use std::io::{Cursor, Read};

use crate::filetype::FileType;

/// The `Encrypted.*` kind of a password-protected document, if it is one.
pub fn document_encryption(ft: FileType, data: &[u8]) -> Option<&'static str> {
    match ft {
        FileType::Pdf => pdf(data),
        FileType::Ole2 => ole2(data),
        _ => None,
    }
}

fn pdf(data: &[u8]) -> Option<&'static str> {
    let mut at = 0;
    while let Some(p) = memchr::memmem::find(&data[at..], b"/Encrypt") {
        let after = data.get(at + p + 8).copied();
        // `/Encrypt` as a key, not `/EncryptMetadata`
        if !after.is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Some("Encrypted.PDF");
        }
        at += p + 8;
    }
    None
}

fn ole2(data: &[u8]) -> Option<&'static str> {
    let mut file = cfb::CompoundFile::open(Cursor::new(data)).ok()?;
    let names: Vec<String> = file.walk().map(|e| e.name().to_string()).collect();
    let has = |n: &str| names.iter().any(|x| x.eq_ignore_ascii_case(n));
    if has("EncryptionInfo") || has("EncryptedPackage") {
        return Some("Encrypted.Office");
    }
    if has("EncryptedSummary") {
        return Some("Encrypted.PowerPoint");
    }
    if has("WordDocument") {
        let mut fib = [0u8; 12];
        if let Ok(mut s) = file.open_stream("/WordDocument")
            && s.read_exact(&mut fib).is_ok()
            && u16::from_le_bytes([fib[10], fib[11]]) & 0x0100 != 0
        {
            return Some("Encrypted.Word");
        }
    }
    for book in ["/Workbook", "/Book"] {
        let Ok(mut s) = file.open_stream(book) else { continue };
        let mut head = Vec::new();
        let _ = s.by_ref().take(64 * 1024).read_to_end(&mut head);
        if excel_filepass(&head) {
            return Some("Encrypted.Excel");
        }
    }
    None
}

/// A FILEPASS record (0x002F) among the first records of a BIFF stream.
fn excel_filepass(d: &[u8]) -> bool {
    let mut p = 0;
    for _ in 0..64 {
        let (Some(t), Some(l)) = (d.get(p..p + 2), d.get(p + 2..p + 4)) else { return false };
        let kind = u16::from_le_bytes([t[0], t[1]]);
        if kind == 0x002f {
            return true;
        }
        p += 4 + usize::from(u16::from_le_bytes([l[0], l[1]]));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_encrypt_key() {
        assert_eq!(pdf(b"%PDF-1.4\ntrailer << /Encrypt 5 0 R >>"), Some("Encrypted.PDF"));
        assert_eq!(pdf(b"%PDF-1.4\n<< /EncryptMetadata false >>"), None);
        assert_eq!(pdf(b"%PDF-1.4\nno"), None);
    }

    /// Builds an OLE2 compound file with the given streams.
    fn ole(streams: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut c = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        for (name, data) in streams {
            c.create_stream(name).unwrap().write_all(data).unwrap();
        }
        c.flush().unwrap();
        c.into_inner().into_inner()
    }

    #[test]
    fn office_documents() {
        let mut fib = vec![0xec, 0xa5, 0xc1, 0x00, 0, 0, 0, 0, 0, 0, 0x00, 0x01];
        fib.resize(512, 0);
        let word = ole(&[("/WordDocument", &fib)]);
        assert_eq!(FileType::detect(&word), FileType::Ole2);
        assert_eq!(document_encryption(FileType::Ole2, &word), Some("Encrypted.Word"));
        fib[11] = 0;
        assert_eq!(document_encryption(FileType::Ole2, &ole(&[("/WordDocument", &fib)])), None);
        let book = [0x09, 0x08, 0x02, 0x00, 0xaa, 0xbb, 0x2f, 0x00, 0x00, 0x00];
        assert_eq!(document_encryption(FileType::Ole2, &ole(&[("/Workbook", &book)])), Some("Encrypted.Excel"));
        let ooxml = ole(&[("/EncryptionInfo", &[4, 0, 4, 0]), ("/EncryptedPackage", &[0; 16])]);
        assert_eq!(document_encryption(FileType::Ole2, &ooxml), Some("Encrypted.Office"));
    }

    #[test]
    fn excel_records() {
        let mut d = vec![0x09, 0x08, 0x02, 0x00, 0xaa, 0xbb];
        d.extend_from_slice(&[0x2f, 0x00, 0x00, 0x00]);
        assert!(excel_filepass(&d));
        assert!(!excel_filepass(&d[..6]));
    }
}
