//! File types by content (magic bytes), never by name.

use serde::Serialize;

/// What a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// ZIP archive (also OOXML, JAR …).
    Zip,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// tar.
    Tar,
    /// cpio (any of its formats).
    Cpio,
    /// TNEF (`winmail.dat`).
    Tnef,
    /// 7z.
    SevenZip,
    /// RAR.
    Rar,
    /// SZDD (Microsoft `COMPRESS.EXE`).
    Szdd,
    /// BinHex 4.0.
    BinHex,
    /// RTF (its embedded objects are opened).
    Rtf,
    /// Microsoft Cabinet.
    Cab,
    /// PDF.
    Pdf,
    /// OLE2 compound file (old Office).
    Ole2,
    /// The decompressed source of a VBA macro module (never detected: its document's unpacker
    /// names it).
    Vba,
    /// ISO 9660 disk image.
    Iso,
    /// OneNote notebook.
    OneNote,
    /// Symbian installation file (before Symbian 9).
    Sis,
    /// ARJ archive.
    Arj,
    /// Compiled HTML Help.
    Chm,
    /// Windows PE executable.
    Pe,
    /// ELF executable.
    Elf,
    /// Mach-O executable.
    MachO,
    /// Mach-O universal ("fat") file: an executable per architecture.
    MachOUniversal,
    /// Java class file.
    Java,
    /// Flash.
    Flash,
    /// GIF, PNG, JPEG or BMP.
    Image,
    /// A mail message.
    Mail,
    /// HTML.
    Html,
    /// Text.
    Text,
    /// Anything else.
    Binary,
}

impl FileType {
    /// Detects the type of `d`.
    pub fn detect(d: &[u8]) -> FileType {
        let starts = |m: &[u8]| d.starts_with(m);
        if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
            FileType::Zip
        } else if starts(&[0x1f, 0x8b]) {
            FileType::Gzip
        } else if starts(b"BZh") && d.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
            FileType::Bzip2
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            FileType::Xz
        } else if starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
            FileType::SevenZip
        } else if starts(b"070701")
            || starts(b"070702")
            || starts(b"070707")
            || starts(&[0xc7, 0x71])
            || starts(&[0x71, 0xc7])
        {
            FileType::Cpio
        } else if starts(&[0x78, 0x9f, 0x3e, 0x22]) {
            // TNEF signature 0x223E9F78
            FileType::Tnef
        } else if starts(b"Rar!\x1a\x07") {
            FileType::Rar
        } else if starts(crate::unpack::CAB_MAGIC) && d.get(4..8) == Some(&[0, 0, 0, 0]) {
            FileType::Cab
        } else if starts(crate::unpack::RTF_MAGIC) {
            FileType::Rtf
        } else if starts(crate::unpack::SZDD_MAGIC) {
            FileType::Szdd
        } else if d
            .get(..1024.min(d.len()))
            .is_some_and(|h| memchr::memmem::find(h, crate::unpack::BINHEX_INTRO).is_some())
        {
            FileType::BinHex
        } else if starts(b"%PDF-") || d.get(..1024).is_some_and(|h| memchr::memmem::find(h, b"%PDF-").is_some()) {
            FileType::Pdf
        } else if starts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
            FileType::Ole2
        } else if starts(&crate::unpack::ONENOTE_MAGIC) {
            FileType::OneNote
        } else if crate::unpack::is_iso(d) {
            FileType::Iso
        } else if crate::unpack::is_sis(d) {
            FileType::Sis
        } else if starts(&[0x60, 0xea]) && crate::unpack::is_arj(d) {
            FileType::Arj
        } else if starts(crate::unpack::CHM_MAGIC) && d.get(4..8) == Some(&[3, 0, 0, 0]) {
            FileType::Chm
        } else if starts(b"MZ") {
            FileType::Pe
        } else if starts(b"\x7fELF") {
            FileType::Elf
        } else if starts(&[0xfe, 0xed, 0xfa, 0xce])
            || starts(&[0xfe, 0xed, 0xfa, 0xcf])
            || starts(&[0xce, 0xfa, 0xed, 0xfe])
            || starts(&[0xcf, 0xfa, 0xed, 0xfe])
        {
            FileType::MachO
        } else if starts(&[0xca, 0xfe, 0xba, 0xbe]) && d.len() >= 8 && d[4..7] == [0, 0, 0] && d[7] < 0x40 {
            // libclamav's rule: the count of architectures (a universal file) or the class file
            // version (Java 1.1 to 19); any other version is no type of its own
            if d[7] < 0x20 { FileType::MachOUniversal } else { FileType::Java }
        } else if starts(b"FWS") || starts(b"CWS") || starts(b"ZWS") {
            FileType::Flash
        } else if starts(b"GIF8") || starts(b"\x89PNG") || starts(&[0xff, 0xd8, 0xff]) || starts(b"BM") {
            FileType::Image
        } else if is_tar(d) {
            FileType::Tar
        } else if looks_like_mail(d) {
            FileType::Mail
        } else if crate::html::is_html(d) {
            FileType::Html
        } else if is_text(d) {
            FileType::Text
        } else {
            FileType::Binary
        }
    }

    /// Whether ClamAV target type `t` applies to this type (target 7, normalised text, applies
    /// to the normalised copy of a text file only: [`normalize_text`]).
    pub fn matches_target(self, t: u32) -> bool {
        match t {
            0 => true,
            1 => self == FileType::Pe,
            3 => self == FileType::Html,
            2 => matches!(self, FileType::Ole2 | FileType::Vba),
            4 => self == FileType::Mail,
            5 => self == FileType::Image,
            6 => self == FileType::Elf,
            9 => matches!(self, FileType::MachO | FileType::MachOUniversal),
            10 => self == FileType::Pdf,
            11 => self == FileType::Flash,
            12 => self == FileType::Java,
            _ => false,
        }
    }

    /// Whether the unpackers open this type.
    pub fn is_container(self) -> bool {
        matches!(
            self,
            FileType::Zip
                | FileType::Gzip
                | FileType::Bzip2
                | FileType::Xz
                | FileType::Tar
                | FileType::Cpio
                | FileType::Tnef
                | FileType::SevenZip
                | FileType::Rar
                | FileType::MachOUniversal
                | FileType::Mail
                | FileType::Szdd
                | FileType::BinHex
                | FileType::Rtf
                | FileType::Ole2
                | FileType::Pdf
                | FileType::Cab
                | FileType::Iso
                | FileType::OneNote
                | FileType::Sis
                | FileType::Arj
                | FileType::Chm
        )
    }
}

/// A ustar/GNU/old tar header: checksum of the first 512 bytes.
fn is_tar(d: &[u8]) -> bool {
    if d.len() < 512 {
        return false;
    }
    let h = &d[..512];
    if &h[257..262] == b"ustar" {
        return true;
    }
    let field = std::str::from_utf8(&h[148..156]).unwrap_or("");
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8) else { return false };
    let sum: u32 = h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    stored == sum && h[0] != 0
}

/// Starts with header fields typical of a message (`From:`, `Received:`, `Content-Type:` …).
fn looks_like_mail(d: &[u8]) -> bool {
    let head = &d[..d.len().min(4096)];
    let mut known = 0;
    for line in head.split(|&b| b == b'\n').take(40) {
        let lower: Vec<u8> = line.iter().take(30).map(u8::to_ascii_lowercase).collect();
        for f in [
            &b"from:"[..],
            b"to:",
            b"subject:",
            b"received:",
            b"content-type:",
            b"mime-version:",
            b"message-id:",
            b"date:",
            b"return-path:",
        ] {
            if lower.starts_with(f) {
                known += 1;
            }
        }
        if line.is_empty() || line == b"\r" {
            break;
        }
    }
    known >= 2 && (head.starts_with(b"From ") || head.first().is_some_and(|c| c.is_ascii_alphabetic()))
}

/// How much of a file libclamav looks at to type it.
const TYPING_WINDOW: usize = 1028;

/// libclamav's classes of bytes in text: never in text, plain ASCII text, ISO-8859, other
/// extended ASCII.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TextClass {
    Never,
    Ascii,
    Extended,
}

fn text_class(b: u8) -> TextClass {
    match b {
        0x07..=0x0a | 0x0c | 0x0d | 0x1b | 0x20..=0x7e | 0x85 => TextClass::Ascii,
        0x00..=0x1f | 0x7f => TextClass::Never,
        _ => TextClass::Extended,
    }
}

/// libclamav's "ASCII text": no byte of the first 1,028 that never appears in text (8-bit
/// bytes are allowed: ISO-8859 and other extended ASCII).
pub fn is_ascii_text(d: &[u8]) -> bool {
    d[..d.len().min(TYPING_WINDOW)].iter().all(|&b| text_class(b) != TextClass::Never)
}

/// libclamav's UTF-8 text: valid sequences, at least one of several bytes, and only plain
/// ASCII text bytes otherwise (a sequence cut by the end of the window counts).
fn is_utf8_text(d: &[u8]) -> bool {
    let mut got_one = false;
    let mut i = 0;
    while i < d.len() {
        let b = d[i];
        if b & 0x80 == 0 {
            if text_class(b) != TextClass::Ascii {
                return false;
            }
        } else if b & 0x40 == 0 {
            return false;
        } else {
            // 110xxxxx begins two bytes, 1110xxxx three … 1111110x six (libclamav's rule)
            let ones = b.leading_ones();
            if ones >= 7 {
                return false;
            }
            for _ in 1..ones {
                i += 1;
                if i >= d.len() {
                    return got_one;
                }
                if d[i] & 0xc0 != 0x80 {
                    return false;
                }
            }
            got_one = true;
        }
        i += 1;
    }
    got_one
}

/// libclamav's UTF-16 text: with a byte-order mark, fewer than half bad characters; without
/// one (read big-endian), no character below 128 that is not plain text.
fn is_utf16_text(d: &[u8]) -> bool {
    if d.len() < 2 {
        return false;
    }
    let (big, bom) = match (d[0], d[1]) {
        (0xff, 0xfe) => (false, true),
        (0xfe, 0xff) => (true, true),
        _ => (true, false),
    };
    let mut bad = 0;
    for pair in d[2..].chunks_exact(2) {
        let c = if big { u16::from_be_bytes([pair[0], pair[1]]) } else { u16::from_le_bytes([pair[0], pair[1]]) };
        if c == 0xfffe {
            return false;
        }
        if c < 128 && text_class(c as u8) != TextClass::Ascii {
            if !bom {
                return false;
            }
            bad += 1;
        }
    }
    !(bom && bad >= d.len() / 2)
}

/// Whether libclamav takes `d` for text (ASCII, UTF-8 or UTF-16), from its first 1,028 bytes.
fn is_text(d: &[u8]) -> bool {
    let w = &d[..d.len().min(TYPING_WINDOW)];
    is_ascii_text(w) || is_utf8_text(w) || is_utf16_text(w)
}

/// The normalised copy of a text file that ClamAV also matches (target types 0 and 7):
/// letters lower-cased, every run of white space (space, tab, line breaks, vertical tab, form
/// feed) one space, other control bytes and bytes from 0x80 up left out.
pub fn normalize_text(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut space = false;
    for &b in data {
        match b {
            b' ' | 0x09..=0x0d => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            0x00..=0x08 | 0x0e..=0x1f | 0x80..=0xff => {}
            _ => {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

/// Whether bytes of a pattern could occur in normalised text.
pub fn in_normalized_alphabet(b: u8) -> bool {
    matches!(b, b' ' | 0x21..=0x40 | 0x5b..=0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        assert_eq!(FileType::detect(b"PK\x03\x04rest"), FileType::Zip);
        assert_eq!(FileType::detect(b"MZ\x90\x00"), FileType::Pe);
        assert_eq!(FileType::detect(b"%PDF-1.7"), FileType::Pdf);
        assert_eq!(FileType::detect(b"From: a@b\nSubject: x\n\nbody"), FileType::Mail);
        assert_eq!(FileType::detect(b"hello world\n"), FileType::Text);
        assert_eq!(FileType::detect(&[0u8, 1, 2, 3, 0, 0, 5]), FileType::Binary);
        assert!(FileType::Pe.matches_target(1) && !FileType::Pe.matches_target(6) && FileType::Text.matches_target(0));
    }
}
