//! Encoders for building messages: base64 and quoted-printable (RFC 2045).

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

#[cfg(test)]
mod tests {
    use super::*;

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
