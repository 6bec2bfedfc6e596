//! Turning bytes in a named charset into text (WHATWG labels via `encoding_rs`, plus the
//! aliases mail uses).

use encoding_rs::{Encoding, ISO_2022_JP, UTF_8, WINDOWS_1252};

/// The encoding for a MIME charset label, if known.
pub fn encoding_for(label: &str) -> Option<&'static Encoding> {
    let l = label.trim().trim_matches('"').to_ascii_lowercase();
    let l = match l.as_str() {
        "utf8" => "utf-8",
        "sjis" | "shift-jis" | "x-sjis" | "cp932" | "ms932" | "windows-31j" => "shift_jis",
        "iso-2022-jp-1" | "iso-2022-jp-2" | "iso-2022-jp-3" | "csiso2022jp" => "iso-2022-jp",
        "eucjp" | "x-euc-jp" => "euc-jp",
        "ascii" | "us-ascii" | "ansi_x3.4-1968" => "windows-1252",
        "unknown-8bit" | "x-unknown" | "8bit" => "utf-8",
        other => other,
    };
    Encoding::for_label(l.as_bytes())
}

/// Decodes `bytes` in charset `label`. Unknown labels fall back to UTF-8 (and then
/// windows-1252 if that is not valid). Raw ISO-2022-JP (escape sequences) is recognised
/// whatever the label says.
pub fn decode(bytes: &[u8], label: Option<&str>) -> String {
    if bytes.contains(&0x1b) && !bytes.iter().any(|&b| b >= 0x80) {
        let joined = without_empty_escapes(bytes);
        let (text, _, _) = ISO_2022_JP.decode(&joined);
        return text.into_owned();
    }
    if let Some(enc) = label.and_then(encoding_for) {
        let (text, _, _) = enc.decode(bytes);
        return text.into_owned();
    }
    guess(bytes)
}

/// ISO-2022-JP with each switch back to ASCII that is directly followed by another escape
/// sequence removed. Joined RFC 2047 words (each ends in ASCII, the next starts with `ESC $ B`)
/// look like that; the WHATWG decoder would turn every such empty switch into U+FFFD.
fn without_empty_escapes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let switch_back = bytes[i..].starts_with(b"\x1b(B") || bytes[i..].starts_with(b"\x1b(J");
        if switch_back && bytes.get(i + 3) == Some(&0x1b) {
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Text of 8-bit bytes without a declared charset: UTF-8 if valid, else windows-1252.
pub fn guess(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let (text, _, _) = WINDOWS_1252.decode(bytes);
            text.into_owned()
        }
    }
}

/// Whether `label` names UTF-8.
pub fn is_utf8(label: &str) -> bool {
    encoding_for(label) == Some(UTF_8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_charsets() {
        assert_eq!(decode(b"\x1b$B%F%9%H\x1b(B", Some("iso-2022-jp")), "テスト");
        assert_eq!(decode(b"\x83e\x83X\x83g", Some("Shift_JIS")), "テスト");
        assert_eq!(decode(b"\x83e\x83X\x83g", Some("cp932")), "テスト");
        assert_eq!(decode(b"\xa5\xc6\xa5\xb9\xa5\xc8", Some("EUC-JP")), "テスト");
        assert_eq!(decode("テスト".as_bytes(), Some("utf8")), "テスト");
        assert_eq!(decode(b"\x1b$B%F%9%H\x1b(B", None), "テスト");
        assert_eq!(decode(b"caf\xe9", Some("no-such-charset")), "café");
        assert!(is_utf8("UTF-8"));
    }
}
