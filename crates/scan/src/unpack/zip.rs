//! ZIP (stored, deflate, deflate64, bzip2, lzma, xz, zstd), with ZipCrypto and AES members
//! reported as encrypted without a password.

use std::io::Cursor;

use zip::ZipArchive;

use super::{Entry, UnpackError, member, read_bounded};
use crate::limits::Budget;

/// A member's name from its raw bytes: UTF-8 (the zip's UTF-8 flag, or plain ASCII), else
/// Shift_JIS (what Japanese Windows writes without the flag), else code page 437 (the zip
/// format's own default). `None` for an empty name.
pub fn member_name(raw: &[u8]) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    if let Ok(s) = std::str::from_utf8(raw) {
        return Some(s.to_string());
    }
    let (sjis, _, bad) = encoding_rs::SHIFT_JIS.decode(raw);
    if !bad {
        return Some(sjis.into_owned());
    }
    Some(raw.iter().map(|&b| if b.is_ascii() { b as char } else { CP437_HIGH[(b - 0x80) as usize] }).collect())
}

/// Code page 437, bytes 0x80–0xFF.
const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û',
    'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡',
    '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─',
    '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█',
    '▄', '▌', '▐', '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±', '≥',
    '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', ' ',
];

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut archive =
        ZipArchive::new(Cursor::new(data)).map_err(|e| UnpackError::Broken(format!("Broken.Zip: {e}")))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        budget.entry()?;
        let (name, encrypted, is_dir, packed) = match archive.by_index_raw(i) {
            Ok(f) => (
                member_name(f.name_raw()).unwrap_or_else(|| format!("member {}", i + 1)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn member_names_in_utf8_shift_jis_and_cp437() {
        assert_eq!(member_name("議事録.txt".as_bytes()).unwrap(), "議事録.txt");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("議事録.txt");
        assert_eq!(member_name(&sjis).unwrap(), "議事録.txt");
        // 0x80 0x81 is not Shift_JIS: code page 437
        assert_eq!(member_name(b"\x80\x81.txt").unwrap(), "Çü.txt");
        assert_eq!(member_name(b""), None);
    }

    #[test]
    fn shift_jis_names_written_by_japanese_windows_are_decoded() {
        // a zip whose name bytes are Shift_JIS without the UTF-8 flag, as Explorer writes it
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("見積書.txt");
        let placeholder = "x".repeat(sjis.len());
        let mut zip = testkit::mail::zip(&[(placeholder.as_str(), b"hello")]);
        let mut at = 0;
        while let Some(p) = zip[at..].windows(sjis.len()).position(|w| w == placeholder.as_bytes()) {
            zip[at + p..at + p + sjis.len()].copy_from_slice(&sjis);
            at += p + sjis.len();
        }
        let entries = unpack(&zip, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&entries[..], [Entry::File { name, .. }] if name == "見積書.txt"), "{entries:?}");
    }
}
