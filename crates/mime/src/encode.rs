//! Encoders for building messages: base64 and quoted-printable (RFC 2045), and header fields
//! with RFC 2047 encoded words (UTF-8 or ISO-2022-JP).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 of `data` on one line.
pub fn base64(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            s.push(if k <= c.len() { ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    s
}

/// Base64 of `data` as a MIME body: lines of 76 characters ending in CRLF.
pub fn base64_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for line in data.chunks(57) {
        out.push_str(&base64(line));
        out.push_str("\r\n");
    }
    out
}

/// Quoted-printable of text with CRLF line breaks (kept as line breaks): 7-bit lines of at
/// most 76 characters, soft breaks where longer.
pub fn quoted_printable(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() + data.len() / 8);
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut len = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let plain = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if plain { (b as char).to_string() } else { format!("={b:02X}") };
            if len + piece.len() > 75 {
                out.push_str("=\r\n");
                len = 0;
            }
            out.push_str(&piece);
            len += piece.len();
        }
        if lines.peek().is_some() {
            out.push_str("\r\n");
        }
    }
    out
}

/// A header field whose value is written as it is if ASCII (folded at spaces to short lines),
/// else as RFC 2047 UTF-8 `B` words of whole characters.
pub fn header_field(name: &str, value: &str) -> String {
    let value: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if value.is_ascii() {
        return ascii_field(name, &value);
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 30 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    encoded_field(name, words.iter().map(|w| format!("=?UTF-8?B?{}?=", base64(w.as_bytes()))))
}

/// [`header_field`] with ISO-2022-JP words (what Japanese mail programs read best), each a
/// whole escape sequence; a piece with no JIS X 0208 form is a UTF-8 word.
pub fn header_field_jis(name: &str, value: &str) -> String {
    let value: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if value.is_ascii() {
        return ascii_field(name, &value);
    }
    let chars: Vec<char> = value.chars().collect();
    encoded_field(
        name,
        chars.chunks(12).map(|c| {
            let chunk: String = c.iter().collect();
            let (bytes, _, unmappable) = encoding_rs::ISO_2022_JP.encode(&chunk);
            if unmappable {
                format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes()))
            } else {
                format!("=?ISO-2022-JP?B?{}?=", base64(&bytes))
            }
        }),
    )
}

/// `name: value` folded at spaces so lines stay short.
fn ascii_field(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut line_len = out.len();
    for word in value.split(' ') {
        if line_len + word.len() + 1 > 76 && line_len > name.len() + 1 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += word.len() + 1;
    }
    out.push_str("\r\n");
    out
}

/// `name:` and encoded words, one per line.
fn encoded_field(name: &str, words: impl Iterator<Item = String>) -> String {
    let words: Vec<String> = words.map(|w| format!(" {w}")).collect();
    format!("{name}:{}\r\n", words.join("\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_decode_back_in_either_charset() {
        for value in ["請求書のご送付について（至急）", "plain ascii", "emoji 😀 has no JIS form"] {
            for field in [header_field("Subject", value), header_field_jis("Subject", value)] {
                assert!(field.is_ascii(), "{field}");
                assert!(field.split("\r\n").all(|l| l.len() <= 78), "{field}");
                let v = field.strip_prefix("Subject:").unwrap();
                assert_eq!(crate::decode_header(v.trim().as_bytes()), value, "{field}");
            }
        }
        assert!(header_field_jis("Subject", "請求書").contains("=?ISO-2022-JP?B?"));
    }

    #[test]
    fn quoted_printable_roundtrip() {
        let text = "Subject: 請求書 = invoice \r\nX: trailing space \r\n".repeat(5);
        let qp = quoted_printable(text.as_bytes());
        assert!(qp.is_ascii());
        assert!(qp.split("\r\n").all(|l| l.len() <= 76), "{qp}");
        assert_eq!(crate::decode::quoted_printable(qp.as_bytes()), text.as_bytes());
    }

    #[test]
    fn roundtrip() {
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
        assert_eq!(base64(b""), "");
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let lines = base64_lines(&data);
        assert!(lines.lines().all(|l| l.len() <= 76));
        assert_eq!(crate::decode::base64(lines.as_bytes()), data);
    }
}
